import assert from "node:assert/strict";
import type { DataRecord } from "../../lib/data/formats.ts";
import type { ExactMatchReport, MatchResult } from "../../lib/data/metrics.ts";
import { compareAnswers, compareExactMatch, promptText } from "../../lib/display/comparison.ts";
import { DISPLAY } from "../../lib/display/jupyter.ts";

const chat = (line: number, user: string, answer: string): DataRecord => ({
  file: "d.jsonl",
  line,
  format: "chat",
  messages: [
    { role: "system", content: "be brief" },
    { role: "user", content: user },
    { role: "assistant", content: answer },
  ],
});

function report(outputs: [string, string, boolean][]): ExactMatchReport {
  const samples: MatchResult[] = outputs.map(([source, output, match]) => ({
    source,
    reference: "2020-01-02",
    output,
    match,
  }));
  const correct = samples.filter((s) => s.match).length;
  return {
    total: samples.length,
    correct,
    rate: correct / samples.length,
    samples,
    seconds: 1,
    generatedTokens: 9,
  };
}

Deno.test("promptText: the last user turn of a chat, a completion's prompt, a text", () => {
  assert.equal(promptText(chat(1, "2 Jan 2020", "2020-01-02")), "2 Jan 2020");
  assert.equal(
    promptText({ file: "f", line: 1, format: "completions", prompt: "Q?", completion: "A" }),
    "Q?",
  );
  assert.equal(promptText({ file: "f", line: 1, format: "text", text: "T" }), "T");
});

Deno.test("compareExactMatch pairs the two runs' answers per record, with marks and both totals", () => {
  const records = [chat(1, "2 Jan 2020", "2020-01-02"), chat(2, "Jan 2nd, 2020", "2020-01-02")];
  const before = report([["d.jsonl:1", "January", false], ["d.jsonl:2", "2020-01-02", true]]);
  const after = report([["d.jsonl:1", "2020-01-02", true], ["d.jsonl:2", "2020-01-02", true]]);
  const comparison = compareExactMatch(records, before, after);
  assert.deepEqual(comparison.rows[0], {
    prompt: "2 Jan 2020",
    expected: "2020-01-02",
    before: "January",
    after: "2020-01-02",
    beforeMatch: false,
    afterMatch: true,
  });
  assert.equal(comparison.caption, "exact match: 1/2 before → 2/2 after");
  const bundle = comparison[DISPLAY]();
  assert.equal(
    bundle["text/plain"],
    [
      "exact match: 1/2 before → 2/2 after",
      "prompt: 2 Jan 2020\n  expected: 2020-01-02\n  before: ✗ January\n  after: ✓ 2020-01-02",
      "prompt: Jan 2nd, 2020\n  expected: 2020-01-02\n  before: ✓ 2020-01-02\n  after: ✓ 2020-01-02",
    ].join("\n"),
  );
  const html = bundle["text/html"];
  assert.match(html, /^<table/);
  assert.equal(html.match(/<tr>/g)?.length, 3);
  assert.match(html, /<th[^>]*>expected<\/th>/);
  assert.equal(html.match(/✗/g)?.length, 1);
  assert.equal(html.match(/✓/g)?.length, 3);
});

Deno.test("compareExactMatch refuses runs over other records or in another order", () => {
  const records = [chat(1, "a", "x"), chat(2, "b", "y")];
  const before = report([["d.jsonl:1", "x", true], ["d.jsonl:2", "y", true]]);
  const swapped = report([["d.jsonl:2", "y", true], ["d.jsonl:1", "x", true]]);
  assert.throws(() => compareExactMatch(records, before, swapped), /same records in the same order/);
});

Deno.test("compareAnswers escapes every field and leaves out the expected column when unknown", () => {
  const bundle = compareAnswers([
    { prompt: "<script>p()</script>", before: "<b>old</b>", after: "new & 'improved'\nline 2" },
  ])[DISPLAY]();
  const html = bundle["text/html"];
  assert.doesNotMatch(html, /<script>|<b>old/);
  assert.match(html, /&lt;script&gt;p\(\)&lt;\/script&gt;/);
  assert.match(html, /new &amp; &#39;improved&#39;\nline 2/);
  assert.doesNotMatch(html, />expected</);
  assert.doesNotMatch(html, /[✓✗]/);
  assert.equal(
    bundle["text/plain"],
    "prompt: <script>p()</script>\n  before: <b>old</b>\n  after: new & 'improved'↵line 2",
  );
});
