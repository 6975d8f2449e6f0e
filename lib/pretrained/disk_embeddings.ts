/**
 * A bf16 embedding table left in its safetensors file: each step reads only the rows of its tokens (256
 * rows of 8 KiB for a 7B model at sequence 256) instead of holding the table (262 MB) in memory. The file
 * stays open until `close()`; files we and transformers write are replaced by rename, never rewritten in place,
 * so the open file keeps the contents it was checked with.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { Bf16Matrix } from "../../ffi/bf16.ts";
import { FormatError } from "../errors.ts";
import type { EmbeddingTable } from "../nn/llama.ts";

export class DiskBf16Rows implements EmbeddingTable {
  #fd: number | undefined;

  /** `offset`: where the `[rows, cols]` bf16 tensor starts in `file`. */
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly rows: number,
    readonly cols: number,
    readonly name: string,
  ) {
    this.#fd = openSync(file, "r");
  }

  /** Nothing of the table is held in memory. */
  get bytes(): number {
    return 0;
  }

  /** The whole table, read now (exports only). */
  get bits(): Uint16Array {
    const out = new Uint16Array(this.rows * this.cols);
    this.read(new Uint8Array(out.buffer), this.offset);
    return out;
  }

  gatherRows(ids: Uint32Array): Float32Array {
    const rowBytes = 2 * this.cols;
    const picked = new Uint16Array(ids.length * this.cols);
    const bytes = new Uint8Array(picked.buffer);
    for (const [i, id] of ids.entries()) {
      if (id >= this.rows) {
        throw new RangeError(`${this.name}: token id ${id} is beyond the ${this.rows} rows`);
      }
      this.read(bytes.subarray(i * rowBytes, (i + 1) * rowBytes), this.offset + id * rowBytes);
    }
    // Widened to f32 by the kernel, as an in-memory table's rows are.
    return new Bf16Matrix(picked, ids.length, this.cols).gatherRows(Uint32Array.from(ids.keys()));
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  private read(target: Uint8Array, position: number): void {
    if (this.#fd === undefined) throw new Error(`${this.name}: read after close()`);
    for (let done = 0; done < target.length;) {
      const got = readSync(this.#fd, target, done, Math.min(target.length - done, 1 << 30), position + done);
      if (got === 0) throw new FormatError(this.file, `truncated: the embedding table ends early`, this.name);
      done += got;
    }
  }
}
