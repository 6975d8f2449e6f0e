/**
 * A loaded `LlamaModel` with LoRA adapters on its block linears. The base weights stay frozen and are
 * shared, not copied; the forward is the model's own (lib/nn/llama.ts) with the adapters plugged into its
 * linears: recorded on a tape for training (`trainingForward` / `backward` give the adapters' gradients), or
 * not, for evaluation (`loss`) and generation (`forward`, a `CausalLm` like the model itself).
 *
 * A batch `[B, T]` runs as `B·T` rows through every linear at once; attention runs per sequence (per row,
 * or per packed example). With `recomputeBlocks`, each decoder block keeps only its input and is recomputed
 * in the backward pass; the gradients are bit-identical either way.
 */
import type { Compute } from "../../ffi/nf4.ts";
import { keepFreedMemory } from "../../ffi/runtime.ts";
import { lmHeadCrossEntropy, type LmHeadLoss } from "../autograd/ops/lm_head_loss.ts";
import { Tape } from "../autograd/tape.ts";
import type { Tensor } from "../autograd/tensor.ts";
import { blockModules, LINEAR_MODULES, type LinearModule, modulePath } from "../nn/config.ts";
import type { KvCache } from "../nn/kv_cache.ts";
import { blockLinear, type CausalLm, type ForwardOptions, type LlamaModel } from "../nn/llama.ts";
import { Rng } from "../random.ts";
import { LoraLinear } from "./linear.ts";
import type { LoraConfig, LoraWeights } from "./weights.ts";

/** The token rows of a batch that a forward reads (lib/data's `Batch` is one). */
export interface TokenRows {
  /** Rows (B) and positions per row (T). */
  rows: number;
  width: number;
  /** `[B*T]` token ids, row-major. */
  inputs: Uint32Array;
  /** `[B*T]` the next token, or IGNORE_INDEX. */
  targets: Int32Array;
  /** `[B*T]` position ids for RoPE (restarting at each packed example). */
  positions: Uint32Array;
  /** Per row, the start of each example in it (`[0]` when not packed). */
  segmentStarts: readonly (readonly number[])[];
}

export interface TrainingForwardOptions {
  /** Recompute each decoder block in the backward pass instead of keeping its activations. */
  recomputeBlocks?: boolean;
  /** Dropout on (default true in `trainingForward`, always off in `loss`). */
  training?: boolean;
  /** Precision of the frozen weights' GEMMs (default f32). */
  compute?: Compute;
  /** Rows per LM-head chunk (default 128, see `lmHeadCrossEntropy`). */
  chunkRows?: number;
  /** Divide the summed token losses by this instead of the batch's loss-token count (grad accumulation). */
  denominator?: number;
}

export type { LoraConfig, LoraWeights } from "./weights.ts";

export class LoraModel implements CausalLm {
  /** Adapters by module path (`model.layers.<l>.self_attn.q_proj`), in model order. */
  readonly adapters = new Map<string, LoraLinear>();
  readonly rng: Rng;
  readonly #byLayer: Map<LinearModule, LoraLinear>[];
  readonly #lookup = (layer: number, module: LinearModule) => this.#byLayer[layer]?.get(module);
  #tape?: Tape;
  #loss?: Tensor;

  /** Fresh adapters (A random, B zero) as `config` says: which linears of which blocks, rank, alpha. */
  constructor(readonly model: LlamaModel, readonly config: LoraConfig) {
    // Every training step frees and re-allocates the same activations: keep them in the heap (~18 000 fewer
    // page faults per step on SmolLM2, same peak RSS).
    keepFreedMemory();
    this.rng = new Rng(config.seed ?? 0);
    const modules = blockModules(model.config);
    const targets = new Set<LinearModule>(config.targetModules ?? modules);
    for (const m of targets) {
      if (!LINEAR_MODULES.includes(m)) throw new RangeError(`unknown LoRA target module "${m}"`);
      if (!modules.includes(m)) {
        throw new RangeError(
          `LoRA target module "${m}" is not a linear of this ${model.config.architecture} (it has ${
            modules.join(", ")
          })`,
        );
      }
    }
    const n = model.weights.layers.length;
    const layers = new Set(config.layers ?? Array.from({ length: n }, (_, l) => l));
    for (const l of layers) {
      if (!(Number.isInteger(l) && l >= 0 && l < n)) throw new RangeError(`no layer ${l}`);
    }
    this.#byLayer = model.weights.layers.map(() => new Map());
    for (const [l, w] of model.weights.layers.entries()) {
      if (!layers.has(l)) continue;
      for (const m of modules) {
        if (!targets.has(m)) continue;
        const module = modulePath(l, m);
        this.#attach(l, m, LoraLinear.fromBase(blockLinear(w, m), { ...config, rng: this.rng, module }));
      }
    }
  }

  /**
   * `model` with saved adapters (keyed by module path, e.g. a PEFT adapter's), each with its own rank and
   * scale; for generation, evaluation, or training on from those values.
   */
  static fromWeights(
    model: LlamaModel,
    weights: ReadonlyMap<string, LoraWeights>,
    opts: { dropout?: number; seed?: number } = {},
  ): LoraModel {
    // The config describes the first adapter (PEFT's r and lora_alpha); each adapter keeps its own r and scale.
    const first = weights.values().next().value;
    const rank = first?.r ?? 1;
    const lora = new LoraModel(model, {
      rank,
      alpha: (first?.scale ?? 1) * rank,
      targetModules: [],
      ...opts,
    });
    const found = new Set<string>();
    for (const [l, w] of model.weights.layers.entries()) {
      for (const m of blockModules(model.config)) {
        const module = modulePath(l, m);
        const saved = weights.get(module);
        if (!saved) continue;
        found.add(module);
        const adapter = LoraLinear.fromWeights(blockLinear(w, m), saved, { ...opts, rng: lora.rng, module });
        lora.#attach(l, m, adapter);
      }
    }
    const unknown = [...weights.keys()].filter((m) => !found.has(m));
    if (unknown.length > 0) {
      throw new RangeError(`LoraModel.fromWeights: no such linear in the model: ${unknown.join(", ")}`);
    }
    return lora;
  }

  #attach(layer: number, module: LinearModule, adapter: LoraLinear): void {
    this.#byLayer[layer].set(module, adapter);
    this.adapters.set(adapter.module, adapter);
  }

  /** The adapters' current weights by module (shared, not copied): what exports and merges take. */
  adapterWeights(): Map<string, LoraWeights> {
    return new Map([...this.adapters].map(([m, a]) => [m, a.weights()]));
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

  /** Next-token logits with the adapters applied (generation; see `LlamaModel.forward`). */
  forward(ids: Uint32Array, opts: ForwardOptions = {}): Float32Array {
    return this.model.forward(ids, { ...opts, adapters: this.#lookup });
  }

  newCache(capacity?: number): KvCache {
    return this.model.newCache(capacity);
  }

  /**
   * The mean loss over the batch's loss tokens, recorded on a fresh tape for `backward()` (an earlier
   * forward that was never backpropagated is dropped).
   */
  trainingForward(batch: TokenRows, opts: TrainingForwardOptions = {}): number {
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
  loss(
    batch: TokenRows,
    opts: Omit<TrainingForwardOptions, "recomputeBlocks" | "training"> = {},
  ): LmHeadLoss {
    return this.#forward(batch, undefined, { ...opts, training: false });
  }

  #forward(batch: TokenRows, tape: Tape | undefined, opts: TrainingForwardOptions): LmHeadLoss {
    const rows = batch.rows * batch.width;
    const perRow = { inputs: batch.inputs, targets: batch.targets, positions: batch.positions };
    for (const [name, a] of Object.entries(perRow)) {
      if (a.length !== rows) {
        throw new RangeError(
          `batch.${name} has ${a.length} entries, expected ${batch.rows} × ${batch.width}`,
        );
      }
    }
    const x = this.model.hiddenStates(batch.inputs, {
      positions: batch.positions,
      sequences: sequencesOf(batch),
    }, {
      tape,
      adapters: this.#lookup,
      training: opts.training ?? false,
      compute: opts.compute,
      recomputeBlocks: opts.recomputeBlocks,
      rng: this.rng,
    });
    return lmHeadCrossEntropy(tape, x, this.model.weights.lmHead, batch.targets, {
      chunkRows: opts.chunkRows,
      denominator: opts.denominator,
      compute: opts.compute,
    });
  }
}

/** The attention sequences of a batch: each row, or each packed example of a row (padding joins the last). */
export function sequencesOf(batch: TokenRows): [number, number][] {
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
