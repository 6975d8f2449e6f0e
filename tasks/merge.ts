/**
 * `deno task merge --model <spec> --adapter <peft dir> --out <dir>`: merge a PEFT LoRA adapter into its base
 * model and save the result as a transformers model directory (bf16 safetensors, config.json, tokenizer).
 *
 * By default the base is loaded in NF4, as QLoRA trained against it, so the merged weights are
 * dequant(NF4(W)) + s·B·A. `--no-quantize` loads the base weights as they are (f32; needs 4 bytes per
 * parameter of RAM): the merge is then exact up to the final bf16 rounding.
 */
import { Command } from "@commander-js/extra-typings";
import process from "node:process";
import cliProgress from "cli-progress";
import { setThreads } from "../ffi/runtime.ts";
import { exportMergedModel } from "../lib/pretrained/export_merged.ts";
import { readPeftAdapter } from "../lib/io/peft/read.ts";
import { describeModelSpec, resolveModel } from "../lib/io/resolve_model.ts";
import { loadModel } from "../lib/pretrained/load_model.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { userCwd, userPath } from "./user_path.ts";

const opts = pairBooleans(
  new Command("deno task merge")
    .description("Merge a LoRA adapter into its base model and save a transformers model directory (bf16).")
    .option("--model <spec>", describeModelSpec(), "default")
    .option("--adapter <dir>", "the PEFT LoRA adapter directory (without it: the base model is converted)")
    .requiredOption("--out <dir>", "the model directory to write (refused if it exists and is not empty)")
    .option("--no-quantize", "load the base unquantized (exact merge; f32 in RAM) instead of NF4")
    .option("--overwrite", "replace --out if it exists", false)
    .option("--max-shard-gb <n>", "largest safetensors file before sharding, in GB", "2")
    .option("--threads <n>", "kernel threads (0 = all cores)", "0"),
)
  .parse(Deno.args, { from: "user" })
  .opts();

try {
  const threads = Number(opts.threads);
  const shardGb = Number(opts.maxShardGb);
  if (!Number.isInteger(threads) || threads < 0) throw new Error(`--threads must be a whole number ≥ 0`);
  if (!(shardGb > 0)) throw new Error(`--max-shard-gb must be > 0, got "${opts.maxShardGb}"`);
  setThreads(threads);

  const resolved = await resolveModel(opts.model === "default" ? undefined : opts.model, { cwd: userCwd() });
  const path = resolved.kind === "gguf" ? resolved.path : resolved.dir;
  const { model, config, loadSeconds } = await loadModel(path, { quantize: opts.quantize ? "nf4" : "none" });
  console.error(
    `model ${path} loaded in ${loadSeconds.toFixed(1)} s (${opts.quantize ? "NF4" : "unquantized"})`,
  );
  const adapters = opts.adapter ? readPeftAdapter(userPath(opts.adapter), config).layers : undefined;

  const t0 = performance.now();
  const bar = new cliProgress.SingleBar({
    format: "writing [{bar}] {value}/{total} tensors | {duration}s",
    stream: process.stderr,
  });
  let started = false;
  const result = await exportMergedModel(userPath(opts.out), {
    model,
    adapters,
    source: resolved,
    overwrite: opts.overwrite,
    maxShardBytes: shardGb * 1e9,
    onTensor: (done, total) => {
      if (!started) bar.start(total, 0);
      started = true;
      bar.update(done);
    },
  });
  bar.stop();
  model.close();
  const what = adapters ? `${adapters.size} adapters merged` : "no adapter";
  console.log(
    `merged model saved: ${result.dir} (${what}; ${result.tensors} tensors, ` +
      `${(result.tensorBytes / 1e9).toFixed(2)} GB bf16, ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  console.log(`files: ${result.files.join(", ")}`);
} catch (error) {
  console.error(`merge: ${(error as Error).message}`);
  Deno.exit(1);
}
