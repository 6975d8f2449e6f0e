/**
 * NF4 weights owned by the kernel library (bitsandbytes' NF4 + double quantization, blocks of 64).
 * The weight lives in Rust behind a numeric handle; this class is its owner: `close()` (or `using`)
 * frees it, and a FinalizationRegistry frees what was forgotten.
 */
import { outputBuffer } from "./buffer_pool.ts";
import { check, kernels } from "./load.ts";
import { dim, elements, f32, u8 } from "./validate.ts";

/** bitsandbytes' on-disk parts of one NF4 tensor. */
export interface Nf4Parts {
  /** `[rows, cols]` = nn.Linear's `[out, in]`. */
  shape: [number, number];
  /** Two 4-bit codes per byte, first element in the high nibble: `ceil(rows*cols/2)` bytes. */
  packed: Uint8Array;
  /** Double quantization: one uint8 code per block of 64, into the 256-entry dynamic map. */
  absmaxCodes?: Uint8Array;
  /** Double quantization: one f32 scale per 256 blocks. */
  nestedAbsmax?: Float32Array;
  /** Double quantization: the mean subtracted from the block scales. */
  offset?: number;
  /** Without double quantization: one f32 absmax per block of 64. */
  absmax?: Float32Array;
}

/** Compute precision of a GEMM: f32, or bf16 operands with f32 accumulation. */
export type Compute = "f32" | "bf16";

export interface MatmulOptions {
  /** Add into the output instead of overwriting it (default false). */
  accumulate?: boolean;
  compute?: Compute;
  /**
   * A low-rank term added in the same pass over the output (a LoRA adapter's): `scale · left · rightᵀ` in the
   * forward, `scale · left · right` in the backward; always f32.
   */
  lowRank?: LowRankTerm;
}

/**
 * `left` is `[m, rank]`; `right` is laid out like the weight: `[out, rank]` for the forward (LoRA's B),
 * `[rank, in]` for the backward (LoRA's A).
 */
export interface LowRankTerm {
  left: Float32Array;
  right: Float32Array;
  rank: number;
  scale: number;
}

/** Checks a low-rank term's operands against the product's shape; returns the FFI arguments. */
function lowRankArgs(
  fn: string,
  low: LowRankTerm | undefined,
  m: number,
  rightShape: [number, number],
): [Float32Array, number, Float32Array, number, number, number] {
  if (!low) return [EMPTY, 0, EMPTY, 0, 0, 0];
  dim(fn, "lowRank.rank", low.rank);
  f32(
    fn,
    "lowRank.left",
    low.left,
    elements(fn, "lowRank.left", m, low.rank),
    `m × rank = ${m} × ${low.rank}`,
  );
  const [r0, r1] = rightShape;
  f32(fn, "lowRank.right", low.right, r0 * r1, `${r0} × ${r1}`);
  if (!Number.isFinite(low.scale)) {
    throw new RangeError(`${fn}: lowRank.scale must be finite, got ${low.scale}`);
  }
  return [low.left, low.left.length, low.right, low.right.length, low.rank, low.scale];
}

const EMPTY = new Float32Array(0);

const registry = new FinalizationRegistry<number>((handle) => {
  kernels().qlora_nf4_free(handle);
});

export const BLOCK = 64;
export const NESTED_BLOCK = 256;

export function computeCode(fn: string, compute: Compute | undefined): number {
  if (compute === undefined || compute === "f32") return 0;
  if (compute === "bf16") return 1;
  throw new RangeError(`${fn}: compute must be "f32" or "bf16", got ${JSON.stringify(compute)}`);
}

export class Nf4Weight {
  #handle: number;
  readonly rows: number;
  readonly cols: number;
  readonly doubleQuant: boolean;

  private constructor(handle: number) {
    const info = new Uint32Array(5);
    check(kernels().qlora_nf4_info(handle, info, 5), "Nf4Weight");
    this.#handle = handle;
    [this.rows, this.cols] = [info[0], info[1]];
    this.doubleQuant = info[2] === 1;
    registry.register(this, handle, this);
  }

  /**
   * Quantizes `w` (`[rows, cols]`, row-major) as bitsandbytes does. Throws on NaN or ±inf (naming the
   * element): one non-finite value would spoil its whole block.
   */
  static quantize(
    w: Float32Array,
    rows: number,
    cols: number,
    opts: { doubleQuant?: boolean } = {},
  ): Nf4Weight {
    const fn = "Nf4Weight.quantize";
    dim(fn, "rows", rows);
    dim(fn, "cols", cols);
    f32(fn, "w", w, elements(fn, "w", rows, cols), `rows × cols = ${rows} × ${cols}`);
    const out = new Uint32Array(1);
    check(kernels().qlora_nf4_quantize(w, w.length, rows, cols, opts.doubleQuant === false ? 0 : 1, out), fn);
    return new Nf4Weight(out[0]);
  }

  /** Imports bitsandbytes' parts (e.g. from a pre-quantized checkpoint) without re-quantizing. */
  static fromParts(parts: Nf4Parts): Nf4Weight {
    const fn = "Nf4Weight.fromParts";
    const [rows, cols] = parts.shape;
    dim(fn, "shape[0]", rows);
    dim(fn, "shape[1]", cols);
    const n = elements(fn, "weight", rows, cols);
    const blocks = Math.ceil(n / BLOCK);
    const packed = u8(fn, "packed", parts.packed, Math.ceil(n / 2));
    const none8 = new Uint8Array(0);
    const none32 = new Float32Array(0);
    const out = new Uint32Array(1);
    if (parts.absmaxCodes !== undefined) {
      if (parts.absmax !== undefined) throw new TypeError(`${fn}: give absmax or absmaxCodes, not both`);
      const codes = u8(fn, "absmaxCodes", parts.absmaxCodes, blocks);
      const nested = f32(fn, "nestedAbsmax", parts.nestedAbsmax, Math.ceil(blocks / NESTED_BLOCK));
      const offset = parts.offset;
      if (typeof offset !== "number" || !Number.isFinite(offset)) {
        throw new TypeError(`${fn}: offset must be a finite number with absmaxCodes, got ${offset}`);
      }
      check(
        kernels().qlora_nf4_from_parts(
          rows,
          cols,
          packed,
          packed.length,
          codes,
          codes.length,
          nested,
          nested.length,
          offset,
          none32,
          0,
          out,
        ),
        fn,
      );
    } else {
      const absmax = f32(fn, "absmax", parts.absmax, blocks, "one f32 per block of 64");
      check(
        kernels().qlora_nf4_from_parts(
          rows,
          cols,
          packed,
          packed.length,
          none8,
          0,
          none32,
          0,
          0,
          absmax,
          absmax.length,
          out,
        ),
        fn,
      );
    }
    return new Nf4Weight(out[0]);
  }

  get handle(): number {
    if (this.#handle === 0) throw new Error("Nf4Weight: used after close()");
    return this.#handle;
  }

  get blocks(): number {
    return Math.ceil((this.rows * this.cols) / BLOCK);
  }

  /** Bytes held by the kernel library for this weight (codes + scales). */
  get bytes(): number {
    const n = this.rows * this.cols;
    const scales = this.doubleQuant
      ? this.blocks + 4 * Math.ceil(this.blocks / NESTED_BLOCK) + 4
      : 4 * this.blocks;
    return Math.ceil(n / 2) + scales;
  }

  /** The parts in bitsandbytes' layout (for files and for comparison with bitsandbytes). */
  toParts(): Nf4Parts {
    const n = this.rows * this.cols;
    const packed = new Uint8Array(Math.ceil(n / 2));
    const codes = new Uint8Array(this.doubleQuant ? this.blocks : 0);
    const nested = new Float32Array(this.doubleQuant ? Math.ceil(this.blocks / NESTED_BLOCK) : 0);
    const absmax = new Float32Array(this.doubleQuant ? 0 : this.blocks);
    const offset = new Float32Array(1);
    check(
      kernels().qlora_nf4_export(
        this.handle,
        packed,
        packed.length,
        codes,
        codes.length,
        nested,
        nested.length,
        absmax,
        absmax.length,
        offset,
      ),
      "Nf4Weight.toParts",
    );
    const shape: [number, number] = [this.rows, this.cols];
    return this.doubleQuant
      ? { shape, packed, absmaxCodes: codes, nestedAbsmax: nested, offset: offset[0] }
      : { shape, packed, absmax };
  }

  /** The whole weight as f32 `[rows, cols]` (exactly bitsandbytes' dequantize_4bit). */
  dequantize(): Float32Array {
    const out = new Float32Array(elements("Nf4Weight.dequantize", "weight", this.rows, this.cols));
    check(kernels().qlora_nf4_dequantize(this.handle, out, out.length), "Nf4Weight.dequantize");
    return out;
  }

  /** Forward: `Y[m, rows] (+)= X[m, cols] · Wᵀ` (+ `opts.lowRank`). Returns `y` (allocated when not given). */
  matmul(x: Float32Array, m: number, y?: Float32Array, opts: MatmulOptions = {}): Float32Array {
    const fn = "Nf4Weight.matmul";
    dim(fn, "m", m);
    f32(fn, "x", x, elements(fn, "x", m, this.cols), `m × in = ${m} × ${this.cols}`);
    const out = y ?? outputBuffer(elements(fn, "y", m, this.rows));
    f32(fn, "y", out, m * this.rows, `m × out = ${m} × ${this.rows}`);
    const low = lowRankArgs(fn, opts.lowRank, m, [this.rows, opts.lowRank?.rank ?? 0]);
    const status = kernels().qlora_nf4_matmul(
      this.handle,
      x,
      x.length,
      m,
      out,
      out.length,
      opts.accumulate ? 1 : 0,
      computeCode(fn, opts.compute),
      ...low,
    );
    check(status, fn);
    return out;
  }

  /** Backward to the input: `dX[m, cols] (+)= dY[m, rows] · W` (+ `opts.lowRank`). Returns `dx` (allocated when not given). */
  matmulT(dy: Float32Array, m: number, dx?: Float32Array, opts: MatmulOptions = {}): Float32Array {
    const fn = "Nf4Weight.matmulT";
    dim(fn, "m", m);
    f32(fn, "dy", dy, elements(fn, "dy", m, this.rows), `m × out = ${m} × ${this.rows}`);
    const out = dx ?? outputBuffer(elements(fn, "dx", m, this.cols));
    f32(fn, "dx", out, m * this.cols, `m × in = ${m} × ${this.cols}`);
    const low = lowRankArgs(fn, opts.lowRank, m, [opts.lowRank?.rank ?? 0, this.cols]);
    const status = kernels().qlora_nf4_matmul_t(
      this.handle,
      dy,
      dy.length,
      m,
      out,
      out.length,
      opts.accumulate ? 1 : 0,
      computeCode(fn, opts.compute),
      ...low,
    );
    check(status, fn);
    return out;
  }

  /** Frees the kernel-side memory; further use throws. Safe to call twice. */
  close(): void {
    if (this.#handle === 0) return;
    registry.unregister(this);
    check(kernels().qlora_nf4_free(this.#handle), "Nf4Weight.close");
    this.#handle = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** How many NF4 weights the library holds (for leak checks). */
export function liveNf4Weights(): number {
  return kernels().qlora_nf4_live();
}

/** The 16 NF4 code values and the 256-entry dynamic map the library uses. */
export function nf4Tables(): { code: Float32Array; dynamicMap: Float32Array } {
  const code = new Float32Array(16);
  const dynamicMap = new Float32Array(256);
  check(kernels().qlora_nf4_tables(code, 16, dynamicMap, 256), "nf4Tables");
  return { code, dynamicMap };
}
