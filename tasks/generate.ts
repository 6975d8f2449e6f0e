/**
 * `deno task generate --prompt "…"`: load a model (local HF dir, .gguf, hub id, or the default SmolLM2), render
 * the prompt with its chat template, and stream the answer to stdout. Timing goes to stderr.
 */
import { Command } from "@commander-js/extra-typings";
import process from "node:process";
import { setThreads } from "../ffi/runtime.ts";
import { describeModelSpec, resolveModel } from "../lib/io/resolve_model.ts";
import { loadModel } from "../lib/pretrained/load_model.ts";
import { readPeftAdapter } from "../lib/io/peft/read.ts";
import { LoraModel } from "../lib/lora/model.ts";
import { ChatTemplate } from "../lib/text/chat_template.ts";
import { defaultStopTokens, generate } from "../lib/generate/generate.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { userCwd, userPath } from "./user_path.ts";
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
  const resolved = await resolveModel(opts.model === "default" ? undefined : opts.model, { cwd: userCwd() });
  const path = resolved.kind === "gguf" ? resolved.path : resolved.dir;
  const loaded = await loadModel(path, { quantize: opts.quantize ? "nf4" : "none" });
  const { tokenizer, config, loadSeconds } = loaded;
  const model = opts.adapter
    ? LoraModel.fromWeights(loaded.model, readPeftAdapter(userPath(opts.adapter), config).layers)
    : loaded.model;
  let prompt = opts.prompt;
  if (!opts.raw) {
    const messages = [
      ...(opts.system ? [{ role: "system", content: opts.system }] : []),
      { role: "user", content: opts.prompt },
    ];
    prompt = ChatTemplate.fromTokenizer(tokenizer).render(messages, { addGenerationPrompt: true });
  }
  const ids = tokenizer.encode(prompt, { addSpecialTokens: opts.raw });
  const result = generate(model, tokenizer, ids, {
    maxNewTokens: int("--max-new-tokens", opts.maxNewTokens),
    temperature: Number(opts.temperature),
    topK: int("--top-k", opts.topK),
    topP: Number(opts.topP),
    seed: int("--seed", opts.seed),
    stopTokens: defaultStopTokens(tokenizer, config.eosTokenIds),
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
