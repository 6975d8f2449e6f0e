import assert from "node:assert/strict";
import {
  BatchStream,
  IGNORE_INDEX,
  makeBatch,
  orderedBatches,
  padTokenId,
  shuffled,
} from "../../lib/data/batch.ts";
import type { Example } from "../../lib/data/dataset.ts";
import { smollm2Tokenizer } from "./_helpers.ts";

const PAD = 0;
const X = IGNORE_INDEX;

/** An example with ids `ids` and mask `mask` (as digits, e.g. "0011"). */
function ex(ids: number[], mask: string, line = 1): Example {
  assert.equal(ids.length, mask.length);
  return {
    ids,
    mask: Uint8Array.from(mask, (c) => Number(c)),
    record: { file: "d.jsonl", line, format: "text", text: "" },
  };
}

Deno.test("makeBatch: inputs are tokens 0..n-2, targets the next token where trained, padding at the end", () => {
  const b = makeBatch([[ex([10, 11, 12, 13], "0011")], [ex([20, 21], "01")]], PAD);
  assert.equal(b.rows, 2);
  assert.equal(b.width, 3);
  assert.deepEqual([...b.inputs], [10, 11, 12, 20, PAD, PAD]);
  assert.deepEqual([...b.targets], [X, 12, 13, 21, X, X]);
  assert.deepEqual([...b.positions], [0, 1, 2, 0, 1, 2]);
  assert.deepEqual(b.segmentStarts, [[0], [0]]);
  assert.equal(b.tokens, 4);
  assert.equal(b.lossTokens, 3);
  assert.equal(b.examples, 2);
});

Deno.test("makeBatch: packed rows hold whole examples with their starts; positions restart; no cross-example target", () => {
  const row = [ex([1, 2, 3], "011"), ex([4, 5], "01"), ex([6, 7, 8], "001")];
  const b = makeBatch([row], PAD, 8);
  assert.deepEqual([...b.inputs], [1, 2, 4, 6, 7, PAD, PAD, PAD]);
  assert.deepEqual([...b.targets], [2, 3, 5, X, 8, X, X, X]);
  assert.deepEqual([...b.positions], [0, 1, 0, 0, 1, 2, 3, 4]);
  assert.deepEqual(b.segmentStarts, [[0, 2, 3]]);
  assert.equal(b.tokens, 5);
  assert.equal(b.lossTokens, 4);
  assert.throws(() => makeBatch([row], PAD, 4), /row 0 needs 5 positions, the batch has 4/);
});

Deno.test("padTokenId: SmolLM2's pad token", async () => {
  const tokenizer = await smollm2Tokenizer();
  assert.equal(padTokenId(tokenizer), tokenizer.padTokenId ?? tokenizer.eosTokenId);
});

const many = Array.from(
  { length: 10 },
  (_, i) => ex([100 + i, 200 + i, 300 + i].slice(0, 2 + (i % 2)), i % 2 ? "011" : "01", i + 1),
);

/** The first input of each row = which example it is. */
const firsts = (b: { inputs: Uint32Array; rows: number; width: number }) =>
  Array.from({ length: b.rows }, (_, r) => b.inputs[r * b.width] - 100);

Deno.test("BatchStream: each epoch is a seeded permutation; the last batch of an epoch may be short", () => {
  const stream = new BatchStream(many, { batchSize: 4, padId: PAD, seed: 7 });
  assert.equal(stream.batchesInEpoch(), 3);
  const epoch0 = [stream.next(), stream.next(), stream.next()];
  assert.deepEqual(epoch0.map((b) => b.rows), [4, 4, 2]);
  assert.deepEqual(epoch0.map((b) => b.epoch), [0, 0, 0]);
  assert.deepEqual(epoch0.flatMap(firsts), shuffled(10, 7, 0));
  assert.deepEqual(epoch0.flatMap(firsts).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const next = stream.next();
  assert.equal(next.epoch, 1);
  assert.deepEqual(firsts(next), shuffled(10, 7, 1).slice(0, 4));
  assert.notDeepEqual(shuffled(10, 7, 0), shuffled(10, 7, 1));
  assert.notDeepEqual(shuffled(10, 7, 0), shuffled(10, 8, 0));
});

Deno.test("BatchStream: restoring the state resumes with exactly the same batches", () => {
  const options = { batchSize: 3, padId: PAD, seed: 1 };
  const a = new BatchStream(many, options);
  for (let i = 0; i < 5; i++) a.next();
  const saved = a.state;
  const expected = [a.next(), a.next(), a.next()];
  const b = new BatchStream(many, options, saved);
  assert.deepEqual([b.next(), b.next(), b.next()], expected);
  assert.throws(() => new BatchStream(many, options, { epoch: 0, position: 11 }), /outside the 10 examples/);
});

Deno.test("BatchStream: packing fills rows of up to maxLength with whole examples, in the epoch's order", () => {
  const stream = new BatchStream(many, { batchSize: 2, padId: PAD, seed: 3, pack: true, maxLength: 4 });
  const seen: number[] = [];
  const batches = stream.batchesInEpoch();
  for (let i = 0; i < batches; i++) {
    const b = stream.next();
    // As wide as its longest packed row, at most maxLength (padding to maxLength would compute padding).
    const used = Array.from(
      { length: b.rows },
      (_, r) => b.inputs.slice(r * b.width, (r + 1) * b.width).filter((id) => id !== PAD).length,
    );
    assert.equal(b.width, Math.max(...used));
    assert.ok(b.width <= 4, `width ${b.width}`);
    for (let r = 0; r < b.rows; r++) {
      for (const start of b.segmentStarts[r]) seen.push(b.inputs[r * b.width + start] - 100);
    }
  }
  assert.deepEqual(seen, shuffled(10, 3, 0));
  // A wide row capacity: all ten examples (15 positions) fit one row, and the batch is 15 wide, not 100.
  const wide = new BatchStream(many, { batchSize: 2, padId: PAD, seed: 3, pack: true, maxLength: 100 });
  const one = wide.next();
  assert.deepEqual([one.rows, one.width, one.tokens], [1, 15, 15]);
  assert.equal(stream.next().epoch, 1);
  assert.throws(
    () =>
      new BatchStream([ex([1, 2, 3, 4, 5, 6], "011111")], {
        batchSize: 1,
        padId: PAD,
        seed: 0,
        pack: true,
        maxLength: 4,
      }),
    /d\.jsonl:1\) has 6 tokens, more than maxLength 4/,
  );
});

Deno.test("orderedBatches: every example once, in order, without shuffling", () => {
  const batches = [...orderedBatches(many, { batchSize: 4, padId: PAD })];
  assert.deepEqual(batches.map((b) => b.rows), [4, 4, 2]);
  assert.deepEqual(batches.flatMap(firsts), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.throws(() => [...orderedBatches([], { batchSize: 1, padId: PAD })], /no examples/);
  assert.throws(() => [...orderedBatches(many, { batchSize: 0, padId: PAD })], /batchSize/);
});
