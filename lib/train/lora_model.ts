/**
 * A loaded `LlamaModel` with LoRA adapters on its block linears, and its training forward: the same math as
 * `LlamaModel.forward` (lib/nn/llama.ts), but built from the op pairs of `lib/autograd/ops` so that
 * `backward()` yields the adapters' gradients. The base weights stay frozen and are shared, not copied.
 *
 * A batch `[B, T]` runs as `B·T` rows through every linear at once; attention runs per sequence (per row,
 * or per packed example). With `checkpointing`, each decoder block keeps only its input and is recomputed
 * in the backward pass (see lib/autograd/checkpoint.ts); the gradients are bit-identical either way.
 */
import type { Compute } from "../../ffi/nf4.ts";
import { type RopeTable, ropeTable, swigluForward } from "../../ffi/ops.ts";
import { keepFreedMemory } from "../../ffi/runtime.ts";
import { checkpoint } from "../autograd/checkpoint.ts";
import { add } from "../autograd/ops/add.ts";
import { attention, type AttentionLayout } from "../autograd/ops/attention.ts";
import { biasInPlace } from "../autograd/ops/bias.ts";
import { embedding } from "../autograd/ops/embedding.ts";
import { linear } from "../autograd/ops/linear.ts";
import { lmHeadCrossEntropy, type LmHeadLoss } from "../autograd/ops/lm_head_loss.ts";
import { rmsnorm } from "../autograd/ops/rmsnorm.ts";
import { ropeInPlace } from "../autograd/ops/rope.ts";
import { swiglu } from "../autograd/ops/swiglu.ts";
import { freeNow } from "../autograd/free.ts";
import { Tape } from "../autograd/tape.ts";
import type { Tensor } from "../autograd/tensor.ts";
import type { Batch } from "../data/batch.ts";
import { LINEAR_MODULES, type LinearModule } from "../nn/config.ts";
import type { LoraWeights } from "../io/peft/read.ts";
import type { LlamaModel } from "../nn/llama.ts";
import type { Linear } from "../nn/linear.ts";
import { Rng } from "../random.ts";
import { LoraLinear } from "./lora.ts";

/** The seven linears of a Llama block, by their HF names. */
export { LINEAR_MODULES, type LinearModule } from "../nn/config.ts";

const PARENT: Record<LinearModule, string> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Dropout on each adapter's input in training mode (default 0). */
  dropout?: number;
  /** alpha / √rank scaling (default false). */
  rslora?: boolean;
  /** Which linears get an adapter (default all seven, PEFT's "all-linear"). */
  targetModules?: readonly LinearModule[];
  /** Which blocks get adapters (default all; PEFT's layers_to_transform). */
  layers?: readonly number[];
  /** Seed of the generator that initialises A and draws dropout masks (default 0); or the generator. */
  seed?: number;
  rng?: Rng;
}

export interface TrainingForwardOptions {
  /** Recompute each decoder block in the backward pass instead of keeping its activations. */
  checkpointing?: boolean;
  /** Dropout on (default true in `trainingForward`, always off in `loss`). */
  training?: boolean;
  /** Precision of the frozen weights' GEMMs (default f32). */
  compute?: Compute;
  /** Rows per LM-head chunk (default 128, see `lmHeadCrossEntropy`). */
  chunkRows?: number;
  /** Divide the summed token losses by this instead of the batch's loss-token count (grad accumulation). */
  denominator?: number;
}

interface Context {
  tape: Tape | undefined;
  table: RopeTable;
  layout: AttentionLayout;
  training: boolean;
  compute?: Compute;
}

export class LoraModel {
  /** Adapters by module path (`model.layers.<l>.self_attn.q_proj`), in model order. */
  readonly adapters = new Map<string, LoraLinear>();
  readonly rng: Rng;
  readonly #byLayer: Map<LinearModule, LoraLinear>[] = [];
  #tape?: Tape;
  #loss?: Tensor;

  /** The adapters' current weights by module (shared, not copied): what `applyAdapters` and exports take. */
  adapterWeights(): Map<string, LoraWeights> {
    return new Map(
      [...this.adapters].map(([m, a]) => [m, { A: a.a.data, B: a.b.data, r: a.rank, scale: a.scale }]),
    );
  }

  constructor(readonly model: LlamaModel, readonly config: LoraConfig) {
    // Every training step frees and re-allocates the same activations: keep them in the heap (~18 000 fewer
    // page faults per step on SmolLM2, same peak RSS).
    keepFreedMemory();
    this.rng = config.rng ?? new Rng(config.seed ?? 0);
    const targets = new Set<LinearModule>(config.targetModules ?? LINEAR_MODULES);
    for (const m of targets) {
      if (!LINEAR_MODULES.includes(m)) throw new RangeError(`unknown LoRA target module "${m}"`);
    }
    const n = model.weights.layers.length;
    const layers = new Set(config.layers ?? Array.from({ length: n }, (_, l) => l));
    for (const l of layers) {
      if (!(Number.isInteger(l) && l >= 0 && l < n)) throw new RangeError(`no layer ${l}`);
    }
    for (const [l, w] of model.weights.layers.entries()) {
      const here = new Map<LinearModule, LoraLinear>();
      this.#byLayer.push(here);
      if (!layers.has(l)) continue;
      const a = w.attention;
      const bases: Record<LinearModule, Linear> = {
        q_proj: a.q,
        k_proj: a.k,
        v_proj: a.v,
        o_proj: a.o,
        gate_proj: w.mlp.gate,
        up_proj: w.mlp.up,
        down_proj: w.mlp.down,
      };
      for (const m of LINEAR_MODULES) {
        if (!targets.has(m)) continue;
        const module = `model.layers.${l}.${PARENT[m]}.${m}`;
        const adapter = LoraLinear.fromBase(bases[m], {
          rank: config.rank,
          alpha: config.alpha,
          dropout: config.dropout,
          rslora: config.rslora,
          rng: this.rng,
          module,
        });
        here.set(m, adapter);
        this.adapters.set(module, adapter);
      }
    }
  }

  /** Trainable tensors by PEFT name (`base_model.model.<module>.lora_A.weight`, `...lora_B.weight`). */
  parameters(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const adapter of this.adapters.values()) for (const p of adapter.parameters()) out.set(p.name!, p);
    return out;
  }

  /** Number of trainable values. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.parameters().values()) n += p.size;
    return n;
  }

  /** Sets every parameter gradient to zero (gradients accumulate across backward passes until then). */
  zeroGrad(): void {
    for (const p of this.parameters().values()) p.grad!.fill(0);
  }

  /**
   * The mean loss over the batch's loss tokens, recorded on a fresh tape for `backward()` (an earlier
   * forward that was never backpropagated is dropped).
   */
  trainingForward(batch: Batch, opts: TrainingForwardOptions = {}): number {
    this.#tape = new Tape();
    const result = this.#forward(batch, this.#tape, { training: true, ...opts });
    this.#loss = result.loss;
    return result.loss.data[0];
  }

  /** Accumulates the gradients of the last `trainingForward`'s loss into the parameters' `grad`. */
  backward(): void {
    const [tape, loss] = [this.#tape, this.#loss];
    if (!tape || !loss) throw new Error("LoraModel.backward: call trainingForward first");
    [this.#tape, this.#loss] = [undefined, undefined];
    // The activations are private to this model (trainingForward returns a number): free them now.
    tape.backward(loss, undefined, { release: true });
  }

  /** Loss without recording or dropout (evaluation). */
  loss(batch: Batch, opts: Omit<TrainingForwardOptions, "checkpointing" | "training"> = {}): LmHeadLoss {
    return this.#forward(batch, undefined, { ...opts, training: false });
  }

  #forward(batch: Batch, tape: Tape | undefined, opts: TrainingForwardOptions): LmHeadLoss {
    const c = this.model.config;
    const w = this.model.weights;
    const rows = batch.rows * batch.width;
    const perRow = { inputs: batch.inputs, targets: batch.targets, positions: batch.positions };
    for (const [name, a] of Object.entries(perRow)) {
      if (a.length !== rows) {
        throw new RangeError(
          `batch.${name} has ${a.length} entries, expected ${batch.rows} × ${batch.width}`,
        );
      }
    }
    const ctx: Context = {
      tape,
      table: ropeTable(batch.positions, this.model.invFreq),
      layout: {
        heads: c.numAttentionHeads,
        kvHeads: c.numKeyValueHeads,
        headDim: c.headDim,
        sequences: sequencesOf(batch),
      },
      training: opts.training ?? false,
      compute: opts.compute,
    };
    let x = embedding(w.embedTokens, batch.inputs);
    for (let l = 0; l < w.layers.length; l++) {
      if (opts.checkpointing) {
        const params = [...this.#byLayer[l].values()].flatMap((a) => a.parameters());
        x = checkpoint(tape, x, params, (t, input) => this.#block(l, input, { ...ctx, tape: t }), this.rng);
      } else {
        x = this.#block(l, x, ctx);
      }
    }
    x = rmsnorm(tape, x, w.norm, c.rmsNormEps);
    return lmHeadCrossEntropy(tape, x, w.lmHead, batch.targets, {
      chunkRows: opts.chunkRows,
      denominator: opts.denominator,
    });
  }

  /** One decoder block: x + attn(norm(x)), then + mlp(norm(·)) — as LlamaModel.forward. */
  #block(l: number, x: Tensor, ctx: Context): Tensor {
    const { tape } = ctx;
    const c = this.model.config;
    const w = this.model.weights.layers[l];
    const adapters = this.#byLayer[l];
    const proj = (
      m: LinearModule,
      base: Linear,
      input: Tensor,
      recomputeInput?: () => Float32Array,
    ): Tensor => {
      const adapter = adapters.get(m);
      return adapter
        ? adapter.forward(tape, input, { training: ctx.training, compute: ctx.compute, recomputeInput })
        : linear(tape, input, base, { compute: ctx.compute });
    };
    const a = w.attention;
    const h = rmsnorm(tape, x, w.inputNorm, c.rmsNormEps);
    let q = proj("q_proj", a.q, h);
    let k = proj("k_proj", a.k, h);
    let v = proj("v_proj", a.v, h);
    if (a.qBias) q = biasInPlace(tape, q, a.qBias);
    if (a.kBias) k = biasInPlace(tape, k, a.kBias);
    if (a.vBias) v = biasInPlace(tape, v, a.vBias);
    q = ropeInPlace(tape, q, c.numAttentionHeads, ctx.table);
    k = ropeInPlace(tape, k, c.numKeyValueHeads, ctx.table);
    const attn = attention(tape, q, k, v, ctx.layout);
    const x1 = add(tape, x, proj("o_proj", a.o, attn));
    const h2 = rmsnorm(tape, x1, w.postAttentionNorm, c.rmsNormEps);
    const gate = proj("gate_proj", w.mlp.gate, h2);
    const up = proj("up_proj", w.mlp.up, h2);
    // SwiGLU's output (the widest activation but one) is not held for backward: down_proj's adapter gets it
    // recomputed from gate and up, which SwiGLU's own backward keeps anyway (−1.5 MB a layer at 256 tokens).
    const act = swiglu(tape, gate, up);
    const down = proj("down_proj", w.mlp.down, act, () => swigluForward(gate.data, up.data));
    freeNow(act.data);
    return add(tape, x1, down);
  }
}

/** The attention sequences of a batch: each row, or each packed example of a row (padding joins the last). */
export function sequencesOf(batch: Batch): [number, number][] {
  const out: [number, number][] = [];
  const T = batch.width;
  for (let r = 0; r < batch.rows; r++) {
    const starts = batch.segmentStarts[r] ?? [0];
    const s = starts.length > 0 ? starts : [0];
    for (let i = 0; i < s.length; i++) {
      const end = i + 1 < s.length ? s[i + 1] : T;
      if (end > s[i]) out.push([r * T + s[i], end - s[i]]);
    }
  }
  return out;
}
