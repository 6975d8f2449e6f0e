import assert from "node:assert/strict";
import type { DataRecord } from "../../lib/data/formats.ts";
import { chooseExactMatch, exactMatchFits } from "../../lib/data/metric_choice.ts";
import { smollm2Tokenizer } from "./_helpers.ts";

const tokenizer = await smollm2Tokenizer();
const at = { file: "v.jsonl", line: 1 };
const chat = (...contents: [string, string][]): DataRecord => ({
  ...at,
  format: "chat",
  messages: contents.map(([role, content]) => ({ role: role as "user", content })),
});

Deno.test("exact match fits single short answers only, and says why not with file:line", () => {
  assert.equal(
    exactMatchFits([{ ...at, format: "completions", prompt: "p", completion: "2024-03-07" }], tokenizer).fits,
    true,
  );
  assert.equal(exactMatchFits([chat(["user", "q"], ["assistant", "Paris"])], tokenizer).fits, true);
  const long = exactMatchFits([chat(["user", "q"], ["assistant", "word ".repeat(40)])], tokenizer);
  assert.deepEqual(long, {
    fits: false,
    reason: "v.jsonl:1 has a 40-token answer; exact match needs short ones (≤ 32)",
  });
  const multi = exactMatchFits(
    [chat(["user", "a"], ["assistant", "b"], ["user", "c"], ["assistant", "d"])],
    tokenizer,
  );
  assert.match(multi.reason, /^v\.jsonl:1 is not a single-answer chat/);
  assert.equal(exactMatchFits([{ ...at, format: "text", text: "x" }], tokenizer).fits, false);
  const withCall: DataRecord = {
    ...at,
    format: "chat",
    messages: [{ role: "user", content: "q" }, {
      role: "assistant",
      content: "",
      tool_calls: [{ type: "function", function: { name: "f", arguments: "{}" } }],
    }],
  };
  assert.equal(exactMatchFits([withCall], tokenizer).fits, false);
});

Deno.test("--metric: auto follows the rule and says so, exact-match forces it (not on text), none never", () => {
  const short: DataRecord = { ...at, format: "completions", prompt: "p", completion: "42" };
  const long = chat(["user", "q"], ["assistant", "word ".repeat(40)]);
  assert.deepEqual(chooseExactMatch("auto", [short], tokenizer), {
    score: true,
    note: "exact match: scoring (one short answer per record, the longest 2 tokens)",
  });
  const off = chooseExactMatch("auto", [long], tokenizer);
  assert.equal(off.score, false);
  assert.match(off.note!, /not scored, v\.jsonl:1 has a 40-token answer.*\(--metric exact-match forces it\)/);
  assert.deepEqual(chooseExactMatch("exact-match", [long], tokenizer), { score: true });
  assert.deepEqual(chooseExactMatch("none", [short], tokenizer), { score: false });
  assert.deepEqual(chooseExactMatch("auto", [], tokenizer), { score: false });
  assert.throws(
    () => chooseExactMatch("exact-match", [{ ...at, format: "text", text: "x" }], tokenizer),
    /--metric exact-match: text records have no answer to compare/,
  );
});
