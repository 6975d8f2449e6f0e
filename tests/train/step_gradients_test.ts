import assert from "node:assert/strict";
import { LocalGradients, microBatchRngState } from "../../lib/train/step_gradients.ts";
import { bits, fakeExamples, FakeModel, fakeStream } from "./_fake.ts";

const EXAMPLES = fakeExamples(30);

Deno.test("step gradients: a step of 3 micro-batches is ((g0 + g1) + g2) of their own gradients, bit for bit", () => {
  const model = new FakeModel({ seed: 5, dropout: 0.3 });
  model.rng.state = [11, 22, 33, 45];
  const start = model.rng.state;
  const sums = new LocalGradients().accumulate({
    model,
    params: model.parameters(),
    stream: fakeStream(EXAMPLES, 4, 1),
    microBatches: 3,
    stopRequested: false,
  });

  // The same micro-batches, one by one on a fresh model: each from its own generator state.
  const ref = new FakeModel({ seed: 5, dropout: 0.3 });
  const stream = fakeStream(EXAMPLES, 4, 1);
  const want = ref.parameters().map((p) => new Float32Array(p.grad.length));
  let lossSum = 0;
  let end: number[] = [];
  for (let i = 0; i < 3; i++) {
    ref.zeroGrad();
    ref.rng.state = microBatchRngState(start, i);
    lossSum += ref.lossAndGrad(stream.next()).lossSum;
    ref.parameters().forEach((p, k) => p.grad.forEach((g, j) => want[k][j] += g));
    end = ref.rng.state;
  }
  model.parameters().forEach((p, k) => assert.deepEqual(bits(p.grad), bits(want[k]), p.name));
  assert.equal(sums.lossSum, lossSum);
  assert.deepEqual(model.rng.state, end, "the step ends with the last micro-batch's generator state");
  // Not trivially: the gradients are non-zero and micro-batch 1 did not reuse micro-batch 0's stream.
  assert.ok(want[0].some((g) => g !== 0));
  assert.notDeepEqual(microBatchRngState(start, 1), start);
  assert.notDeepEqual(microBatchRngState(start, 1), microBatchRngState(start, 2));
});

Deno.test("step gradients: one micro-batch is a plain forward and backward from the current generator state", () => {
  const [a, b] = [new FakeModel({ seed: 2 }), new FakeModel({ seed: 2 })];
  const sums = new LocalGradients().accumulate({
    model: a,
    params: a.parameters(),
    stream: fakeStream(EXAMPLES, 4, 9),
    microBatches: 1,
    stopRequested: true,
  });
  b.zeroGrad();
  const batch = fakeStream(EXAMPLES, 4, 9).next();
  const r = b.lossAndGrad(batch);
  a.parameters().forEach((p, k) => assert.deepEqual(bits(p.grad), bits(b.parameters()[k].grad)));
  assert.deepEqual(a.rng.state, b.rng.state);
  assert.deepEqual(sums, {
    lossSum: r.lossSum,
    lossTokens: r.lossTokens,
    tokens: batch.tokens,
    epoch: 0,
    stop: true,
  });
});
