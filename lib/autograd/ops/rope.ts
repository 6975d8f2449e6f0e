/**
 * RoPE, in place. The forward rotates the input's storage and returns a new tensor over the same storage;
 * the backward rotates the incoming gradient back (also in place) and hands that buffer to the input. This
 * is safe because the only producers of q and k (linears, bias adds) keep nothing of their outputs for their
 * own backward; the input tensor must not be read again after this call (its data is rotated).
 */
import { ropeBackward, ropeForward, type RopeTable } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/**
 * Rotates `x [tokens, heads·headDim]` by `table` (one row per token), consuming `x`; a table narrower than
 * the head turns its first features only (partial rotary).
 */
export function ropeInPlace(tape: Tape | undefined, x: Tensor, heads: number, table: RopeTable): Tensor {
  const headDim = x.cols / heads;
  ropeForward(x.data, heads, table, headDim);
  const out = new Tensor(x.data, x.shape);
  tape?.record("rope", [x], [out], () => {
    const g = out.grad!;
    ropeBackward(g, heads, table, headDim);
    addGrad(x, g);
  });
  return out;
}
