/**
 * Reads a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`) for a given
 * model, checking it against that model before anything is applied: every targeted module must have
 * both matrices, every matrix the shape the model and the config imply, and the file nothing else.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../../nn/config.ts";
import { FormatError } from "../../errors.ts";
import type { LoraWeights } from "../../lora/weights.ts";
import { SafetensorsReader } from "../safetensors/reader.ts";
import { type AdapterConfig, parseAdapterConfigText } from "./config.ts";
import { type LoraTarget, resolveTargets } from "./targets.ts";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

export interface PeftAdapter {
  config: AdapterConfig;
  /** Keyed by module path ("model.layers.0.self_attn.q_proj"), in module order. */
  layers: Map<string, LoraWeights>;
}

/** `base_model.model.<module>.lora_{A,B}[.<adapter name>].weight` */
const TENSOR_NAME = /^base_model\.model\.(.+)\.lora_(A|B)(?:\.([^.]+))?\.weight$/;

/** PEFT's tensor name of one matrix of `module`, as `save_pretrained` writes it. */
export function peftTensorName(module: string, matrix: "A" | "B"): string {
  return `base_model.model.${module}.lora_${matrix}.weight`;
}

export function readPeftAdapter(dir: string, model: ModelConfig): PeftAdapter {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const config = parseAdapterConfigText(readText(configPath), configPath);
  const targets = resolveTargets(model, config, configPath);

  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(weightsPath)) {
    const pickle = existsSync(join(dir, "adapter_model.bin"));
    throw new FormatError(
      weightsPath,
      pickle
        ? "not found; only adapter_model.bin (a pickle) is there, which is not read: save the adapter " +
          "with safe_serialization=True"
        : "not found",
    );
  }
  using reader = SafetensorsReader.open(weightsPath);
  const names = tensorNames(reader, weightsPath);
  const layers = new Map<string, LoraWeights>();
  for (const target of targets) {
    const A = readMatrix(reader, names, target, "A", [target.r, target.in]);
    const B = readMatrix(reader, names, target, "B", [target.out, target.r]);
    layers.set(target.module, { A, B, r: target.r, scale: target.scale });
  }
  const targeted = new Set(targets.map((t) => t.module));
  const extra = [...names.values()].filter(({ module }) => !targeted.has(module)).map(({ name }) => name);
  if (extra.length > 0) {
    throw new FormatError(
      weightsPath,
      `${extra.length} tensor(s) the config does not target or we cannot apply: ${
        extra.slice(0, 5).join(", ")
      }` +
        (extra.length > 5 ? ", ..." : ""),
      extra[0],
    );
  }
  return { config, layers };
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new FormatError(path, `cannot read the adapter config (${(error as Error).message})`);
  }
}

/** The file's tensors keyed by "<module>.<A|B>"; any other name is kept under its own name (an extra). */
function tensorNames(
  reader: SafetensorsReader,
  path: string,
): Map<string, { name: string; module: string }> {
  const byKey = new Map<string, { name: string; module: string }>();
  const adapterNames = new Set<string>();
  for (const name of reader.names()) {
    const m = TENSOR_NAME.exec(name);
    if (m === null) {
      byKey.set(name, { name, module: name });
      continue;
    }
    if (m[3] !== undefined) adapterNames.add(m[3]);
    const key = `${m[1]}.${m[2]}`;
    if (byKey.has(key)) throw new FormatError(path, `holds lora_${m[2]} of ${m[1]} twice`, name);
    byKey.set(key, { name, module: m[1] });
  }
  if (adapterNames.size > 1) {
    throw new FormatError(path, `holds several adapters (${[...adapterNames].join(", ")}); expected one`);
  }
  return byKey;
}

function readMatrix(
  reader: SafetensorsReader,
  names: Map<string, { name: string; module: string }>,
  target: LoraTarget,
  matrix: "A" | "B",
  expected: number[],
): Float32Array {
  const entry = names.get(`${target.module}.${matrix}`);
  const name = entry?.name ?? peftTensorName(target.module, matrix);
  if (entry === undefined) {
    throw new FormatError(reader.path, `missing: the config targets ${target.module} (r=${target.r})`, name);
  }
  const { dtype, shape } = reader.info(name);
  if (dtype !== "F32" && dtype !== "BF16" && dtype !== "F16") {
    throw new FormatError(reader.path, `expected dtype F32, BF16 or F16, found ${dtype}`, name);
  }
  if (shape.length !== 2 || shape[0] !== expected[0] || shape[1] !== expected[1]) {
    const dims = matrix === "A"
      ? `[r, in] = [${target.r}, ${target.in}]`
      : `[out, r] = [${target.out}, ${target.r}]`;
    throw new FormatError(
      reader.path,
      `expected shape ${JSON.stringify(expected)} (${dims} for ${target.module} of this model), ` +
        `found ${JSON.stringify(shape)}`,
      name,
    );
  }
  return reader.readTensorF32(name).data;
}
