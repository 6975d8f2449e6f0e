import { recycleBuffer } from "../../ffi/buffer_pool.ts";

/**
 * Frees a scratch buffer now instead of whenever the garbage collector gets to it (V8 collects large external
 * buffers late, and training's peak RSS is made of such leftovers): it is detached and its memory goes back
 * to the kernels' output pool. Only for buffers nothing else reads.
 */
export function freeNow(...arrays: (Float32Array | undefined)[]): void {
  for (const a of arrays) recycleBuffer(a?.buffer);
}
