/**
 * Writes a LoRA adapter as PEFT's `save_pretrained` does: `adapter_config.json` and
 * `adapter_model.safetensors` with tensors `base_model.model.<module>.lora_{A,B}.weight` (A `[r, in]`,
 * B `[out, r]`) and metadata {"format": "pt"}, so `PeftModel.from_pretrained` loads it as is.
 * The layers are checked against the config first (a mismatch would load silently wrong in PEFT), and
 * both files are written under temporary names and renamed at the end.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../../nn/config.ts";
import { f32ToBf16 } from "../dtype.ts";
import { FormatError } from "../../errors.ts";
import { type TensorToWrite, writeSafetensors } from "../safetensors/writer.ts";
import { type AdapterConfig, adapterConfigJson } from "./config.ts";
import type { LoraWeights } from "../../lora/weights.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, peftTensorName } from "./read.ts";
import { isTargeted, rankOf, resolveTargets } from "./targets.ts";

export interface WritePeftOptions {
  /** Element type of the saved matrices (default F32; BF16 halves the file, rounding to nearest even). */
  dtype?: "F32" | "BF16";
  /** When given, the layers must be exactly the modules the config targets in this model, shapes included. */
  model?: ModelConfig;
}

/** Suffix of files being written; they are renamed into place only once both are complete. */
const PARTIAL = ".partial";

export function writePeftAdapter(
  dir: string,
  config: AdapterConfig,
  layers: ReadonlyMap<string, LoraWeights>,
  options: WritePeftOptions = {},
): void {
  const dtype = options.dtype ?? "F32";
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const tensors = checkLayers(weightsPath, config, layers, options.model)
    .flatMap((layer) => layerTensors(layer, dtype));
  mkdirSync(dir, { recursive: true });
  try {
    writeSafetensors(weightsPath + PARTIAL, tensors, { format: "pt" });
    // "all-linear" is saved as the names of the linears it adapted (Phi-3's fused ones differ from Llama's).
    const names = [...new Set([...layers.keys()].map((module) => module.split(".").at(-1)!))];
    writeFileSync(configPath + PARTIAL, adapterConfigJson(config, names.length > 0 ? names : undefined));
    renameSync(weightsPath + PARTIAL, weightsPath);
    renameSync(configPath + PARTIAL, configPath);
  } finally {
    rmSync(weightsPath + PARTIAL, { force: true });
    rmSync(configPath + PARTIAL, { force: true });
  }
}

/** A and B under PEFT's names; BF16 is converted only when the writer reaches the tensor. */
function layerTensors(
  { module, weights, inFeatures, out }: CheckedLayer,
  dtype: "F32" | "BF16",
): TensorToWrite[] {
  const encode = (data: Float32Array) => dtype === "F32" ? data : () => f32ToBf16(data);
  return [
    { name: peftTensorName(module, "A"), dtype, shape: [weights.r, inFeatures], data: encode(weights.A) },
    { name: peftTensorName(module, "B"), dtype, shape: [out, weights.r], data: encode(weights.B) },
  ];
}

interface CheckedLayer {
  module: string;
  weights: LoraWeights;
  inFeatures: number;
  out: number;
}

/** Each layer must be one the config targets, with the config's rank and scale and whole matrices. */
function checkLayers(
  path: string,
  config: AdapterConfig,
  layers: ReadonlyMap<string, LoraWeights>,
  model: ModelConfig | undefined,
): CheckedLayer[] {
  if (layers.size === 0) throw new FormatError(path, "no layers to write");
  const checked: CheckedLayer[] = [];
  for (const [module, weights] of layers) {
    const fail = (problem: string): never => {
      throw new FormatError(path, `${module}: ${problem}`);
    };
    if (!isTargeted(config, module)) {
      fail(`not targeted by target_modules ${JSON.stringify(config.targetModules)}; PEFT would not load it`);
    }
    const { r, scale } = rankOf(config, module);
    if (weights.r !== r) fail(`rank ${weights.r}, but the config gives this module r=${r}`);
    if (Math.abs(weights.scale - scale) > 1e-6 * Math.abs(scale)) {
      fail(`scale ${weights.scale}, but the config gives this module ${scale}`);
    }
    const inFeatures = weights.A.length / r;
    const out = weights.B.length / r;
    if (!Number.isInteger(inFeatures) || inFeatures === 0) {
      fail(`A has ${weights.A.length} values, not [${r}, in]`);
    }
    if (!Number.isInteger(out) || out === 0) fail(`B has ${weights.B.length} values, not [out, ${r}]`);
    checked.push({ module, weights, inFeatures, out });
  }
  if (model !== undefined) checkAgainstModel(path, config, checked, model);
  return checked;
}

function checkAgainstModel(
  path: string,
  config: AdapterConfig,
  layers: CheckedLayer[],
  model: ModelConfig,
): void {
  const targets = new Map(resolveTargets(model, config).map((t) => [t.module, t]));
  for (const { module, inFeatures, out } of layers) {
    const target = targets.get(module);
    if (target === undefined) throw new FormatError(path, `${module}: not a linear module of the model`);
    if (target.in !== inFeatures || target.out !== out) {
      throw new FormatError(
        path,
        `${module}: A·B maps ${inFeatures} → ${out} features, the model's layer ${target.in} → ${target.out}`,
      );
    }
    targets.delete(module);
  }
  if (targets.size > 0) {
    throw new FormatError(
      path,
      `the config targets modules with no layer given: ${[...targets.keys()].join(", ")}`,
    );
  }
}
