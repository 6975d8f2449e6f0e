/**
 * The shape of a Llama-family model (Llama 2/3, SmolLM2, Mistral, Qwen2), read either from a Hugging Face
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
] as const;
export type Architecture = typeof SUPPORTED_ARCHITECTURES[number];

/** The linear layers of a Llama-family decoder block, in the order the block applies them. */
export const LINEAR_MODULES = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type LinearModule = typeof LINEAR_MODULES[number];

/** The HF module path of a block linear, e.g. `model.layers.0.self_attn.q_proj` (PEFT keys adapters by it). */
export function modulePath(layer: number, module: LinearModule): string {
  const parent = module === "gate_proj" || module === "up_proj" || module === "down_proj"
    ? "mlp"
    : "self_attn";
  return `model.layers.${layer}.${parent}.${module}`;
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
    case "gate_proj":
    case "up_proj":
      return [inter, hidden];
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
  | { type: "freq_factors" };

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
  /** Mistral's attention window; recorded only: sequences up to this length need no mask change. */
  slidingWindow: number | null;
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
  const raw = json as Record<string, unknown>;
  const architecture = readArchitecture(raw, file);
  const parsed = hfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FormatError(file, describeIssue(issue.path, issue.message, raw, architecture));
  }
  const hf = parsed.data;
  const fail = (problem: string): never => {
    throw new FormatError(file, problem);
  };

  if (hf.hidden_act !== undefined && hf.hidden_act !== "silu") {
    fail(`hidden_act "${hf.hidden_act}" is not supported (${architecture} uses "silu")`);
  }
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
  const isLlama = architecture === "LlamaForCausalLM";
  const eos = hf.eos_token_id;
  return {
    architecture,
    hiddenSize: hf.hidden_size,
    intermediateSize: hf.intermediate_size,
    numHiddenLayers: hf.num_hidden_layers,
    numAttentionHeads: hf.num_attention_heads,
    numKeyValueHeads,
    headDim: hf.head_dim ?? hf.hidden_size / hf.num_attention_heads,
    vocabSize: hf.vocab_size,
    rmsNormEps: hf.rms_norm_eps ?? defaults.rmsNormEps,
    ropeTheta: hf.rope_parameters?.rope_theta ?? hf.rope_theta ?? 10000,
    ropeScaling: readRopeScaling(hf, file),
    maxPositionEmbeddings: hf.max_position_embeddings ?? defaults.maxPositionEmbeddings,
    tieWordEmbeddings: hf.tie_word_embeddings ?? false,
    // Qwen2 always has q/k/v biases and never an o bias; Llama's attention_bias covers all four.
    qkvBias: isQwen2 ? true : isLlama && (hf.attention_bias ?? false),
    oBias: isLlama && (hf.attention_bias ?? false),
    mlpBias: isLlama && (hf.mlp_bias ?? false),
    slidingWindow: isQwen2 ? null : hf.sliding_window ?? null,
    bosTokenId: hf.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    padTokenId: hf.pad_token_id ?? null,
    torchDtype: hf.torch_dtype ?? hf.dtype ?? null,
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

function readRopeScaling(hf: HfConfig, file: string): RopeScaling | null {
  const settings = hf.rope_parameters ?? hf.rope_scaling;
  if (settings == null) return null;
  const key = hf.rope_parameters != null ? "rope_parameters" : "rope_scaling";
  const kind = settings.rope_type ?? settings.type ?? "default";
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
    default:
      throw new FormatError(
        file,
        `unsupported ${key} type "${kind}" (supported: default, linear, llama3)`,
      );
  }
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
    vocabSize,
    rmsNormEps: need("attention.layer_norm_rms_epsilon"),
    ropeTheta: read("rope.freq_base") ?? 10000,
    ropeScaling: ggufRopeScaling(metadata, arch, names, file),
    maxPositionEmbeddings: need("context_length"),
    tieWordEmbeddings: !names.has("output.weight"),
    qkvBias: isQwen2 || names.has("blk.0.attn_q.bias"),
    oBias: names.has("blk.0.attn_output.bias"),
    mlpBias: names.has("blk.0.ffn_down.bias"),
    slidingWindow: null,
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
 * The inverse frequency of each rotated pair of a head: `headDim / 2` values, the first rotating fastest.
 * Computed step by step in float32 like transformers (which builds them as float32 tensors), so both
 * sides feed bit-identical angles to the rotary embedding. For `freq_factors` scaling, pass the GGUF
 * `rope_freqs.weight` values: each frequency is divided by its factor.
 */
export function ropeInvFreq(config: ModelConfig, freqFactors?: Float32Array): Float32Array {
  const f = Math.fround;
  const half = config.headDim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = f(f(2 * i) / f(config.headDim));
    invFreq[i] = f(1 / f(Math.pow(config.ropeTheta, exponent)));
  }
  const scaling = config.ropeScaling;
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
