import assert from "node:assert/strict";
import { Bf16Matrix } from "../../ffi/bf16.ts";
import { f32ToBf16, halfToF32 } from "../../lib/io/dtype.ts";
import { randomF32 } from "../../tasks/bench/measure.ts";
import { availableKernels, kernelName, setKernel } from "../../ffi/runtime.ts";

Deno.test("bf16 weights: X·Wᵀ, dY·W and row gathers equal f32 math on the widened values", () => {
  const [rows, cols, m] = [37, 70, 5];
  const bits = f32ToBf16(randomF32(rows * cols, 1));
  const w = halfToF32("BF16", bits);
  const mat = new Bf16Matrix(bits, rows, cols);
  const x = randomF32(m * cols, 2);
  const y = mat.matmul(x, m);
  const dy = randomF32(m * rows, 3);
  const dx = mat.matmulT(dy, m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < rows; j++) {
      let s = 0, a = 0;
      for (let p = 0; p < cols; p++) {
        (s += x[i * cols + p] * w[j * cols + p]), (a += Math.abs(x[i * cols + p] * w[j * cols + p]));
      }
      assert.ok(Math.abs(y[i * rows + j] - s) <= 1e-5 * a + 1e-7);
    }
    for (let j = 0; j < cols; j++) {
      let s = 0, a = 0;
      for (let p = 0; p < rows; p++) {
        (s += dy[i * rows + p] * w[p * cols + j]), (a += Math.abs(dy[i * rows + p] * w[p * cols + j]));
      }
      assert.ok(Math.abs(dx[i * cols + j] - s) <= 1e-5 * a + 1e-7);
    }
  }
  const rowsOut = mat.gatherRows(new Uint32Array([3, 0]));
  assert.deepEqual(rowsOut.slice(0, cols), w.slice(3 * cols, 4 * cols));
  assert.throws(() => mat.gatherRows(new Uint32Array([rows])), /ids\[0\]: 37 is out of range for 37 rows/);
  assert.throws(() => new Bf16Matrix(bits, rows, cols + 1), /bits has 2590 elements, expected 37 × 71/);
  assert.throws(() => mat.matmul(new Float32Array(3), m), /x has 3 elements/);
});

Deno.test("bf16 weights with bf16 compute: X·Wᵀ and dY·W on every path match f64 on the rounded activations", () => {
  // m = 45 takes the blocked products (native bf16 units where the path has one); the activations are rounded
  // to bf16 like the weight, so only f32 summation separates every path from the f64 sum.
  const [rows, cols, m] = [97, 150, 45];
  const bits = f32ToBf16(randomF32(rows * cols, 4));
  const w = halfToF32("BF16", bits);
  const mat = new Bf16Matrix(bits, rows, cols);
  const x = randomF32(m * cols, 5);
  const dy = randomF32(m * rows, 6);
  const xr = halfToF32("BF16", f32ToBf16(x));
  const dyr = halfToF32("BF16", f32ToBf16(dy));
  const before = kernelName();
  try {
    for (const path of availableKernels()) {
      setKernel(path);
      const y = mat.matmul(x, m, undefined, { compute: "bf16" });
      const dx = mat.matmulT(dy, m, undefined, { compute: "bf16" });
      let worst = 0;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < rows; j++) {
          let s = 0, a = 0;
          for (let p = 0; p < cols; p++) {
            (s += xr[i * cols + p] * w[j * cols + p]), (a += Math.abs(xr[i * cols + p] * w[j * cols + p]));
          }
          worst = Math.max(worst, Math.abs(y[i * rows + j] - s) / (a + 1e-30));
        }
        for (let j = 0; j < cols; j++) {
          let s = 0, a = 0;
          for (let p = 0; p < rows; p++) {
            (s += dyr[i * rows + p] * w[p * cols + j]), (a += Math.abs(dyr[i * rows + p] * w[p * cols + j]));
          }
          worst = Math.max(worst, Math.abs(dx[i * cols + j] - s) / (a + 1e-30));
        }
      }
      // Same bf16 operands: f32 summation error only (1e-5 of Σ|a||b|).
      assert.ok(worst <= 1e-5, `${path}: worst relative error ${worst}`);
    }
  } finally {
    setKernel(before);
  }
  assert.throws(
    () => mat.matmul(x, m, undefined, { compute: "f16" as "bf16" }),
    /compute must be "f32" or "bf16"/,
  );
});
