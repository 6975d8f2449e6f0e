import assert from "node:assert/strict";
import { Bf16Matrix } from "../../ffi/bf16.ts";
import { f32ToBf16, halfToF32 } from "../../lib/io/dtype.ts";
import { randomF32 } from "../../tasks/bench/measure.ts";

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
