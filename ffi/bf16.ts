/**
 * Dense weights stored as bf16 (embeddings, LM head): half the memory of f32, widened to f32 inside the
 * GEMM's packing. TS owns the bits (a Uint16Array); the kernels borrow them for one call.
 */
import { outputBuffer } from "./buffer_pool.ts";
import { check, kernels } from "./load.ts";
import { dim, elements, f32 } from "./validate.ts";
import { type Compute, computeCode } from "./nf4.ts";

/** A `[rows, cols]` matrix of bf16 bit patterns, row-major. */
export class Bf16Matrix {
  constructor(readonly bits: Uint16Array, readonly rows: number, readonly cols: number) {
    const fn = "Bf16Matrix";
    dim(fn, "rows", rows);
    dim(fn, "cols", cols);
    if (!(bits instanceof Uint16Array)) throw new TypeError(`${fn}: bits must be a Uint16Array`);
    const n = elements(fn, "bits", rows, cols);
    if (bits.length !== n) {
      throw new RangeError(`${fn}: bits has ${bits.length} elements, expected ${rows} × ${cols}`);
    }
  }

  get bytes(): number {
    return this.bits.byteLength;
  }

  /** `Y[m, rows] (+)= X[m, cols] · Wᵀ`; `compute: "bf16"` rounds X to bf16 (the weight already is). */
  matmul(
    x: Float32Array,
    m: number,
    y?: Float32Array,
    opts: { accumulate?: boolean; compute?: Compute } = {},
  ): Float32Array {
    const fn = "Bf16Matrix.matmul";
    dim(fn, "m", m);
    f32(fn, "x", x, elements(fn, "x", m, this.cols), `m × cols = ${m} × ${this.cols}`);
    const out = y ?? outputBuffer(elements(fn, "y", m, this.rows));
    f32(fn, "y", out, m * this.rows, `m × rows = ${m} × ${this.rows}`);
    const k = kernels();
    const b = this.bits;
    check(
      k.qlora_bf16_matmul(
        b,
        b.length,
        this.rows,
        this.cols,
        x,
        x.length,
        m,
        out,
        out.length,
        opts.accumulate ? 1 : 0,
        computeCode(fn, opts.compute),
      ),
      fn,
    );
    return out;
  }

  /** `dX[m, cols] (+)= dY[m, rows] · W`; `compute: "bf16"` rounds dY to bf16. */
  matmulT(
    dy: Float32Array,
    m: number,
    dx?: Float32Array,
    opts: { accumulate?: boolean; compute?: Compute } = {},
  ): Float32Array {
    const fn = "Bf16Matrix.matmulT";
    dim(fn, "m", m);
    f32(fn, "dy", dy, elements(fn, "dy", m, this.rows), `m × rows = ${m} × ${this.rows}`);
    const out = dx ?? outputBuffer(elements(fn, "dx", m, this.cols));
    f32(fn, "dx", out, m * this.cols, `m × cols = ${m} × ${this.cols}`);
    const k = kernels();
    const b = this.bits;
    check(
      k.qlora_bf16_matmul_t(
        b,
        b.length,
        this.rows,
        this.cols,
        dy,
        dy.length,
        m,
        out,
        out.length,
        opts.accumulate ? 1 : 0,
        computeCode(fn, opts.compute),
      ),
      fn,
    );
    return out;
  }

  /** Rows `ids` widened to f32 (`[ids.length, cols]`): an embedding lookup. Ids out of range throw. */
  gatherRows(ids: Uint32Array, out?: Float32Array): Float32Array {
    const fn = "Bf16Matrix.gatherRows";
    if (!(ids instanceof Uint32Array)) throw new TypeError(`${fn}: ids must be a Uint32Array`);
    const result = out ?? new Float32Array(elements(fn, "out", ids.length, this.cols));
    f32(fn, "out", result, ids.length * this.cols, "ids × cols");
    const b = this.bits;
    check(
      kernels().qlora_bf16_gather_rows(
        b,
        b.length,
        this.rows,
        this.cols,
        ids,
        ids.length,
        result,
        result.length,
      ),
      fn,
    );
    return result;
  }
}
