/**
 * Token embedding from a frozen bf16 table: rows gathered and widened to f32. The table takes no gradient,
 * so the output is a constant of the graph (nothing is recorded; gradients stop here).
 */
import type { Bf16Matrix } from "../../../ffi/bf16.ts";
import { Tensor } from "../tensor.ts";

/** `[ids.length, cols]` rows of `table`. */
export function embedding(table: Bf16Matrix, ids: Uint32Array): Tensor {
  return new Tensor(table.gatherRows(ids), [ids.length, table.cols]);
}
