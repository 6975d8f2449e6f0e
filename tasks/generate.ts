/**
 * `deno task generate --prompt "…"`: load a model (local HF dir, .gguf, hub id, or the default SmolLM2), render
 * the prompt with its chat template, and stream the answer to stdout. Timing goes to stderr.
 */
import { Command } from "@commander-js/extra-typings";
import process from "node:process";
import { setThreads } from "../ffi/runtime.ts";
import { describeModelSpec } from "../lib/io/resolve_model.ts";
import { generate } from "../lib/generate/generate.ts";
import { loadForGeneration } from "./load_for_generation.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { wholeNumber } from "./whole_number.ts";

const opts = pairBooleans(
  new Command("deno task generate")
    .description("Generate text with a Llama-family model (NF4 weights, CPU).")
    .option("--model <spec>", describeModelSpec(), "default")
    .requiredOption("--prompt <text>", "the user message (or raw text with --raw)")
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to apply (e.g. out/finetune/adapter)")
    .option(
      "--no-quantize",
      "keep the block linears in f32 (e.g. a merged bf16 model: re-quantizing to NF4 snaps small fine-tuned changes back)",
    )
    .option("--system <text>", "a system message for the chat template")
    .option("--raw", "no chat template: continue the prompt text as it is", false)
    .option("--max-new-tokens <n>", "tokens to generate at most", "128")
    .option("--temperature <t>", "0 = greedy", "0")
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", "0")
    .option("--top-p <p>", "nucleus sampling mass (1 = all)", "1")
    .option("--seed <n>", "random seed for sampling", "0")
    .option("--threads <n>", "kernel threads (0 = all cores)", "0"),
)
  .parse(Deno.args, { from: "user" })
  .opts();

const int = (flag: string, value: string) => wholeNumber("generate", flag, value);

try {
  setThreads(int("--threads", opts.threads));
  const { loaded, model, stopTokens, template } = await loadForGeneration(opts);
  const { tokenizer, loadSeconds } = loaded;
  let prompt = opts.prompt;
  if (!opts.raw) {
    if (template === null) throw new Error("the tokenizer has no chat template: pass --raw to continue text");
    const messages = [
      ...(opts.system ? [{ role: "system", content: opts.system }] : []),
      { role: "user", content: opts.prompt },
    ];
    prompt = template.render(messages, { addGenerationPrompt: true });
  }
  const ids = tokenizer.encode(prompt, { addSpecialTokens: opts.raw });
  const result = generate(model, tokenizer, ids, {
    maxNewTokens: int("--max-new-tokens", opts.maxNewTokens),
    temperature: Number(opts.temperature),
    topK: int("--top-k", opts.topK),
    topP: Number(opts.topP),
    seed: int("--seed", opts.seed),
    stopTokens,
    onText: (piece) => process.stdout.write(piece),
  });
  process.stdout.write("\n");
  const genRate = result.ids.length / Math.max(result.generateSeconds, 1e-9);
  console.error(
    `[load ${loadSeconds.toFixed(1)} s | prompt ${result.promptTokens} tokens at ` +
      `${
        (result.promptTokens / result.promptSeconds).toFixed(1)
      } tok/s | generated ${result.ids.length} at ` +
      `${genRate.toFixed(1)} tok/s | ${result.finishReason}]`,
  );
  loaded.model.close();
} catch (error) {
  console.error(`generate: ${(error as Error).message}`);
  Deno.exit(1);
}
