/**
 * Which linear modules of a Llama-family model an adapter config adapts, with each one's rank, alpha and
 * scale. The matching rules are PEFT's (`check_target_module_exists`, `get_pattern_key`), so an adapter
 * trained with PEFT resolves here to exactly the modules PEFT gave it, and ours load there unchanged.
 */
import { blockModules, linearShape, type ModelConfig, modulePath } from "../../nn/config.ts";
import { loraScale } from "../../lora/weights.ts";
import { FormatError } from "../../errors.ts";
import { type AdapterConfig, ALL_LINEAR, BLOCK_LINEAR_NAMES, pythonRegex } from "./config.ts";

/** A linear layer of the model: its module path and weight shape `[out, in]`. */
export interface ModuleShape {
  /** e.g. "model.layers.0.self_attn.q_proj", or "lm_head". */
  module: string;
  out: number;
  in: number;
}

/** A module the adapter changes: `y += scale · B(A(x))`, A `[r, in]`, B `[out, r]`. */
export interface LoraTarget extends ModuleShape {
  r: number;
  alpha: number;
  scale: number;
}

/** Every linear layer of a Llama-family model in module order, lm_head last. */
export function linearModules(config: ModelConfig): ModuleShape[] {
  const modules: ModuleShape[] = [];
  for (let layer = 0; layer < config.numHiddenLayers; layer++) {
    for (const m of blockModules(config)) {
      const [out, inFeatures] = linearShape(config, m);
      modules.push({ module: modulePath(layer, m), out, in: inFeatures });
    }
  }
  modules.push({ module: "lm_head", out: config.vocabSize, in: config.hiddenSize });
  return modules;
}

/**
 * The modules of `model` that `adapter` adapts, in module order; `file` names the config in errors.
 * A config that matches no module is an error (PEFT refuses it too).
 */
export function resolveTargets(
  model: ModelConfig,
  adapter: AdapterConfig,
  file = "adapter_config.json",
): LoraTarget[] {
  const modules = linearModules(model);
  const targets = modules.filter(({ module }) => isTargeted(adapter, module))
    .map((linear) => ({ ...linear, ...rankOf(adapter, linear.module) }));
  if (targets.length === 0) {
    const layers = adapter.layersToTransform === null
      ? ""
      : ` in layers ${JSON.stringify(adapter.layersToTransform)}`;
    throw new FormatError(
      file,
      `target_modules ${
        JSON.stringify(adapter.targetModules)
      }${layers} match no linear module of the model ` +
        `(it has model.layers.0-${model.numHiddenLayers - 1}.{${describeBlock(model)}} and lm_head)`,
    );
  }
  return targets;
}

/** The block's linears, compactly: "self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj". */
function describeBlock(model: ModelConfig): string {
  const byParent = new Map<string, string[]>();
  for (const m of blockModules(model)) {
    const parent = modulePath(0, m).split(".")[3];
    byParent.set(parent, [...byParent.get(parent) ?? [], m.replace(/_proj$/, "")]);
  }
  return [...byParent].map(([parent, names]) => `${parent}.{${names.join(",")}}_proj`).join(", ");
}

/** Whether the module named `module` is adapted (PEFT's `check_target_module_exists`). */
export function isTargeted(adapter: AdapterConfig, module: string): boolean {
  if (adapter.excludeModules !== null && matchesNames(adapter.excludeModules, module)) return false;
  const targets = adapter.targetModules;
  if (targets === ALL_LINEAR) {
    // PEFT expands the shorthand to the full names of every linear layer but the output head.
    return isBlockLinear(module) && layerAllowed(adapter, module);
  }
  if (typeof targets === "string") return fullMatch(targets, module);
  if (targets.includes(module)) return true;
  return matchesNames(targets, module) && layerAllowed(adapter, module);
}

/** The rank, alpha and scale of `module` after rank_pattern / alpha_pattern (PEFT's `get_pattern_key`). */
export function rankOf(adapter: AdapterConfig, module: string): { r: number; alpha: number; scale: number } {
  const r = patternValue(adapter.rankPattern, module) ?? adapter.r;
  const alpha = patternValue(adapter.alphaPattern, module) ?? adapter.loraAlpha;
  return { r, alpha, scale: loraScale(alpha, r, adapter.useRslora) };
}

/** A decoder-block linear of the Llama family, i.e. what "all-linear" selects. */
function isBlockLinear(module: string): boolean {
  const m = /^model\.layers\.\d+\.(?:self_attn|mlp)\.(\w+)$/.exec(module);
  return m !== null && BLOCK_LINEAR_NAMES.includes(m[1]);
}

/** A string is a regex over the whole name; a list matches a name exactly or as a dotted suffix. */
function matchesNames(names: readonly string[] | string, module: string): boolean {
  if (typeof names === "string") return fullMatch(names, module);
  return names.some((key) => module === key || module.endsWith(`.${key}`));
}

function fullMatch(pattern: string, module: string): boolean {
  return pythonRegex(pattern, (body) => `^(?:${body})$`).test(module);
}

/** layers_to_transform: the layer index is the first number after a `layers_pattern` (or any) segment. */
function layerAllowed(adapter: AdapterConfig, module: string): boolean {
  const allowed = adapter.layersToTransform;
  if (allowed === null || allowed.length === 0) return true;
  let index: string | undefined;
  if (adapter.layersPattern === null) {
    // Lazy, as in PEFT: the first numbered segment is the layer, not a nested index.
    index = /^.*?\.[^.]*\.(\d+)\./.exec(module)?.[1];
  } else {
    for (const pattern of adapter.layersPattern) {
      index = pythonRegex(pattern, (body) => `^(?:.*?\\.)?${body}\\.(\\d+)\\.`).exec(module)?.at(-1);
      if (index !== undefined) break;
    }
  }
  return index !== undefined && allowed.includes(Number(index));
}

/** The value of the first key matching the end of `module` at a dot boundary. */
function patternValue(patterns: Readonly<Record<string, number>>, module: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    if (pythonRegex(key, (body) => `^(.*\\.)?(${body})$`).test(module)) return value;
  }
  return undefined;
}
