/**
 * GEMMs through the FFI on every CPU path this machine has (each in its own child process, see per_path.ts),
 * against a plain f64 dot-product reference written here, on ragged shapes; plus 1 thread vs all threads,
 * and bad input.
 */
import assert from "node:assert/strict";
import { matmulDyTX, matmulDyW, matmulXWt, sgemm } from "../../ffi/gemm.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { kernelName, setThreads, threads } from "../../ffi/runtime.ts";
import { testOnEveryPath } from "./per_path.ts";
import { randomF32 } from "../../tasks/bench/measure.ts";

/** f32 budget: error ≤ 1e-5 of Σ|a||b|. bf16: both operands rounded to 8 significant bits (each off by ≤ 2⁻⁸). */
const F32_BUDGET = 1e-5;
const BF16_BUDGET = 2 / 256 + 1e-5;

/** (m, in, out): M = 1, dims that are not multiples of any tile, K not a multiple of 64. */
const SHAPES: [number, number, number][] = [[1, 10, 63], [63, 10, 1], [7, 45, 17], [13, 130, 33], [
  33,
  77,
  130,
], [
  64,
  64,
  48,
]];

/** Y = X·Wᵀ in f64, and the per-element scale Σ|x||w|. */
function referenceXWt(x: Float32Array, w: Float32Array, m: number, k: number, n: number) {
  const y = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, a = 0;
      for (let p = 0; p < k; p++) {
        s += x[i * k + p] * w[j * k + p];
        a += Math.abs(x[i * k + p] * w[j * k + p]);
      }
      y[i * n + j] = s;
      scale[i * n + j] = a;
    }
  }
  return { y, scale };
}

function worstError(got: Float32Array, want: Float64Array, scale: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / (scale[i] + 1e-30));
  }
  return worst;
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

testOnEveryPath(import.meta, {
  "dense X·Wᵀ, dY·W and dYᵀ·X match the f64 reference": () => {
    const path = kernelName();
    for (const [m, k, n] of SHAPES) {
      const x = randomF32(m * k, 1);
      const w = randomF32(n * k, 2);
      const { y, scale } = referenceXWt(x, w, m, k, n);
      assert.ok(worstError(matmulXWt(x, w, m, k, n), y, scale) <= F32_BUDGET, `${path} X·Wᵀ ${m}x${k}x${n}`);
      // dY·W with dY = X (m×k as m×out) and W as [out=k, in=n]: equals X·(Wᵀ)ᵀ.
      const wt = transpose(w, n, k); // [k, n]
      const r2 = referenceXWt(x, transpose(wt, k, n), m, k, n);
      assert.ok(worstError(matmulDyW(x, wt, m, n, k), r2.y, r2.scale) <= F32_BUDGET, `${path} dY·W`);
      // dYᵀ·X: dW[out, in] = Σ_rows dY[r, out] X[r, in].
      const dy = randomF32(m * n, 3);
      const r3 = referenceXWt(transpose(dy, m, n), transpose(x, m, k), n, m, k);
      assert.ok(worstError(matmulDyTX(dy, x, m, k, n), r3.y, r3.scale) <= F32_BUDGET, `${path} dYᵀ·X`);
    }
  },
  "NF4 forward and backward match the reference on the dequantized weight, f32 and bf16": () => {
    const path = kernelName();
    for (const [m, k, n] of SHAPES) {
      using q = Nf4Weight.quantize(randomF32(n * k, 4, 0.1), n, k);
      const w = q.dequantize();
      const x = randomF32(m * k, 5);
      const { y, scale } = referenceXWt(x, w, m, k, n);
      assert.ok(worstError(q.matmul(x, m), y, scale) <= F32_BUDGET, `${path} fwd ${m}x${k}x${n}`);
      assert.ok(
        worstError(q.matmul(x, m, undefined, { compute: "bf16" }), y, scale) <= BF16_BUDGET,
        `${path} fwd bf16`,
      );
      const dy = randomF32(m * n, 6);
      const rb = referenceXWt(dy, transpose(w, n, k), m, n, k);
      assert.ok(worstError(q.matmulT(dy, m), rb.y, rb.scale) <= F32_BUDGET, `${path} bwd ${m}x${k}x${n}`);
      const bwdBf16 = worstError(q.matmulT(dy, m, undefined, { compute: "bf16" }), rb.y, rb.scale);
      assert.ok(bwdBf16 <= BF16_BUDGET, `${path} bwd bf16 ${m}x${k}x${n}: ${bwdBf16}`);
    }
  },
});

Deno.test("accumulate adds into the output", () => {
  using q = Nf4Weight.quantize(randomF32(20 * 30, 7), 20, 30);
  const x = randomF32(3 * 30, 8);
  const once = q.matmul(x, 3);
  const twice = q.matmul(x, 3, new Float32Array(once), { accumulate: true });
  for (let i = 0; i < once.length; i++) {
    assert.ok(Math.abs(twice[i] - 2 * once[i]) <= 1e-5 * Math.abs(once[i]) + 1e-6);
  }
});

Deno.test("1 thread and all threads give bit-identical results", () => {
  const all = threads();
  using q = Nf4Weight.quantize(randomF32(150 * 333, 9), 150, 333);
  const x = randomF32(37 * 333, 10);
  try {
    setThreads(1);
    const one = q.matmul(x, 37);
    setThreads(0);
    assert.deepEqual(q.matmul(x, 37), one);
  } finally {
    setThreads(all);
  }
});

Deno.test("bad input is an exception naming the argument, never a crash", () => {
  using q = Nf4Weight.quantize(randomF32(10 * 64, 11), 10, 64);
  assert.throws(() => q.matmul(new Float32Array(3 * 63), 3), /x has 189 elements, expected 192/);
  assert.throws(
    () => q.matmul(new Float32Array(3 * 64), 3, new Float32Array(29)),
    /y has 29 elements, expected 30/,
  );
  assert.throws(() => q.matmulT(new Float32Array(3 * 10), 0), /m must be a positive integer, got 0/);
  assert.throws(
    () => q.matmul(new Float64Array(192) as unknown as Float32Array, 3),
    /x must be a Float32Array/,
  );
  assert.throws(
    () => Nf4Weight.quantize(new Float32Array(6), 2, -3),
    /cols must be a positive integer, got -3/,
  );
  assert.throws(
    () => Nf4Weight.quantize(new Float32Array(6), 0, 6),
    /rows must be a positive integer, got 0/,
  );
  assert.throws(() => Nf4Weight.quantize(new Float32Array(5), 2, 3), /w has 5 elements, expected 6/);
  assert.throws(() => Nf4Weight.quantize(new Float32Array(4), 1.5, 2), /rows must be a positive integer/);
  assert.throws(
    () => q.matmul(new Float32Array(192), 3, undefined, { compute: "fp8" as "f32" }),
    /compute must be/,
  );
  assert.throws(
    () =>
      sgemm(2, 3, 4, { data: new Float32Array(8), rowStride: 4, colStride: 1 }, {
        data: new Float32Array(11),
        rowStride: 3,
        colStride: 1,
      }, new Float32Array(6)),
    /b \(4×3 with strides 3,1\) overruns its 11 elements/,
  );
});

Deno.test("non-finite weights are refused with their position; NaN in activations propagates", () => {
  const w = randomF32(4 * 64, 12);
  w[130] = Infinity;
  assert.throws(() => Nf4Weight.quantize(w, 4, 64), /non-finite value inf at index 130 \(row 2, column 2\)/);
  w[130] = NaN;
  assert.throws(() => Nf4Weight.quantize(w, 4, 64), /non-finite value NaN at index 130/);
  using q = Nf4Weight.quantize(randomF32(4 * 64, 13), 4, 64);
  const x = new Float32Array(64);
  x[5] = NaN;
  assert.ok(q.matmul(x, 1).every(Number.isNaN), "NaN in a row of X makes its row of Y NaN");
});

Deno.test("a closed weight refuses use; closing twice is harmless", () => {
  const q = Nf4Weight.quantize(randomF32(64, 14), 1, 64);
  q.close();
  q.close();
  assert.throws(() => q.matmul(new Float32Array(64), 1), /used after close/);
});

Deno.test("NF4 products with a low-rank term equal the product plus a separate low-rank GEMM", () => {
  // Rows above and below the few-row threshold; in = 600 spans two depth blocks; rank 5.
  const [out, inDim, r, s] = [70, 600, 5, 0.75];
  using q = Nf4Weight.quantize(randomF32(out * inDim, 31, 0.1), out, inDim);
  for (const m of [2, 37]) {
    const [x, xa, b] = [randomF32(m * inDim, 32), randomF32(m * r, 33), randomF32(out * r, 34)];
    const want = q.matmul(x, m);
    matmulXWt(xa, b, m, r, out, want, { alpha: s, beta: 1 });
    const got = q.matmul(x, m, undefined, { lowRank: { left: xa, right: b, rank: r, scale: s } });
    assertNear(got, want, 1e-5, `forward m=${m}`);

    const [dy, dxa, a] = [randomF32(m * out, 35), randomF32(m * r, 36), randomF32(r * inDim, 37)];
    const wantT = q.matmulT(dy, m);
    matmulDyW(dxa, a, m, inDim, r, wantT, { alpha: s, beta: 1 });
    const gotT = q.matmulT(dy, m, undefined, { lowRank: { left: dxa, right: a, rank: r, scale: s } });
    assertNear(gotT, wantT, 1e-5, `backward m=${m}`);
  }
  // Operands that do not fit the product are refused with their names and shapes.
  const x = randomF32(4 * inDim, 38);
  assert.throws(
    () =>
      q.matmul(x, 4, undefined, {
        lowRank: { left: new Float32Array(4 * r), right: new Float32Array(r), rank: r, scale: 1 },
      }),
    /lowRank\.right.*70 × 5/,
  );
  assert.throws(
    () =>
      q.matmul(x, 4, undefined, {
        lowRank: { left: new Float32Array(3), right: new Float32Array(out * r), rank: r, scale: 1 },
      }),
    /lowRank\.left.*m × rank = 4 × 5/,
  );
  assert.throws(
    () =>
      q.matmul(x, 4, undefined, {
        lowRank: {
          left: new Float32Array(4 * r),
          right: new Float32Array(out * r),
          rank: r,
          scale: Number.NaN,
        },
      }),
    /lowRank\.scale must be finite/,
  );
});

function assertNear(got: Float32Array, want: Float32Array, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
  }
  assert.ok(worst <= tol, `${what}: worst relative difference ${worst}`);
}
