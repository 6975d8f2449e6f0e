/**
 * The shape of a Llama-family model (Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3, Phi-3/Phi-4-mini, Gemma 3 text), read either from a Hugging Face
 * `config.json` or from GGUF metadata, plus the rotary inverse frequencies it implies.
 *
 * One typed `ModelConfig` serves every family: the differences that matter to the forward pass
 * (biases, rope scaling, tied embeddings) are explicit fields, so the Llama blocks never branch on names.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { FormatError } from "../errors.ts";

/** The `architectures[0]` values we can run. */
export const SUPPORTED_ARCHITECTURES = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
  "Phi3ForCausalLM",
  "Gemma3ForCausalLM",
] as const;
export type Architecture = typeof SUPPORTED_ARCHITECTURES[number];

/**
 * Every name a decoder block's linear layers go by: the separate projections of Llama, and Phi-3's fused
 * `qkv_proj` (q, k, v stacked by rows) and `gate_up_proj` (gate then up). A model has one set or the other
 * (`blockModules`).
 */
export const LINEAR_MODULES = [
  "q_proj",
  "k_proj",
  "v_proj",
  "qkv_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "gate_up_proj",
  "down_proj",
] as const;
export type LinearModule = typeof LINEAR_MODULES[number];

const SEPARATE_MODULES: readonly LinearModule[] = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
];
const FUSED_MODULES: readonly LinearModule[] = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"];

/** The linear layers of `config`'s decoder block, in the order the block applies them. */
export function blockModules(config: Pick<ModelConfig, "fusedLinears">): readonly LinearModule[] {
  return config.fusedLinears ? FUSED_MODULES : SEPARATE_MODULES;
}

/** The HF module path of a block linear, e.g. `model.layers.0.self_attn.q_proj` (PEFT keys adapters by it). */
export function modulePath(layer: number, module: LinearModule): string {
  const mlp = module === "gate_proj" || module === "up_proj" || module === "gate_up_proj" ||
    module === "down_proj";
  return `model.layers.${layer}.${mlp ? "mlp" : "self_attn"}.${module}`;
}

/** The weight shape `[out, in]` of a block linear. */
export function linearShape(config: ModelConfig, module: LinearModule): [number, number] {
  const { hiddenSize: hidden, intermediateSize: inter } = config;
  const qDim = config.numAttentionHeads * config.headDim;
  const kvDim = config.numKeyValueHeads * config.headDim;
  switch (module) {
    case "q_proj":
      return [qDim, hidden];
    case "k_proj":
    case "v_proj":
      return [kvDim, hidden];
    case "o_proj":
      return [hidden, qDim];
    case "qkv_proj":
      return [qDim + 2 * kvDim, hidden];
    case "gate_proj":
    case "up_proj":
      return [inter, hidden];
    case "gate_up_proj":
      return [2 * inter, hidden];
    case "down_proj":
      return [hidden, inter];
  }
}

/** How rotary frequencies are stretched for long contexts. */
export type RopeScaling =
  /** Llama 3.1+: low frequencies divided by `factor`, high ones kept, a smooth blend in between. */
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  }
  /** Position interpolation: every frequency divided by `factor`. */
  | { type: "linear"; factor: number }
  /**
   * GGUF files bake llama3 scaling into a `rope_freqs.weight` tensor of per-frequency divisors;
   * whoever reads the weights passes that tensor to `ropeInvFreq`.
   */
  | { type: "freq_factors" }
  /**
   * Phi-3 128k / Phi-4-mini (LongRoPE, "su"): every frequency divided by its own factor, `shortFactor` while
   * a forward's positions stay within `originalMaxPositionEmbeddings`, `longFactor` once one passes it (as
   * transformers switches per call); cos and sin are multiplied by `attentionFactor`.
   */
  | {
    type: "longrope";
    shortFactor: number[];
    longFactor: number[];
    originalMaxPositionEmbeddings: number;
    attentionFactor: number;
  };

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Fewer than `numAttentionHeads` means grouped-query attention. */
  numKeyValueHeads: number;
  /** Usually hiddenSize / numAttentionHeads, but Mistral Nemo and others set it apart. */
  headDim: number;
  /** The leading features of each head that RoPE turns: headDim, or a part (Phi-4-mini: 96 of 128). */
  rotaryDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  /** When true there is no lm_head weight: the output projection reuses the embedding matrix. */
  tieWordEmbeddings: boolean;
  /** Bias on the q, k and v projections (true for Qwen2). */
  qkvBias: boolean;
  /** Bias on the attention output projection. */
  oBias: boolean;
  /** Bias on gate, up and down projections. */
  mlpBias: boolean;
  /** An RMSNorm over each head of q and of k (weights `[headDim]`) before RoPE (Qwen3). */
  qkNorm: boolean;
  /** q/k/v and gate/up are stored fused, as `qkv_proj` and `gate_up_proj` (Phi-3). */
  fusedLinears: boolean;
  /** The attention window: a query sees itself and the `slidingWindow − 1` keys before it (Mistral, Phi-3). */
  slidingWindow: number | null;
  /** Which layers the window applies to (Gemma 3's local layers); null: every layer. */
  slidingWindowLayers: boolean[] | null;
  /** rope_theta of the windowed layers when it differs (Gemma 3's rope_local_base_freq; no rope scaling there). */
  localRopeTheta: number | null;
  /** The MLP's gate: SiLU (SwiGLU) or tanh GELU (Gemma's GeGLU). */
  mlpActivation: "silu" | "gelu_tanh";
  /** Token embeddings are multiplied by this (Gemma: √hidden, in f32); the tied LM head is not. */
  embeddingScale: number;
  /** RMSNorm weights as stored are offsets: the norm scales by (offset + w) (Gemma: 1). */
  normWeightOffset: number;
  /** Gemma's extra norms: on the attention output and on the MLP output, each before its residual add. */
  sandwichNorms: boolean;
  /** Attention scores are scaled by this (1 / √headDim, or Gemma's query_pre_attn_scalar^-½). */
  attentionScale: number;
  bosTokenId: number | null;
  /** Generation stops on any of these. */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** The dtype the checkpoint was saved in ("bfloat16", …), when the file says. */
  torchDtype: string | null;
}

// ---------------------------------------------------------------------------------------------
// config.json

const positiveInt = z.number({ error: "a positive integer" }).int({ error: "a positive integer" })
  .positive({ error: "a positive integer" });
const tokenId = z.number({ error: "a token id" }).int({ error: "a token id" }).nonnegative({
  error: "a token id",
});
const positiveNumber = z.number({ error: "a positive number" }).positive({ error: "a positive number" });
const flag = z.boolean({ error: "true or false" });

// transformers <= 4.x writes `rope_scaling` (with `type` in older files, `rope_type` in newer ones);
// transformers 5 writes `rope_parameters`, which also carries rope_theta.
const ropeSettings = z.object({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: positiveNumber.optional(),
  factor: positiveNumber.optional(),
  low_freq_factor: positiveNumber.optional(),
  high_freq_factor: positiveNumber.optional(),
  original_max_position_embeddings: positiveInt.optional(),
  short_factor: z.array(positiveNumber, { error: "a list of positive numbers" }).optional(),
  long_factor: z.array(positiveNumber, { error: "a list of positive numbers" }).optional(),
  attention_factor: positiveNumber.optional(),
  partial_rotary_factor: positiveNumber.optional(),
}, { error: "an object" });

const hfConfigSchema = z.object({
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  vocab_size: positiveInt,
  rms_norm_eps: positiveNumber.optional(),
  rope_theta: positiveNumber.optional(),
  rope_scaling: ropeSettings.nullish(),
  rope_parameters: ropeSettings.nullish(),
  max_position_embeddings: positiveInt.optional(),
  original_max_position_embeddings: positiveInt.optional(),
  partial_rotary_factor: positiveNumber.max(1, { error: "a number in (0, 1]" }).optional(),
  // Gemma 3
  hidden_activation: z.string({ error: "a string" }).nullish(),
  query_pre_attn_scalar: positiveNumber.optional(),
  layer_types: z.array(z.enum(["sliding_attention", "full_attention"]), {
    error: `a list of "sliding_attention" / "full_attention"`,
  }).optional(),
  sliding_window_pattern: positiveInt.optional(),
  rope_local_base_freq: positiveNumber.optional(),
  final_logit_softcapping: positiveNumber.nullish(),
  attn_logit_softcapping: positiveNumber.nullish(),
  use_bidirectional_attention: flag.nullish(),
  tie_word_embeddings: flag.optional(),
  attention_bias: flag.optional(),
  mlp_bias: flag.optional(),
  hidden_act: z.string({ error: "a string" }).optional(),
  sliding_window: positiveInt.nullish(),
  use_sliding_window: flag.optional(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)], { error: "a token id or a list of token ids" })
    .nullish(),
  pad_token_id: tokenId.nullish(),
  torch_dtype: z.string({ error: "a string" }).nullish(),
  dtype: z.string({ error: "a string" }).nullish(),
});
type HfConfig = z.infer<typeof hfConfigSchema>;

/** transformers' defaults for the keys a config may leave out, per family. */
const FAMILY_DEFAULTS: Record<Architecture, { maxPositionEmbeddings: number; rmsNormEps: number }> = {
  LlamaForCausalLM: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6 },
  MistralForCausalLM: { maxPositionEmbeddings: 4096 * 32, rmsNormEps: 1e-6 },
  Qwen2ForCausalLM: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  Qwen3ForCausalLM: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  Phi3ForCausalLM: { maxPositionEmbeddings: 4096, rmsNormEps: 1e-5 },
  Gemma3ForCausalLM: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6 },
};

/** Reads and validates a Hugging Face `config.json`. */
export async function loadModelConfig(path: string): Promise<ModelConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new FormatError(path, `cannot read the model config (${(error as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FormatError(path, `not valid JSON (${(error as Error).message})`);
  }
  return parseModelConfig(json, path);
}

/** Validates the parsed contents of a `config.json`; `file` names it in errors. */
export function parseModelConfig(json: unknown, file = "config.json"): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(file, "expected a JSON object");
  }
  let raw = json as Record<string, unknown>;
  const architecture = readArchitecture(raw, file);
  // transformers 5 writes Gemma 3's rope per layer type; the global layers' settings are the model's, the
  // local layers' theta is rope_local_base_freq (their rope is never scaled).
  const perType = raw.rope_parameters as Record<string, Record<string, unknown> | undefined> | undefined;
  if (architecture === "Gemma3ForCausalLM" && perType?.full_attention !== undefined) {
    const local = perType.sliding_attention;
    if (local !== undefined && (local.rope_type ?? "default") !== "default") {
      throw new FormatError(file, `rope_parameters.sliding_attention: only the default rope is supported`);
    }
    raw = { ...raw, rope_parameters: perType.full_attention, rope_local_base_freq: local?.rope_theta };
  }
  const parsed = hfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FormatError(file, describeIssue(issue.path, issue.message, raw, architecture));
  }
  const hf = parsed.data;
  const fail = (problem: string): never => {
    throw new FormatError(file, problem);
  };

  const isGemma3 = architecture === "Gemma3ForCausalLM";
  const activation = isGemma3 ? hf.hidden_activation ?? hf.hidden_act ?? "gelu_pytorch_tanh" : hf.hidden_act;
  const wanted = isGemma3 ? "gelu_pytorch_tanh" : "silu";
  if (activation != null && activation !== wanted) {
    fail(
      `${
        isGemma3 ? "hidden_activation" : "hidden_act"
      } "${activation}" is not supported (${architecture} uses "${wanted}")`,
    );
  }
  if (hf.final_logit_softcapping != null || hf.attn_logit_softcapping != null) {
    fail(`logit soft-capping is not supported (Gemma 3 has none; this config sets it)`);
  }
  if (hf.use_bidirectional_attention === true) fail(`use_bidirectional_attention: true is not supported`);
  if (hf.use_sliding_window === true) {
    fail(`use_sliding_window: true is not supported (only full attention)`);
  }
  if (hf.hidden_size % hf.num_attention_heads !== 0 && hf.head_dim == null) {
    fail(`hidden_size ${hf.hidden_size} is not divisible by num_attention_heads ${hf.num_attention_heads}`);
  }
  const numKeyValueHeads = hf.num_key_value_heads ?? hf.num_attention_heads;
  if (hf.num_attention_heads % numKeyValueHeads !== 0) {
    fail(
      `num_attention_heads ${hf.num_attention_heads} is not a multiple of num_key_value_heads ${numKeyValueHeads}`,
    );
  }
  const defaults = FAMILY_DEFAULTS[architecture];
  const isQwen2 = architecture === "Qwen2ForCausalLM";
  const isQwen3 = architecture === "Qwen3ForCausalLM";
  const isPhi3 = architecture === "Phi3ForCausalLM";
  const isLlama = architecture === "LlamaForCausalLM";
  if (isQwen3 && hf.attention_bias === true) {
    // Qwen3's flag also puts a bias on o_proj, which the block does not carry.
    fail(`attention_bias: true is not supported for ${architecture} (every released Qwen3 has false)`);
  }
  const eos = hf.eos_token_id;
  const headDim = hf.head_dim ?? hf.hidden_size / hf.num_attention_heads;
  const partial = hf.rope_parameters?.partial_rotary_factor ?? hf.partial_rotary_factor ?? 1;
  if (partial !== 1 && !isPhi3) fail(`partial_rotary_factor ${partial} is not supported for ${architecture}`);
  // transformers: int(head_dim · factor), the pairs split in halves of it.
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    fail(
      `partial_rotary_factor ${partial} leaves ${rotaryDim} of head_dim ${headDim} to rotate (needs an even count)`,
    );
  }
  const gemma = isGemma3 ? gemma3Settings(hf, headDim, fail) : undefined;
  return {
    architecture,
    hiddenSize: hf.hidden_size,
    intermediateSize: hf.intermediate_size,
    numHiddenLayers: hf.num_hidden_layers,
    numAttentionHeads: hf.num_attention_heads,
    numKeyValueHeads,
    headDim,
    rotaryDim,
    vocabSize: hf.vocab_size,
    rmsNormEps: hf.rms_norm_eps ?? defaults.rmsNormEps,
    ropeTheta: hf.rope_parameters?.rope_theta ?? hf.rope_theta ?? (isGemma3 ? 1_000_000 : 10000),
    ropeScaling: readRopeScaling(hf, architecture, rotaryDim, file),
    maxPositionEmbeddings: hf.max_position_embeddings ?? defaults.maxPositionEmbeddings,
    // transformers' default: untied, but tied for Gemma 3.
    tieWordEmbeddings: hf.tie_word_embeddings ?? isGemma3,
    // Qwen2 always has q/k/v biases and never an o bias; Llama's attention_bias covers all four.
    qkvBias: isQwen2 ? true : isLlama && (hf.attention_bias ?? false),
    oBias: isLlama && (hf.attention_bias ?? false),
    mlpBias: isLlama && (hf.mlp_bias ?? false),
    qkNorm: isQwen3 || isGemma3,
    fusedLinears: isPhi3,
    // Qwen's sliding_window applies only with use_sliding_window, refused above.
    slidingWindow: isQwen2 || isQwen3
      ? null
      : isGemma3
      ? hf.sliding_window ?? 4096
      : hf.sliding_window ?? null,
    slidingWindowLayers: gemma?.slidingWindowLayers ?? null,
    localRopeTheta: gemma?.localRopeTheta ?? null,
    mlpActivation: isGemma3 ? "gelu_tanh" : "silu",
    embeddingScale: isGemma3 ? Math.fround(Math.sqrt(hf.hidden_size)) : 1,
    normWeightOffset: isGemma3 ? 1 : 0,
    sandwichNorms: isGemma3,
    attentionScale: 1 / Math.sqrt(gemma?.queryPreAttnScalar ?? headDim),
    bosTokenId: hf.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    padTokenId: hf.pad_token_id ?? null,
    torchDtype: hf.torch_dtype ?? hf.dtype ?? null,
  };
}

/** Gemma 3's per-layer attention kinds, local rope theta and query scaling. */
function gemma3Settings(hf: HfConfig, headDim: number, fail: (problem: string) => never) {
  const n = hf.num_hidden_layers;
  // transformers: without layer_types, every `sliding_window_pattern`-th layer (default 6) is global.
  const pattern = hf.sliding_window_pattern ?? 6;
  const types = hf.layer_types ??
    Array.from({ length: n }, (_, i) => ((i + 1) % pattern !== 0 ? "sliding_attention" : "full_attention"));
  if (types.length !== n) fail(`layer_types lists ${types.length} layers, num_hidden_layers is ${n}`);
  return {
    slidingWindowLayers: types.map((t) => t === "sliding_attention"),
    localRopeTheta: hf.rope_local_base_freq ?? 10000,
    queryPreAttnScalar: hf.query_pre_attn_scalar ?? 256,
    headDim,
  };
}

function readArchitecture(raw: Record<string, unknown>, file: string): Architecture {
  const list = raw.architectures;
  if (list === undefined) {
    throw new FormatError(
      file,
      `missing "architectures" (expected one of ${SUPPORTED_ARCHITECTURES.join(", ")})`,
    );
  }
  if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== "string") {
    throw new FormatError(file, `"architectures" must be a non-empty list of names, found ${show(list)}`);
  }
  const name = list[0];
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
    throw new FormatError(
      file,
      `unsupported architecture "${name}" (supported: ${SUPPORTED_ARCHITECTURES.join(", ")})`,
    );
  }
  return name as Architecture;
}

function readRopeScaling(
  hf: HfConfig,
  architecture: Architecture,
  rotaryDim: number,
  file: string,
): RopeScaling | null {
  const settings = hf.rope_parameters ?? hf.rope_scaling;
  if (settings == null) return null;
  const key = hf.rope_parameters != null ? "rope_parameters" : "rope_scaling";
  let kind = settings.rope_type ?? settings.type ?? "default";
  // transformers' Phi-3 config reads the older names "su" and "yarn" as LongRoPE.
  if (architecture === "Phi3ForCausalLM" && (kind === "su" || kind === "yarn")) kind = "longrope";
  const need = (name: keyof typeof settings): number => {
    const value = settings[name];
    if (typeof value !== "number") {
      throw new FormatError(file, `missing "${key}.${name}" (needed for rope type "${kind}")`);
    }
    return value;
  };
  switch (kind) {
    case "default":
      return null;
    case "linear":
      return { type: "linear", factor: need("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: need("factor"),
        lowFreqFactor: need("low_freq_factor"),
        highFreqFactor: need("high_freq_factor"),
        originalMaxPositionEmbeddings: need("original_max_position_embeddings"),
      };
    case "longrope":
      return longRope(hf, settings, key, rotaryDim, file);
    default:
      throw new FormatError(
        file,
        `unsupported ${key} type "${kind}" (supported: default, linear, llama3, longrope for Phi-3)`,
      );
  }
}

function longRope(
  hf: HfConfig,
  settings: NonNullable<HfConfig["rope_scaling"]>,
  key: string,
  rotaryDim: number,
  file: string,
): RopeScaling {
  const factors = (name: "short_factor" | "long_factor"): number[] => {
    const list = settings[name];
    if (list === undefined || list.length !== rotaryDim / 2) {
      throw new FormatError(
        file,
        `"${key}.${name}" must list ${rotaryDim / 2} factors (one per rotated pair), found ${
          list === undefined ? "none" : list.length
        }`,
      );
    }
    return list;
  };
  const original = settings.original_max_position_embeddings ?? hf.original_max_position_embeddings;
  if (original === undefined) {
    throw new FormatError(file, `missing "original_max_position_embeddings" (needed for longrope)`);
  }
  const max = hf.max_position_embeddings ?? original;
  // transformers: factor = max / original unless given; attention factor √(1 + ln factor / ln original).
  const factor = settings.factor ?? max / original;
  const attentionFactor = settings.attention_factor ??
    (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original)));
  return {
    type: "longrope",
    shortFactor: factors("short_factor"),
    longFactor: factors("long_factor"),
    originalMaxPositionEmbeddings: original,
    attentionFactor,
  };
}

function describeIssue(
  path: PropertyKey[],
  expected: string,
  raw: Record<string, unknown>,
  architecture: Architecture,
): string {
  const name = path.map(String).join(".");
  let value: unknown = raw;
  for (const key of path) value = (value as Record<PropertyKey, unknown> | undefined)?.[key];
  if (value === undefined && path.length === 1) return `missing "${name}" (needed for ${architecture})`;
  return `"${name}" must be ${expected}, found ${show(value)}`;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// GGUF metadata

/** GGUF `general.architecture` values we can run, and the HF family each stands for. */
const GGUF_ARCHITECTURES: Record<string, Architecture> = {
  llama: "LlamaForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
};

/**
 * The same config from GGUF metadata (as returned by `gguf()` from @huggingface/gguf).
 * `tensorNames` lists the file's tensors: a missing `output.weight` means tied embeddings and a
 * `rope_freqs.weight` means llama3-style frequency factors. `file` names the source in errors.
 */
export function configFromGguf(
  ggufMetadata: object,
  tensorNames: readonly string[],
  file = "model.gguf",
): ModelConfig {
  const metadata = ggufMetadata as Record<string, unknown>;
  const arch = metadata["general.architecture"];
  if (typeof arch !== "string") {
    throw new FormatError(file, `missing "general.architecture"`);
  }
  const architecture = GGUF_ARCHITECTURES[arch];
  if (architecture === undefined) {
    throw new FormatError(
      file,
      `unsupported general.architecture "${arch}" (supported: ${Object.keys(GGUF_ARCHITECTURES).join(", ")})`,
    );
  }
  const read = (key: string): number | undefined => {
    const value = metadata[`${arch}.${key}`];
    if (value === undefined) return undefined;
    if (typeof value === "number") return value;
    if (typeof value === "bigint") return Number(value);
    throw new FormatError(file, `"${arch}.${key}" must be a number, found ${show(String(value))}`);
  };
  const need = (key: string): number => {
    const value = read(key);
    if (value === undefined) throw new FormatError(file, `missing "${arch}.${key}" (needed for ${arch})`);
    return value;
  };
  const optionalId = (key: string): number | null => {
    const value = metadata[key];
    return typeof value === "number" || typeof value === "bigint" ? Number(value) : null;
  };

  const hiddenSize = need("embedding_length");
  const numAttentionHeads = need("attention.head_count");
  const tokens = metadata["tokenizer.ggml.tokens"];
  const vocabSize = read("vocab_size") ?? (Array.isArray(tokens) ? tokens.length : undefined);
  if (vocabSize === undefined) {
    throw new FormatError(
      file,
      `missing "${arch}.vocab_size" and "tokenizer.ggml.tokens" (one gives the vocab size)`,
    );
  }
  const names = new Set(tensorNames);
  const eosTokenIds = [optionalId("tokenizer.ggml.eos_token_id"), optionalId("tokenizer.ggml.eot_token_id")]
    .filter((id): id is number => id !== null);
  const isQwen2 = architecture === "Qwen2ForCausalLM";
  return {
    architecture,
    hiddenSize,
    intermediateSize: need("feed_forward_length"),
    numHiddenLayers: need("block_count"),
    numAttentionHeads,
    numKeyValueHeads: read("attention.head_count_kv") ?? numAttentionHeads,
    headDim: read("attention.key_length") ?? hiddenSize / numAttentionHeads,
    rotaryDim: read("attention.key_length") ?? hiddenSize / numAttentionHeads,
    vocabSize,
    rmsNormEps: need("attention.layer_norm_rms_epsilon"),
    ropeTheta: read("rope.freq_base") ?? 10000,
    ropeScaling: ggufRopeScaling(metadata, arch, names, file),
    maxPositionEmbeddings: need("context_length"),
    tieWordEmbeddings: !names.has("output.weight"),
    qkvBias: isQwen2 || names.has("blk.0.attn_q.bias"),
    oBias: names.has("blk.0.attn_output.bias"),
    mlpBias: names.has("blk.0.ffn_down.bias"),
    qkNorm: names.has("blk.0.attn_q_norm.weight"),
    fusedLinears: false,
    slidingWindow: null,
    slidingWindowLayers: null,
    localRopeTheta: null,
    mlpActivation: "silu",
    embeddingScale: 1,
    normWeightOffset: 0,
    sandwichNorms: false,
    attentionScale: 1 / Math.sqrt(read("attention.key_length") ?? hiddenSize / numAttentionHeads),
    bosTokenId: optionalId("tokenizer.ggml.bos_token_id"),
    eosTokenIds: [...new Set(eosTokenIds)],
    padTokenId: optionalId("tokenizer.ggml.padding_token_id"),
    torchDtype: null,
  };
}

function ggufRopeScaling(
  metadata: Record<string, unknown>,
  arch: string,
  names: Set<string>,
  file: string,
): RopeScaling | null {
  if (names.has("rope_freqs.weight")) return { type: "freq_factors" };
  const kind = metadata[`${arch}.rope.scaling.type`];
  if (kind === undefined || kind === "none") return null;
  if (kind === "linear") {
    const factor = Number(metadata[`${arch}.rope.scaling.factor`]);
    if (!(factor > 0)) {
      throw new FormatError(file, `missing "${arch}.rope.scaling.factor" (needed for linear)`);
    }
    return { type: "linear", factor };
  }
  throw new FormatError(
    file,
    `unsupported ${arch}.rope.scaling.type "${String(kind)}" (supported: none, linear)`,
  );
}

// ---------------------------------------------------------------------------------------------
// Rotary frequencies

/**
 * The factor folded into the q norm so that the attention kernels' 1/√headDim gives `attentionScale`
 * (exactly 1 unless the two differ, as with Gemma's query_pre_attn_scalar ≠ head_dim).
 */
export function queryScale(config: ModelConfig): number {
  const scale = config.attentionScale * Math.sqrt(config.headDim);
  return Math.abs(scale - 1) < 1e-12 ? 1 : scale;
}

/**
 * The inverse frequency of each rotated pair of a head: `headDim / 2` values, the first rotating fastest.
 * Computed step by step in float32 like transformers (which builds them as float32 tensors), so both
 * sides feed bit-identical angles to the rotary embedding. For `freq_factors` scaling, pass the GGUF
 * `rope_freqs.weight` values: each frequency is divided by its factor.
 */
export function ropeInvFreq(
  config: ModelConfig,
  freqFactors?: Float32Array,
  opts: { long?: boolean } = {},
): Float32Array {
  const f = Math.fround;
  const half = config.rotaryDim / 2;
  const powers = new Float32Array(half); // theta^(2i / rotaryDim)
  for (let i = 0; i < half; i++) {
    powers[i] = f(Math.pow(config.ropeTheta, f(f(2 * i) / f(config.rotaryDim))));
  }
  const scaling = config.ropeScaling;
  if (scaling?.type === "longrope") {
    // transformers: 1 / (factor · theta^(2i/d)), the product rounded first.
    const factors = opts.long ? scaling.longFactor : scaling.shortFactor;
    return powers.map((p, i) => f(1 / f(f(factors[i]) * p)));
  }
  const invFreq = powers.map((p) => f(1 / p));
  if (scaling === null) return invFreq;
  switch (scaling.type) {
    case "linear":
      return invFreq.map((value) => f(value / f(scaling.factor)));
    case "freq_factors":
      if (freqFactors === undefined || freqFactors.length !== half) {
        throw new Error(
          `ropeInvFreq: this model needs its rope_freqs.weight tensor (${half} values), got ${
            freqFactors?.length ?? "none"
          }`,
        );
      }
      return invFreq.map((value, i) => f(value / freqFactors[i]));
    case "llama3":
      return invFreq.map((value) => llama3Scaled(value, scaling));
  }
}

/**
 * The factor cos and sin are multiplied by (LongRoPE's attention factor, else 1), and whether a forward whose
 * largest position is `maxPosition` takes LongRoPE's long factors (transformers: once max position + 1
 * passes original_max_position_embeddings).
 */
export function ropeSettingsAt(
  config: ModelConfig,
  maxPosition: number,
): { long: boolean; attentionScaling: number } {
  const s = config.ropeScaling;
  if (s?.type !== "longrope") return { long: false, attentionScaling: 1 };
  return { long: maxPosition + 1 > s.originalMaxPositionEmbeddings, attentionScaling: s.attentionFactor };
}

/** Llama 3.1's long-context rule for one frequency, in float32 as transformers computes it. */
function llama3Scaled(invFreq: number, scaling: Extract<RopeScaling, { type: "llama3" }>): number {
  const f = Math.fround;
  const factor = f(scaling.factor);
  const lowFreqWavelen = scaling.originalMaxPositionEmbeddings / scaling.lowFreqFactor;
  const highFreqWavelen = scaling.originalMaxPositionEmbeddings / scaling.highFreqFactor;
  // torch evaluates `scalar / tensor` as reciprocal(tensor) * scalar.
  const wavelen = f(f(1 / invFreq) * f(2 * Math.PI));
  if (wavelen < highFreqWavelen) return invFreq; // fast rotations: kept
  if (wavelen > lowFreqWavelen) return f(invFreq / factor); // slow rotations: interpolated
  const smooth = f(
    f(f(f(1 / wavelen) * f(scaling.originalMaxPositionEmbeddings)) - f(scaling.lowFreqFactor)) /
      f(scaling.highFreqFactor - scaling.lowFreqFactor),
  );
  return f(f(f(f(1 - smooth) * invFreq) / factor) + f(smooth * invFreq));
}
