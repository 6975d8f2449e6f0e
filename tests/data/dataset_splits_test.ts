import assert from "node:assert/strict";
import { loadDataset } from "../../lib/data/dataset.ts";
import { jsonlFile, smollm2Tokenizer } from "./_helpers.ts";

const tokenizer = await smollm2Tokenizer();

Deno.test("loadDataset: a test file is its own split; columns rename in every file; formats must agree", async () => {
  const rows = (n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => ({ question: `${tag} ${i}?`, answer: `${i}`, topic: "x" }));
  const train = await jsonlFile("s_train.csv", [
    "question,answer,topic",
    ...rows(6, "t").map((r) => `${r.question},${r.answer},x`),
  ]);
  const test = await jsonlFile(
    "s_test.jsonl",
    rows(2, "e").map(({ question, answer }) => ({ question, answer })),
  );
  const data = await loadDataset({
    tokenizer,
    train,
    test,
    maxLength: 64,
    columns: { prompt: "question", completion: "answer" },
  });
  assert.equal(data.format, "completions");
  assert.deepEqual([data.train.length, data.valid.length, data.test.length], [6, 0, 2]);
  assert.deepEqual(data.test.map((e) => e.record.format === "completions" && e.record.prompt), [
    "e 0?",
    "e 1?",
  ]);
  assert.deepEqual(data.ignoredColumns, [{ file: train, columns: ["topic"] }]);
  assert.equal(data.stats.test.examples, 2);

  const chats = await jsonlFile("s_chat.jsonl", [{ instruction: "a", output: "b" }]);
  await assert.rejects(
    loadDataset({
      tokenizer,
      train,
      test: chats,
      maxLength: 64,
      columns: { prompt: "question", completion: "answer" },
    }),
    new RegExp(`${chats}:1: no key "question"`),
  );
  const alpaca = await jsonlFile("s_alpaca.jsonl", [{ instruction: "a", output: "b" }]);
  const pairs = await jsonlFile("s_pairs.jsonl", [{ prompt: "a", completion: "b" }]);
  await assert.rejects(
    loadDataset({ tokenizer, train: alpaca, test: pairs, maxLength: 64 }),
    new RegExp(`${pairs}: is in the "completions" format but ${alpaca} is "chat"; use one format`),
  );
});
