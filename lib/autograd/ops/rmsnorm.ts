/** RMSNorm with a frozen weight: the gradient goes to x only. */
import { rmsnormBackward, rmsnormForward } from "../../../ffi/ops.ts";
import { gradSink, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/** `y = w * x / sqrt(mean(x²) + eps)` per row of `x [rows, dim]`. */
export function rmsnorm(tape: Tape | undefined, x: Tensor, w: Float32Array, eps: number): Tensor {
  const [rows, dim] = [x.rows, x.cols];
  const { y, rstd } = rmsnormForward(x.data, w, rows, dim, eps);
  const out = new Tensor(y, x.shape);
  const xData = x.data; // kept, not copied: the residual stream is never written in place
  tape?.record("rmsnorm", [x], [out], () => {
    const { buffer, accumulate } = gradSink(x);
    rmsnormBackward(out.grad!, xData, w, rstd, rows, dim, { dx: buffer, accumulate });
  });
  return out;
}
