/**
 * Token embedding from a frozen bf16 table: rows gathered and widened to f32. The table takes no gradient,
 * so the output is a constant of the graph (nothing is recorded; gradients stop here).
 */
import { Tensor } from "../tensor.ts";

/** What the op needs from a table: a bf16 matrix in memory, or one read from disk row by row. */
export interface EmbeddingRows {
  readonly cols: number;
  /** `[ids.length, cols]` f32 rows; throws for an id beyond the table. */
  gatherRows(ids: Uint32Array): Float32Array;
}

/** `[ids.length, cols]` rows of `table`. */
export function embedding(table: EmbeddingRows, ids: Uint32Array): Tensor {
  return new Tensor(table.gatherRows(ids), [ids.length, table.cols]);
}
