/**
 * Frees a scratch buffer now instead of whenever the garbage collector gets to it (V8 collects large external
 * buffers late, and training's peak RSS is made of such leftovers). Only for buffers nothing else reads.
 */
export function freeNow(...arrays: (Float32Array | undefined)[]): void {
  for (const a of arrays) {
    const buffer = a?.buffer;
    if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
  }
}
