/**
 * Token embedding from a frozen bf16 table: rows gathered and widened to f32, times `scale` (Gemma's √hidden;
 * the multiply runs in the kernels). The table takes no gradient, so the output is a constant of the graph
 * (nothing is recorded; gradients stop here).
 */
import type { Bf16Matrix } from "../../../ffi/bf16.ts";
import { scaleInPlace } from "../../../ffi/ops.ts";
import { Tensor } from "../tensor.ts";

/** `[ids.length, cols]` rows of `table`, each times `scale`. */
export function embedding(table: Bf16Matrix, ids: Uint32Array, scale = 1): Tensor {
  const rows = table.gatherRows(ids);
  if (scale !== 1) scaleInPlace(rows, scale);
  return new Tensor(rows, [ids.length, table.cols]);
}
