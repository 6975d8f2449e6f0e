/** RMSNorm with a frozen weight: the gradient goes to x only. */
import { rmsnormBackward, rmsnormForward } from "../../../ffi/ops.ts";
import { gradSink, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/**
 * `y = w * x / sqrt(mean(x²) + eps)` per row of `x [rows, dim]`, or, with `heads`, per head of each row:
 * `x [rows, heads·headDim]` normalised over each `headDim` slice with `w [headDim]` (Qwen3's and Gemma 3's
 * q/k norms). A row of heads is contiguous, so both are one kernel call over `rows·heads` rows.
 */
export function rmsnorm(tape: Tape | undefined, x: Tensor, w: Float32Array, eps: number, heads = 1): Tensor {
  if (x.cols % heads !== 0) {
    throw new RangeError(`rmsnorm: ${x.cols} columns are not ${heads} heads`);
  }
  const [rows, dim] = [x.rows * heads, x.cols / heads];
  const { y, rstd } = rmsnormForward(x.data, w, rows, dim, eps);
  const out = new Tensor(y, x.shape);
  const xData = x.data; // kept, not copied: the residual stream is never written in place
  tape?.record("rmsnorm", [x], [out], () => {
    const { buffer, accumulate } = gradSink(x);
    rmsnormBackward(out.grad!, xData, w, rstd, rows, dim, { dx: buffer, accumulate });
  });
  return out;
}
