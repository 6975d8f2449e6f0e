/**
 * A frozen linear `y = x · Wᵀ` (NF4 or dense): W takes no gradient; the input's gradient is `dY · W`
 * (`Linear.matmulT`), accumulated into x's buffer by the GEMM itself.
 */
import type { Compute } from "../../../ffi/nf4.ts";
import type { Linear } from "../../nn/linear.ts";
import { gradSink, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export interface LinearOptions {
  /** GEMM precision of the frozen weight's products (default f32). */
  compute?: Compute;
}

export function linear(tape: Tape | undefined, x: Tensor, w: Linear, opts: LinearOptions = {}): Tensor {
  const rows = x.rows;
  if (x.cols !== w.cols) throw new RangeError(`linear: x has ${x.cols} columns, the weight takes ${w.cols}`);
  const out = new Tensor(w.matmul(x.data, rows, undefined, { compute: opts.compute }), [rows, w.rows]);
  tape?.record("linear", [x], [out], () => {
    const { buffer, accumulate } = gradSink(x);
    w.matmulT(out.grad!, rows, buffer, { accumulate, compute: opts.compute });
  });
  return out;
}
