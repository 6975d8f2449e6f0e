/**
 * Exports a LoRA adapter as a llama.cpp GGUF adapter (`llama-cli --lora file.gguf`):
 * general.type "adapter", adapter.type "lora", adapter.lora.alpha, and per adapted weight the tensors
 * `<gguf weight name>.lora_a` (A `[r, in]`) and `.lora_b` (B `[out, r]`).
 *
 * Two differences from PEFT are handled here:
 * - llama.cpp scales every module by `alpha / r` with one file-wide alpha. We store
 *   `alpha · √r` for rsLoRA (so alpha / r = alpha / √r), and fold any other per-module scale
 *   (rank_pattern, alpha_pattern) into that module's B.
 * - llama-architecture GGUFs keep q/k rows permuted for llama.cpp's RoPE, so B of q_proj / k_proj gets
 *   the same row permutation (the rows of B are the output rows of the weight).
 */
import type { Architecture, ModelConfig } from "../../nn/config.ts";
import { f32ToBf16, f32ToF16 } from "../dtype.ts";
import { FormatError } from "../../errors.ts";
import { hfToGgufName, permuteRows, ropePermutationHeads } from "../gguf/names.ts";
import type { AdapterConfig } from "./config.ts";
import { type GgufMetadataValue, type GgufTensorToWrite, writeGguf } from "../gguf/writer.ts";
import type { LoraWeights } from "../../lora/weights.ts";
import { linearModules } from "./targets.ts";

export interface GgufLoraOptions {
  model: ModelConfig;
  config: AdapterConfig;
  /** Keyed by HF module path, as `readPeftAdapter` returns them. */
  layers: ReadonlyMap<string, LoraWeights>;
  /** Element type of the matrices (default F32). */
  dtype?: "F32" | "F16" | "BF16";
  /** `general.architecture`; default: "qwen2" / "qwen3" for Qwen2 / Qwen3, "llama" for Llama and Mistral (as llama.cpp converts them). */
  architecture?: string;
  /** `general.name`, when given. */
  name?: string;
}

/** The llama.cpp architecture name of each family converted under its own name (the rest as "llama"). */
const GGUF_ARCHITECTURE_OF: Partial<Record<Architecture, string>> = {
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
  Gemma3ForCausalLM: "gemma3",
};

/** A scale within this relative distance of llama.cpp's alpha / r is taken as equal (B written unchanged). */
const SAME_SCALE = 1e-9;

export function writeGgufLora(path: string, options: GgufLoraOptions): void {
  const { model, config, layers, dtype = "F32" } = options;
  if (model.fusedLinears) {
    // llama.cpp names Phi-3's fused linears by architecture (gate_up_proj is its ffn_up); not mapped here.
    throw new FormatError(
      path,
      `llama.cpp GGUF LoRA export is not supported for ${model.architecture} (fused qkv_proj / gate_up_proj); save the PEFT adapter instead`,
    );
  }
  const architecture = options.architecture ?? GGUF_ARCHITECTURE_OF[model.architecture] ?? "llama";
  const alpha = config.useRslora ? config.loraAlpha * Math.sqrt(config.r) : config.loraAlpha;
  const shapes = new Map(linearModules(model).map((m) => [m.module, m]));
  const tensors: GgufTensorToWrite[] = [];
  for (const [module, { A, B, r, scale }] of layers) {
    const linear = shapes.get(module);
    const weight = hfToGgufName(`${module}.weight`);
    if (linear === undefined || weight === undefined) {
      throw new FormatError(path, `${module} is not a linear module of this ${model.architecture} model`);
    }
    if (A.length !== r * linear.in || B.length !== linear.out * r) {
      throw new FormatError(
        path,
        `${module}: A has ${A.length} values and B ${B.length}, expected [${r}, ${linear.in}] and ` +
          `[${linear.out}, ${r}]`,
      );
    }
    const factor = scale / (alpha / r);
    let b = Math.abs(factor - 1) <= SAME_SCALE ? B : B.map((v) => v * factor);
    const heads = ropePermutationHeads(architecture, weight, model.numAttentionHeads, model.numKeyValueHeads);
    if (heads !== undefined) b = permuteRows(b, linear.out, heads);
    tensors.push(encode(`${weight}.lora_a`, [r, linear.in], A, dtype));
    tensors.push(encode(`${weight}.lora_b`, [linear.out, r], b, dtype));
  }
  const metadata: Array<[string, GgufMetadataValue]> = [
    ["general.architecture", architecture],
    ["general.type", "adapter"],
    ...(options.name === undefined ? [] : [["general.name", options.name] as [string, string]]),
    ["adapter.type", "lora"],
    ["adapter.lora.alpha", { type: "f32", value: alpha }],
  ];
  writeGguf(path, metadata, tensors);
}

function encode(
  name: string,
  shape: number[],
  data: Float32Array,
  dtype: "F32" | "F16" | "BF16",
): GgufTensorToWrite {
  const encoded = dtype === "F32" ? data : dtype === "F16" ? f32ToF16(data) : f32ToBf16(data);
  return { name, shape, type: dtype, data: encoded };
}
