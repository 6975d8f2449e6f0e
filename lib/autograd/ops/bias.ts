/**
 * A frozen bias added in place (Qwen2's q/k/v): `y[t, :] = x[t, :] + bias`. The gradient passes through
 * unchanged, so the backward hands the output's gradient buffer to the input. Consumes `x` like `ropeInPlace`.
 */
import { sgemm } from "../../../ffi/gemm.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export function biasInPlace(tape: Tape | undefined, x: Tensor, bias: Float32Array): Tensor {
  const [rows, cols] = [x.rows, x.cols];
  if (bias.length !== cols) {
    throw new RangeError(`biasInPlace: bias has ${bias.length} values, x has ${cols} columns`);
  }
  // A rank-1 update ones[rows, 1] · bias[1, cols] added to x.
  const ones = new Float32Array(rows).fill(1);
  sgemm(
    rows,
    cols,
    1,
    { data: ones, rowStride: 1, colStride: 1 },
    {
      data: bias,
      rowStride: cols,
      colStride: 1,
    },
    x.data,
    cols,
    { beta: 1 },
  );
  const out = new Tensor(x.data, x.shape);
  tape?.record("bias", [x], [out], () => addGrad(x, out.grad!));
  return out;
}
