import assert from "node:assert/strict";
import { describeSplit, loadDataset, splitRecords } from "../../lib/data/dataset.ts";
import { DataError } from "../../lib/data/errors.ts";
import { chat, jsonlFile, smollm2Tokenizer } from "./_helpers.ts";

const tokenizer = await smollm2Tokenizer();
const dates = Array.from(
  { length: 20 },
  (_, i) => chat(`Day ${i + 1} of March 2021`, `2021-03-${String(i + 1).padStart(2, "0")}`),
);

Deno.test("loadDataset: train and valid files → examples with masks and stats", async () => {
  const train = await jsonlFile("train.jsonl", dates.slice(0, 15));
  const valid = await jsonlFile("valid.jsonl", dates.slice(15));
  const data = await loadDataset({ tokenizer, train, valid, maxLength: 128 });
  assert.equal(data.format, "chat");
  assert.equal(data.train.length, 15);
  assert.equal(data.valid.length, 5);
  const first = data.train[0];
  assert.equal(first.record.line, 1);
  assert.equal(tokenizer.decode(first.ids.filter((_, i) => first.mask[i])), "2021-03-01<|im_end|>");
  const stats = data.stats.train;
  assert.equal(stats.records, 15);
  assert.equal(stats.examples, 15);
  assert.equal(stats.truncated, 0);
  assert.equal(stats.tokens, data.train.reduce((sum, ex) => sum + ex.ids.length, 0));
  assert.equal(stats.lossTokens, data.train.reduce((sum, ex) => sum + ex.mask.reduce((a, b) => a + b, 0), 0));
  assert.equal(stats.longest, Math.max(...data.train.map((ex) => ex.ids.length)));
  assert.match(stats.longestAt, /train\.jsonl:\d+$/);
});

Deno.test("loadDataset: one file split with a seed (deterministic, both halves in file order)", async () => {
  const train = await jsonlFile("all.jsonl", dates);
  const a = await loadDataset({ tokenizer, train, validFraction: 0.25, seed: 3, maxLength: 128 });
  const b = await loadDataset({ tokenizer, train, validFraction: 0.25, seed: 3, maxLength: 128 });
  const c = await loadDataset({ tokenizer, train, validFraction: 0.25, seed: 4, maxLength: 128 });
  const lines = (d: typeof a) => d.valid.map((ex) => ex.record.line);
  assert.equal(a.valid.length, 5);
  assert.equal(a.train.length, 15);
  assert.deepEqual(lines(a), lines(b));
  assert.notDeepEqual(lines(a), lines(c));
  assert.deepEqual(lines(a), [...lines(a)].sort((x, y) => x - y));
  const all = [...a.train, ...a.valid].map((ex) => ex.record.line).sort((x, y) => x - y);
  assert.deepEqual(all, dates.map((_, i) => i + 1));
  // Without a fraction nothing is held out.
  assert.equal((await loadDataset({ tokenizer, train, maxLength: 128 })).valid.length, 0);
});

Deno.test("splitRecords: at least one record held out, and at least one left to train", () => {
  assert.equal(splitRecords([1, 2, 3], 0.01, 0, "f")[1].length, 1);
  assert.throws(() => splitRecords([1], 0.5, 0, "f"), /f: has 1 record\(s\): too few to hold out 1/);
});

Deno.test("loadDataset: examples over maxLength keep their first tokens; truncation is counted", async () => {
  const long = { prompt: "word ".repeat(10), completion: " yes ".repeat(40) };
  const short = { prompt: "Q", completion: " A" };
  const train = await jsonlFile("long.jsonl", [short, long]);
  const data = await loadDataset({ tokenizer, train, maxLength: 24 });
  const full = data.stats.train.longest;
  assert.ok(full > 24);
  assert.equal(data.train[1].ids.length, 24);
  assert.equal(data.train[1].mask.length, 24);
  assert.equal(data.stats.train.truncated, 1);
  assert.equal(data.stats.train.truncatedTokens, full - 24);
  assert.equal(data.stats.train.longestAt.endsWith("long.jsonl:2"), true);
  assert.match(describeSplit("train", data.stats.train, 24), /1 truncated to 24 tokens \(\d+ tokens cut\)/);
});

Deno.test("loadDataset: an example whose trained tokens are all cut off is dropped and reported", async () => {
  const longPrompt = { prompt: "word ".repeat(40), completion: " answer" };
  const train = await jsonlFile("drop.jsonl", [{ prompt: "Q", completion: " A" }, longPrompt]);
  const data = await loadDataset({ tokenizer, train, maxLength: 16 });
  assert.equal(data.train.length, 1);
  assert.deepEqual(data.stats.train.dropped, [`${train}:2`]);
  assert.match(
    describeSplit("train", data.stats.train, 16),
    /1 dropped, nothing left to train after truncation/,
  );
});

Deno.test("loadDataset: nothing left after truncation is a clear error", async () => {
  const train = await jsonlFile("none.jsonl", [{ prompt: "word ".repeat(40), completion: " answer" }]);
  await assert.rejects(loadDataset({ tokenizer, train, maxLength: 16 }), (error: unknown) => {
    assert.ok(error instanceof DataError);
    assert.match(
      error.message,
      /nothing left to train on: all 1 example\(s\) lost every trained token to truncation at maxLength 16/,
    );
    return true;
  });
});

Deno.test("loadDataset: an empty file is a clear error", async () => {
  const train = await jsonlFile("empty_train.jsonl", []);
  await assert.rejects(
    loadDataset({ tokenizer, train, maxLength: 64 }),
    /empty_train\.jsonl: no records \(the file is empty\)/,
  );
});

Deno.test("loadDataset: bad records surface with file:line (malformed, mixed, no assistant turn)", async () => {
  const malformed = await jsonlFile("malformed.jsonl", [dates[0], "{oops"]);
  await assert.rejects(
    loadDataset({ tokenizer, train: malformed, maxLength: 64 }),
    /malformed\.jsonl:2: not valid JSON/,
  );
  const mixed = await jsonlFile("mixed.jsonl", [dates[0], { text: "x" }]);
  await assert.rejects(
    loadDataset({ tokenizer, train: mixed, maxLength: 64 }),
    /mixed\.jsonl:2: mixed formats/,
  );
  const noAnswer = await jsonlFile("no_answer.jsonl", [dates[0], {
    messages: [{ role: "user", content: "Hi" }],
  }]);
  await assert.rejects(
    loadDataset({ tokenizer, train: noAnswer, maxLength: 64 }),
    /no_answer\.jsonl:2: the chat has no assistant message/,
  );
});

Deno.test("loadDataset: train and valid files must share a format; options are checked", async () => {
  const train = await jsonlFile("fmt_train.jsonl", dates);
  const valid = await jsonlFile("fmt_valid.jsonl", [{ prompt: "a", completion: "b" }]);
  await assert.rejects(
    loadDataset({ tokenizer, train, valid, maxLength: 64 }),
    /fmt_valid\.jsonl: is in the "completions" format/,
  );
  await assert.rejects(loadDataset({ tokenizer, train, maxLength: 1 }), /maxLength must be an integer ≥ 2/);
  await assert.rejects(loadDataset({ tokenizer, train, maxLength: 64, validFraction: 1 }), /validFraction/);
});
