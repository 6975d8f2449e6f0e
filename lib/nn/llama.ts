/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM2) for inference: token embedding, per block
 * RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → SwiGLU MLP → residual, final RMSNorm,
 * LM head. Every block linear is NF4 (double quant) unless loaded unquantized; embeddings and LM head are bf16; norms and biases f32.
 * All math runs in the Rust kernels; this file only wires buffers.
 */
import type { Bf16Matrix } from "../../ffi/bf16.ts";
import { sgemm } from "../../ffi/gemm.ts";
import { attentionForward, rmsnormForward, ropeForward, ropeTable, swigluForward } from "../../ffi/ops.ts";
import { type ModelConfig, ropeInvFreq } from "./config.ts";
import { KvCache } from "./kv_cache.ts";
import type { Linear } from "./linear.ts";

export interface AttentionWeights {
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  /** Qwen2 only: `[heads·headDim]`, `[kvHeads·headDim]`, `[kvHeads·headDim]`. */
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
}

export interface MlpWeights {
  gate: Linear;
  up: Linear;
  down: Linear;
}

export interface DecoderLayerWeights {
  inputNorm: Float32Array;
  attention: AttentionWeights;
  postAttentionNorm: Float32Array;
  mlp: MlpWeights;
}

export interface LlamaWeights {
  embedTokens: Bf16Matrix;
  layers: DecoderLayerWeights[];
  norm: Float32Array;
  /** The same object as `embedTokens` when the embeddings are tied. */
  lmHead: Bf16Matrix;
}

export interface ForwardOptions {
  /** Continue from these cached positions and append to them (generation). */
  cache?: KvCache;
  /** Logits for every position (default) or only the last one (generation). */
  logits?: "all" | "last";
}

/** y[t, :] += bias for every row t (a rank-1 update: ones[T,1] · bias[1,N]). */
function addBias(y: Float32Array, bias: Float32Array, rows: number): void {
  const ones = new Float32Array(rows).fill(1);
  sgemm(
    rows,
    bias.length,
    1,
    { data: ones, rowStride: 1, colStride: 1 },
    {
      data: bias,
      rowStride: bias.length,
      colStride: 1,
    },
    y,
    bias.length,
    { beta: 1 },
  );
}

export class LlamaModel implements Disposable {
  readonly invFreq: Float32Array;

  constructor(readonly config: ModelConfig, readonly weights: LlamaWeights) {
    this.invFreq = ropeInvFreq(config);
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
    const [heads, kvHeads, hd, dModel] = [c.numAttentionHeads, c.numKeyValueHeads, c.headDim, c.hiddenSize];
    const positions = Uint32Array.from({ length: tokens }, (_, i) => start + i);
    const table = ropeTable(positions, this.invFreq);

    const x = this.weights.embedTokens.gatherRows(ids);
    const q = new Float32Array(tokens * heads * hd);
    const k = new Float32Array(tokens * kvHeads * hd);
    const v = new Float32Array(tokens * kvHeads * hd);
    const attn = new Float32Array(tokens * heads * hd);
    const gate = new Float32Array(tokens * c.intermediateSize);
    const up = new Float32Array(tokens * c.intermediateSize);
    const hidden = new Float32Array(tokens * c.intermediateSize);
    const normed = new Float32Array(tokens * dModel);
    const rstd = new Float32Array(tokens);

    for (const [l, layer] of this.weights.layers.entries()) {
      const a = layer.attention;
      rmsnormForward(x, layer.inputNorm, tokens, dModel, c.rmsNormEps, { y: normed, rstd });
      a.q.matmul(normed, tokens, q);
      a.k.matmul(normed, tokens, k);
      a.v.matmul(normed, tokens, v);
      if (a.qBias) addBias(q, a.qBias, tokens);
      if (a.kBias) addBias(k, a.kBias, tokens);
      if (a.vBias) addBias(v, a.vBias, tokens);
      ropeForward(q, heads, table);
      ropeForward(k, kvHeads, table);
      cache.write(l, k, v);
      attentionForward(q, cache.keys[l], cache.values[l], {
        tokens,
        keys: cache.keys[l].length / (kvHeads * hd),
        heads,
        kvHeads,
        headDim: hd,
        qOffset: start,
      }, { o: attn, lse: null });
      a.o.matmul(attn, tokens, x, { accumulate: true }); // residual: x += o · Woᵀ

      rmsnormForward(x, layer.postAttentionNorm, tokens, dModel, c.rmsNormEps, { y: normed, rstd });
      layer.mlp.gate.matmul(normed, tokens, gate);
      layer.mlp.up.matmul(normed, tokens, up);
      swigluForward(gate, up, hidden);
      layer.mlp.down.matmul(hidden, tokens, x, { accumulate: true }); // residual: x += h · Wdownᵀ
    }
    cache.length = start + tokens;

    const rows = opts.logits === "last" ? 1 : tokens;
    const last = x.subarray((tokens - rows) * dModel);
    const finalNormed = rmsnormForward(last, this.weights.norm, rows, dModel, c.rmsNormEps).y;
    return this.weights.lmHead.matmul(finalNormed, rows);
  }

  /** Bytes of the weights held in memory (NF4 linears, bf16 embeddings/head, f32 norms and biases). */
  get weightBytes(): number {
    const w = this.weights;
    let bytes = w.embedTokens.bytes + (w.lmHead === w.embedTokens ? 0 : w.lmHead.bytes) + w.norm.byteLength;
    for (const layer of w.layers) {
      const a = layer.attention;
      bytes += layer.inputNorm.byteLength + layer.postAttentionNorm.byteLength;
      for (const linear of [a.q, a.k, a.v, a.o, layer.mlp.gate, layer.mlp.up, layer.mlp.down]) {
        bytes += linear.bytes;
      }
      for (const bias of [a.qBias, a.kBias, a.vBias]) bytes += bias?.byteLength ?? 0;
    }
    return bytes;
  }

  /** Frees the NF4 weights held by the kernel library. */
  close(): void {
    for (const layer of this.weights.layers) {
      const a = layer.attention;
      for (const linear of [a.q, a.k, a.v, a.o, layer.mlp.gate, layer.mlp.up, layer.mlp.down]) linear.close();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
