/**
 * The `config.json` (and `generation_config.json`) of an exported model, in the form transformers reads.
 *
 * From an HF directory we start from its own config.json, so keys we do not model (initializer_range,
 * layer_types, …) pass through; only what the export changes is rewritten. From a GGUF file there is no
 * config.json, so one is built from `ModelConfig`, with RoPE settings in the legacy `rope_theta` +
 * `rope_scaling` form, which transformers 4.x reads as is and 5.x converts to `rope_parameters` on load.
 */
import type { Architecture, ModelConfig } from "../../nn/config.ts";

/** transformers' `model_type` of each architecture we run. */
const MODEL_TYPE: Record<Architecture, string> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
  Phi3ForCausalLM: "phi3",
  Gemma3ForCausalLM: "gemma3_text",
};

/** The dtype the exported weights are stored in. */
export const EXPORT_DTYPE = "bfloat16";

export interface HfConfigOptions {
  /** The source's parsed config.json, when the model came from an HF directory. */
  base?: Record<string, unknown>;
  /** Whether the export shares the embedding matrix with the LM head (no lm_head.weight written). */
  tied: boolean;
}

/** The config.json object of the export (keys sorted, as transformers writes them). */
export function hfConfigJson(config: ModelConfig, opts: HfConfigOptions): Record<string, unknown> {
  const json: Record<string, unknown> = opts.base ? { ...opts.base } : fromModelConfig(config);
  // The weights are plain bf16 now: a quantization_config would make transformers expect bnb tensors.
  delete json.quantization_config;
  json.tie_word_embeddings = opts.tied;
  // transformers 5 reads `dtype`, 4.x `torch_dtype`; both name the same thing.
  json.dtype = EXPORT_DTYPE;
  json.torch_dtype = EXPORT_DTYPE;
  return sortKeys(json);
}

/** A generation_config.json carrying the special ids (what transformers derives from config.json). */
export function generationConfigJson(config: ModelConfig): Record<string, unknown> {
  return sortKeys({
    _from_model_config: true,
    bos_token_id: config.bosTokenId,
    eos_token_id: eosJson(config.eosTokenIds),
    pad_token_id: config.padTokenId,
  });
}

function fromModelConfig(c: ModelConfig): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: [c.architecture],
    model_type: MODEL_TYPE[c.architecture],
    hidden_act: "silu",
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    rms_norm_eps: shortestF32(c.rmsNormEps),
    rope_theta: shortestF32(c.ropeTheta),
    rope_scaling: ropeScalingJson(c),
    max_position_embeddings: c.maxPositionEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: eosJson(c.eosTokenIds),
    pad_token_id: c.padTokenId,
    use_cache: true,
  };
  switch (c.architecture) {
    case "LlamaForCausalLM":
      // Llama's one flag covers the q/k/v and o biases alike.
      json.attention_bias = c.qkvBias;
      json.mlp_bias = c.mlpBias;
      break;
    case "MistralForCausalLM":
      json.sliding_window = c.slidingWindow;
      break;
    case "Qwen2ForCausalLM":
      // Qwen2 always has q/k/v biases (no flag); full attention in every layer.
      json.use_sliding_window = false;
      json.sliding_window = null;
      break;
    case "Phi3ForCausalLM":
      json.partial_rotary_factor = c.rotaryDim / c.headDim;
      json.sliding_window = c.slidingWindow;
      if (c.ropeScaling?.type === "longrope") {
        json.original_max_position_embeddings = c.ropeScaling.originalMaxPositionEmbeddings;
      }
      break;
    case "Qwen3ForCausalLM":
      // Qwen3 always has q/k norms (no flag); no biases; full attention in every layer.
      json.attention_bias = false;
      json.use_sliding_window = false;
      json.sliding_window = null;
      break;
  }
  return json;
}

function ropeScalingJson(c: ModelConfig): Record<string, unknown> | null {
  const s = c.ropeScaling;
  if (s === null) return null;
  switch (s.type) {
    case "linear":
      return { rope_type: "linear", factor: s.factor };
    case "llama3":
      return {
        rope_type: "llama3",
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      };
    case "longrope":
      return {
        rope_type: "longrope",
        short_factor: s.shortFactor,
        long_factor: s.longFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
        attention_factor: s.attentionFactor,
      };
    case "freq_factors":
      // A table of per-frequency divisors has no config.json form.
      throw new Error(
        "exporting a model whose RoPE scaling is a GGUF rope_freqs table is not supported " +
          "(config.json has no field for it)",
      );
  }
}

/**
 * GGUF stores floats as f32 (1e-5 reads back as 0.000009999999747…): write the shortest decimal that is the
 * same f32, which is what the model computes with on either side.
 */
function shortestF32(value: number): number {
  for (let digits = 1; digits < 17; digits++) {
    const short = Number(value.toPrecision(digits));
    if (Math.fround(short) === Math.fround(value)) return short;
  }
  return value;
}

function eosJson(ids: readonly number[]): number | number[] | null {
  return ids.length === 0 ? null : ids.length === 1 ? ids[0] : [...ids];
}

function sortKeys(json: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
