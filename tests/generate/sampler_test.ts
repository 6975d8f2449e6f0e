import assert from "node:assert/strict";
import { argmax, sample, validateSampling } from "../../lib/generate/sampler.ts";
import { Rng } from "../../lib/random.ts";

const logits = Float32Array.from([1.0, 3.0, 2.0, 0.5, 2.9]);

Deno.test("greedy, top-k 1 and a tiny top-p all pick the most likely token", () => {
  const rng = new Rng(1);
  assert.equal(argmax(logits), 1);
  assert.equal(sample(logits, validateSampling({}), rng), 1);
  for (let i = 0; i < 50; i++) {
    assert.equal(sample(logits, validateSampling({ temperature: 1, topK: 1 }), rng), 1);
    assert.equal(sample(logits, validateSampling({ temperature: 1, topP: 0.01 }), rng), 1);
  }
});

Deno.test("sampling follows softmax(logits / T) and respects top-k and top-p", () => {
  const rng = new Rng(42);
  const n = 40000;
  const counts = new Array(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sample(logits, validateSampling({ temperature: 0.7 }), rng)]++;
  const weights = Array.from(logits, (l) => Math.exp(l / 0.7));
  const total = weights.reduce((a, b) => a + b);
  for (let t = 0; t < logits.length; t++) {
    const p = weights[t] / total;
    const sd = Math.sqrt(p * (1 - p) / n);
    assert.ok(Math.abs(counts[t] / n - p) < 5 * sd + 1e-3, `token ${t}: ${counts[t] / n} vs ${p}`);
  }
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(sample(logits, validateSampling({ temperature: 1, topK: 2 }), rng));
  assert.deepEqual([...seen].sort(), [1, 4], "top-k 2 keeps the two best tokens");
  // p(1) + p(4) ≈ 0.73 at T = 1: top-p 0.7 keeps exactly those two.
  seen.clear();
  for (let i = 0; i < 2000; i++) {
    seen.add(sample(logits, validateSampling({ temperature: 1, topP: 0.7 }), rng));
  }
  assert.deepEqual([...seen].sort(), [1, 4]);
});

Deno.test("the same seed gives the same samples", () => {
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 20 }, () => sample(logits, validateSampling({ temperature: 1.5 }), rng));
  };
  assert.deepEqual(draw(7), draw(7));
  assert.notDeepEqual(draw(7), draw(8));
});

Deno.test("invalid sampling options are refused", () => {
  assert.throws(() => validateSampling({ temperature: -1 }), /temperature must be a finite number ≥ 0/);
  assert.throws(() => validateSampling({ topK: 1.5 }), /topK must be an integer ≥ 0/);
  assert.throws(() => validateSampling({ topP: 0 }), /topP must be in \(0, 1\]/);
});
