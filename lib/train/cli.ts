/**
 * The fine-tuning command line, generated from args.ts: one flag per option (booleans as `--x` / `--no-x`,
 * lists by repeating the flag), `-c/--config file.yaml|.json`, the aliases of cli_aliases.ts. Commander
 * refuses unknown flags. Relative paths resolve against the user's directory (user_paths.ts).
 */
import { Command } from "commander";
import { resolve } from "node:path";
import { cliOptions, resolveTrainingArgs, type TrainingArgs } from "./args.ts";
import { describeAliases, normalizeArgv } from "./cli_aliases.ts";

/** The commander program of `deno task finetune` (its --help included). */
export function finetuneCommand(epilog = ""): Command {
  const program = new Command("deno task finetune")
    .description("QLoRA fine-tuning of a Llama-family model on the CPU.")
    .option(
      "-c, --config <file>",
      "YAML or JSON file of options (names as below, or snake_case; nested data/lora); flags override it",
    )
    .exitOverride()
    .addHelpText("after", `\n${describeAliases()}${epilog ? `\n\n${epilog}` : ""}`);
  for (const o of cliOptions()) {
    if (o.kind === "list") {
      program.option(
        o.usage,
        o.description,
        (value: string, previous?: string[]) => [...(previous ?? []), value],
      );
    } else {
      program.option(o.usage, o.description);
    }
    if (o.negation) program.option(o.negation, `sets ${o.flag} to false`);
  }
  return program;
}

/** Parses a finetune command line (aliases included) into validated options. */
export function parseFinetuneArgv(
  argv: readonly string[],
  baseDir?: string,
  program: Command = finetuneCommand(),
): TrainingArgs {
  program.parse(normalizeArgv(argv), { from: "user" });
  const values = program.opts() as Record<string, unknown>;
  const config = values.config as string | undefined;
  return resolveTrainingArgs(values, config && baseDir ? resolve(baseDir, config) : config, { baseDir });
}
