/**
 * Exports a base model with its LoRA adapters merged in as one GGUF file that llama.cpp (and Ollama) run:
 * f16, q8_0, q4_0 or q4_k_m (see export/gguf_types.ts for the per-tensor types), with llama.cpp's metadata
 * and the tokenizer.
 *
 * The merge uses the best weights there are: the source's own (re-read from its files, one tensor at a
 * time — never the NF4 copy training used, whose rounding would swallow the small fine-tuned delta), plus
 * `s·B·A`, then quantized once to the target type. When the source is itself quantized (e.g. a Q4_1 GGUF),
 * its weights are dequantized first; the result is then quantized twice over, and a warning says so.
 *
 * Memory: one tensor in f32 plus its encoded bytes at a time; the file is streamed to `path.tmp` and renamed
 * at the end, so an existing file at `path` is replaced only by a complete one (and only with `overwrite`).
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ggmlQuantize } from "../../ffi/ggml.ts";
import { FormatError } from "../errors.ts";
import { GgufFile } from "../io/gguf/file.ts";
import { hfToGgufName, permuteRows, ropePermutationHeads } from "../io/gguf/names.ts";
import { type GgufTensorToWrite, writeGguf } from "../io/gguf/writer.ts";
import { addLoraDelta } from "../lora/merge.ts";
import { checkLoraShape, type LoraWeights } from "../lora/weights.ts";
import {
  blockModules,
  configFromGguf,
  linearShape,
  loadModelConfig,
  type ModelConfig,
  modulePath,
  ropeInvFreq,
} from "../nn/config.ts";
import {
  ggufArchitecture,
  type MetadataEntry,
  modelMetadata,
  tokenizerMetadataFromGguf,
} from "./export/gguf_metadata.ts";
import { type GgufExportType, type TensorType, tensorType } from "./export/gguf_types.ts";
import { hfTokenizerMetadata } from "./export/gguf_vocab.ts";
import { GgufSource, SafetensorsSource, type WeightSource } from "./weight_source.ts";

export interface ExportGgufOptions {
  /** The base model: a `.gguf` file or an HF model directory. Its own weights are read again. */
  source: string;
  /** LoRA weights by module path ("model.layers.0.self_attn.q_proj"); none: the base model is converted. */
  adapters?: ReadonlyMap<string, LoraWeights>;
  type: GgufExportType;
  /** Replace an existing file at the output path (default false: refuse). */
  overwrite?: boolean;
  /** `general.name`. */
  name?: string;
  /** Called after each tensor is written. */
  onTensor?: (done: number, total: number, name: string, type: TensorType) => void;
}

export interface ExportedGguf {
  path: string;
  /** Size of the file in bytes. */
  bytes: number;
  config: ModelConfig;
  /** How many tensors got each ggml type. */
  tensorTypes: Record<string, number>;
  /** The storage types of the source's block linears (e.g. ["Q4_1"] or ["BF16"]). */
  sourceTypes: string[];
  /** The chat template written (null when the source has none). */
  chatTemplate: string | null;
  /** Text of the end-of-sequence / end-of-turn tokens, for stop sequences. */
  stopTokens: string[];
  /** Things the user should know (a quantized source, no tokenizer, …). */
  warnings: string[];
}

/** Source types that hold the original weights without loss. */
const FULL_PRECISION = new Set(["F32", "F16", "BF16", "F64"]);

export async function exportGguf(path: string, opts: ExportGgufOptions): Promise<ExportedGguf> {
  checkTarget(path, opts);
  const src = await openSource(opts.source);
  try {
    const { source, config, tokenizer, sourceTypes } = src;
    const adapters = opts.adapters ?? new Map<string, LoraWeights>();
    checkAdapters(config, adapters, opts.source);
    const warnings = [...tokenizer.warnings];
    const lossy = sourceTypes.filter((t) => !FULL_PRECISION.has(t));
    if (lossy.length > 0) {
      warnings.push(
        `the source ${opts.source} stores its weights quantized (${
          lossy.join(", ")
        }): the adapter is added ` +
          `to those weights dequantized, then the sum is quantized again to ${opts.type}. The fine-tune ` +
          `survives (it is not snapped back as with NF4), but the export carries the source's quantization ` +
          `error too; export from the original bf16/f32 checkpoint for the most faithful file.`,
      );
    }
    if (tokenizer.entries.length === 0) {
      warnings.push(
        `${opts.source} has no tokenizer this export can convert: llama.cpp will refuse the file`,
      );
    }
    const tensors = plan(source, config, adapters, opts.type, src.ropeFreqs);
    const tensorTypes: Record<string, number> = {};
    for (const t of tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
    let done = 0;
    const counted = tensors.map((t) => ({
      ...t,
      data: () => {
        const data = typeof t.data === "function" ? t.data() : t.data;
        opts.onTensor?.(++done, tensors.length, t.name, t.type as TensorType);
        return data;
      },
    }));
    const metadata = [
      ...modelMetadata(config, { exportType: opts.type, name: opts.name }),
      ...tokenizer.entries,
    ];
    mkdirSync(dirname(path), { recursive: true });
    writeGguf(path, metadata, counted);
    return {
      path,
      bytes: statSync(path).size,
      config,
      tensorTypes,
      sourceTypes,
      chatTemplate: tokenizer.chatTemplate,
      stopTokens: tokenizer.stopTokens,
      warnings,
    };
  } finally {
    src.source.close();
  }
}

function checkTarget(path: string, opts: ExportGgufOptions): void {
  if (resolve(path) === resolve(opts.source)) {
    throw new Error(`${path} is the source model; choose another output file`);
  }
  if (!existsSync(path)) return;
  if (statSync(path).isDirectory()) throw new Error(`${path} exists and is a directory`);
  if (!opts.overwrite) {
    throw new Error(
      `${path} exists; refusing to overwrite it (overwrite: true / --overwrite replaces it)`,
    );
  }
}

interface OpenedSource {
  source: WeightSource;
  config: ModelConfig;
  tokenizer: TokenizerMetadata;
  sourceTypes: string[];
  /** llama3 frequency factors to write as rope_freqs.weight, when the model has them. */
  ropeFreqs?: Float32Array;
}

export interface TokenizerMetadata {
  entries: MetadataEntry[];
  chatTemplate: string | null;
  stopTokens: string[];
  warnings: string[];
}

async function openSource(path: string): Promise<OpenedSource> {
  if (!existsSync(path)) throw new FormatError(path, "no such file or directory");
  if (statSync(path).isDirectory()) {
    const config = await loadModelConfig(join(path, "config.json"));
    const source = SafetensorsSource.open(path);
    try {
      const sourceTypes = new Set<string>();
      for (let l = 0; l < config.numHiddenLayers; l++) {
        for (const m of blockModules(config)) {
          const module = modulePath(l, m);
          if (source.bnb4bit(module)) {
            throw new FormatError(
              path,
              "is stored in bitsandbytes 4-bit: merging into it would bake NF4's rounding into the export; " +
                "export from the original (bf16/f32) checkpoint",
              `${module}.weight`,
            );
          }
          if (source.has(`${module}.weight`)) sourceTypes.add(source.files.info(`${module}.weight`).dtype);
        }
      }
      const tokenizer = await hfTokenizerMetadata(path, config);
      return { source, config, tokenizer, sourceTypes: [...sourceTypes], ropeFreqs: llama3Factors(config) };
    } catch (error) {
      source.close();
      throw error;
    }
  }
  const file = await GgufFile.open(path);
  const source = new GgufSource(file);
  try {
    const config = configFromGguf(file.metadata, file.names(), path);
    const sourceTypes = new Set<string>();
    for (const name of file.names()) {
      if (/^blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(name)) {
        sourceTypes.add(file.info(name).type.name);
      }
    }
    const { entries, skipped } = tokenizerMetadataFromGguf(file.metadata);
    const tokens = file.metadata["tokenizer.ggml.tokens"];
    const stopTokens = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
      .map((key) => file.metadata[key])
      .filter((id) => typeof id === "number" && Array.isArray(tokens) && typeof tokens[id] === "string")
      .map((id) => (tokens as string[])[id as number]);
    const chatTemplate = file.metadata["tokenizer.chat_template"];
    const tokenizer: TokenizerMetadata = {
      entries,
      chatTemplate: typeof chatTemplate === "string" ? chatTemplate : null,
      stopTokens: [...new Set(stopTokens)],
      warnings: skipped.length === 0
        ? []
        : [`tokenizer keys left out (their type is unclear): ${skipped.join(", ")}`],
    };
    const ropeFreqs = file.has("rope_freqs.weight") ? file.readTensorF32("rope_freqs.weight") : undefined;
    return { source, config, tokenizer, sourceTypes: [...sourceTypes], ropeFreqs };
  } catch (error) {
    source.close();
    throw error;
  }
}

/** Llama 3.1's scaling as the per-frequency divisors llama.cpp reads from `rope_freqs.weight`. */
function llama3Factors(config: ModelConfig): Float32Array | undefined {
  if (config.ropeScaling?.type !== "llama3") return undefined;
  const plain = ropeInvFreq({ ...config, ropeScaling: null });
  const scaled = ropeInvFreq(config);
  return plain.map((v, i) => v / scaled[i]);
}

function checkAdapters(
  config: ModelConfig,
  adapters: ReadonlyMap<string, LoraWeights>,
  source: string,
): void {
  const known = new Map<string, [number, number]>();
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const m of blockModules(config)) known.set(modulePath(l, m), linearShape(config, m));
  }
  for (const [module, lora] of adapters) {
    const shape = known.get(module);
    if (shape === undefined) {
      throw new FormatError(
        source,
        `the adapter has weights for ${module}, which is not a linear of this model`,
      );
    }
    checkLoraShape(lora, shape[0], shape[1], module);
  }
}

/** Every tensor of the export, in llama.cpp's order, each with a producer that merges and encodes it. */
function plan(
  source: WeightSource,
  config: ModelConfig,
  adapters: ReadonlyMap<string, LoraWeights>,
  exportType: GgufExportType,
  ropeFreqs: Float32Array | undefined,
): GgufTensorToWrite[] {
  const arch = ggufArchitecture(config);
  const tied = config.tieWordEmbeddings || !source.has("lm_head.weight");
  const tensors: GgufTensorToWrite[] = [];
  const add = (hfName: string, opts: { isOutput?: boolean; lora?: LoraWeights } = {}) => {
    if (!source.has(hfName)) {
      throw new FormatError(source.path, `missing (the ${config.architecture} config needs it)`, hfName);
    }
    const name = hfToGgufName(hfName);
    if (name === undefined) throw new FormatError(source.path, "has no GGUF name", hfName);
    const shape = source.shape(hfName);
    const type = tensorType(exportType, {
      name,
      shape,
      isOutput: opts.isOutput ?? false,
      numLayers: config.numHiddenLayers,
    });
    tensors.push({
      name,
      shape,
      type,
      data: () => encode(source, hfName, name, shape, type, config, arch, opts.lora),
    });
  };

  add("model.embed_tokens.weight", { isOutput: tied });
  if (ropeFreqs !== undefined) {
    tensors.push({ name: "rope_freqs.weight", shape: [ropeFreqs.length], type: "F32", data: ropeFreqs });
  }
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`);
    for (const m of blockModules(config)) {
      const module = modulePath(l, m);
      add(`${module}.weight`, { lora: adapters.get(module) });
      if (config.qkvBias && (m === "q_proj" || m === "k_proj" || m === "v_proj")) add(`${module}.bias`);
      if (m === "o_proj") add(`${p}.post_attention_layernorm.weight`);
    }
  }
  add("model.norm.weight");
  if (!tied) add("lm_head.weight", { isOutput: true });
  return tensors;
}

/** Reads one tensor from the source, adds its LoRA delta, puts llama's q/k rows in GGUF order, encodes it. */
function encode(
  source: WeightSource,
  hfName: string,
  name: string,
  shape: number[],
  type: TensorType,
  config: ModelConfig,
  arch: string,
  lora: LoraWeights | undefined,
): ArrayBufferView {
  let w = source.readF32(hfName);
  if (lora !== undefined) addLoraDelta(w, shape[0], shape[1], lora);
  const heads = ropePermutationHeads(arch, name, config.numAttentionHeads, config.numKeyValueHeads);
  if (heads !== undefined) w = permuteRows(w, shape[0], heads);
  if (type === "F32") return w;
  try {
    return ggmlQuantize(type, w);
  } catch (error) {
    throw new FormatError(source.path, `cannot encode as ${type}: ${(error as Error).message}`, hfName);
  } finally {
    // Free the f32 copy now: the GC collects large external buffers late.
    if (w.buffer instanceof ArrayBuffer && w.byteOffset === 0 && w.byteLength === w.buffer.byteLength) {
      w.buffer.transfer(0);
    }
  }
}

/** The config of a source model (GGUF file or HF directory), to read an adapter against before exporting. */
export async function readSourceConfig(path: string): Promise<ModelConfig> {
  if (!existsSync(path)) throw new FormatError(path, "no such file or directory");
  if (statSync(path).isDirectory()) return await loadModelConfig(join(path, "config.json"));
  using file = await GgufFile.open(path);
  return configFromGguf(file.metadata, file.names(), path);
}
