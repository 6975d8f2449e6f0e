import assert from "node:assert/strict";
import { clipFactor, clipGradNorm, gradNorm } from "../../lib/train/clip.ts";
import type { Parameter } from "../../lib/train/optimizer.ts";

function params(...grads: number[][]): Parameter[] {
  return grads.map((g, i) => ({
    name: `p${i}`,
    data: new Float32Array(g.length),
    grad: Float32Array.from(g),
  }));
}

Deno.test("clip: the norm is global over all gradients", () => {
  assert.equal(gradNorm(params([3], [0, 4])), 5);
  assert.equal(gradNorm(params([1, 2, 2], [])), 3);
});

Deno.test("clip: above maxNorm every gradient is scaled by maxNorm / (norm + 1e-6); the pre-clip norm is returned", () => {
  const ps = params([3], [0, 4]);
  assert.equal(clipGradNorm(ps, 1), 5);
  const c = 1 / (5 + 1e-6);
  assert.ok(Math.abs(ps[0].grad[0] - 3 * c) < 1e-7);
  assert.ok(Math.abs(ps[1].grad[1] - 4 * c) < 1e-7);
  assert.ok(Math.abs(gradNorm(ps) - 1) < 1e-6);
});

Deno.test("clip: below maxNorm, or maxNorm 0, nothing changes", () => {
  for (const max of [10, 0]) {
    const ps = params([3], [0, 4]);
    assert.equal(clipGradNorm(ps, max), 5);
    assert.deepEqual([...ps[0].grad, ...ps[1].grad], [3, 0, 4]);
  }
  assert.equal(clipFactor(0, 1), 1);
});

Deno.test("clip: a non-finite norm is returned and the gradients are left alone", () => {
  const ps = params([Infinity, 1]);
  assert.equal(clipGradNorm(ps, 1), Infinity);
  assert.equal(ps[0].grad[1], 1);
  assert.ok(Number.isNaN(clipGradNorm(params([NaN]), 1)));
});
