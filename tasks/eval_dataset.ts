/**
 * `deno run -A tasks/eval_dataset.ts [--model default] [--adapter DIR] [--data data/dates/valid.jsonl]
 * [--limit N]`: greedy generation for each record of a chat or prompt/completion JSONL file, and the
 * exact-match rate against its answers (the metric of the shipped date-normalisation task). With
 * `--adapter`, a PEFT LoRA adapter is applied to the base model (not merged) for the whole evaluation.
 */
import { Command } from "@commander-js/extra-typings";
import { setThreads } from "../ffi/runtime.ts";
import { readRecords } from "../lib/data/formats.ts";
import { exactMatch } from "../lib/data/metrics.ts";
import { describeModelSpec } from "../lib/io/resolve_model.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { loadForGeneration } from "./load_for_generation.ts";
import { userPath } from "./user_path.ts";
import { wholeNumber } from "./whole_number.ts";

const opts = pairBooleans(
  new Command("deno run -A tasks/eval_dataset.ts")
    .description("Exact match of greedy answers on a validation set (messages or prompt/completion JSONL).")
    .option("--model <spec>", describeModelSpec(), "default")
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to evaluate (e.g. out/finetune/adapter)")
    .option("--data <file>", "JSONL file to evaluate", "data/dates/valid.jsonl")
    .option("--limit <n>", "evaluate the first n records only (0 = all)", "0")
    .option("--samples <n>", "outputs to print", "8")
    .option("--verbose", "print every record's output", false)
    .option("--threads <n>", "kernel threads (0 = all cores)", "0"),
)
  .parse(Deno.args, { from: "user" })
  .opts();

const int = (flag: string, value: string) => wholeNumber("eval_dataset", flag, value);

try {
  setThreads(int("--threads", opts.threads));
  const limit = int("--limit", opts.limit);
  const { records: all, format } = await readRecords(userPath(opts.data));
  const records = limit > 0 ? all.slice(0, limit) : all;
  const { loaded, model: evaluated, stopTokens } = await loadForGeneration(opts);
  const { model, tokenizer, source, loadSeconds } = loaded;
  console.error(`model ${source} loaded in ${loadSeconds.toFixed(1)} s; ${records.length} ${format} records`);
  if (opts.adapter !== undefined) console.error(`adapter ${userPath(opts.adapter)}`);
  const report = exactMatch(evaluated, tokenizer, records, {
    stopTokens,
    samples: int("--samples", opts.samples),
    onResult: (r, i) => {
      if (opts.verbose) console.error(`${r.match ? "✓" : "✗"} ${r.source} ${JSON.stringify(r.output)}`);
      else if ((i + 1) % 10 === 0) console.error(`  ${i + 1}/${records.length}`);
    },
  });
  for (const s of report.samples) {
    console.log(
      `${s.match ? "✓" : "✗"} ${s.source}: expected ${JSON.stringify(s.reference)}, got ${
        JSON.stringify(s.output)
      }`,
    );
  }
  const percent = (100 * report.rate).toFixed(1);
  console.log(`exact match: ${report.correct}/${report.total} = ${percent} %`);
  console.log(
    `${report.seconds.toFixed(1)} s (${(report.seconds / report.total).toFixed(2)} s per record, ` +
      `${report.generatedTokens} tokens generated)`,
  );
  model.close();
} catch (error) {
  console.error(`eval_dataset: ${(error as Error).message}`);
  Deno.exit(1);
}
