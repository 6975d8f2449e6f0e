/**
 * What the model needs from a frozen linear weight W `[out, in]`: `Y = X·Wᵀ` and `dX = dY·W`, each optionally
 * plus a low-rank term (`MatmulOptions.lowRank`: a LoRA adapter's product, fused into the same pass by NF4). NF4 weights
 * (`Nf4Weight`) are the normal case; `DenseLinear` keeps f32 weights, for checking the model against a
 * reference on unquantized weights and for layers one chooses not to quantize.
 */
import { matmulDyW, matmulXWt } from "../../ffi/gemm.ts";
import type { MatmulOptions } from "../../ffi/nf4.ts";
import type { FrozenWeight } from "../autograd/ops/linear.ts";

export interface Linear extends FrozenWeight {
  /** Bytes the weight occupies. */
  readonly bytes: number;
  close(): void;
}

export class DenseLinear implements Linear {
  constructor(readonly weight: Float32Array, readonly rows: number, readonly cols: number) {
    if (weight.length !== rows * cols) {
      throw new RangeError(`DenseLinear: weight has ${weight.length} elements, expected ${rows} × ${cols}`);
    }
  }

  get bytes(): number {
    return this.weight.byteLength;
  }

  matmul(x: Float32Array, m: number, y?: Float32Array, opts: MatmulOptions = {}): Float32Array {
    const out = matmulXWt(x, this.weight, m, this.cols, this.rows, y, {
      beta: opts.accumulate ? 1 : 0,
      compute: opts.compute,
    });
    const low = opts.lowRank;
    if (low) matmulXWt(low.left, low.right, m, low.rank, this.rows, out, { alpha: low.scale, beta: 1 });
    return out;
  }

  matmulT(dy: Float32Array, m: number, dx?: Float32Array, opts: MatmulOptions = {}): Float32Array {
    const out = matmulDyW(dy, this.weight, m, this.cols, this.rows, dx, {
      beta: opts.accumulate ? 1 : 0,
      compute: opts.compute,
    });
    const low = opts.lowRank;
    if (low) matmulDyW(low.left, low.right, m, this.cols, low.rank, out, { alpha: low.scale, beta: 1 });
    return out;
  }

  close(): void {}
}
