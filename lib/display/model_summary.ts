/**
 * What a loaded model is and what it costs: shape, parameter count, bytes of NF4 weights (packed 4-bit codes
 * and their scales) and of the rest (bf16 embeddings/head, f32 norms), the LoRA adapters' trainable share,
 * and the process's resident memory. A displayable: a two-column table in a notebook, aligned text elsewhere.
 */
import { Nf4Weight } from "../../ffi/nf4.ts";
import type { Linear } from "../nn/linear.ts";
import { blockModules } from "../nn/config.ts";
import { blockLinear, type LlamaModel } from "../nn/llama.ts";
import type { LoadedModel } from "../pretrained/load_model.ts";
import type { LoraModel } from "../lora/model.ts";
import { formatBytes, formatCount, formatInt, formatPercent } from "./format.ts";
import { htmlTable, textTable } from "./html.ts";
import { DISPLAY, type Displayable, type MimeBundle } from "./jupyter.ts";

/** f32 values kept per trainable parameter while training: the value, its gradient, AdamW's two moments. */
const TRAINING_VALUES_PER_PARAMETER = 4;

export interface ModelFacts {
  /** The file or directory it was loaded from, when known. */
  source?: string;
  loadSeconds?: number;
  architecture: string;
  layers: number;
  hiddenSize: number;
  intermediateSize: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  tiedEmbeddings: boolean;
  /** Parameters of the base model (LoRA not included). */
  parameters: number;
  /** Block linears stored in NF4, and their bytes: packed 4-bit codes, and scales (double-quantized). */
  nf4Linears: number;
  nf4CodeBytes: number;
  nf4ScaleBytes: number;
  /** Every other weight: embeddings and LM head (bf16), norms and biases (f32), unquantized linears. */
  otherWeightBytes: number;
  weightBytes: number;
  lora?: {
    adapters: number;
    rank: number;
    alpha: number;
    targets: readonly string[];
    /** Trainable values, and their share of base + trainable (as PEFT counts it). */
    parameters: number;
    fraction: number;
    /** f32 value, gradient and two AdamW moments per trainable parameter. */
    trainingBytes: number;
  };
  /** Resident memory of the process when the summary was made. */
  rssBytes: number;
}

export interface ModelSummaryOptions {
  /** The adapters being trained on this model. */
  lora?: LoraModel;
  /** Resident bytes to report (default the process's, now). */
  rssBytes?: number;
}

/** The summary of a loaded model (`loadModel`'s result or the bare `LlamaModel`) and its adapters. */
export function modelSummary(loaded: LoadedModel | LlamaModel, opts: ModelSummaryOptions = {}): ModelSummary {
  const model = "model" in loaded ? loaded.model : loaded;
  const c = model.config;
  const w = model.weights;
  let parameters = w.embedTokens.rows * w.embedTokens.cols + w.norm.length;
  if (w.lmHead !== w.embedTokens) parameters += w.lmHead.rows * w.lmHead.cols;
  let [nf4Linears, nf4CodeBytes, nf4ScaleBytes] = [0, 0, 0];
  const count = (linear: Linear) => {
    parameters += linear.rows * linear.cols;
    if (linear instanceof Nf4Weight) {
      const codes = Math.ceil((linear.rows * linear.cols) / 2);
      nf4Linears++;
      nf4CodeBytes += codes;
      nf4ScaleBytes += linear.bytes - codes;
    }
  };
  for (const layer of w.layers) {
    const a = layer.attention;
    parameters += layer.inputNorm.length + layer.postAttentionNorm.length;
    parameters += (layer.attentionOutNorm?.length ?? 0) + (layer.mlpOutNorm?.length ?? 0);
    for (const v of [a.qBias, a.kBias, a.vBias, a.qNorm, a.kNorm]) parameters += v?.length ?? 0;
    for (const m of blockModules(model.config)) count(blockLinear(layer, m));
  }
  const weightBytes = model.weightBytes;
  const facts: ModelFacts = {
    source: "source" in loaded ? loaded.source : undefined,
    loadSeconds: "loadSeconds" in loaded ? loaded.loadSeconds : undefined,
    architecture: c.architecture,
    layers: c.numHiddenLayers,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    heads: c.numAttentionHeads,
    kvHeads: c.numKeyValueHeads,
    headDim: c.headDim,
    vocabSize: c.vocabSize,
    tiedEmbeddings: w.lmHead === w.embedTokens,
    parameters,
    nf4Linears,
    nf4CodeBytes,
    nf4ScaleBytes,
    otherWeightBytes: weightBytes - nf4CodeBytes - nf4ScaleBytes,
    weightBytes,
    rssBytes: opts.rssBytes ?? Deno.memoryUsage().rss,
  };
  const lora = opts.lora;
  if (lora) {
    if (lora.model !== model) throw new RangeError("modelSummary: the LoRA adapters belong to another model");
    const trainable = lora.parameterCount;
    facts.lora = {
      adapters: lora.adapters.size,
      rank: lora.config.rank,
      alpha: lora.config.alpha,
      targets: [...new Set([...lora.adapters.keys()].map((m) => m.slice(m.lastIndexOf(".") + 1)))],
      parameters: trainable,
      fraction: trainable / (parameters + trainable),
      trainingBytes: TRAINING_VALUES_PER_PARAMETER * 4 * trainable,
    };
  }
  return new ModelSummary(facts);
}

export class ModelSummary implements Displayable {
  constructor(readonly facts: ModelFacts) {}

  /** [property, value] pairs, in display order. */
  rows(): [string, string][] {
    const f = this.facts;
    const nf4 = f.nf4CodeBytes + f.nf4ScaleBytes;
    const rows: [string, string][] = [];
    if (f.source !== undefined) {
      const took = f.loadSeconds === undefined ? "" : ` (loaded in ${f.loadSeconds.toFixed(1)} s)`;
      rows.push(["source", f.source + took]);
    }
    rows.push(
      ["architecture", f.architecture],
      ["layers", String(f.layers)],
      ["hidden / intermediate size", `${f.hiddenSize} / ${f.intermediateSize}`],
      ["attention heads / kv heads", `${f.heads} / ${f.kvHeads} (head dim ${f.headDim})`],
      ["vocabulary", `${formatInt(f.vocabSize)}${f.tiedEmbeddings ? " (tied embeddings)" : ""}`],
      ["parameters", `${formatCount(f.parameters)} (${formatInt(f.parameters)})`],
      [
        "NF4 weights",
        `${formatBytes(nf4)} in ${f.nf4Linears} linears: codes ${formatBytes(f.nf4CodeBytes)}, ` +
        `scales ${formatBytes(f.nf4ScaleBytes)}`,
      ],
      ["other weights", `${formatBytes(f.otherWeightBytes)} (embeddings and LM head bf16, norms f32)`],
      ["weights in memory", formatBytes(f.weightBytes)],
    );
    const l = f.lora;
    if (l) {
      rows.push(
        ["LoRA adapters", `${l.adapters} (rank ${l.rank}, alpha ${l.alpha}) on ${l.targets.join(", ")}`],
        ["trainable parameters", `${formatInt(l.parameters)} (${formatPercent(l.fraction)} of all)`],
        ["training state", `${formatBytes(l.trainingBytes)} (f32 values, gradients, AdamW moments)`],
      );
    }
    rows.push(["process memory (RSS)", formatBytes(f.rssBytes)]);
    return rows;
  }

  [DISPLAY](): MimeBundle {
    const rows = this.rows();
    const header = ["property", "value"];
    return {
      "text/plain": textTable(header, rows),
      "text/html": htmlTable(header, rows, { caption: "Model summary" }),
    };
  }
}
