/**
 * Token embedding from a frozen bf16 table: rows gathered and widened to f32, times `scale` (Gemma's √hidden;
 * the multiply runs in the kernels). The table takes no gradient, so the output is a constant of the graph
 * (nothing is recorded; gradients stop here).
 */
import { scaleInPlace } from "../../../ffi/ops.ts";
import { Tensor } from "../tensor.ts";

/** What the op needs from a table: a bf16 matrix in memory, or one read from disk row by row. */
export interface EmbeddingRows {
  readonly cols: number;
  /** `[ids.length, cols]` f32 rows; throws for an id beyond the table. */
  gatherRows(ids: Uint32Array): Float32Array;
}

/** `[ids.length, cols]` rows of `table`, each times `scale`. */
export function embedding(table: EmbeddingRows, ids: Uint32Array, scale = 1): Tensor {
  const rows = table.gatherRows(ids);
  if (scale !== 1) scaleInPlace(rows, scale);
  return new Tensor(rows, [ids.length, table.cols]);
}
