/**
 * Every option of a fine-tuning run, with its default, in one place: the zod schema below. The command
 * line (`tasks/finetune.ts`, its `--help` included), JSON config files and notebooks all go through it, so a
 * default or a rule is written once.
 *
 * Precedence: schema defaults < `--config file.json` < command-line flags. Config files use the field names
 * below (nested `data` and `lora` objects); unknown keys are errors (a typo must not silently fall back to
 * a default). Every error names the field and where its value came from.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ALL_LINEAR, LLAMA_LINEAR_NAMES } from "../io/peft/config.ts";
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
    z.array(z.string()).min(1).refine((names) => names.every((n) => LLAMA_LINEAR_NAMES.includes(n)), {
      error: `must be "${ALL_LINEAR}" or names among ${LLAMA_LINEAR_NAMES.join(", ")}`,
    }),
  ], { error: `must be "${ALL_LINEAR}" or names among ${LLAMA_LINEAR_NAMES.join(", ")}` }),
);

/** How a group's fields are spelt on the command line (`lora.rank` → `--lora-rank`). */
interface GroupMeta {
  cliPrefix: string;
}

// ---------------------------------------------------------------------------------------------------------
// The options. The `describe` text is the one-line `--help`; the doc comment says more where needed.

export const TrainingArgsSchema = z.strictObject({
  /** A `.gguf` file, an HF model directory, `org/name[@revision]` (HF cache or hub), or "default". */
  model: str.default("default").describe(`model: a .gguf, an HF dir, org/name[@rev], or "default"`),

  /** Where the examples come from (JSONL: text, prompt/completion or chat messages). */
  data: z.strictObject({
    /** Training JSONL file. */
    train: str.default("data/dates/train.jsonl").describe("training JSONL file"),
    /** Validation JSONL file; "" for none. Ignored when `validFraction` > 0. */
    valid: str.default("data/dates/valid.jsonl").describe(`validation JSONL file ("" for none)`),
    /** When > 0, hold out this share of the training file for validation (seeded) instead of `valid`. */
    validFraction: unit("[0, 1)", "lt").default(0).describe(
      "hold out this share of --train instead of --valid",
    ),
    /** Train on prompts and user turns too, not only on answers. */
    trainOnPrompt: bool.default(false).describe("train on prompts / user turns too"),
    /** Pack several examples into each row of `maxLength` tokens (fewer padding positions). */
    pack: bool.default(false).describe("pack several examples per row of --max-length tokens"),
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
      `adapted linears: "${ALL_LINEAR}" or a comma list (${LLAMA_LINEAR_NAMES.join(",")})`,
    ),
    /** Rank-stabilised LoRA: scale alpha / √r. */
    rslora: bool.default(false).describe("rank-stabilised scaling alpha / sqrt(rank)"),
  }).prefault({}).meta({ cliPrefix: "lora-" } satisfies GroupMeta),

  /** Evaluate on the validation set every N steps (and at the end); 0 = only at the end. */
  evalEvery: int(0).default(50).describe("evaluate every N steps (0 = only at the end)"),
  /** Validation batches per evaluation; 0 = all. */
  evalBatches: int(0).default(0).describe("validation batches per evaluation (0 = all)"),
  /** Save a checkpoint every N steps (and at the end); 0 = only at the end. */
  saveEvery: int(0).default(50).describe("checkpoint every N steps (0 = only at the end)"),
  /** Checkpoints kept in `outputDir` (older ones are deleted). */
  keepCheckpoints: int(1).default(2).describe("checkpoints to keep"),
  /** Checkpoints, metrics.jsonl, the final adapter and the merged model go here. */
  outputDir: str.min(1, { error: "must not be empty" }).default("out/finetune").describe("output directory"),
  /** Continue from the latest valid checkpoint in `outputDir` (start afresh when there is none). */
  resume: bool.default(false).describe("continue from the latest checkpoint in --output-dir"),

  /** Recompute each block's activations in the backward pass (less memory, ~1/3 more compute). */
  gradientCheckpointing: bool.default(false).describe("recompute activations in backward (saves memory)"),
  /** Precision of the frozen weights' GEMMs: bf16 where the CPU path has bf16 units (AMX, AVX512-BF16) —
   * the default fine-tune reaches the f32 run's eval loss and exact match there (README) — else f32. */
  compute: z.enum(["f32", "bf16"], { error: "must be f32 or bf16" })
    .default(() => (["amx", "avx512bf16"].includes(kernelName()) ? "bf16" : "f32"))
    .describe("GEMM compute precision of the frozen weights"),
  /** Kernel threads; 0 = all cores. */
  threads: int(0).default(0).describe("kernel threads (0 = all cores)"),
  /** A saved PEFT adapter to start from (continue training it); "" = fresh adapters. */
  adapter: str.default("").describe('PEFT adapter directory to start from ("" = fresh adapters)'),
  /** Also save the model with the adapters merged into its weights. */
  merge: bool.default(false).describe("also save the merged model"),
  /** Task metric reported before and after training. */
  metric: z.enum(["exact-match", "none"], { error: "must be exact-match or none" }).default("exact-match")
    .describe("task metric before and after training"),
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

/** Reads a JSON config file (any subset of the options); validated later, together with the flags. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ArgsError(`--config ${path}: cannot read it (${(error as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ArgsError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ArgsError(`${path}: must hold a JSON object of options`);
  }
  return json as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------
// The command line, generated from the schema.

export type CliKind = "string" | "number" | "integer" | "boolean" | "choice";

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
  /** `--lora-rank <n>` (booleans take an optional value: `--resume [bool]`). */
  usage: string;
}

/** What a string flag's value is, for `--help` (`--train <file>`). */
const PLACEHOLDERS: Record<string, string> = {
  model: "spec",
  train: "file",
  valid: "file",
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
        out.push(
          cliOption([key, sub], group.cliPrefix + kebab(sub), subField as z.ZodType, groupDefaults[sub]),
        );
      }
    } else {
      out.push(cliOption([key], kebab(key), field as z.ZodType, defaults[key]));
    }
  }
  return out;
}

/**
 * Options from a config file and command-line values (`values[option.attribute]`, strings or booleans as
 * commander gives them, undefined when not given) merged and validated: flags override the file.
 */
export function resolveTrainingArgs(
  values: Readonly<Record<string, unknown>>,
  configFile?: string,
): TrainingArgs {
  const input: Record<string, unknown> = configFile ? structuredClone(readConfigFile(configFile)) : {};
  const flags = new Map<string, string>();
  for (const option of cliOptions()) {
    const raw = values[option.attribute];
    if (raw === undefined) continue;
    flags.set(option.path.join("."), option.flag);
    let target = input;
    for (const part of option.path.slice(0, -1)) {
      const next = target[part];
      if (typeof next !== "object" || next === null || Array.isArray(next)) target[part] = {};
      target = target[part] as Record<string, unknown>;
    }
    target[option.path.at(-1)!] = fromCli(option, raw);
  }
  return parseTrainingArgs(input, configFile ?? "training args", flags);
}

function cliOption(path: string[], name: string, field: z.ZodType, defaultValue: unknown): CliOption {
  const inner = unwrap(field);
  const type = (inner as { def: { type: string } }).def.type;
  let kind: CliKind = "string";
  let choices: readonly string[] | undefined;
  if (type === "boolean") kind = "boolean";
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
    ? "[bool]"
    : kind === "integer"
    ? "<n>"
    : kind === "number"
    ? "<x>"
    : `<${choices?.join("|") ?? PLACEHOLDERS[path.at(-1)!] ?? "value"}>`;
  const shown = Array.isArray(defaultValue) ? defaultValue.join(",") : JSON.stringify(defaultValue);
  const description = `${field.description ?? ""} (default: ${shown})`;
  return {
    flag,
    attribute: camel(name),
    path,
    kind,
    choices,
    description,
    defaultValue,
    usage: `${flag} ${placeholder}`,
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
