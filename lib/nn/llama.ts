/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3, Phi-3, Gemma 3, SmolLM2), written once for inference and training:
 * token embedding, per block RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → SwiGLU MLP →
 * residual, final RMSNorm, LM head. Every block linear is NF4 (double quant) unless loaded unquantized;
 * embeddings and LM head are bf16; norms and biases f32. All math runs in the Rust kernels through the ops of
 * `lib/autograd/ops`.
 *
 * The block's ops take an optional tape: training records them (lib/lora's `LoraModel` adds adapters and a
 * loss), inference passes none and attends over a KV cache instead of a batch's sequences.
 */
import type { Bf16Matrix } from "../../ffi/bf16.ts";
import type { Compute } from "../../ffi/nf4.ts";
import { gluForward, type RopeTable, ropeTable } from "../../ffi/ops.ts";
import { freeNow } from "../autograd/free.ts";
import { add, addInPlace } from "../autograd/ops/add.ts";
import { attention, cachedAttention } from "../autograd/ops/attention.ts";
import { biasInPlace } from "../autograd/ops/bias.ts";
import { embedding } from "../autograd/ops/embedding.ts";
import { linear } from "../autograd/ops/linear.ts";
import { rmsnorm } from "../autograd/ops/rmsnorm.ts";
import { ropeInPlace } from "../autograd/ops/rope.ts";
import { splitColumns } from "../autograd/ops/split.ts";
import { swiglu } from "../autograd/ops/swiglu.ts";
import { recomputed } from "../autograd/recompute.ts";
import type { Tape } from "../autograd/tape.ts";
import type { Tensor } from "../autograd/tensor.ts";
import type { Rng } from "../random.ts";
import { blockModules, type LinearModule, type ModelConfig, ropeInvFreq, ropeSettingsAt } from "./config.ts";
import { KvCache } from "./kv_cache.ts";
import type { Linear } from "./linear.ts";

/** q, k, v as separate linears, or (Phi-3, `fusedLinears`) as one `qkv` whose rows stack them. */
export interface AttentionWeights {
  q?: Linear;
  k?: Linear;
  v?: Linear;
  qkv?: Linear;
  o: Linear;
  /** Qwen2 only: `[heads·headDim]`, `[kvHeads·headDim]`, `[kvHeads·headDim]`. */
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  /** Qwen3 only: RMSNorm weights `[headDim]` applied to every head of q and of k before RoPE. */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
}

/** gate and up as separate linears, or (Phi-3) as one `gateUp`: gate's rows, then up's. */
export interface MlpWeights {
  gate?: Linear;
  up?: Linear;
  gateUp?: Linear;
  down: Linear;
}

/**
 * Norm weights are the scales the kernel multiplies by (Gemma's stored `w` already turned into `1 + w`).
 * `postAttentionNorm` is the norm before the MLP (HF's `post_attention_layernorm` in Llama, Gemma's
 * `pre_feedforward_layernorm`); Gemma's norms on the attention and MLP outputs are `attentionOutNorm`
 * (its `post_attention_layernorm`) and `mlpOutNorm` (`post_feedforward_layernorm`).
 */
export interface DecoderLayerWeights {
  inputNorm: Float32Array;
  attention: AttentionWeights;
  attentionOutNorm?: Float32Array;
  postAttentionNorm: Float32Array;
  mlp: MlpWeights;
  mlpOutNorm?: Float32Array;
}

/**
 * The token embedding table: a `Bf16Matrix` in memory, or rows read from the checkpoint on demand
 * (`DiskBf16Rows`, a 7B model's 262 MB kept out of RSS while training).
 */
export interface EmbeddingTable {
  readonly rows: number;
  readonly cols: number;
  /** Bytes held in memory. */
  readonly bytes: number;
  /** The whole table (for exports; a disk-backed table reads it). */
  readonly bits: Uint16Array;
  /** `[ids.length, cols]` f32 rows. */
  gatherRows(ids: Uint32Array): Float32Array;
  close?(): void;
}

export interface LlamaWeights {
  embedTokens: EmbeddingTable;
  layers: DecoderLayerWeights[];
  norm: Float32Array;
  /** The same object as `embedTokens` when the embeddings are tied. */
  lmHead: Bf16Matrix;
}

/** A block's frozen linear by its HF module name (one of `blockModules(config)`). */
export function blockLinear(w: DecoderLayerWeights, module: LinearModule): Linear {
  const linear = {
    q_proj: w.attention.q,
    k_proj: w.attention.k,
    v_proj: w.attention.v,
    qkv_proj: w.attention.qkv,
    o_proj: w.attention.o,
    gate_proj: w.mlp.gate,
    up_proj: w.mlp.up,
    gate_up_proj: w.mlp.gateUp,
    down_proj: w.mlp.down,
  }[module];
  if (linear === undefined) {
    throw new RangeError(`this block has no ${module} (its linears are fused or not)`);
  }
  return linear;
}

/** What a block needs of an adapter on one of its linears (lib/lora's `LoraLinear`). */
export interface LinearAdapter {
  /** `base(x) + adapter(x)`, recorded on `tape` when given. */
  forward(tape: Tape | undefined, x: Tensor, opts: AdapterForwardOptions): Tensor;
  /** The trainable tensors. */
  parameters(): Tensor[];
}

export interface AdapterForwardOptions {
  /** Dropout applies only in training mode. */
  training?: boolean;
  compute?: Compute;
  /** Rebuilds the input for the backward pass, so the caller may free it after the forward. */
  recomputeInput?: () => Float32Array;
  /** Record the op for backward but leave its output's values unspecified: nothing will read them. */
  outputUnused?: boolean;
  /**
   * Gradient checkpointing: the first forward leaves its low-rank product `x·Aᵀ` here (`[rows, r]`, small)
   * and the recomputation takes it instead of computing it again.
   */
  lowRankMemo?: { xa?: Float32Array };
}

/** The adapter on block `layer`'s `module`, if any. */
export type AdapterLookup = (layer: number, module: LinearModule) => LinearAdapter | undefined;

/** How the decoder stack runs: recorded or not, with which adapters, at which precision. */
export interface RunOptions {
  /** Records every op for `backward()`; absent for inference. */
  tape?: Tape;
  adapters?: AdapterLookup;
  /** Dropout on (adapters only). */
  training?: boolean;
  /** Precision of the frozen weights' GEMMs (default f32). */
  compute?: Compute;
  /**
   * Keep only each block's input and recompute the block in the backward pass (HF's "gradient
   * checkpointing"): much less memory for ~25 % more time, bit-identical gradients.
   */
  recomputeBlocks?: boolean;
  /** The generator the adapters draw dropout masks from (rewound when a block is recomputed). */
  rng?: Rng;
}

/** Where the rows of a forward pass sit: sequences of a training batch, or the newest tokens of a cache. */
export type Rows =
  | { positions: Uint32Array; sequences: readonly (readonly [number, number])[] }
  | { positions: Uint32Array; cache: KvCache };

export interface ForwardOptions {
  /** Continue from these cached positions and append to them (generation). */
  cache?: KvCache;
  /** Logits for every position (default) or only the last one (generation). */
  logits?: "all" | "last";
  adapters?: AdapterLookup;
  compute?: Compute;
}

/** Something that turns token ids into next-token logits with a KV cache (a model, or one with adapters). */
export interface CausalLm {
  forward(ids: Uint32Array, opts?: ForwardOptions): Float32Array;
  newCache(capacity?: number): KvCache;
}

interface BlockContext extends RunOptions {
  /** Nobody reads the block's output values (gradient checkpointing's recomputation; a tape is given). */
  outputUnused?: boolean;
  /** Gradient checkpointing: the adapters' low-rank products, from the first forward to the recomputation. */
  lowRankMemos?: Map<LinearModule, { xa?: Float32Array }>;
  table: RopeTable;
  /** The windowed layers' table when their rope differs (Gemma 3's local theta). */
  localTable?: RopeTable;
  rows: Rows;
}

export class LlamaModel implements CausalLm, Disposable {
  readonly invFreq: Float32Array;
  /** LongRoPE's frequencies past the original context (Phi-3 128k, Phi-4-mini). */
  readonly longInvFreq?: Float32Array;
  /** Gemma 3's local layers: their own theta, no scaling. */
  readonly localInvFreq?: Float32Array;

  constructor(readonly config: ModelConfig, readonly weights: LlamaWeights) {
    this.invFreq = ropeInvFreq(config);
    if (config.ropeScaling?.type === "longrope") {
      this.longInvFreq = ropeInvFreq(config, undefined, { long: true });
    }
    if (config.localRopeTheta !== null) {
      this.localInvFreq = ropeInvFreq({ ...config, ropeTheta: config.localRopeTheta, ropeScaling: null });
    }
  }

  /** The rotary table of a forward over `positions` (LongRoPE picks its factors by the largest one). */
  ropeTableAt(positions: Uint32Array): RopeTable {
    const maxPosition = positions.reduce((a, b) => Math.max(a, b), 0);
    const { long, attentionScaling } = ropeSettingsAt(this.config, maxPosition);
    return ropeTable(positions, long ? this.longInvFreq! : this.invFreq, attentionScaling);
  }

  /** A KV cache sized for this model. */
  newCache(capacity = 256): KvCache {
    return new KvCache(this.config, capacity);
  }

  /**
   * Runs `ids` (one sequence) through the model and returns logits `[positions, vocab]`. With a cache, the
   * tokens continue the cached sequence and their keys/values are appended.
   */
  forward(ids: Uint32Array, opts: ForwardOptions = {}): Float32Array {
    const c = this.config;
    const tokens = ids.length;
    if (tokens === 0) throw new RangeError("forward: ids is empty");
    const cache = opts.cache ?? new KvCache(c, tokens);
    const start = cache.length;
    cache.reserve(tokens);
    const positions = Uint32Array.from({ length: tokens }, (_, i) => start + i);
    const x = this.hiddenStates(ids, { positions, cache }, {
      adapters: opts.adapters,
      compute: opts.compute,
    });
    cache.length = start + tokens;
    const rows = opts.logits === "last" ? 1 : tokens;
    const last = x.data.subarray((tokens - rows) * c.hiddenSize);
    const logits = this.weights.lmHead.matmul(last, rows);
    freeNow(x.data);
    return logits;
  }

  /**
   * The decoder stack: embeddings, every block, the final norm — `[ids.length, hidden]`. The LM head is the
   * caller's: logits for generation, or the fused head and cross-entropy of training.
   */
  hiddenStates(ids: Uint32Array, rows: Rows, run: RunOptions = {}): Tensor {
    const c = this.config;
    if (rows.positions.length !== ids.length) {
      throw new RangeError(`hiddenStates: ${rows.positions.length} positions for ${ids.length} tokens`);
    }
    const ctx: BlockContext = {
      ...run,
      table: this.ropeTableAt(rows.positions),
      localTable: this.localInvFreq && ropeTable(rows.positions, this.localInvFreq),
      rows,
    };
    let x = embedding(this.weights.embedTokens, ids, c.embeddingScale);
    for (let l = 0; l < this.weights.layers.length; l++) {
      const input = x;
      if (run.recomputeBlocks && run.tape) {
        const params = blockModules(c).flatMap((m) => run.adapters?.(l, m)?.parameters() ?? []);
        const lowRankMemos = new Map<LinearModule, { xa?: Float32Array }>();
        const block = (tape: Tape | undefined, y: Tensor, again: boolean) =>
          this.block(l, y, { ...ctx, tape, outputUnused: again, lowRankMemos });
        x = recomputed(run.tape, input, params, block, run.rng);
      } else {
        x = this.block(l, input, ctx);
      }
      // Inference keeps nothing between blocks (generation updates the residual stream in place).
      if (!run.tape && ids.length > 8 && x.data.buffer !== input.data.buffer) freeNow(input.data);
    }
    const out = rmsnorm(run.tape, x, this.weights.norm, c.rmsNormEps);
    if (!run.tape) freeNow(x.data);
    return out;
  }

  /** One decoder block: `x + attn(norm(x))`, then `+ mlp(norm(·))`. Without a tape, frees what it made. */
  block(l: number, x: Tensor, ctx: BlockContext): Tensor {
    const { tape } = ctx;
    const c = this.config;
    const w = this.weights.layers[l];
    const a = w.attention;
    const proj = (
      module: LinearModule,
      input: Tensor,
      recomputeInput?: () => Float32Array,
      outputUnused = false,
    ): Tensor => {
      const adapter = ctx.adapters?.(l, module);
      const { training, compute, lowRankMemos } = ctx;
      if (!adapter) return linear(tape, input, blockLinear(w, module), { compute, outputUnused });
      let lowRankMemo = lowRankMemos?.get(module);
      if (lowRankMemos && !lowRankMemo) lowRankMemos.set(module, lowRankMemo = {});
      return adapter.forward(tape, input, { training, compute, recomputeInput, outputUnused, lowRankMemo });
    };
    // Large buffers are detached at once (V8 frees external memory late); a generation step's few-row ones are
    // left to the collector, which frees small buffers cheaply.
    const scratch = (...tensors: Tensor[]) => {
      if (!tape && x.rows > 8) freeNow(...tensors.map((t) => t.data));
    };

    const h = rmsnorm(tape, x, w.inputNorm, c.rmsNormEps);
    const [qDim, kvDim] = [c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim];
    let q: Tensor, k: Tensor, v: Tensor;
    if (c.fusedLinears) {
      const qkv = proj("qkv_proj", h);
      [q, k, v] = splitColumns(tape, qkv, [qDim, kvDim, kvDim]);
      scratch(qkv);
    } else {
      [q, k, v] = [proj("q_proj", h), proj("k_proj", h), proj("v_proj", h)];
    }
    scratch(h);
    if (a.qBias) q = biasInPlace(tape, q, a.qBias);
    if (a.kBias) k = biasInPlace(tape, k, a.kBias);
    if (a.vBias) v = biasInPlace(tape, v, a.vBias);
    if (a.qNorm && a.kNorm) {
      const [qIn, kIn] = [q, k];
      q = rmsnorm(tape, qIn, a.qNorm, c.rmsNormEps, c.numAttentionHeads);
      k = rmsnorm(tape, kIn, a.kNorm, c.rmsNormEps, c.numKeyValueHeads);
      scratch(qIn, kIn);
    }
    const windowed = c.slidingWindow !== null && (c.slidingWindowLayers?.[l] ?? true);
    const table = windowed && ctx.localTable ? ctx.localTable : ctx.table;
    q = ropeInPlace(tape, q, c.numAttentionHeads, table);
    k = ropeInPlace(tape, k, c.numKeyValueHeads, table);
    const heads = {
      heads: c.numAttentionHeads,
      kvHeads: c.numKeyValueHeads,
      headDim: c.headDim,
      window: windowed ? c.slidingWindow! : undefined,
    };
    let attn: Tensor;
    if ("cache" in ctx.rows) {
      if (tape) throw new Error(`block ${l}: attention over a KV cache is inference only (no tape)`);
      const cache = ctx.rows.cache;
      cache.write(l, k.data, v.data);
      const filled = (cache.length + q.rows) * c.numKeyValueHeads * c.headDim;
      const past = {
        keys: cache.keys[l].subarray(0, filled),
        values: cache.values[l].subarray(0, filled),
        offset: cache.length,
      };
      attn = cachedAttention(q, past, heads);
    } else {
      attn = attention(tape, q, k, v, { ...heads, sequences: ctx.rows.sequences });
    }
    scratch(q, k, v);
    let o = proj("o_proj", attn);
    scratch(attn);
    if (w.attentionOutNorm) {
      const raw = o;
      o = rmsnorm(tape, raw, w.attentionOutNorm, c.rmsNormEps);
      scratch(raw);
    }
    // Generation adds to the residual stream in place: nothing reads a block's input again. Elsewhere the
    // input stays whole (the tape's backward, or a recomputed block's second forward, reads it).
    const inPlace = "cache" in ctx.rows;
    const residual = (a: Tensor, b: Tensor, outputUnused = false) =>
      inPlace ? addInPlace(a, b) : add(tape, a, b, { outputUnused });
    const x1 = residual(x, o);
    scratch(o);

    const h2 = rmsnorm(tape, x1, w.postAttentionNorm, c.rmsNormEps);
    let gate: Tensor, up: Tensor;
    if (c.fusedLinears) {
      const gateUp = proj("gate_up_proj", h2);
      [gate, up] = splitColumns(tape, gateUp, [c.intermediateSize, c.intermediateSize]);
      scratch(gateUp);
    } else {
      [gate, up] = [proj("gate_proj", h2), proj("up_proj", h2)];
    }
    scratch(h2);
    // SwiGLU's output (the widest activation but one) is not held for backward: down_proj's adapter gets it
    // recomputed from gate and up, which SwiGLU's own backward keeps anyway (−1.5 MB a layer at 256 tokens).
    // When nobody reads the block's output, down_proj's output (read only by the residual add) and the add
    // are recorded for their backward without being computed (a norm after down_proj would read it); so is
    // SwiGLU's, whose only other reader, the adapter's x·Aᵀ, comes from the first forward (`lowRankMemos`),
    // and whose backward reads gate and up.
    const skip = tape !== undefined && ctx.outputUnused === true && !w.mlpOutNorm &&
      ctx.lowRankMemos !== undefined;
    const act = swiglu(tape, gate, up, c.mlpActivation, { outputUnused: skip });
    const actAgain = () => gluForward("recompute", c.mlpActivation, gate.data, up.data);
    let down = proj("down_proj", act, actAgain, skip);
    freeNow(act.data);
    scratch(gate, up);
    if (w.mlpOutNorm) {
      const raw = down;
      down = rmsnorm(tape, raw, w.mlpOutNorm, c.rmsNormEps);
      scratch(raw);
    }
    const out = residual(x1, down, skip);
    scratch(down);
    if (!inPlace) scratch(x1);
    return out;
  }

  /** Bytes of the weights held in memory (NF4 linears, bf16 embeddings/head, f32 norms and biases). */
  get weightBytes(): number {
    const w = this.weights;
    let bytes = w.embedTokens.bytes + (w.lmHead === w.embedTokens ? 0 : w.lmHead.bytes) + w.norm.byteLength;
    for (const layer of w.layers) {
      const a = layer.attention;
      bytes += layer.inputNorm.byteLength + layer.postAttentionNorm.byteLength;
      bytes += (layer.attentionOutNorm?.byteLength ?? 0) + (layer.mlpOutNorm?.byteLength ?? 0);
      for (const m of blockModules(this.config)) bytes += blockLinear(layer, m).bytes;
      for (const v of [a.qBias, a.kBias, a.vBias, a.qNorm, a.kNorm]) bytes += v?.byteLength ?? 0;
    }
    return bytes;
  }

  /** Frees the NF4 weights held by the kernel library (and closes a disk-backed embedding table). */
  close(): void {
    const modules = blockModules(this.config);
    for (const layer of this.weights.layers) for (const m of modules) blockLinear(layer, m).close();
    this.weights.embedTokens.close?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
