/**
 * A frozen linear `y = x · Wᵀ` (NF4 or dense): W takes no gradient; the input's gradient is `dY · W`
 * (`matmulT`), accumulated into x's buffer by the GEMM itself.
 */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import type { Compute, MatmulOptions } from "../../../ffi/nf4.ts";
import { gradSink, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/** What the op needs of a frozen weight W `[rows = out, cols = in]`: the two products (lib/nn's `Linear`). */
export interface FrozenWeight {
  readonly rows: number;
  readonly cols: number;
  matmul(x: Float32Array, m: number, y?: Float32Array, opts?: MatmulOptions): Float32Array;
  matmulT(dy: Float32Array, m: number, dx?: Float32Array, opts?: MatmulOptions): Float32Array;
}

export interface LinearOptions {
  /** GEMM precision of the frozen weight's products (default f32). */
  compute?: Compute;
  /** Record for backward without computing y (its values are unspecified): only when nothing reads y. */
  outputUnused?: boolean;
}

export function linear(tape: Tape | undefined, x: Tensor, w: FrozenWeight, opts: LinearOptions = {}): Tensor {
  const rows = x.rows;
  if (x.cols !== w.cols) throw new RangeError(`linear: x has ${x.cols} columns, the weight takes ${w.cols}`);
  const y = opts.outputUnused
    ? outputBuffer(rows * w.rows)
    : w.matmul(x.data, rows, undefined, { compute: opts.compute });
  const out = new Tensor(y, [rows, w.rows]);
  tape?.record("linear", [x], [out], () => {
    const { buffer, accumulate } = gradSink(x);
    w.matmulT(out.grad!, rows, buffer, { accumulate, compute: opts.compute });
  });
  return out;
}
