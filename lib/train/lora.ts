/**
 * A LoRA adapter on a frozen linear (mlx-lm's tuner API): `LoraLinear.fromBase(base, {rank, alpha, dropout})`
 * adds `s · B · A` to the base weight without touching it; `forward` records the op on the tape (math and
 * gradients in `lib/autograd/ops/lora.ts`); `fuse()` returns the merged dense weight.
 *
 * Initialisation as PEFT: A like torch's nn.Linear default, kaiming_uniform(a = √5), whose bound is
 * gain · √(3 / fan_in) with gain = √(2 / (1 + a²)) = √(1/3), i.e. exactly 1 / √in; B = 0, so a fresh
 * adapter leaves the model unchanged. Scale s = alpha / r, or alpha / √r with rsLoRA.
 */
import { sgemm } from "../../ffi/gemm.ts";
import type { Compute } from "../../ffi/nf4.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { loraLinear } from "../autograd/ops/lora.ts";
import type { Tape } from "../autograd/tape.ts";
import { Tensor } from "../autograd/tensor.ts";
import { DenseLinear, type Linear } from "../nn/linear.ts";
import type { Rng } from "../random.ts";

export interface LoraOptions {
  rank: number;
  alpha: number;
  /** Dropout on the adapter's input in training mode (default 0). */
  dropout?: number;
  /** Scale alpha / √rank instead of alpha / rank (default false). */
  rslora?: boolean;
  /** Draws A's initial values and, later, the dropout masks (one seeded generator per run). */
  rng: Rng;
  /** The module's path in the HF model, e.g. `model.layers.0.self_attn.q_proj` (names the parameters). */
  module?: string;
}

export interface LoraForwardOptions {
  /** Dropout applies only in training mode. */
  training?: boolean;
  compute?: Compute;
  /** See `LoraOptions.recomputeInput`: lets the caller free the input after the forward. */
  recomputeInput?: () => Float32Array;
}

export class LoraLinear {
  /** `[rank, in]` */
  readonly a: Tensor;
  /** `[out, rank]` */
  readonly b: Tensor;
  readonly scale: number;
  readonly dropout: number;

  private constructor(
    readonly base: Linear,
    readonly rank: number,
    readonly alpha: number,
    opts: LoraOptions,
    readonly rng: Rng,
    readonly module: string,
  ) {
    const { rows: out, cols: inDim } = base;
    this.scale = opts.rslora ? alpha / Math.sqrt(rank) : alpha / rank;
    this.dropout = opts.dropout ?? 0;
    const bound = 1 / Math.sqrt(inDim);
    const a = new Float32Array(rank * inDim);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
    const prefix = `base_model.model.${module}`;
    this.a = Tensor.parameter(a, [rank, inDim], `${prefix}.lora_A.weight`);
    this.b = Tensor.parameter(new Float32Array(out * rank), [out, rank], `${prefix}.lora_B.weight`);
  }

  static fromBase(base: Linear, opts: LoraOptions): LoraLinear {
    const { rank, alpha } = opts;
    if (!Number.isInteger(rank) || rank < 1) {
      throw new RangeError(`LoRA rank must be a positive integer, got ${rank}`);
    }
    if (!Number.isFinite(alpha) || alpha <= 0) throw new RangeError(`LoRA alpha must be > 0, got ${alpha}`);
    const p = opts.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RangeError(`LoRA dropout must be in [0, 1), got ${p}`);
    return new LoraLinear(base, rank, alpha, opts, opts.rng, opts.module ?? "linear");
  }

  /** `y = base(x) + s · (drop(x) · Aᵀ) · Bᵀ`, recorded on `tape` when given. */
  forward(tape: Tape | undefined, x: Tensor, opts: LoraForwardOptions = {}): Tensor {
    return loraLinear(tape, x, this, {
      dropout: this.dropout,
      training: opts.training,
      rng: this.rng,
      compute: opts.compute,
      recomputeInput: opts.recomputeInput,
    });
  }

  /** The trainable tensors, named as PEFT names them. */
  parameters(): Tensor[] {
    return [this.a, this.b];
  }

  /** The merged weight `W + s · B · A` `[out, in]` in f32 (NF4 bases are dequantized first). */
  fuse(): DenseLinear {
    const { rows: out, cols: inDim } = this.base;
    const w = denseWeight(this.base);
    sgemm(
      out,
      inDim,
      this.rank,
      { data: this.b.data, rowStride: this.rank, colStride: 1 },
      {
        data: this.a.data,
        rowStride: inDim,
        colStride: 1,
      },
      w,
      inDim,
      { alpha: this.scale, beta: 1 },
    );
    return new DenseLinear(w, out, inDim);
  }
}

/** A copy of a frozen linear's weight in f32. */
function denseWeight(base: Linear): Float32Array {
  if (base instanceof DenseLinear) return base.weight.slice();
  if (base instanceof Nf4Weight) return base.dequantize();
  throw new TypeError(`LoraLinear.fuse: cannot read the weight of a ${base.constructor.name}`);
}
