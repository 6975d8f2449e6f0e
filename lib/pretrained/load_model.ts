/**
 * Loads a Llama-family model from an HF directory (safetensors, plain or bnb-4bit) or a GGUF file into the
 * NF4 model: one tensor at a time (read → quantize → drop the f32 copy), so peak memory stays near the
 * quantized model plus one tensor. Pre-quantized bnb-4bit linears are imported as they are.
 */
import { existsSync, statSync } from "node:fs";
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
} from "../nn/config.ts";
import { type DecoderLayerWeights, LlamaModel } from "../nn/llama.ts";
import { DenseLinear, type Linear } from "../nn/linear.ts";
import { GgufSource, SafetensorsSource, type WeightSource } from "./weight_source.ts";

export interface LoadedModel {
  model: LlamaModel;
  tokenizer: Tokenizer;
  config: ModelConfig;
  /** The file or directory loaded. */
  source: string;
  /** Seconds spent loading. */
  loadSeconds: number;
}

export interface LoadOptions {
  /** Progress bar on stderr (default: true). */
  progress?: boolean;
  /** "nf4" (default): block linears in NF4 with double quant; "none": keep them f32 (reference checks). */
  quantize?: Quantization;
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
  try {
    const model = buildModel(source, config, { progress: opts.progress ?? true, quantize: opts.quantize });
    return { model, tokenizer, config, source: path, loadSeconds: (performance.now() - t0) / 1000 };
  } finally {
    source.close();
  }
}

/** Reads every weight of `config`'s architecture from `source`. */
export function buildModel(
  source: WeightSource,
  config: ModelConfig,
  opts: { progress?: boolean; quantize?: Quantization } = {},
): LlamaModel {
  const bar = opts.progress
    ? new cliProgress.SingleBar({
      format: "loading [{bar}] {value}/{total} layers | {duration}s",
      stream: process.stderr,
    })
    : undefined;
  bar?.start(config.numHiddenLayers, 0);
  const created: Linear[] = [];
  try {
    const reader = new LayerReader(source, config, created, opts.quantize ?? "nf4");
    const embedTokens = reader.bf16("model.embed_tokens.weight", [config.vocabSize, config.hiddenSize]);
    const layers: DecoderLayerWeights[] = [];
    for (let l = 0; l < config.numHiddenLayers; l++) {
      layers.push(reader.layer(l));
      bar?.increment();
    }
    const norm = reader.f32("model.norm.weight", [config.hiddenSize]);
    const tied = config.tieWordEmbeddings || !source.has("lm_head.weight");
    const lmHead = tied ? embedTokens : reader.bf16("lm_head.weight", [config.vocabSize, config.hiddenSize]);
    return new LlamaModel(config, { embedTokens, layers, norm, lmHead });
  } catch (error) {
    for (const w of created) w.close();
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
    return {
      inputNorm: this.f32(`${p}.input_layernorm.weight`, [c.hiddenSize]),
      attention: {
        q: linear("q_proj"),
        k: linear("k_proj"),
        v: linear("v_proj"),
        o: linear("o_proj"),
        qBias: c.qkvBias ? this.f32(`${p}.self_attn.q_proj.bias`, [qOut]) : undefined,
        kBias: c.qkvBias ? this.f32(`${p}.self_attn.k_proj.bias`, [kvOut]) : undefined,
        vBias: c.qkvBias ? this.f32(`${p}.self_attn.v_proj.bias`, [kvOut]) : undefined,
      },
      postAttentionNorm: this.f32(`${p}.post_attention_layernorm.weight`, [c.hiddenSize]),
      mlp: {
        gate: linear("gate_proj"),
        up: linear("up_proj"),
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

  bf16(name: string, shape: number[]): Bf16Matrix {
    this.checkShape(name, shape);
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
      return Nf4Weight.fromParts({ shape: linear.shape, packed: linear.packed, absmax: linear.absmax });
    }
    if (!same(linear.nestedQuantMap, this.tables.dynamicMap)) {
      throw new FormatError(
        this.source.path,
        "nested_quant_map is not bitsandbytes' dynamic map",
        `${linear.name}.weight`,
      );
    }
    return Nf4Weight.fromParts({
      shape: linear.shape,
      packed: linear.packed,
      absmaxCodes: linear.absmax,
      nestedAbsmax: linear.nestedAbsmax,
      offset: linear.offset,
    });
  }
}

/**
 * Frees a temporary f32 copy at once (detaches its buffer) instead of leaving it to the garbage collector,
 * which collects large external buffers late: otherwise ~70 MB of read-and-quantized copies of SmolLM2
 * still count in RSS when training starts. Only whole buffers (a fresh read); views are left alone.
 */
function release(a: Float32Array): void {
  const b = a.buffer;
  if (b instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === b.byteLength) b.transfer(0);
}
