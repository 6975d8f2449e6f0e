/**
 * `deno task export --adapter DIR --format gguf|mlx …`: hand a fine-tune to other runtimes.
 *
 * - `--format gguf` (default): the base model with the adapter merged in, as one GGUF file for llama.cpp /
 *   Ollama, `--type f16|q8_0|q4_0|q4_k_m`; `--modelfile` adds an Ollama Modelfile beside it. The merge
 *   re-reads the source's own weights (not the NF4 copy training used), so the fine-tune survives.
 * - `--format mlx`: the adapter alone in mlx-lm's format (a directory: adapters.safetensors +
 *   adapter_config.json), for `mlx_lm.generate --adapter-path`.
 *
 * (`deno task merge` writes a merged HF directory instead.) An existing output is never replaced without
 * `--overwrite`; outputs appear whole (written to a temporary name, then renamed).
 */
import { Command, Option } from "@commander-js/extra-typings";
import process from "node:process";
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import cliProgress from "cli-progress";
import { setThreads } from "../ffi/runtime.ts";
import { readPeftAdapter } from "../lib/io/peft/read.ts";
import { describeModelSpec, resolveModel } from "../lib/io/resolve_model.ts";
import { writeMlxAdapter } from "../lib/io/mlx_adapter.ts";
import { exportGguf, readSourceConfig } from "../lib/pretrained/export_gguf.ts";
import { GGUF_EXPORT_TYPES } from "../lib/pretrained/export/gguf_types.ts";
import { modelfileText } from "../lib/pretrained/export/modelfile.ts";
import { writeFileAtomically } from "../lib/io/atomic_file.ts";

const opts = new Command("deno task export")
  .description("Export a fine-tune: a merged GGUF for llama.cpp / Ollama, or an mlx-lm adapter.")
  .option("--model <spec>", describeModelSpec(), "default")
  .option("--adapter <dir>", "the PEFT LoRA adapter directory (gguf without it: the base model is converted)")
  .addOption(
    new Option("--format <format>", "what to write").choices(["gguf", "mlx"] as const).default("gguf"),
  )
  .addOption(new Option("--type <type>", "GGUF tensor type").choices(GGUF_EXPORT_TYPES).default("q8_0"))
  .requiredOption("--out <path>", "the .gguf file (gguf) or directory (mlx) to write")
  .option("--modelfile", "also write an Ollama Modelfile next to the GGUF", false)
  .option("--system <text>", "SYSTEM prompt for the Modelfile (default: the chat template's own, if any)")
  .option("--name <name>", "general.name in the GGUF")
  .option("--overwrite", "replace existing outputs", false)
  .option("--threads <n>", "kernel threads (0 = all cores)", "0")
  .parse(Deno.args, { from: "user" })
  .opts();

try {
  const threads = Number(opts.threads);
  if (!Number.isInteger(threads) || threads < 0) throw new Error(`--threads must be a whole number ≥ 0`);
  setThreads(threads);
  const resolved = await resolveModel(opts.model === "default" ? undefined : opts.model);
  const source = resolved.kind === "gguf" ? resolved.path : resolved.dir;
  const config = await readSourceConfig(source);
  const adapter = opts.adapter ? readPeftAdapter(opts.adapter, config) : undefined;

  if (opts.format === "mlx") {
    if (!adapter) throw new Error("--format mlx exports an adapter: --adapter is required");
    const { files, scale } = writeMlxAdapter(opts.out, {
      model: config,
      config: adapter.config,
      layers: adapter.layers,
      overwrite: opts.overwrite,
    });
    console.log(
      `mlx-lm adapter saved: ${opts.out} (${
        files.join(", ")
      }; ${adapter.layers.size} modules, scale ${scale})`,
    );
  } else {
    const modelfile = join(dirname(opts.out), "Modelfile");
    if (opts.modelfile && existsSync(modelfile) && !opts.overwrite) {
      throw new Error(`${modelfile} exists; refusing to overwrite it (--overwrite replaces it)`);
    }
    const t0 = performance.now();
    const bar = new cliProgress.SingleBar({
      format: "exporting [{bar}] {value}/{total} tensors | {duration}s",
      stream: process.stderr,
    });
    let started = false;
    const result = await exportGguf(opts.out, {
      source,
      adapters: adapter?.layers,
      type: opts.type,
      overwrite: opts.overwrite,
      name: opts.name,
      onTensor: (done, total) => {
        if (!started) bar.start(total, 0);
        started = true;
        bar.update(done);
      },
    });
    bar.stop();
    for (const w of result.warnings) console.error(`warning: ${w}`);
    const types = Object.entries(result.tensorTypes).map(([t, n]) => `${n} ${t}`).join(", ");
    const what = adapter ? `${adapter.layers.size} adapters merged` : "no adapter";
    console.log(
      `GGUF saved: ${result.path} (${opts.type}; ${what}; ${(result.bytes / 1e6).toFixed(1)} MB; ` +
        `tensors: ${types}; ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    if (opts.modelfile) {
      const { text, family } = modelfileText({
        from: `./${basename(opts.out)}`,
        chatTemplate: result.chatTemplate,
        stopTokens: result.stopTokens,
        system: opts.system,
      });
      writeFileAtomically(modelfile, (write) => write(new TextEncoder().encode(text)));
      if (family === undefined) {
        console.error(
          "warning: the chat template is not a family we convert (ChatML, Llama 3): no TEMPLATE line",
        );
      }
      console.log(`Ollama Modelfile saved: ${modelfile} (ollama create NAME -f ${modelfile})`);
    }
  }
} catch (error) {
  console.error(`export: ${(error as Error).message}`);
  Deno.exit(1);
}
