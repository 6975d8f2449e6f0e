/**
 * Exports a model with its LoRA adapters merged into the weights as a transformers model directory
 * (`AutoModelForCausalLM.from_pretrained(dir)` loads it; so does our own `loadModel`): config.json,
 * bf16 safetensors (sharded past 2 GB), the tokenizer files and generation_config.json.
 *
 * The directory appears whole or not at all: everything is written into `<dir>.tmp` and renamed at the end.
 * A non-empty `dir` is refused unless `overwrite` is set.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { ModelConfig } from "../nn/config.ts";
import type { LlamaModel } from "../nn/llama.ts";
import { FormatError } from "../errors.ts";
import { generationConfigJson, hfConfigJson } from "./export/hf_config.ts";
import { mergedTensors } from "./export/merged_tensors.ts";
import { DEFAULT_MAX_SHARD_BYTES, writeShardedSafetensors } from "../io/safetensors/sharded_writer.ts";
import { copyHfSideFiles, ggufTokenizerFiles } from "./export/tokenizer_files.ts";
import { GgufFile } from "../io/gguf/file.ts";
import type { LoraWeights } from "../lora/weights.ts";

/** Where the base model was loaded from (a `ResolvedModel` fits). */
export type ExportSource =
  /** config.json and tokenizer files are taken from this directory. */
  | { kind: "hf-dir"; dir: string }
  /** config.json and tokenizer files are built from the file's metadata (read from `path` if not given). */
  | { kind: "gguf"; path: string; metadata?: object };

export interface ExportMergedOptions {
  /** The base model (NF4 or dense block linears), left unchanged. */
  model: LlamaModel;
  /** Default: `model.config`. */
  config?: ModelConfig;
  /** LoRA weights by module path ("model.layers.0.self_attn.q_proj"); none: the base model is exported. */
  adapters?: ReadonlyMap<string, LoraWeights>;
  source: ExportSource;
  /** Replace a non-empty `dir` (default false: refuse). */
  overwrite?: boolean;
  /** Largest safetensors file before sharding (default 2 GB). */
  maxShardBytes?: number;
  /** Called as each tensor is handed to the writer (merged and rounded). */
  onTensor?: (done: number, total: number, name: string) => void;
}

export interface ExportedModel {
  dir: string;
  /** File names in `dir`. */
  files: string[];
  /** Bytes of tensor data written. */
  tensorBytes: number;
  tensors: number;
}

export async function exportMergedModel(dir: string, opts: ExportMergedOptions): Promise<ExportedModel> {
  const config = opts.config ?? opts.model.config;
  checkTarget(dir, opts);
  // Everything that can be refused is refused before a byte is written.
  const tensors = mergedTensors(opts.model, opts.adapters);
  const tied = opts.model.weights.lmHead === opts.model.weights.embedTokens;
  const source = opts.source;
  const base = source.kind === "hf-dir" ? readJsonObject(join(source.dir, "config.json")) : undefined;
  const configJson = hfConfigJson(config, { base, tied });
  // A GGUF source has no files to copy: its tokenizer files and generation config are made here.
  const ggufFiles: Record<string, string> = source.kind === "gguf"
    ? {
      ...ggufTokenizerFiles(source.metadata ?? await readGgufMetadata(source.path), {
        file: source.path,
        modelMaxLength: config.maxPositionEmbeddings,
      }),
      "generation_config.json": jsonText(generationConfigJson(config)),
    }
    : {};

  let done = 0;
  const counted = tensors.map((t) => ({
    ...t,
    data: () => {
      const data = typeof t.data === "function" ? t.data() : t.data;
      opts.onTensor?.(++done, tensors.length, t.name);
      return data;
    },
  }));

  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeFileSync(join(tmp, "config.json"), jsonText(configJson));
    const written = writeShardedSafetensors(tmp, counted, opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    const files = ["config.json", ...written.files];
    if (source.kind === "hf-dir") files.push(...copyHfSideFiles(source.dir, tmp));
    for (const [name, text] of Object.entries(ggufFiles)) {
      writeFileSync(join(tmp, name), text);
      files.push(name);
    }
    replaceDir(tmp, dir);
    return { dir, files, tensorBytes: written.totalBytes, tensors: tensors.length };
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
}

function checkTarget(dir: string, opts: ExportMergedOptions): void {
  if (opts.source.kind === "hf-dir" && resolve(opts.source.dir) === resolve(dir)) {
    throw new Error(`export: ${dir} is the source model's directory; choose another output directory`);
  }
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new Error(`export: ${dir} exists and is not a directory`);
  if (readdirSync(dir).length > 0 && !opts.overwrite) {
    throw new Error(
      `export: ${dir} is not empty; refusing to overwrite it (overwrite: true / --overwrite replaces it)`,
    );
  }
}

/** Puts the finished `tmp` at `dir`, replacing what was there (checked by `checkTarget`). */
function replaceDir(tmp: string, dir: string): void {
  mkdirSync(dirname(dir), { recursive: true });
  if (!existsSync(dir)) {
    renameSync(tmp, dir);
    return;
  }
  // Move the old directory aside first, so `dir` is never a mix of old and new files.
  const old = `${dir}.old`;
  rmSync(old, { recursive: true, force: true });
  renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

async function readGgufMetadata(path: string): Promise<object> {
  using file = await GgufFile.open(path);
  return file.metadata;
}

function jsonText(json: unknown): string {
  return JSON.stringify(json, null, 2) + "\n";
}

function readJsonObject(path: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new FormatError(path, `cannot read it as JSON (${(error as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(path, "expected a JSON object");
  }
  return json as Record<string, unknown>;
}
