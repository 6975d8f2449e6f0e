/**
 * Other tools' names for our options, in one table: people arrive with mlx-lm (`mlx_lm.lora`) or TRL
 * (`SFTConfig` / `trl sft`) command lines and config files. An alias maps to exactly one canonical flag
 * (or, for a negated meaning, to its `--no-` form); the canonical flags are what `--help` documents.
 * `--snake_case` spellings (TRL's) are accepted for every flag.
 */

/** alias → canonical flag. */
export const FLAG_ALIASES: Readonly<Record<string, string>> = {
  // mlx-lm
  "--iters": "--steps",
  "--learning-rate": "--lr",
  "--data": "--data-dir",
  "--steps-per-eval": "--eval-every",
  "--val-batches": "--eval-batches",
  "--grad-checkpoint": "--gradient-checkpointing",
  "--mask-prompt": "--no-train-on-prompt",
  "--adapter-path": "--output-dir",
  "--resume-adapter-file": "--adapter",
  "--max-seq-length": "--max-length",
  // TRL / transformers TrainingArguments
  "--model-name-or-path": "--model",
  "--max-steps": "--steps",
  "--num-train-epochs": "--epochs",
  "--per-device-train-batch-size": "--batch-size",
  "--gradient-accumulation-steps": "--grad-accumulation",
  "--lr-scheduler-type": "--schedule",
  "--eval-steps": "--eval-every",
  "--save-steps": "--save-every",
  "--save-total-limit": "--keep-checkpoints",
  "--packing": "--pack",
  "--lora-r": "--lora-rank",
  "--lora-target-modules": "--lora-targets",
  "--use-rslora": "--lora-rslora",
  "--completion-only-loss": "--no-train-on-prompt",
};

/**
 * The canonical flag of `flag` (already kebab-case); when the alias stands for a negation (`--mask-prompt`
 * → `--no-train-on-prompt`), `flag` is the positive form and `value` the boolean it sets.
 */
export function canonicalFlag(flag: string): { flag: string; value?: boolean } {
  const target = FLAG_ALIASES[flag] ?? flag;
  if (target !== flag && target.startsWith("--no-")) return { flag: `--${target.slice(5)}`, value: false };
  return { flag: target };
}

/**
 * The command line with aliases replaced by canonical flags and `--snake_case` by `--kebab-case`
 * (`--name=value` kept together). Everything after a bare `--` is left alone.
 */
export function normalizeArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (!arg.startsWith("--")) {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = (eq < 0 ? arg : arg.slice(0, eq)).replaceAll("_", "-");
    const rest = eq < 0 ? "" : arg.slice(eq);
    out.push((FLAG_ALIASES[name] ?? name) + rest);
  }
  return out;
}

/** Help text listing the aliases. */
export function describeAliases(): string {
  const lines = Object.entries(FLAG_ALIASES).filter(([a, f]) => a !== f).map(([a, f]) => `  ${a} → ${f}`);
  return `Aliases (mlx-lm, TRL; --snake_case spellings work too):\n${lines.join("\n")}`;
}
