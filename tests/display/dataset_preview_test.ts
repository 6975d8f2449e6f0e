import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { Dataset, Example, SplitStats } from "../../lib/data/dataset.ts";
import { loadDataset } from "../../lib/data/dataset.ts";
import { DatasetPreview, datasetPreview } from "../../lib/display/dataset_preview.ts";
import { DISPLAY } from "../../lib/display/jupyter.ts";
import { smollm2Tokenizer } from "../data/_helpers.ts";

const DATES = fileURLToPath(new URL("../../data/dates/", import.meta.url));

/** Token id n decodes to the n-th character of this alphabet. */
const ALPHABET = "abcdefghij<>&\n ";
const decoder = { decode: (ids: readonly number[]) => ids.map((i) => ALPHABET[i]).join("") };
const ids = (text: string) => [...text].map((c) => ALPHABET.indexOf(c));

function example(text: string, trained: string, line: number, recordText = text): Example {
  const mask = Uint8Array.from(trained, (c) => (c === "^" ? 1 : 0));
  return { ids: ids(text), mask, record: { file: "my.jsonl", line, format: "text", text: recordText } };
}

const STATS: SplitStats = {
  records: 5,
  examples: 4,
  tokens: 1234,
  lossTokens: 617,
  truncated: 2,
  truncatedTokens: 40,
  longest: 300,
  longestAt: "my.jsonl:3",
  dropped: ["my.jsonl:5"],
  splitAtBoundary: 0,
};

function fakeDataset(examples: Example[]): Dataset {
  return {
    format: "text",
    sourceFormat: "text",
    train: examples,
    valid: [],
    test: [],
    stats: { train: STATS, valid: { ...STATS, records: 0 }, test: { ...STATS, records: 0 } },
    ignoredColumns: [],
  };
}

Deno.test("datasetPreview: tokens decoded one by one, with the mask's trained tokens marked", () => {
  const data = fakeDataset([
    example("abc de", "   ^^^", 1),
    example("ab\ncd", "^^  ^", 2),
    example("jjj", "^^^", 3),
  ]);
  const preview = datasetPreview(data, decoder, { count: 2 });
  assert.equal(preview.rows.length, 2);
  assert.deepEqual(preview.rows[0].tokens.map((t) => [t.text, t.trained]), [
    ["a", false],
    ["b", false],
    ["c", false],
    [" ", true],
    ["d", true],
    ["e", true],
  ]);
  assert.equal(DatasetPreview.markedText(preview.rows[0]), "abc⟦ de⟧");
  assert.equal(DatasetPreview.markedText(preview.rows[1]), "⟦ab⟧↵c⟦d⟧");
  assert.deepEqual([preview.rows[1].tokenCount, preview.rows[1].trainedCount], [5, 3]);
  assert.equal(preview.rows[1].source, "my.jsonl:2");
});

Deno.test("datasetPreview: long examples are cut at maxTokens and say how many tokens are left", () => {
  const preview = datasetPreview(fakeDataset([example("abcdefghij", "^^^^^^^^^^", 1)]), decoder, {
    maxTokens: 4,
  });
  assert.equal(preview.rows[0].tokens.length, 4);
  assert.equal(DatasetPreview.markedText(preview.rows[0]), "⟦abcd⟧ … (6 more tokens)");
  assert.match(preview[DISPLAY]()["text/html"], /… 6 more tokens/);
});

Deno.test("DatasetPreview: counts line from the split's statistics", () => {
  const preview = datasetPreview(fakeDataset([example("ab", " ^", 1)]), decoder);
  assert.equal(
    preview.countsLine(),
    "train (text): 4 examples from 5 records, 1,234 tokens, 617 trained (50.0 %), 2 truncated (40 tokens cut), " +
      "1 dropped, longest 300",
  );
});

Deno.test("DatasetPreview: HTML table with one highlighted span per trained token, everything escaped", () => {
  const script = "<script>alert(1)</script>";
  const data = fakeDataset([example("<a&>", " ^^ ", 1, script)]);
  const bundle = datasetPreview(data, decoder)[DISPLAY]();
  const html = bundle["text/html"];
  assert.match(html, /<table/);
  assert.doesNotMatch(html, /<script>/);
  assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  const trained = [...html.matchAll(/<span class="trained"[^>]*>([^<]*)<\/span>/g)].map((m) => m[1]);
  assert.deepEqual(trained, ["a", "&amp;"]);
  const context = [...html.matchAll(/<span class="context"[^>]*>([^<]*)<\/span>/g)].map((m) => m[1]);
  assert.deepEqual(context, ["&lt;", "&gt;"]);
  assert.match(html, /title="id 0"/);

  const plain = bundle["text/plain"];
  assert.match(plain, /^train \(text\): 4 examples/);
  assert.match(plain, /^#1 my\.jsonl:1 \(4 tokens, 2 trained\)$/m);
  assert.ok(plain.split("\n").includes("  <script>alert(1)</script>"), plain);
  assert.ok(plain.split("\n").includes("  tokens: <⟦a&⟧>"), plain);
});

Deno.test("datasetPreview on the shipped dates set: exactly the answer and <|im_end|> are trained", async () => {
  const tokenizer = await smollm2Tokenizer();
  const data = await loadDataset({
    tokenizer,
    train: `${DATES}train.jsonl`,
    valid: `${DATES}valid.jsonl`,
    maxLength: 128,
  });
  const preview = datasetPreview(data, tokenizer, { split: "valid", count: 3 });
  assert.equal(preview.rows.length, 3);
  for (const [i, row] of preview.rows.entries()) {
    const record = data.valid[i].record;
    assert.equal(record.format, "chat");
    const answer = record.format === "chat" ? record.messages.at(-1)!.content : "";
    const trained = row.tokens.filter((t) => t.trained).map((t) => t.text).join("");
    assert.equal(trained, `${answer}<|im_end|>`);
    assert.ok(DatasetPreview.markedText(row).includes(`assistant↵⟦${answer}<|im_end|>⟧`), row.source);
    assert.match(row.record, /^system: Convert the date/);
  }
  assert.match(preview.countsLine(), /^valid \(chat\): 60 examples from 60 records/);
});
