import assert from "node:assert/strict";
import { applyDropout } from "../../lib/autograd/ops/dropout.ts";

Deno.test("dropout: same seed same mask, scaled survivors, about 1 − p kept, bad input refused", () => {
  const x = new Float32Array(20000).fill(2);
  const a = applyDropout(x, 0.1, { lo: 1, hi: 2 });
  assert.deepEqual(applyDropout(x, 0.1, { lo: 1, hi: 2 }), a);
  assert.notDeepEqual(applyDropout(x, 0.1, { lo: 1, hi: 3 }), a);
  assert.ok(a.every((v) => v === 0 || Math.abs(v - 2 / 0.9) < 1e-6));
  const kept = a.filter((v) => v !== 0).length / x.length;
  assert.ok(Math.abs(kept - 0.9) < 0.01, `kept ${kept}`);
  assert.deepEqual(applyDropout(x, 0, { lo: 5, hi: 5 }), x);
  assert.throws(() => applyDropout(x, 1, { lo: 0, hi: 0 }), /p must be in \[0, 1\)/);
  assert.throws(() => applyDropout(x, 0.5, { lo: 0, hi: 0 }, x), /out must not be x/);
});
