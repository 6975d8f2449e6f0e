/**
 * `deno task chat`: a conversation in the terminal. Each line you type is a user message; the answer
 * streams as it decodes and joins the history, which the chat template renders in full every turn.
 * `/reset` clears the history, `/system <text>` sets the system message (`/system` alone removes it),
 * `/exit` (or Ctrl-D) ends; Ctrl-C stops an answer, or leaves when no answer is running.
 * With piped input (not a terminal) each line is one message and only the answers go to stdout.
 */
import { Command } from "@commander-js/extra-typings";
import process from "node:process";
import { createInterface } from "node:readline";
import { setThreads } from "../ffi/runtime.ts";
import { ChatSession } from "../lib/generate/chat_session.ts";
import { validateSampling } from "../lib/generate/sampler.ts";
import { describeModelSpec } from "../lib/io/resolve_model.ts";
import { loadForGeneration } from "./load_for_generation.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { wholeNumber } from "./whole_number.ts";

const opts = pairBooleans(
  new Command("deno task chat")
    .description("Chat with a Llama-family model (NF4 weights, CPU), optionally with a LoRA adapter.")
    .option("--model <spec>", describeModelSpec(), "default")
    .option("--adapter <dir>", "a PEFT LoRA adapter directory to apply (e.g. out/finetune/adapter)")
    .option("--no-quantize", "keep the block linears in f32 (e.g. a merged bf16 model)")
    .option("--system <text>", "a system message for the conversation")
    .option("--max-new-tokens <n>", "tokens per answer at most", "256")
    .option("--temperature <t>", "0 = greedy", "0")
    .option("--top-k <k>", "sample from the k most likely tokens (0 = all)", "0")
    .option("--top-p <p>", "nucleus sampling mass (1 = all)", "1")
    .option("--seed <n>", "random seed for sampling (answer i uses seed + i)", "0")
    .option("--threads <n>", "kernel threads (0 = all cores)", "0"),
)
  .parse(Deno.args, { from: "user" })
  .opts();

const int = (flag: string, value: string) => wholeNumber("chat", flag, value);
const HELP = "/reset clears the history, /system <text> sets the system message, /exit ends; " +
  "Ctrl-C stops an answer";

try {
  setThreads(int("--threads", opts.threads));
  const sampling = {
    maxNewTokens: int("--max-new-tokens", opts.maxNewTokens),
    temperature: Number(opts.temperature),
    topK: int("--top-k", opts.topK),
    topP: Number(opts.topP),
  };
  validateSampling(sampling); // a bad --temperature fails before the model loads
  const seed = int("--seed", opts.seed);
  const { loaded, model, stopTokens, template } = await loadForGeneration(opts);
  if (template === null) {
    throw new Error(`${loaded.source}: the tokenizer has no chat template; use deno task generate --raw`);
  }
  const session = new ChatSession(model, loaded.tokenizer, {
    template,
    stopTokens,
    contextLength: loaded.config.maxPositionEmbeddings,
    system: opts.system,
  });

  const interactive = process.stdin.isTTY === true;
  const lines = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
  const note = (text: string) => console.error(interactive ? `\x1b[2m${text}\x1b[0m` : text);
  let answering: AbortController | undefined;
  lines.on("SIGINT", () => answering ? answering.abort() : lines.close());
  if (interactive) {
    note(`${loaded.source}${opts.adapter ? ` + ${opts.adapter}` : ""}: ${HELP}`);
    lines.setPrompt("> ");
    lines.prompt();
  }

  let turn = 0;
  for await (const line of lines) {
    const text = line.trim();
    if (text === "/exit" || text === "/quit") break;
    if (text === "/reset") {
      session.reset();
      note("(history cleared)");
    } else if (text === "/system" || text.startsWith("/system ")) {
      const system = text.slice("/system".length).trim();
      session.system = system === "" ? undefined : system;
      note(system === "" ? "(no system message)" : "(system message set)");
    } else if (text === "/help") {
      note(HELP);
    } else if (text.startsWith("/")) {
      note(`unknown command ${text.split(/\s/)[0]}: ${HELP}`);
    } else if (text !== "") {
      answering = new AbortController();
      const reply = await session.say(text, {
        ...sampling,
        seed: seed + turn++,
        signal: answering.signal,
        onText: (piece) => process.stdout.write(piece),
      });
      answering = undefined;
      process.stdout.write("\n");
      if (reply.droppedTurns > 0) {
        note(`(the oldest ${reply.droppedTurns} exchange(s) no longer fit and were dropped)`);
      }
      if (interactive) {
        const rate = reply.ids.length / Math.max(reply.generateSeconds, 1e-9);
        note(
          `[${reply.ids.length} tokens, ${rate.toFixed(1)} tok/s${
            reply.finishReason === "abort" ? ", stopped" : ""
          }]`,
        );
      }
    }
    if (interactive) lines.prompt();
  }
  lines.close();
  loaded.model.close();
} catch (error) {
  console.error(`chat: ${(error as Error).message}`);
  Deno.exit(1);
}
