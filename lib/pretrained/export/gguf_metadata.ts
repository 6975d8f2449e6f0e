/**
 * The metadata llama.cpp needs to run an exported model: `general.*`, the architecture's hyper-parameters
 * (`<arch>.context_length`, `.embedding_length`, …, named as llama.cpp's gguf constants name them) and the
 * tokenizer (`tokenizer.ggml.*`, `tokenizer.chat_template`).
 */
import type { ModelConfig } from "../../nn/config.ts";
import type { GgufValue } from "../../io/gguf/file.ts";
import type { GgufMetadataValue } from "../../io/gguf/writer.ts";
import { FILE_TYPE, type GgufExportType } from "./gguf_types.ts";

export type MetadataEntry = readonly [string, GgufMetadataValue];

/**
 * The `general.architecture` llama.cpp runs a config as (its converter writes Mistral as llama). The other
 * families have block features (q/k norms, fused linears, Gemma's norms) this writer does not map yet: they
 * are refused rather than written as a llama file that would run wrong.
 */
export function ggufArchitecture(config: ModelConfig): "llama" | "qwen2" {
  switch (config.architecture) {
    case "LlamaForCausalLM":
    case "MistralForCausalLM":
      return "llama";
    case "Qwen2ForCausalLM":
      return "qwen2";
    default:
      throw new RangeError(
        `GGUF export supports Llama, Mistral and Qwen2 models, not ${config.architecture} yet; ` +
          "`deno task merge` writes the merged model as a transformers directory",
      );
  }
}

const u32 = (value: number): GgufMetadataValue => ({ type: "u32", value });
const f32 = (value: number): GgufMetadataValue => ({ type: "f32", value });

export function modelMetadata(
  config: ModelConfig,
  opts: { exportType: GgufExportType; name?: string },
): MetadataEntry[] {
  const arch = ggufArchitecture(config);
  const entries: MetadataEntry[] = [
    ["general.architecture", arch],
    ["general.type", "model"],
    ...(opts.name === undefined ? [] : [["general.name", opts.name] as MetadataEntry]),
    ["general.file_type", u32(FILE_TYPE[opts.exportType])],
    ["general.quantization_version", u32(2)],
    [`${arch}.vocab_size`, u32(config.vocabSize)],
    [`${arch}.context_length`, u32(config.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(config.hiddenSize)],
    [`${arch}.block_count`, u32(config.numHiddenLayers)],
    [`${arch}.feed_forward_length`, u32(config.intermediateSize)],
    [`${arch}.attention.head_count`, u32(config.numAttentionHeads)],
    [`${arch}.attention.head_count_kv`, u32(config.numKeyValueHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(config.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32(config.ropeTheta)],
    [`${arch}.rope.dimension_count`, u32(config.headDim)],
  ];
  if (config.headDim * config.numAttentionHeads !== config.hiddenSize) {
    // Only needed when the head size is not hidden / heads (Mistral Nemo and others).
    entries.push([`${arch}.attention.key_length`, u32(config.headDim)]);
    entries.push([`${arch}.attention.value_length`, u32(config.headDim)]);
  }
  if (config.ropeScaling?.type === "linear") {
    entries.push([`${arch}.rope.scaling.type`, "linear"]);
    entries.push([`${arch}.rope.scaling.factor`, f32(config.ropeScaling.factor)]);
  }
  return entries;
}

/** The GGUF value types of llama.cpp's tokenizer keys whose numbers we cannot type from the value alone. */
const NUMERIC_ARRAYS: Record<string, "f32" | "i32"> = {
  "tokenizer.ggml.scores": "f32",
  "tokenizer.ggml.token_type": "i32",
};

/**
 * The `tokenizer.*` entries of a GGUF file's metadata, typed for writing again: token ids and counts as
 * u32, scores f32, token types i32, strings, booleans and string arrays as they are. Keys whose type cannot
 * be told are returned in `skipped` (for a warning), not guessed.
 */
export function tokenizerMetadataFromGguf(
  metadata: Readonly<Record<string, GgufValue>>,
): { entries: MetadataEntry[]; skipped: string[] } {
  const entries: MetadataEntry[] = [];
  const skipped: string[] = [];
  for (const [key, value] of Object.entries(metadata)) {
    if (!key.startsWith("tokenizer.")) continue;
    if (typeof value === "string" || typeof value === "boolean") {
      entries.push([key, value]);
    } else if (typeof value === "number" || typeof value === "bigint") {
      const n = Number(value);
      if (Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff) entries.push([key, u32(n)]);
      else skipped.push(key);
    } else if (Array.isArray(value)) {
      const numeric = NUMERIC_ARRAYS[key];
      if (numeric !== undefined && value.every((v) => typeof v === "number")) {
        entries.push([key, { type: "array", itemType: numeric, values: value as number[] }]);
      } else if (value.every((v) => typeof v === "string")) {
        entries.push([key, { type: "array", itemType: "string", values: value as string[] }]);
      } else {
        skipped.push(key);
      }
    } else {
      skipped.push(key);
    }
  }
  return { entries, skipped };
}
