/**
 * The ops wrappers through FFI, each once on small shapes against a plain TS reference (the Rust tests check
 * the kernels in depth), plus the argument errors of the TS side and of the kernel behind it.
 */
import assert from "node:assert/strict";
import { check, KernelError } from "../../ffi/errors.ts";
import { kernels } from "../../ffi/load.ts";
import {
  adamwStep,
  addScaled,
  attentionBackward,
  attentionForward,
  type AttentionShape,
  crossEntropy,
  IGNORE_INDEX,
  logSoftmaxGather,
  rmsnormBackward,
  rmsnormForward,
  ropeBackward,
  ropeForward,
  ropeTable,
  scaleInPlace,
  sumSquares,
  swigluBackward,
  swigluForward,
} from "../../ffi/ops.ts";

/** Deterministic values in [-1, 1]. */
function data(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed * 78.233) * 0.999);
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  }
  assert.ok(worst <= tol, `${what}: largest relative difference ${worst} > ${tol}`);
}

Deno.test("rmsnorm forward and backward match the formulas", () => {
  const [rows, dim, eps] = [3, 5, 1e-5];
  const [x, w, dy] = [data(rows * dim, 1), data(dim, 2), data(rows * dim, 3)];
  const { y, rstd } = rmsnormForward(x, w, rows, dim, eps);
  const wantY: number[] = [];
  const wantDx: number[] = [];
  const wantDw = new Array(dim).fill(0);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * dim, (r + 1) * dim);
    const rs = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / dim + eps);
    assert.ok(Math.abs(rstd[r] - rs) < 1e-5 * rs);
    let c = 0;
    for (let i = 0; i < dim; i++) c += dy[r * dim + i] * w[i] * row[i];
    for (let i = 0; i < dim; i++) {
      wantY.push(w[i] * row[i] * rs);
      wantDx.push(rs * w[i] * dy[r * dim + i] - row[i] * rs ** 3 * c / dim);
      wantDw[i] += dy[r * dim + i] * row[i] * rs;
    }
  }
  assertClose(y, wantY, 1e-6, "y");
  const dw = new Float32Array(dim);
  const dx = rmsnormBackward(dy, x, w, rstd, rows, dim, { dw });
  assertClose(dx, wantDx, 1e-5, "dx");
  assertClose(dw, wantDw, 1e-5, "dw");
  // accumulate adds to what is there; a frozen weight (no dw) is fine.
  const twice = rmsnormBackward(dy, x, w, rstd, rows, dim, { dx: dx.slice(), accumulate: true });
  assertClose(twice, wantDx.map((v) => 2 * v), 1e-5, "accumulated dx");
});

Deno.test("rope rotates pairs (i, i + headDim/2) and its backward undoes it", () => {
  const [tokens, heads, half] = [3, 2, 2];
  const positions = Uint32Array.from([0, 5, 1000]);
  const invFreq = Float32Array.from([1, 0.01]);
  const table = ropeTable(positions, invFreq);
  const x = data(tokens * heads * 2 * half, 4);
  const y = x.slice();
  ropeForward(y, heads, table);
  const want: number[] = [];
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * 2 * half;
      const angle = (i: number) => Math.fround(positions[t] * invFreq[i % half]);
      for (let i = 0; i < 2 * half; i++) {
        const rot = i < half ? -x[base + i + half] : x[base + i - half];
        want.push(x[base + i] * Math.cos(angle(i)) + rot * Math.sin(angle(i)));
      }
    }
  }
  assertClose(y, want, 1e-6, "rope");
  ropeBackward(y, heads, table);
  assertClose(y, x, 1e-6, "rope then its transpose");
});

Deno.test("swiglu forward and backward match the formulas", () => {
  const n = 11;
  const [g, u, dh] = [data(n, 5).map((v) => v * 8), data(n, 6), data(n, 7)];
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const h = swigluForward(g, u);
  assertClose(h, Array.from(g, (v, i) => v * sig(v) * u[i]), 1e-6, "h");
  const { dg, du } = swigluBackward(dh, g, u);
  assertClose(du, Array.from(g, (v, i) => dh[i] * v * sig(v)), 1e-6, "du");
  const want = Array.from(g, (v, i) => dh[i] * u[i] * sig(v) * (1 + v * (1 - sig(v))));
  assertClose(dg, want, 1e-6, "dg");
});

/** Naive causal GQA in f64. */
function naiveAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, s: AttentionShape) {
  const { tokens, heads, kvHeads, headDim: hd } = s;
  const off = s.qOffset ?? 0;
  const o = new Float64Array(tokens * heads * hd);
  for (let h = 0; h < heads; h++) {
    const g = Math.floor(h / (heads / kvHeads));
    for (let t = 0; t < tokens; t++) {
      const scores: number[] = [];
      for (let j = 0; j <= off + t; j++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[(t * heads + h) * hd + d] * k[(j * kvHeads + g) * hd + d];
        scores.push(dot / Math.sqrt(hd));
      }
      const m = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - m));
      const total = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let j = 0; j < e.length; j++) acc += e[j] / total * v[(j * kvHeads + g) * hd + d];
        o[(t * heads + h) * hd + d] = acc;
      }
    }
  }
  return o;
}

Deno.test("attention (GQA, cache offset) matches a naive version; backward matches finite differences", () => {
  const shape: AttentionShape = { tokens: 2, keys: 4, heads: 4, kvHeads: 2, headDim: 4, qOffset: 2 };
  const q = data(2 * 4 * 4, 8).map((x) => x * 2);
  const [k, v] = [data(4 * 2 * 4, 9), data(4 * 2 * 4, 10)];
  const { o, lse } = attentionForward(q, k, v, shape);
  assertClose(o, naiveAttention(q, k, v, shape), 1e-5, "o");
  assert.equal(lse.length, 4 * 2);
  assert.equal(attentionForward(q, k, v, shape, { lse: null }).lse.length, 0);

  const dout = data(o.length, 11);
  const { dq, dk, dv } = attentionBackward(q, k, v, o, lse, dout, shape);
  const loss = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>) =>
    naiveAttention(qq, kk, vv, shape).reduce((s, x, i) => s + x * dout[i], 0);
  const numeric = (which: 0 | 1 | 2, i: number) => {
    const h = 1e-6;
    const plus = [Float64Array.from(q), Float64Array.from(k), Float64Array.from(v)];
    const minus = [Float64Array.from(q), Float64Array.from(k), Float64Array.from(v)];
    plus[which][i] += h;
    minus[which][i] -= h;
    return (loss(plus[0], plus[1], plus[2]) - loss(minus[0], minus[1], minus[2])) / (2 * h);
  };
  assertClose(dq, Array.from(dq, (_, i) => numeric(0, i)), 1e-5, "dq");
  assertClose(dk, Array.from(dk, (_, i) => numeric(1, i)), 1e-5, "dk");
  assertClose(dv, Array.from(dv, (_, i) => numeric(2, i)), 1e-5, "dv");
});

Deno.test("crossEntropy returns the loss sum and count and leaves the gradient in the logits", () => {
  const [rows, vocab] = [3, 4];
  const logits = data(rows * vocab, 12).map((x) => x * 5);
  const targets = Int32Array.from([2, IGNORE_INDEX, 0]);
  const original = logits.slice();
  const lp = logSoftmaxGather(logits, targets, rows, vocab);
  assert.deepEqual(logits, original);
  const { lossSum, count } = crossEntropy(logits, targets, rows, vocab, 0.5);
  assert.equal(count, 2);
  let want = 0;
  for (const r of [0, 2]) {
    const row = Array.from(original.subarray(r * vocab, (r + 1) * vocab));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    want += lse - row[targets[r]];
    assert.ok(Math.abs(lp[r] - (row[targets[r]] - lse)) < 1e-5);
    const grad = row.map((x, j) => (Math.exp(x - lse) - (j === targets[r] ? 1 : 0)) * 0.5);
    assertClose(logits.subarray(r * vocab, (r + 1) * vocab), grad, 1e-6, `dlogits row ${r}`);
  }
  assert.ok(Math.abs(lossSum - want) < 1e-5);
  assert.deepEqual(logits.subarray(vocab, 2 * vocab), new Float32Array(vocab));
  assert.equal(lp[1], 0);
});

Deno.test("adamwStep follows torch.optim.AdamW over two steps; vector helpers", () => {
  const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const [p, m, v] = [Float32Array.of(1), new Float32Array(1), new Float32Array(1)];
  adamwStep(p, Float32Array.of(0.5), m, v, 1, hp);
  assert.ok(Math.abs(p[0] - 0.899000002) < 1e-7, `${p[0]}`);
  adamwStep(p, Float32Array.of(-0.25), m, v, 2, hp);
  assert.ok(Math.abs(p[0] - 0.8714672987) < 1e-6, `${p[0]}`);

  const x = Float32Array.of(1, -2, 3);
  assert.equal(sumSquares(x), 14);
  const y = Float32Array.of(1, 1, 1);
  addScaled(y, 2, x);
  assert.deepEqual(y, Float32Array.of(3, -3, 7));
  scaleInPlace(y, 0.5);
  assert.deepEqual(y, Float32Array.of(1.5, -1.5, 3.5));
});

Deno.test("wrong lengths, shapes and overlapping outputs throw naming the argument", () => {
  const x = new Float32Array(10);
  assert.throws(
    () => rmsnormForward(x, new Float32Array(4), 3, 4, 1e-5),
    /rmsnormForward: x has 10 elements, expected 12 \(rows × dim\)/,
  );
  assert.throws(
    () => rmsnormForward(new Float32Array(12), new Float32Array(3), 3, 4, 1e-5),
    /w has 3 elements/,
  );
  assert.throws(() => rmsnormForward(new Float32Array(12), new Float32Array(4), 3, 4, -1), /eps must be/);
  const big = new Float32Array(24);
  assert.throws(
    () => swigluForward(big.subarray(0, 12), big.subarray(12), big.subarray(6, 18)),
    /swigluForward: h overlaps g/,
  );
  assert.throws(
    () => swigluBackward(new Float32Array(3), new Float32Array(3), new Float32Array(2)),
    /u has 2/,
  );
  const shape = { tokens: 2, keys: 2, heads: 3, kvHeads: 2, headDim: 4 };
  const q = new Float32Array(24);
  assert.throws(() => attentionForward(q, q, q, shape), /heads \(3\) is not a multiple of kvHeads \(2\)/);
  assert.throws(
    () => attentionForward(q.subarray(8), new Float32Array(15), new Float32Array(16), { ...shape, heads: 2 }),
    /attentionForward: k has 15 elements, expected 16/,
  );
  assert.throws(
    () => attentionForward(q, q, q, { ...shape, heads: 2, qOffset: 1 }),
    /keys \(2\) is less than qOffset \+ tokens/,
  );
  const table = ropeTable(Uint32Array.of(0, 1), Float32Array.of(1, 0.5));
  assert.throws(
    () => ropeForward(new Float32Array(7), 1, table),
    /ropeForward: x has 7 elements, expected 8/,
  );
  assert.throws(
    () => ropeTable(Int32Array.of(0) as unknown as Uint32Array, table.cos),
    /positions must be a Uint32Array/,
  );
  assert.throws(() => crossEntropy(new Float32Array(8), Int32Array.of(0), 2, 4, 1), /targets has 1 elements/);
  assert.throws(
    () =>
      adamwStep(new Float32Array(2), new Float32Array(2), new Float32Array(2), new Float32Array(1), 1, {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
      }),
    /adamwStep: v has 1 elements, expected 2/,
  );
});

Deno.test("the kernel checks again behind the wrappers and reports through KernelError", () => {
  // A target out of range is a value the wrapper leaves to the kernel: nothing is written.
  const logits = new Float32Array(8).fill(1);
  assert.throws(
    () => crossEntropy(logits, Int32Array.of(0, 9), 2, 4, 1),
    (e: unknown) => e instanceof KernelError && /targets\[1\] = 9/.test(e.message),
  );
  assert.deepEqual(logits, new Float32Array(8).fill(1));
  // Calling the symbol directly with a wrong count is refused, never a memory error.
  const status = kernels().qlora_swiglu_forward(
    new Float32Array(4),
    4,
    new Float32Array(4),
    3,
    new Float32Array(4),
    4,
  );
  assert.throws(() => check(status, "qlora_swiglu_forward"), /u: expected 4 elements \(like g\), got 3/);
});
