/**
 * PEFT's `adapter_config.json` for LoRA: parsed into a typed `AdapterConfig`, and written back with the
 * keys PEFT expects. Only plain LoRA on linear layers is accepted; every PEFT feature that would change
 * what the adapter computes (DoRA, biases, modules_to_save, …) is rejected by name, so an adapter is never
 * applied half-understood. Keys we do not know are ignored: PEFT adds new ones every release.
 */
import { z } from "zod";
import { LINEAR_MODULES } from "../../nn/config.ts";
import { FormatError } from "../../errors.ts";

/** The value of `target_modules` that means "every linear layer but the output head". */
export const ALL_LINEAR = "all-linear";

export interface AdapterConfig {
  /** "CAUSAL_LM" for everything we make; null when the file leaves it out. */
  taskType: string | null;
  baseModelNameOrPath: string | null;
  /** The hub revision of the base model, when the file records one. */
  revision: string | null;
  /** Default rank of every adapted module. */
  r: number;
  /** Default alpha; the update is scaled by alpha / r (alpha / √r with rsLoRA). */
  loraAlpha: number;
  loraDropout: number;
  /**
   * A list: module names or name suffixes ("q_proj", "self_attn.q_proj", "model.layers.0.mlp.up_proj");
   * `ALL_LINEAR`; or any other string: a regex that must match the whole module name.
   */
  targetModules: readonly string[] | string;
  /** Modules left out even when targeted, matched like `targetModules`; null for none. */
  excludeModules: readonly string[] | string | null;
  /** Only these decoder layers are adapted (list targets only); null for all. */
  layersToTransform: readonly number[] | null;
  /** Names of the module list that holds the layers ("layers"); null lets PEFT's default rule find it. */
  layersPattern: readonly string[] | null;
  /** Rank-stabilised LoRA: scale alpha / √r instead of alpha / r. */
  useRslora: boolean;
  /** Per-module ranks, keyed by a regex matched against the end of the module name (first match wins). */
  rankPattern: Readonly<Record<string, number>>;
  /** Per-module alphas, keyed like `rankPattern`. */
  alphaPattern: Readonly<Record<string, number>>;
}

/** The LoRA targets PEFT picks for Llama, Mistral and Qwen2 when a config names none. */
const PEFT_DEFAULT_TARGETS = ["q_proj", "v_proj"];
/** What `ALL_LINEAR` stands for in a Llama-family model with separate projections (PEFT leaves out lm_head), sorted. */
export const LLAMA_LINEAR_NAMES: readonly string[] = [
  "down_proj",
  "gate_proj",
  "k_proj",
  "o_proj",
  "q_proj",
  "up_proj",
  "v_proj",
];
/** Every block linear name of the families we run (Phi-3's fused `qkv_proj`, `gate_up_proj` included), sorted. */
export const BLOCK_LINEAR_NAMES: readonly string[] = [...LINEAR_MODULES].sort();

/** A config with PEFT's defaults for everything not given (`r` 8, alpha 8, q/v projections, no dropout). */
export function createAdapterConfig(options: Partial<AdapterConfig> = {}): AdapterConfig {
  return {
    taskType: "CAUSAL_LM",
    baseModelNameOrPath: null,
    revision: null,
    r: 8,
    loraAlpha: 8,
    loraDropout: 0,
    targetModules: PEFT_DEFAULT_TARGETS,
    excludeModules: null,
    layersToTransform: null,
    layersPattern: null,
    useRslora: false,
    rankPattern: {},
    alphaPattern: {},
    ...options,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading

const positiveInt = z.number({ error: "a positive integer" }).int({ error: "a positive integer" })
  .positive({ error: "a positive integer" });
const layerIndex = z.number({ error: "a layer index" }).int({ error: "a layer index" })
  .nonnegative({ error: "a layer index" });
const positiveNumber = z.number({ error: "a positive number" }).positive({ error: "a positive number" });
const names = z.union([z.array(z.string()), z.string()], { error: "a list of module names or a string" });

const schema = z.object({
  task_type: z.string({ error: "a string" }).nullish(),
  base_model_name_or_path: z.string({ error: "a string" }).nullish(),
  revision: z.string({ error: "a string" }).nullish(),
  r: positiveInt,
  lora_alpha: positiveNumber,
  lora_dropout: z.number({ error: "a number in [0, 1)" }).min(0).lt(1).optional(),
  target_modules: names.nullish(),
  exclude_modules: names.nullish(),
  layers_to_transform: z.union([layerIndex, z.array(layerIndex)], { error: "a layer index or a list" })
    .nullish(),
  layers_pattern: names.nullish(),
  bias: z.string({ error: "a string" }).optional(),
  fan_in_fan_out: z.boolean({ error: "true or false" }).optional(),
  use_rslora: z.boolean({ error: "true or false" }).optional(),
  use_dora: z.boolean({ error: "true or false" }).optional(),
  rank_pattern: z.record(z.string(), positiveInt, { error: "an object of positive integers" }).nullish(),
  alpha_pattern: z.record(z.string(), positiveNumber, { error: "an object of positive numbers" }).nullish(),
  modules_to_save: z.array(z.string(), { error: "a list of module names" }).nullish(),
});

/**
 * Settings that change what a LoRA adapter computes, which we do not implement: present and not at its
 * "off" value means the adapter cannot be applied faithfully.
 */
const UNSUPPORTED: ReadonlyArray<{ key: string; off: (value: unknown) => boolean; what: string }> = [
  { key: "use_dora", off: (v) => v !== true, what: "DoRA (weight-decomposed LoRA) adapters" },
  { key: "lora_bias", off: (v) => v !== true, what: "LoRA biases (lora_bias: true)" },
  { key: "use_qalora", off: (v) => v !== true, what: "QA-LoRA (use_qalora: true)" },
  { key: "target_parameters", off: isEmpty, what: "adapters on parameters (target_parameters)" },
  { key: "trainable_token_indices", off: isEmpty, what: "trainable tokens (trainable_token_indices)" },
  { key: "layer_replication", off: isEmpty, what: "layer replication (layer_replication)" },
  { key: "alora_invocation_tokens", off: isEmpty, what: "activated LoRA (alora_invocation_tokens)" },
];

/** Reads the text of an `adapter_config.json`; `file` names it in errors. */
export function parseAdapterConfigText(text: string, file: string): AdapterConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FormatError(file, `not valid JSON (${(error as Error).message})`);
  }
  return parseAdapterConfig(json, file);
}

/** Validates the parsed contents of an `adapter_config.json`; `file` names it in errors. */
export function parseAdapterConfig(json: unknown, file: string): AdapterConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(file, `expected a JSON object, found ${show(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const fail = (problem: string): never => {
    throw new FormatError(file, problem);
  };
  // peft_type first: an IA3 or prefix-tuning config would otherwise fail on a missing "r".
  if (raw.peft_type !== "LORA") {
    fail(
      raw.peft_type === undefined
        ? `missing "peft_type" (expected "LORA")`
        : `peft_type ${show(raw.peft_type)} is not supported (only "LORA" adapters)`,
    );
  }
  for (const { key, off, what } of UNSUPPORTED) {
    if (!off(raw[key])) fail(`${what} are not supported (found "${key}": ${show(raw[key])})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = issue.path.map(String).join(".");
    const value = issue.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown>)?.[k], raw);
    throw new FormatError(
      file,
      value === undefined ? `missing "${name}"` : `"${name}" must be ${issue.message}, found ${show(value)}`,
    );
  }
  const c = parsed.data;

  if (c.bias !== undefined && c.bias !== "none") {
    fail(`bias ${show(c.bias)} is not supported (only "none": adapters without trained biases)`);
  }
  if (c.fan_in_fan_out === true) {
    fail(`fan_in_fan_out: true is for GPT-2-style Conv1D layers; Llama-family linears need false`);
  }
  if (c.modules_to_save != null && c.modules_to_save.length > 0) {
    fail(
      `modules_to_save ${show(c.modules_to_save)} is not supported (fully trained copies of modules; ` +
        `only LoRA adapters on linear layers)`,
    );
  }
  if (c.task_type != null && c.task_type !== "CAUSAL_LM") {
    fail(`task_type ${show(c.task_type)} is not supported (only "CAUSAL_LM")`);
  }
  const targetModules = normaliseTargets(c.target_modules ?? PEFT_DEFAULT_TARGETS);
  // PEFT's own rules: layer selection applies only to list targets.
  if (typeof targetModules === "string" && c.layers_to_transform != null) {
    fail(`layers_to_transform cannot be used when target_modules is a string (${show(targetModules)})`);
  }
  if (c.layers_pattern != null && c.layers_pattern.length > 0 && c.layers_to_transform == null) {
    fail(`layers_pattern is given without layers_to_transform`);
  }
  checkRegexes(file, targetModules, c.exclude_modules, c.rank_pattern, c.alpha_pattern);

  const layers = c.layers_to_transform;
  const pattern = c.layers_pattern;
  return {
    taskType: c.task_type ?? null,
    baseModelNameOrPath: c.base_model_name_or_path ?? null,
    revision: c.revision ?? null,
    r: c.r,
    loraAlpha: c.lora_alpha,
    loraDropout: c.lora_dropout ?? 0,
    targetModules,
    excludeModules: c.exclude_modules ?? null,
    layersToTransform: layers == null ? null : typeof layers === "number" ? [layers] : layers,
    layersPattern: pattern == null || pattern.length === 0
      ? null
      : typeof pattern === "string"
      ? [pattern]
      : pattern,
    useRslora: c.use_rslora ?? false,
    rankPattern: c.rank_pattern ?? {},
    alphaPattern: c.alpha_pattern ?? {},
  };
}

/** PEFT compares "all-linear" case-insensitively. */
function normaliseTargets(targets: string[] | string): string[] | string {
  return typeof targets === "string" && targets.toLowerCase() === ALL_LINEAR ? ALL_LINEAR : targets;
}

/** Fails early, naming the key, on patterns JS cannot compile (PEFT's are Python regexes). */
function checkRegexes(
  file: string,
  targets: readonly string[] | string,
  exclude: readonly string[] | string | null | undefined,
  rankPattern: Record<string, number> | null | undefined,
  alphaPattern: Record<string, number> | null | undefined,
): void {
  const tryCompile = (key: string, pattern: string) => {
    try {
      pythonRegex(pattern);
    } catch (error) {
      throw new FormatError(
        file,
        `${key}: ${show(pattern)} is not a valid regex (${(error as Error).message})`,
      );
    }
  };
  if (typeof targets === "string" && targets !== ALL_LINEAR) tryCompile("target_modules", targets);
  if (typeof exclude === "string") tryCompile("exclude_modules", exclude);
  for (const key of Object.keys(rankPattern ?? {})) tryCompile("rank_pattern", key);
  for (const key of Object.keys(alphaPattern ?? {})) tryCompile("alpha_pattern", key);
}

/** A Python `re` pattern as a JS RegExp body (named groups are spelt `(?P<name>` in Python). */
export function pythonRegex(pattern: string, wrap: (body: string) => string = (b) => b): RegExp {
  return new RegExp(wrap(pattern.replaceAll("(?P<", "(?<")));
}

function isEmpty(value: unknown): boolean {
  return value == null || (Array.isArray(value) && value.length === 0) ||
    (typeof value === "object" && Object.keys(value as object).length === 0);
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * The text of `adapter_config.json` for `config`, as PEFT writes it (keys sorted, two-space indent) with
 * the keys PEFT needs to load it. `ALL_LINEAR` is written as the list of linear names it stands for
 * (`linearNames`: the adapted model's, by default Llama's), as PEFT does, so readers that predate the
 * shorthand load it too.
 */
export function adapterConfigJson(
  config: AdapterConfig,
  linearNames: readonly string[] = LLAMA_LINEAR_NAMES,
): string {
  const targets = config.targetModules === ALL_LINEAR
    ? [...linearNames].sort()
    : typeof config.targetModules === "string"
    ? config.targetModules
    : [...config.targetModules].sort();
  const exclude = config.excludeModules;
  const json: Record<string, unknown> = {
    alpha_pattern: { ...config.alphaPattern },
    auto_mapping: null,
    base_model_name_or_path: config.baseModelNameOrPath,
    bias: "none",
    exclude_modules: exclude === null || typeof exclude === "string" ? exclude : [...exclude].sort(),
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: config.layersPattern === null ? null : [...config.layersPattern],
    layers_to_transform: config.layersToTransform === null ? null : [...config.layersToTransform],
    lora_alpha: config.loraAlpha,
    lora_bias: false,
    lora_dropout: config.loraDropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: { ...config.rankPattern },
    revision: config.revision,
    target_modules: targets,
    task_type: config.taskType ?? "CAUSAL_LM",
    use_dora: false,
    use_rslora: config.useRslora,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}
