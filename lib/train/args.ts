/**
 * Every option of a fine-tuning run, with its default, in one place: the zod schema below. The command
 * line (`tasks/finetune.ts`, its `--help` included), JSON config files and notebooks all go through it, so a
 * default or a rule is written once.
 *
 * Precedence: schema defaults < `-c/--config file.yaml|.json` < command-line flags. Config files use the
 * field names below (nested `data` and `lora` objects; snake_case and the aliases of cli_aliases.ts are
 * accepted too); unknown keys are errors (a typo must not silently fall back to a default). Every error names
 * the field and where its value came from. Paths given by the user (flags or config) are relative to the
 * user's directory (user_paths.ts); the defaults are relative to the repository.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z } from "zod";
import { canonicalFlag } from "./cli_aliases.ts";
import { resolveUserPaths } from "./user_paths.ts";
import { ALL_LINEAR, BLOCK_LINEAR_NAMES } from "../io/peft/config.ts";
import { SCHEDULES } from "./schedule.ts";
import { kernelName } from "../../ffi/runtime.ts";

// ---------------------------------------------------------------------------------------------------------
// Field types, with messages that read well after the field's name.

const int = (min: number) =>
  z.number({ error: `must be a whole number ≥ ${min}` }).int({ error: `must be a whole number ≥ ${min}` })
    .min(min, { error: `must be a whole number ≥ ${min}` });
const positive = z.number({ error: "must be a number > 0" }).positive({ error: "must be a number > 0" });
const nonNegative = z.number({ error: "must be a number ≥ 0" }).min(0, { error: "must be a number ≥ 0" });
const unit = (what: string, max: "lt" | "lte") =>
  z.number({ error: `must be a number in ${what}` }).min(0, { error: `must be a number in ${what}` })
    [max](1, { error: `must be a number in ${what}` });
const bool = z.boolean({ error: "must be true or false" });
const str = z.string({ error: "must be a string" });

/** "all-linear", or module names (a list, or one comma-separated string as on the command line). */
const targets = z.preprocess(
  (v) => typeof v === "string" && v !== ALL_LINEAR ? v.split(",").map((s) => s.trim()).filter(Boolean) : v,
  z.union([
    z.literal(ALL_LINEAR),
    z.array(z.string()).min(1).refine((names) => names.every((n) => BLOCK_LINEAR_NAMES.includes(n)), {
      error: `must be "${ALL_LINEAR}" or names among ${BLOCK_LINEAR_NAMES.join(", ")}`,
    }),
  ], { error: `must be "${ALL_LINEAR}" or names among ${BLOCK_LINEAR_NAMES.join(", ")}` }),
);

/** `prompt=question,completion=answer` (or an object in a config file): record key → the file's key. */
const columnMap = z.preprocess(
  (v) => {
    if (typeof v !== "string") return v;
    const pairs = v.split(",").map((s) => s.trim()).filter(Boolean).map((pair) => pair.split("="));
    if (pairs.some((p) => p.length !== 2 || p[0].trim() === "" || p[1].trim() === "")) return v;
    return Object.fromEntries(pairs.map(([k, c]) => [k.trim(), c.trim()]));
  },
  z.record(z.string(), z.string(), {
    error: "must be key=column pairs, e.g. prompt=question,completion=answer",
  }),
);

/** How a group's fields are spelt on the command line (`lora.rank` → `--lora-rank`). */
interface GroupMeta {
  cliPrefix: string;
}

/** A field whose flag is not its kebab-cased name (`data.dir` → `--data-dir`). */
interface FieldMeta {
  cliName: string;
}

/** The shipped example task: its validation set is used by default only when training on its train set. */
export const DEFAULT_TRAIN = "data/dates/train.jsonl";
export const DEFAULT_VALID = "data/dates/valid.jsonl";

// ---------------------------------------------------------------------------------------------------------
// The options. The `describe` text is the one-line `--help`; the doc comment says more where needed.

export const TrainingArgsSchema = z.strictObject({
  /** A `.gguf` file, an HF model directory, `org/name[@revision]` (HF cache or hub), or "default". */
  model: str.default("default").describe(`model: a .gguf, an HF dir, org/name[@rev], or "default"`),

  /** Where the examples come from (JSONL, JSON, CSV, TSV or Parquet; formats in lib/data/formats.ts). */
  data: z.strictObject({
    /** A directory holding train.* (and valid.*, test.* when present), as mlx-lm's `--data`. */
    dir: str.default("").describe("directory with train/valid/test.{jsonl,json,csv,tsv,parquet}")
      .meta({ cliName: "data-dir" } satisfies FieldMeta),
    /** Training file. */
    train: str.default(DEFAULT_TRAIN).describe("training file (.jsonl, .json, .csv, .tsv, .parquet)"),
    /**
     * Validation file; "" for none; "auto": the shipped set's with the default `train`, none with the
     * user's own data (validation is asked for with `valid` or `validFraction`). Ignored when
     * `validFraction` > 0.
     */
    valid: str.default("auto").describe(
      `validation file ("" = none; "auto" = the shipped one with the default --train, else none)`,
    ),
    /** Test file, scored once after training (loss, and exact match when it fits). */
    test: str.default("").describe("test file, scored after training"),
    /** Record keys read from other columns: `{prompt: "question"}` (CLI `prompt=question,…`). */
    columns: columnMap.default({}).describe("rename columns: prompt=question,completion=answer"),
    /** A Jinja chat template file used instead of the tokenizer's (e.g. one that supports tools). */
    chatTemplate: str.default("").describe("Jinja chat template file instead of the tokenizer's"),
    /** When > 0, hold out this share of the training file for validation (seeded) instead of `valid`. */
    validFraction: unit("[0, 1)", "lt").default(0).describe(
      "hold out this share of --train instead of --valid",
    ),
    /** Train on prompts and user turns too, not only on answers. */
    trainOnPrompt: bool.default(false).describe("train on prompts / user turns too"),
    /** Pack several examples into each row of at most `maxLength` tokens (fewer padding positions). */
    pack: bool.default(false).describe("pack several examples per row of at most --max-length tokens"),
  }).prefault({}).meta({ cliPrefix: "" } satisfies GroupMeta),

  /** Tokens per example at most; longer ones are truncated (and counted in the data summary). */
  maxLength: int(2).default(128).describe("tokens per example at most (longer ones are truncated)"),
  /** Rows per micro-batch. */
  batchSize: int(1).default(4).describe("rows per micro-batch"),
  /** Micro-batches whose gradients are summed into one update (effective batch = batchSize × this). */
  gradAccumulation: int(1).default(1).describe("micro-batches per optimizer step"),
  /** Optimizer steps; 0 = as many as `epochs` passes over the training set take. */
  steps: int(0).default(0).describe("optimizer steps (0 = derive from --epochs)"),
  /** Passes over the training set when `steps` is 0 (fractions allowed). */
  epochs: positive.default(1).describe("passes over the training data when --steps is 0"),

  /** Peak learning rate. */
  lr: positive.default(2e-4).describe("peak learning rate"),
  /** Learning-rate schedule after warm-up. */
  schedule: z.enum(SCHEDULES, { error: `must be one of ${SCHEDULES.join(", ")}` }).default("cosine")
    .describe("learning-rate schedule after warm-up"),
  /** Steps of linear warm-up from 0 to `lr`. */
  warmupSteps: int(0).default(10).describe("steps of linear warm-up"),
  /** Floor of the decay, as a share of `lr`. */
  minLrRatio: unit("[0, 1]", "lte").default(0).describe("the schedule's floor as a share of --lr"),
  /** AdamW's decoupled weight decay. */
  weightDecay: nonNegative.default(0).describe("AdamW decoupled weight decay"),
  /** AdamW β1. */
  beta1: unit("[0, 1)", "lt").default(0.9).describe("AdamW beta1"),
  /** AdamW β2. */
  beta2: unit("[0, 1)", "lt").default(0.999).describe("AdamW beta2"),
  /** AdamW ε. */
  eps: nonNegative.default(1e-8).describe("AdamW epsilon"),
  /** Clip the global gradient norm to this; 0 = no clipping. */
  maxGradNorm: nonNegative.default(1.0).describe("clip the global gradient norm (0 = off)"),
  /** One seed for LoRA initialisation, dropout, data order and the validation split. */
  seed: int(0).default(0).describe("seed of LoRA init, dropout, data order and splits"),

  /** The adapters. */
  lora: z.strictObject({
    /** Rank r of each adapter. */
    rank: int(1).default(16).describe("LoRA rank r"),
    /** The update is scaled by alpha / r (alpha / √r with rsLoRA). */
    alpha: positive.default(32).describe("LoRA alpha (scale = alpha / rank)"),
    /** Dropout on each adapter's input while training. */
    dropout: unit("[0, 1)", "lt").default(0.05).describe("dropout on the adapters' inputs"),
    /** Which linears get adapters: "all-linear" or a list such as q_proj,v_proj. */
    targets: targets.default(ALL_LINEAR).describe(
      `adapted linears: "${ALL_LINEAR}" or a comma list (${BLOCK_LINEAR_NAMES.join(",")})`,
    ),
    /** Rank-stabilised LoRA: scale alpha / √r. */
    rslora: bool.default(false).describe("rank-stabilised scaling alpha / sqrt(rank)"),
  }).prefault({}).meta({ cliPrefix: "lora-" } satisfies GroupMeta),

  /** Print (and log) generations for the sample prompts every N steps; 0 = never. */
  sampleEvery: int(0).default(0).describe("generate sample answers every N steps (0 = never)"),
  /** Prompts (user messages, or raw prompts for completion data) to sample; default: the first validation ones. */
  samplePrompt: z.preprocess(
    (v) => typeof v === "string" ? [v] : v,
    z.array(str, { error: "must be a string or a list of strings" }),
  ).default([]).describe("a prompt to sample, repeatable (none: the first 2 eval prompts)"),
  /** Tokens generated per sample at most. */
  sampleMaxTokens: int(1).default(48).describe("tokens per sample generation at most"),

  /** Evaluate on the validation set every N steps (and at the end); 0 = only at the end. */
  evalEvery: int(0).default(50).describe("evaluate every N steps (0 = only at the end)"),
  /** Validation batches per evaluation; 0 = all. */
  evalBatches: int(0).default(0).describe("validation batches per evaluation (0 = all)"),
  /** Save a checkpoint every N steps (and at the end); 0 = only at the end. */
  saveEvery: int(0).default(50).describe("checkpoint every N steps (0 = only at the end)"),
  /** Checkpoints kept in `outputDir` (older ones are deleted; the best one is not counted). */
  keepCheckpoints: int(1).default(2).describe("checkpoints to keep"),
  /**
   * Save a checkpoint at each new best eval loss and keep it (the `best` file points to it) however many
   * newer ones follow.
   */
  keepBest: bool.default(true).describe("keep the checkpoint with the best eval loss"),
  /** Stop after this many evaluations in a row without a new best eval loss; 0 = never. */
  earlyStoppingPatience: int(0).default(0).describe("stop after N evals without improvement (0 = off)"),
  /** How much lower than the best an eval loss must be to count as an improvement. */
  earlyStoppingThreshold: nonNegative.default(0).describe("minimum eval-loss improvement for early stopping"),
  /** Checkpoints, metrics.jsonl, the final adapter and the merged model go here. */
  outputDir: str.min(1, { error: "must not be empty" }).default("out/finetune").describe("output directory"),
  /** Continue from the latest valid checkpoint in `outputDir` (start afresh when there is none). */
  resume: bool.default(false).describe("continue from the latest checkpoint in --output-dir"),

  /**
   * Recompute each block's activations in the backward pass (less memory, ~1/3 more compute); `deno task
   * finetune` then also leaves an untied bf16 embedding table in its file, reading the rows of each batch.
   */
  gradientCheckpointing: bool.default(false).describe("recompute activations in backward (saves memory)"),
  /** Precision of the frozen weights' GEMMs: bf16 where the CPU path has bf16 units (AMX, AVX512-BF16) —
   * the default fine-tune reaches the f32 run's eval loss and exact match there (README) — else f32. */
  compute: z.enum(["f32", "bf16"], { error: "must be f32 or bf16" })
    .default(() => (["amx", "avx512bf16"].includes(kernelName()) ? "bf16" : "f32"))
    .describe("GEMM compute precision of the frozen weights"),
  /**
   * Keep the quantized model in the NF4 cache (`$QLORA_CACHE/nf4/`, a bnb-4bit safetensors directory) and reuse
   * it on the next run with the same model files instead of quantizing again.
   */
  nf4Cache: bool.default(true).describe(
    "reuse / write the quantized model in the NF4 cache (--no-nf4-cache: off)",
  ),
  /** Kernel threads; 0 = all cores. */
  threads: int(0).default(0).describe("kernel threads (0 = all cores)"),
  /** A saved PEFT adapter to start from (continue training it); "" = fresh adapters. */
  adapter: str.default("").describe('PEFT adapter directory to start from ("" = fresh adapters)'),
  /** Also save the model with the adapters merged into its weights. */
  merge: bool.default(false).describe("also save the merged model"),
  /**
   * Task metric reported before and after training: "auto" = exact match when the data fits it (single
   * short answers: lib/data/metric_choice.ts), else none.
   */
  metric: z.enum(["auto", "exact-match", "none"], { error: "must be auto, exact-match or none" }).default(
    "auto",
  )
    .describe("task metric before and after training (auto: exact match for short single answers)"),
  /** Validation examples the task metric generates for; 0 = all. */
  maxEvalExamples: int(0).default(0).describe("examples for the task metric (0 = all)"),
});

/** The options of a run, every field present. */
export type TrainingArgs = z.output<typeof TrainingArgsSchema>;
/** What a config file or a notebook may give: any subset. */
export type TrainingArgsInput = z.input<typeof TrainingArgsSchema>;

/** A bad option; the message names the field (or flag) and where its value came from. */
export class ArgsError extends Error {
  override name = "ArgsError";
}

/** The defaults. */
export function defaultTrainingArgs(): TrainingArgs {
  return TrainingArgsSchema.parse({});
}

/**
 * Validates options (any subset; the rest take their defaults). `source` names where they came from in
 * errors; `flags` (field path → flag) marks values that came from the command line.
 */
export function parseTrainingArgs(
  input: unknown,
  source = "training args",
  flags: ReadonlyMap<string, string> = new Map(),
): TrainingArgs {
  const result = TrainingArgsSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      const where = issue.path.length > 0 ? ` in "${issue.path.join(".")}"` : "";
      return `${source}: unknown option${issue.keys.length > 1 ? "s" : ""} ${
        issue.keys.map((k) => `"${k}"`).join(", ")
      }${where}`;
    }
    const path = issue.path.join(".");
    const flag = flags.get(path);
    const value = valueAt(input, issue.path);
    const got = value === undefined ? "" : ` (got ${JSON.stringify(value)})`;
    return flag
      ? `${flag}: ${issue.message}${got}`
      : `${source}: ${path || "(top level)"}: ${issue.message}${got}`;
  });
  throw new ArgsError(problems.join("\n"));
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Reads a YAML or JSON config file (any subset of the options); validated later, with the flags. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ArgsError(`--config ${path}: cannot read it (${(error as Error).message})`);
  }
  const yaml = [".yaml", ".yml"].includes(extname(path).toLowerCase());
  let value: unknown;
  try {
    value = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const line = error.linePos?.[0].line;
      throw new ArgsError(
        `${path}${line ? `:${line}` : ""}: not valid YAML (${error.message.split("\n")[0]})`,
      );
    }
    throw new ArgsError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ArgsError(`${path}: must hold ${yaml ? "a YAML mapping" : "a JSON object"} of options`);
  }
  return value as Record<string, unknown>;
}

/**
 * A config file's keys in our spelling: snake_case and kebab-case become camelCase, and aliases
 * (`learning_rate`, `iters`, `data: DIR`) their field, as on the command line. Groups stay nested.
 */
export function normalizeConfig(config: Record<string, unknown>): Record<string, unknown> {
  const byFlag = new Map(cliOptions().map((o) => [o.flag, o]));
  const groups = new Set(groupNames());
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const name = camel(key.replaceAll("_", "-"));
    if (groups.has(name) && typeof value === "object" && value !== null && !Array.isArray(value)) {
      const group = (out[name] ??= {}) as Record<string, unknown>;
      for (const [sub, v] of Object.entries(value)) group[camel(sub.replaceAll("_", "-"))] = v;
      continue;
    }
    const { flag, value: fixed } = canonicalFlag(`--${kebab(name)}`);
    const option = byFlag.get(flag);
    if (!option) {
      out[name] = value;
      continue;
    }
    setAt(out, option.path, fixed ?? value);
  }
  return out;
}

function groupNames(): string[] {
  return Object.entries(TrainingArgsSchema.shape)
    .filter(([, field]) => ((field as z.ZodType).meta() as GroupMeta | undefined)?.cliPrefix !== undefined)
    .map(([key]) => key);
}

function setAt(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  for (const part of path.slice(0, -1)) {
    const next = target[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) target[part] = {};
    target = target[part] as Record<string, unknown>;
  }
  target[path.at(-1)!] = value;
}

// ---------------------------------------------------------------------------------------------------------
// The command line, generated from the schema.

export type CliKind = "string" | "number" | "integer" | "boolean" | "choice" | "list";

/** One command-line flag of a field. */
export interface CliOption {
  /** `--lora-rank` */
  flag: string;
  /** The property commander stores it under (`loraRank`). */
  attribute: string;
  /** The field's path in TrainingArgs (`["lora", "rank"]`). */
  path: string[];
  kind: CliKind;
  choices?: readonly string[];
  description: string;
  defaultValue: unknown;
  /** `--lora-rank <n>`; a boolean is `--resume`, with `negation` `--no-resume`. */
  usage: string;
  /** Booleans: the flag that sets false. */
  negation?: string;
}

/** What a string flag's value is, for `--help` (`--train <file>`). */
const PLACEHOLDERS: Record<string, string> = {
  model: "spec",
  train: "file",
  valid: "file",
  test: "file",
  dir: "dir",
  chatTemplate: "file",
  columns: "map",
  samplePrompt: "text",
  outputDir: "dir",
  adapter: "dir",
  targets: "list",
};

/** Every field as a flag: description and default from the schema (for `--help`). */
export function cliOptions(): CliOption[] {
  const out: CliOption[] = [];
  const defaults = defaultTrainingArgs() as Record<string, unknown>;
  for (const [key, field] of Object.entries(TrainingArgsSchema.shape)) {
    const group = (field as z.ZodType).meta() as GroupMeta | undefined;
    if (group?.cliPrefix !== undefined) {
      const shape = (unwrap(field as z.ZodType) as z.ZodObject).shape;
      const groupDefaults = defaults[key] as Record<string, unknown>;
      for (const [sub, subField] of Object.entries(shape)) {
        const name = ((subField as z.ZodType).meta() as FieldMeta | undefined)?.cliName ??
          group.cliPrefix + kebab(sub);
        out.push(cliOption([key, sub], name, subField as z.ZodType, groupDefaults[sub]));
      }
    } else {
      out.push(cliOption([key], kebab(key), field as z.ZodType, defaults[key]));
    }
  }
  return out;
}

export interface ResolveOptions {
  /** The user's directory: relative paths given in flags or the config file are resolved against it. */
  baseDir?: string;
}

/**
 * Options from a config file and command-line values (`values[option.attribute]`, strings or booleans as
 * commander gives them, undefined when not given) merged and validated: flags override the file.
 */
export function resolveTrainingArgs(
  values: Readonly<Record<string, unknown>>,
  configFile?: string,
  options: ResolveOptions = {},
): TrainingArgs {
  const input: Record<string, unknown> = configFile
    ? normalizeConfig(structuredClone(readConfigFile(configFile)))
    : {};
  const flags = new Map<string, string>();
  for (const option of cliOptions()) {
    const raw = values[option.attribute];
    if (raw === undefined) continue;
    flags.set(option.path.join("."), option.flag);
    setAt(input, option.path, fromCli(option, raw));
  }
  if (options.baseDir !== undefined) resolveUserPaths(input, options.baseDir);
  return parseTrainingArgs(input, configFile ?? "training args", flags);
}

function cliOption(path: string[], name: string, field: z.ZodType, defaultValue: unknown): CliOption {
  const inner = unwrap(field);
  const type = (inner as { def: { type: string } }).def.type;
  let kind: CliKind = "string";
  let choices: readonly string[] | undefined;
  if (type === "boolean") kind = "boolean";
  else if (type === "array") kind = "list";
  else if (type === "number") {
    const checks = (inner as z.ZodNumber).def.checks ?? [];
    kind = checks.some((c) => (c as { _zod: { def: { check: string } } })._zod.def.check === "number_format")
      ? "integer"
      : "number";
  } else if (type === "enum") {
    kind = "choice";
    choices = (inner as z.ZodEnum).options as string[];
  }
  const flag = `--${name}`;
  const placeholder = kind === "boolean"
    ? ""
    : kind === "integer"
    ? "<n>"
    : kind === "number"
    ? "<x>"
    : `<${choices?.join("|") ?? PLACEHOLDERS[path.at(-1)!] ?? "value"}>`;
  const shown = Array.isArray(defaultValue)
    ? (defaultValue.length === 0 ? "none" : defaultValue.join(","))
    : JSON.stringify(defaultValue);
  const description = `${field.description ?? ""} (default: ${shown})`;
  return {
    flag,
    attribute: camel(name),
    path,
    kind,
    choices,
    description,
    defaultValue,
    usage: placeholder ? `${flag} ${placeholder}` : flag,
    negation: kind === "boolean" ? `--no-${name}` : undefined,
  };
}

/** Turns a flag's string into the field's type; a value that does not convert is left for zod to reject. */
function fromCli(option: CliOption, raw: unknown): unknown {
  if (typeof raw !== "string") return raw;
  if (option.kind === "boolean") return raw === "true" ? true : raw === "false" ? false : raw;
  if (option.kind === "number" || option.kind === "integer") {
    const n = Number(raw);
    return raw.trim() !== "" && Number.isFinite(n) ? n : raw;
  }
  return raw;
}

/** The schema inside `.default()`, `.prefault()`, `.optional()` and `.pipe()` wrappers. */
function unwrap(field: z.ZodType): z.ZodType {
  let t = field as z.ZodType & { def: { type: string; innerType?: z.ZodType; out?: z.ZodType } };
  for (;;) {
    const def = t.def;
    if (def.innerType) t = def.innerType as typeof t;
    else if (def.type === "pipe" && def.out) t = def.out as typeof t;
    else return t;
  }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}
