/**
 * Column blocks of a fused projection as separate tensors: Phi-3's `qkv_proj` output `[rows, q + k + v]`
 * into q, k, v, and `gate_up_proj`'s `[rows, 2·inter]` into gate and up. The forward copies each row's
 * pieces (memory moves, no arithmetic); the backward lays the pieces' gradients side by side again (zeros
 * for a piece without one).
 */
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export function splitColumns(tape: Tape | undefined, x: Tensor, widths: readonly number[]): Tensor[] {
  const [rows, cols] = [x.rows, x.cols];
  const total = widths.reduce((a, b) => a + b, 0);
  if (total !== cols || widths.some((w) => !(Number.isInteger(w) && w > 0))) {
    throw new RangeError(`splitColumns: widths [${widths}] do not split ${cols} columns`);
  }
  const starts = widths.map((_, i) => widths.slice(0, i).reduce((a, b) => a + b, 0));
  const parts = widths.map((w, i) => {
    const out = new Float32Array(rows * w);
    for (let r = 0; r < rows; r++) {
      out.set(x.data.subarray(r * cols + starts[i], r * cols + starts[i] + w), r * w);
    }
    return new Tensor(out, [rows, w]);
  });
  tape?.record("split", [x], parts, () => {
    const dx = new Float32Array(rows * cols);
    for (const [i, part] of parts.entries()) {
      const g = part.grad;
      if (!g) continue;
      const w = widths[i];
      for (let r = 0; r < rows; r++) dx.set(g.subarray(r * w, (r + 1) * w), r * cols + starts[i]);
    }
    addGrad(x, dx);
  });
  return parts;
}
