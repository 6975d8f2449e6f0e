/**
 * A LoRA adapter on a frozen linear (mlx-lm's tuner API): `LoraLinear.fromBase(base, {rank, alpha, dropout})`
 * adds `s · B · A` to the base weight without touching it; `forward` records the op on the tape (math and
 * gradients in `linear_op.ts`); `fuse()` returns the merged dense weight.
 *
 * Initialisation as PEFT: A like torch's nn.Linear default, kaiming_uniform(a = √5), whose bound is
 * gain · √(3 / fan_in) with gain = √(2 / (1 + a²)) = √(1/3), i.e. exactly 1 / √in; B = 0, so a fresh
 * adapter leaves the model unchanged.
 */
import type { Tape } from "../autograd/tape.ts";
import { Tensor } from "../autograd/tensor.ts";
import type { AdapterForwardOptions, LinearAdapter } from "../nn/llama.ts";
import { DenseLinear, type Linear } from "../nn/linear.ts";
import type { Rng } from "../random.ts";
import { loraLinear } from "./linear_op.ts";
import { mergedWeight } from "./merge.ts";
import { checkLoraShape, type LoraConfig, loraScale, type LoraWeights } from "./weights.ts";

export interface LoraLinearOptions extends Pick<LoraConfig, "rank" | "alpha" | "dropout" | "rslora"> {
  /** Draws A's initial values and, later, the dropout masks (one seeded generator per run). */
  rng: Rng;
  /** The module's path in the HF model, e.g. `model.layers.0.self_attn.q_proj` (names the parameters). */
  module?: string;
}

export class LoraLinear implements LinearAdapter {
  private constructor(
    readonly base: Linear,
    /** `[rank, in]` */
    readonly a: Tensor,
    /** `[out, rank]` */
    readonly b: Tensor,
    readonly scale: number,
    readonly dropout: number,
    readonly rng: Rng,
    readonly module: string,
  ) {}

  /** A fresh adapter: A random (PEFT's init), B zero. */
  static fromBase(base: Linear, opts: LoraLinearOptions): LoraLinear {
    const { rank, alpha } = opts;
    if (!Number.isInteger(rank) || rank < 1) {
      throw new RangeError(`LoRA rank must be a positive integer, got ${rank}`);
    }
    if (!Number.isFinite(alpha) || alpha <= 0) throw new RangeError(`LoRA alpha must be > 0, got ${alpha}`);
    const { rows: out, cols: inDim } = base;
    const bound = 1 / Math.sqrt(inDim);
    const a = new Float32Array(rank * inDim);
    for (let i = 0; i < a.length; i++) a[i] = (2 * opts.rng.next() - 1) * bound;
    return LoraLinear.#make(base, { A: a, B: new Float32Array(out * rank), r: rank, scale: 0 }, {
      ...opts,
      scale: loraScale(alpha, rank, opts.rslora),
    });
  }

  /** An adapter holding copies of saved matrices (a PEFT adapter, a checkpoint). */
  static fromWeights(
    base: Linear,
    weights: LoraWeights,
    opts: { rng: Rng; module?: string; dropout?: number },
  ): LoraLinear {
    checkLoraShape(weights, base.rows, base.cols, opts.module ?? "linear");
    const copy = { A: weights.A.slice(), B: weights.B.slice(), r: weights.r, scale: weights.scale };
    return LoraLinear.#make(base, copy, { ...opts, scale: weights.scale });
  }

  static #make(
    base: Linear,
    w: LoraWeights,
    opts: { rng: Rng; module?: string; dropout?: number; scale: number },
  ): LoraLinear {
    const p = opts.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new RangeError(`LoRA dropout must be in [0, 1), got ${p}`);
    const module = opts.module ?? "linear";
    const prefix = `base_model.model.${module}`;
    const a = Tensor.parameter(w.A, [w.r, base.cols], `${prefix}.lora_A.weight`);
    const b = Tensor.parameter(w.B, [base.rows, w.r], `${prefix}.lora_B.weight`);
    return new LoraLinear(base, a, b, opts.scale, p, opts.rng, module);
  }

  get rank(): number {
    return this.a.rows;
  }

  /** `y = base(x) + s · (drop(x) · Aᵀ) · Bᵀ`, recorded on `tape` when given. */
  forward(tape: Tape | undefined, x: Tensor, opts: AdapterForwardOptions = {}): Tensor {
    return loraLinear(tape, x, this, opts);
  }

  /** The trainable tensors, named as PEFT names them. */
  parameters(): Tensor[] {
    return [this.a, this.b];
  }

  /** The current matrices (shared, not copied): what exports and merges take. */
  weights(): LoraWeights {
    return { A: this.a.data, B: this.b.data, r: this.rank, scale: this.scale };
  }

  /** Overwrites A and B with saved values of the same shape. */
  load(w: LoraWeights): void {
    checkLoraShape(w, this.base.rows, this.base.cols, this.module);
    this.a.data.set(w.A);
    this.b.data.set(w.B);
  }

  /** The merged weight `W + s · B · A` `[out, in]` in f32 (NF4 bases are dequantized first). */
  fuse(): DenseLinear {
    return new DenseLinear(
      mergedWeight(this.base, this.weights(), this.module),
      this.base.rows,
      this.base.cols,
    );
  }
}
