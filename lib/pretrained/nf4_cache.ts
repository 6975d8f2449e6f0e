/**
 * The NF4 cache: after a model is loaded and quantized, its NF4 weights are written as a bnb-4bit safetensors
 * directory (the layout transformers + bitsandbytes save, so transformers can load it too), and the next load
 * of the same source reads that instead of quantizing again (a 7B model: seconds instead of a minute).
 *
 * - Where: `<root>/<source name>-<checksum of its absolute path>/` (root: `QLORA_CACHE/nf4` by default), so a
 *   model directory is never written to.
 * - Identity: the source's files (name, size, modification time) and this module's format version, recorded
 *   in `qlora-nf4-cache.json`. Any difference invalidates the cache: it is removed and written again.
 * - Integrity: the manifest holds a checksum of every tensor; a tensor that does not match is refused when
 *   read, and the model is loaded from the source instead (the damaged cache is replaced).
 * - Atomicity: the directory is written under a temporary name and renamed into place when complete.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import process from "node:process";
import { checksum64 } from "../../ffi/checksum.ts";
import { type Nf4Parts, nf4Tables, Nf4Weight } from "../../ffi/nf4.ts";
import { writeFileAtomically } from "../io/atomic_file.ts";
import { bnb4bitConfigText, bnb4bitQuantizationConfig, bnb4bitTensors } from "../io/bnb4bit_writer.ts";
import { bytesOf, f32ToBf16, halfToF32 } from "../io/dtype.ts";
import { ChecksummedSafetensors } from "../io/safetensors/checksummed.ts";
import { writeShardedSafetensors } from "../io/safetensors/sharded_writer.ts";
import type { TensorToWrite } from "../io/safetensors/writer.ts";
import { blockModules, type ModelConfig, modulePath } from "../nn/config.ts";
import { blockLinear, type LlamaModel } from "../nn/llama.ts";
import { hfConfigJson } from "./export/hf_config.ts";
import { SafetensorsSource } from "./weight_source.ts";

/** Bumped when what the cache holds or how it is named changes: older caches are then rewritten. */
export const NF4_CACHE_VERSION = 1;
export const MANIFEST_FILE = "qlora-nf4-cache.json";

export interface Nf4CacheOptions {
  /** The folder holding one cache directory per source model. */
  root: string;
  /** Where notes go (cache written, reused, refused); default stderr. */
  log?: (line: string) => void;
}

/** One file the model was loaded from. */
export interface SourceFile {
  name: string;
  size: number;
  mtimeMs: number;
}

export interface Nf4CacheManifest {
  version: number;
  /** Absolute path of the source (file or directory). */
  source: string;
  files: SourceFile[];
  /** Tensor name → checksum64 of its stored bytes. */
  checksums: Record<string, string>;
}

/**
 * Architectures whose weights the cache writes in full (separate q/k/v/o and gate/up/down, optional q/k/v
 * biases, plain RMSNorm weights). Others (fused linears, per-head norms, Gemma's offset norms) load without it.
 */
const CACHED_ARCHITECTURES: readonly string[] = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
];

export function nf4CacheSupports(config: ModelConfig): boolean {
  return CACHED_ARCHITECTURES.includes(config.architecture) && (config.normWeightOffset ?? 0) === 0;
}

/** The cache directory of the model at `source`. */
export function nf4CacheDir(root: string, source: string): string {
  const absolute = resolve(source);
  const name = basename(absolute).replace(/[^A-Za-z0-9._-]/g, "_") || "model";
  return join(root, `${name}-${checksum64(new TextEncoder().encode(absolute))}`);
}

/** The files whose contents make up the model at `source` (a GGUF file, or an HF directory's weights + config). */
export function sourceFiles(source: string): SourceFile[] {
  const describe = (path: string, name: string): SourceFile => {
    const s = statSync(path);
    return { name, size: s.size, mtimeMs: s.mtimeMs };
  };
  if (!statSync(source).isDirectory()) return [describe(source, basename(source))];
  return readdirSync(source)
    .filter((name) =>
      name.endsWith(".safetensors") || name === "model.safetensors.index.json" || name === "config.json"
    )
    .sort()
    .map((name) => describe(join(source, name), name));
}

export type CacheLookup =
  | { kind: "hit"; dir: string; manifest: Nf4CacheManifest }
  | { kind: "miss"; dir: string; reason: string };

/** Whether a cache for `source` exists and was made from the files `source` holds now. */
export function findNf4Cache(root: string, source: string): CacheLookup {
  const dir = nf4CacheDir(root, source);
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) return { kind: "miss", dir, reason: "no cache yet" };
  let manifest: Nf4CacheManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  } catch (error) {
    return { kind: "miss", dir, reason: `unreadable manifest (${(error as Error).message})` };
  }
  if (manifest.version !== NF4_CACHE_VERSION) {
    return { kind: "miss", dir, reason: `cache format ${manifest.version}, expected ${NF4_CACHE_VERSION}` };
  }
  if (manifest.source !== resolve(source)) {
    return { kind: "miss", dir, reason: `made from ${manifest.source}` };
  }
  const changed = describeChange(manifest.files, sourceFiles(source));
  if (changed) return { kind: "miss", dir, reason: `the source changed (${changed})` };
  return { kind: "hit", dir, manifest };
}

function describeChange(before: SourceFile[], now: SourceFile[]): string | undefined {
  const old = new Map(before.map((f) => [f.name, f]));
  for (const f of now) {
    const o = old.get(f.name);
    if (!o) return `${f.name} is new`;
    if (o.size !== f.size) return `${f.name}: ${o.size} → ${f.size} bytes`;
    if (o.mtimeMs !== f.mtimeMs) return `${f.name} was modified`;
    old.delete(f.name);
  }
  const gone = [...old.keys()][0];
  return gone === undefined ? undefined : `${gone} is gone`;
}

/** The cached weights as a source for `buildModel`; every tensor is checked against its checksum when read. */
export function openNf4Cache(hit: Extract<CacheLookup, { kind: "hit" }>): SafetensorsSource {
  return new SafetensorsSource(ChecksummedSafetensors.open(hit.dir, hit.manifest.checksums));
}

/** Removes a cache directory (a stale or damaged one). */
export function removeNf4Cache(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Writes `model`'s weights (NF4 block linears, bf16 embeddings and LM head, f32 norms and biases) as the cache
 * of `source`. `sourceConfig` is the source's config.json when it has one (kept, plus quantization_config).
 * Returns the directory, or throws (the caller decides whether a failed write matters).
 */
export function writeNf4Cache(
  root: string,
  source: string,
  model: LlamaModel,
  sourceConfig?: Record<string, unknown>,
): string {
  const dir = nf4CacheDir(root, source);
  const files = sourceFiles(source); // before writing: a source changed meanwhile then fails the next lookup
  mkdirSync(root, { recursive: true });
  removeAbandoned(root, basename(dir));
  const temporary = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(temporary);
  try {
    const checksums: Record<string, string> = {};
    writeShardedSafetensors(temporary, cacheTensors(model, checksums));
    const config = hfConfigJson(model.config, { base: sourceConfig, tied: isTied(model) });
    config.quantization_config = bnb4bitQuantizationConfig("bfloat16");
    writeFileAtomically(
      join(temporary, "config.json"),
      (write) => write(utf8(bnb4bitConfigText(config))),
    );
    const manifest: Nf4CacheManifest = {
      version: NF4_CACHE_VERSION,
      source: resolve(source),
      files,
      checksums,
    };
    writeFileAtomically(
      join(temporary, MANIFEST_FILE),
      (write) => write(utf8(JSON.stringify(manifest, null, 1))),
    );
    removeNf4Cache(dir);
    renameSync(temporary, dir);
  } catch (error) {
    rmSync(temporary, { recursive: true, force: true });
    // Another process put the same cache in place first: theirs serves as well as ours.
    if (existsSync(join(dir, MANIFEST_FILE))) return dir;
    throw error;
  }
  return dir;
}

/** Temporary directories of writers that were killed (their process is gone). */
function removeAbandoned(root: string, name: string): void {
  for (const entry of readdirSync(root)) {
    const pid = entry.startsWith(`${name}.tmp-`) ? Number(entry.slice(name.length + 5).split("-")[0]) : NaN;
    if (Number.isSafeInteger(pid) && pid !== process.pid && !existsSync(`/proc/${pid}`)) {
      rmSync(join(root, entry), { recursive: true, force: true });
    }
  }
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function isTied(model: LlamaModel): boolean {
  return model.weights.lmHead === model.weights.embedTokens;
}

/**
 * The model's tensors in HF names, each produced only when written and its checksum recorded then. Each
 * NF4 weight is exported twice — once now for its small parts (the quant state's offset goes into the file
 * header), once when its codes are written — so at most one weight's codes exist outside the kernel library.
 */
function cacheTensors(model: LlamaModel, checksums: Record<string, string>): TensorToWrite[] {
  const c: ModelConfig = model.config;
  const w = model.weights;
  const tables = nf4Tables();
  let previous: ArrayBufferView | undefined;
  const recorded = (tensor: TensorToWrite): TensorToWrite => ({
    ...tensor,
    data: () => {
      // The writer is done with the previous tensor: free it now (V8 frees big external buffers late).
      if (previous) detach(previous);
      const data = typeof tensor.data === "function" ? tensor.data() : tensor.data;
      checksums[tensor.name] = checksum64(bytesOf(data));
      previous = typeof tensor.data === "function" ? data : undefined;
      return data;
    },
  });
  // Norms and biases as bf16 when that is exact (a bf16 checkpoint's), so transformers computes in one dtype;
  // else as f32, so the cache still holds exactly what was loaded.
  const f32 = (name: string, data: Float32Array): TensorToWrite => {
    const bf16 = f32ToBf16(data);
    const exact = halfToF32("BF16", bf16).every((v, i) => Object.is(v, data[i]));
    return exact
      ? { name, dtype: "BF16", shape: [data.length], data: bf16 }
      : { name, dtype: "F32", shape: [data.length], data };
  };
  const tensors: TensorToWrite[] = [
    {
      name: "model.embed_tokens.weight",
      dtype: "BF16",
      shape: [c.vocabSize, c.hiddenSize],
      data: w.embedTokens.bits,
    },
  ];
  for (const [l, layer] of w.layers.entries()) {
    const p = `model.layers.${l}`;
    tensors.push(f32(`${p}.input_layernorm.weight`, layer.inputNorm));
    tensors.push(f32(`${p}.post_attention_layernorm.weight`, layer.postAttentionNorm));
    const a = layer.attention;
    if (a.qBias) tensors.push(f32(`${p}.self_attn.q_proj.bias`, a.qBias));
    if (a.kBias) tensors.push(f32(`${p}.self_attn.k_proj.bias`, a.kBias));
    if (a.vBias) tensors.push(f32(`${p}.self_attn.v_proj.bias`, a.vBias));
    for (const m of blockModules(c)) {
      const linear = blockLinear(layer, m);
      if (!(linear instanceof Nf4Weight) || !linear.doubleQuant) {
        throw new Error(`${modulePath(l, m)}: only NF4 weights with double quantization can be cached`);
      }
      const small = linear.toParts();
      detach(small.packed);
      tensors.push(...bnb4bitTensors({
        module: modulePath(l, m),
        shape: [linear.rows, linear.cols],
        dtype: "bfloat16",
        offset: small.offset!,
        tables,
        parts: once(small, () => linear.toParts()),
      }));
    }
  }
  tensors.push(f32("model.norm.weight", w.norm));
  if (!isTied(model)) {
    tensors.push({
      name: "lm_head.weight",
      dtype: "BF16",
      shape: [c.vocabSize, c.hiddenSize],
      data: w.lmHead.bits,
    });
  }
  return tensors.map(recorded);
}

/**
 * The parts for the writer: the small ones (block scale codes, nested scales) from the first export, the
 * packed codes from a fresh export when they are asked for.
 */
function once(small: Nf4Parts, exportAll: () => Nf4Parts): () => Nf4Parts {
  return () => ({
    ...small,
    get packed() {
      const all = exportAll();
      if (all.absmaxCodes) detach(all.absmaxCodes);
      if (all.nestedAbsmax) detach(all.nestedAbsmax);
      return all.packed;
    },
  });
}

function detach(view: ArrayBufferView): void {
  const b = view.buffer;
  if (b instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === b.byteLength) b.transfer(0);
}
