/**
 * Loads a Llama-family model from an HF directory (safetensors, plain or bnb-4bit) or a GGUF file into the
 * NF4 model: one tensor at a time (read → quantize → drop the f32 copy), so peak memory stays near the
 * quantized model plus one tensor. Pre-quantized bnb-4bit linears are imported as they are.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import cliProgress from "cli-progress";
import { Bf16Matrix } from "../../ffi/bf16.ts";
import { nf4Tables, Nf4Weight } from "../../ffi/nf4.ts";
import type { Bnb4bitLinear } from "../io/bnb4bit.ts";
import { f32ToBf16 } from "../io/dtype.ts";
import { FormatError } from "../errors.ts";
import { Tokenizer } from "../text/tokenizer.ts";
import { tokenizerFromGguf } from "../text/gguf_tokenizer.ts";
import {
  configFromGguf,
  type LinearModule,
  linearShape,
  loadModelConfig,
  type ModelConfig,
  modulePath,
  queryScale,
} from "../nn/config.ts";
import { type DecoderLayerWeights, LlamaModel } from "../nn/llama.ts";
import { DenseLinear, type Linear } from "../nn/linear.ts";
import { GgufSource, SafetensorsSource, type WeightSource } from "./weight_source.ts";
import type { DiskBf16Rows } from "./disk_embeddings.ts";
import {
  findNf4Cache,
  type Nf4CacheOptions,
  nf4CacheSupports,
  openNf4Cache,
  removeNf4Cache,
  writeNf4Cache,
} from "./nf4_cache.ts";

export interface LoadedModel {
  model: LlamaModel;
  tokenizer: Tokenizer;
  config: ModelConfig;
  /** The file or directory loaded. */
  source: string;
  /** Seconds spent loading. */
  loadSeconds: number;
  /** What the NF4 cache did: "read" (weights came from it), "written", or undefined (not used). */
  nf4Cache?: "read" | "written";
}

export interface LoadOptions {
  /** Progress bar on stderr (default: true). */
  progress?: boolean;
  /** "nf4" (default): block linears in NF4 with double quant; "none": keep them f32 (reference checks). */
  quantize?: Quantization;
  /**
   * Reuse (or write) the NF4 cache of this model (see nf4_cache.ts); default: no cache. Only with NF4
   * quantization and sources that are not stored in 4 bits already.
   */
  nf4Cache?: Nf4CacheOptions;
  /**
   * Leave an untied bf16 embedding table in its file and read the rows each batch needs (saves its size in
   * RSS: 262 MB for a 7B model); default false. Safetensors sources only; others load it into memory.
   */
  embeddingsOnDisk?: boolean;
}

export type Quantization = "nf4" | "none";

/** Loads a model from a local HF directory or `.gguf` file. */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  if (!existsSync(path)) throw new FormatError(path, "no such file or directory");
  const isDir = statSync(path).isDirectory();
  let source: WeightSource;
  let config: ModelConfig;
  let tokenizer: Tokenizer;
  if (isDir) {
    config = await loadModelConfig(join(path, "config.json"));
    tokenizer = await Tokenizer.fromDir(path);
    source = SafetensorsSource.open(path);
  } else {
    const gguf = await GgufSource.open(path);
    source = gguf;
    config = configFromGguf(gguf.file.metadata, gguf.file.names(), path);
    tokenizer = tokenizerFromGguf(gguf.file.metadata, path);
  }
  const progress = opts.progress ?? true;
  let cache = opts.nf4Cache && (opts.quantize ?? "nf4") === "nf4" && !storedIn4Bits(source)
    ? opts.nf4Cache
    : undefined;
  const log = cache?.log ?? ((line: string) => console.error(line));
  if (cache && !nf4CacheSupports(config)) {
    log(`NF4 cache: not available for ${config.architecture} yet; quantizing at load`);
    cache = undefined;
  }
  const done = (model: LlamaModel, nf4Cache?: LoadedModel["nf4Cache"]): LoadedModel => ({
    model,
    tokenizer,
    config,
    source: path,
    loadSeconds: (performance.now() - t0) / 1000,
    nf4Cache,
  });
  try {
    if (cache) {
      const lookup = findNf4Cache(cache.root, path);
      if (lookup.kind === "hit") {
        try {
          using cached = openNf4Cache(lookup);
          return done(
            buildModel(cached, config, { progress, embeddingsOnDisk: opts.embeddingsOnDisk }),
            "read",
          );
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          log(`NF4 cache ${lookup.dir} refused (${error.message}); quantizing the model again`);
          removeNf4Cache(lookup.dir);
        }
      } else if (existsSync(lookup.dir)) {
        log(`NF4 cache ${lookup.dir} is stale (${lookup.reason}); quantizing the model again`);
        removeNf4Cache(lookup.dir);
      }
    }
    const model = buildModel(source, config, {
      progress,
      quantize: opts.quantize,
      embeddingsOnDisk: opts.embeddingsOnDisk,
    });
    if (!cache) return done(model);
    try {
      const dir = writeNf4Cache(
        cache.root,
        path,
        model,
        isDir ? readJson(join(path, "config.json")) : undefined,
      );
      log(`NF4 cache written: ${dir}`);
      return done(model, "written");
    } catch (error) {
      log(`NF4 cache not written (${(error as Error).message}); the model loaded all the same`);
      return done(model);
    }
  } finally {
    source.close();
  }
}

/** Whether the source's linears are bnb-4bit already (then loading is as fast as a cache would make it). */
function storedIn4Bits(source: WeightSource): boolean {
  return source instanceof SafetensorsSource && source.holdsBnb4bit;
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** Reads every weight of `config`'s architecture from `source`. */
export function buildModel(
  source: WeightSource,
  config: ModelConfig,
  opts: { progress?: boolean; quantize?: Quantization; embeddingsOnDisk?: boolean } = {},
): LlamaModel {
  const bar = opts.progress
    ? new cliProgress.SingleBar({
      format: "loading [{bar}] {value}/{total} layers | {duration}s",
      stream: process.stderr,
    })
    : undefined;
  bar?.start(config.numHiddenLayers, 0);
  const created: Linear[] = [];
  let onDisk: DiskBf16Rows | undefined;
  try {
    const reader = new LayerReader(source, config, created, opts.quantize ?? "nf4");
    const tied = config.tieWordEmbeddings || !source.has("lm_head.weight");
    const embedShape = [config.vocabSize, config.hiddenSize];
    onDisk = opts.embeddingsOnDisk && !tied
      ? reader.diskBf16("model.embed_tokens.weight", embedShape)
      : undefined;
    const embedTokens = onDisk ?? reader.bf16("model.embed_tokens.weight", embedShape);
    const layers: DecoderLayerWeights[] = [];
    for (let l = 0; l < config.numHiddenLayers; l++) {
      layers.push(reader.layer(l));
      bar?.increment();
    }
    const norm = reader.norm("model.norm.weight", [config.hiddenSize]);
    const lmHead = tied
      ? embedTokens as Bf16Matrix
      : reader.bf16("lm_head.weight", [config.vocabSize, config.hiddenSize]);
    return new LlamaModel(config, { embedTokens, layers, norm, lmHead });
  } catch (error) {
    for (const w of created) w.close();
    onDisk?.close();
    throw error;
  } finally {
    bar?.stop();
  }
}

class LayerReader {
  private readonly tables = nf4Tables();

  constructor(
    private readonly source: WeightSource,
    private readonly config: ModelConfig,
    private readonly created: Linear[],
    private readonly quantize: Quantization,
  ) {}

  layer(l: number): DecoderLayerWeights {
    const c = this.config;
    const p = `model.layers.${l}`;
    const qOut = c.numAttentionHeads * c.headDim;
    const kvOut = c.numKeyValueHeads * c.headDim;
    const linear = (m: LinearModule) => this.linear(modulePath(l, m), ...linearShape(c, m));
    const fused = c.fusedLinears;
    const norm = (name: string) => this.norm(`${p}.${name}.weight`, [c.hiddenSize]);
    // The attention kernels scale scores by 1/√headDim; another scale (Gemma's query_pre_attn_scalar) is
    // folded into the q norm, which multiplies every q feature just before.
    const qScale = queryScale(c);
    if (qScale !== 1 && !c.qkNorm) {
      throw new FormatError(
        this.source.path,
        `an attention scale other than 1/√head_dim needs q norms to carry it`,
      );
    }
    const sandwich = c.sandwichNorms;
    return {
      inputNorm: norm("input_layernorm"),
      attentionOutNorm: sandwich ? norm("post_attention_layernorm") : undefined,
      attention: {
        ...(fused
          ? { qkv: linear("qkv_proj") }
          : { q: linear("q_proj"), k: linear("k_proj"), v: linear("v_proj") }),
        o: linear("o_proj"),
        qBias: c.qkvBias ? this.f32(`${p}.self_attn.q_proj.bias`, [qOut]) : undefined,
        kBias: c.qkvBias ? this.f32(`${p}.self_attn.k_proj.bias`, [kvOut]) : undefined,
        vBias: c.qkvBias ? this.f32(`${p}.self_attn.v_proj.bias`, [kvOut]) : undefined,
        qNorm: c.qkNorm ? this.norm(`${p}.self_attn.q_norm.weight`, [c.headDim], qScale) : undefined,
        kNorm: c.qkNorm ? this.norm(`${p}.self_attn.k_norm.weight`, [c.headDim]) : undefined,
      },
      postAttentionNorm: norm(sandwich ? "pre_feedforward_layernorm" : "post_attention_layernorm"),
      mlpOutNorm: sandwich ? norm("post_feedforward_layernorm") : undefined,
      mlp: {
        ...(fused
          ? { gateUp: linear("gate_up_proj") }
          : { gate: linear("gate_proj"), up: linear("up_proj") }),
        down: linear("down_proj"),
      },
    };
  }

  private checkShape(name: string, expected: number[]): void {
    if (!this.source.has(name)) {
      throw new FormatError(
        this.source.path,
        `missing (the ${this.config.architecture} config needs it)`,
        name,
      );
    }
    const shape = this.source.shape(name);
    if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
      throw new FormatError(this.source.path, `expected shape [${expected}], found [${shape}]`, name);
    }
  }

  f32(name: string, shape: number[]): Float32Array {
    this.checkShape(name, shape);
    return this.source.readF32(name);
  }

  diskBf16(name: string, shape: number[]): DiskBf16Rows | undefined {
    this.checkShape(name, shape);
    return this.source.diskBf16(name, shape[0], shape[1]);
  }

  /** An RMSNorm weight as the kernel's scale: `offset + w` (Gemma stores w around 0), times `scale`. */
  norm(name: string, shape: number[], scale = 1): Float32Array {
    const w = this.f32(name, shape);
    const offset = this.config.normWeightOffset;
    if (offset === 0 && scale === 1) return w;
    return w.map((v) => Math.fround(Math.fround(offset + v) * scale));
  }

  bf16(name: string, shape: number[]): Bf16Matrix {
    this.checkShape(name, shape);
    // Stored as bf16: taken as it is (the f32 copy of a 7B model's embeddings would be a 524 MB transient).
    const bits = this.source.readBf16(name);
    if (bits) return new Bf16Matrix(bits, shape[0], shape[1]);
    const w = this.source.readF32(name);
    const bf16 = new Bf16Matrix(f32ToBf16(w), shape[0], shape[1]);
    release(w);
    return bf16;
  }

  /** A block linear as NF4: imported from bnb-4bit parts, else quantized from the stored weights. */
  linear(module: string, out: number, inDim: number): Linear {
    const name = `${module}.weight`;
    this.checkShape(name, [out, inDim]);
    const bnb = this.source.bnb4bit(module);
    let weight: Linear;
    if (bnb) {
      if (this.quantize === "none") {
        throw new FormatError(this.source.path, "is stored in 4 bits; it cannot be loaded unquantized", name);
      }
      weight = this.fromBnb(bnb);
    } else {
      const w = this.source.readF32(name);
      if (this.quantize === "none") {
        weight = new DenseLinear(w, out, inDim);
      } else {
        weight = Nf4Weight.quantize(w, out, inDim);
        release(w);
      }
    }
    this.created.push(weight);
    return weight;
  }

  private fromBnb(linear: Bnb4bitLinear): Nf4Weight {
    const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => v === b[i]);
    if (!same(linear.quantMap, this.tables.code)) {
      throw new FormatError(this.source.path, "quant_map is not the NF4 code book", `${linear.name}.weight`);
    }
    if (!linear.doubleQuant) {
      const weight = Nf4Weight.fromParts({
        shape: linear.shape,
        packed: linear.packed,
        absmax: linear.absmax,
      });
      release(linear.packed);
      return weight;
    }
    if (!same(linear.nestedQuantMap, this.tables.dynamicMap)) {
      throw new FormatError(
        this.source.path,
        "nested_quant_map is not bitsandbytes' dynamic map",
        `${linear.name}.weight`,
      );
    }
    const weight = Nf4Weight.fromParts({
      shape: linear.shape,
      packed: linear.packed,
      absmaxCodes: linear.absmax,
      nestedAbsmax: linear.nestedAbsmax,
      offset: linear.offset,
    });
    // The kernel library holds its own copy: the read buffers go at once, not when V8 gets round to them.
    release(linear.packed);
    release(linear.absmax);
    return weight;
  }
}

/**
 * Frees a temporary f32 copy at once (detaches its buffer) instead of leaving it to the garbage collector,
 * which collects large external buffers late: otherwise ~70 MB of read-and-quantized copies of SmolLM2
 * still count in RSS when training starts. Only whole buffers (a fresh read); views are left alone.
 */
export function release(a: Float32Array | Uint8Array | Uint16Array): void {
  const b = a.buffer;
  if (b instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === b.byteLength) b.transfer(0);
}
