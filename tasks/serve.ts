/**
 * `deno task serve`: an OpenAI-compatible HTTP server on 127.0.0.1 — /v1/chat/completions,
 * /v1/completions (whole or streamed), /v1/models. One base model in NF4; LoRA adapters on it by name
 * (`--adapter name=dir`), chosen per request by the `model` field. One generation at a time, a bounded
 * queue behind it. Ctrl-C (or SIGTERM) stops taking requests and exits when the accepted ones are done;
 * a second one ends the running generations at once.
 */
import { Command } from "@commander-js/extra-typings";
import { basename } from "node:path";
import { setThreads } from "../ffi/runtime.ts";
import { describeModelSpec } from "../lib/io/resolve_model.ts";
import { RequestHandler } from "../lib/serve/handler.ts";
import { listen } from "../lib/serve/listen.ts";
import { ModelRegistry, type NamedAdapter } from "../lib/serve/models.ts";
import { GenerationQueue } from "../lib/serve/queue.ts";
import { loadForGeneration } from "./load_for_generation.ts";
import { userPath } from "./user_path.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { wholeNumber } from "./whole_number.ts";

const opts = pairBooleans(
  new Command("deno task serve")
    .description("Serve a model (and LoRA adapters on it) over OpenAI's chat and completions API.")
    .option("--model <spec>", describeModelSpec(), "default")
    .option(
      "--adapter <name=dir>",
      "a PEFT LoRA adapter, served as model <name> (repeat for more; a bare dir is named after its folder)",
      (value: string, list: string[]) => [...list, value],
      [] as string[],
    )
    .option("--model-name <id>", "the name clients use for the base model", "base")
    .option(
      "--host <address>",
      "address to bind (the server has no authentication: keep it local)",
      "127.0.0.1",
    )
    .option("--port <n>", "port (0 = any free one)", "8000")
    .option("--queue-size <n>", "requests that may wait while one generates (more get 503)", "8")
    .option("--max-tokens <n>", "answer length for requests that set no max_tokens", "256")
    .option("--max-body-bytes <n>", "larger request bodies get 413", String(1 << 20))
    .option("--no-quantize", "keep the block linears in f32 (e.g. a merged bf16 model)")
    .option("--threads <n>", "kernel threads (0 = all cores)", "0"),
)
  .parse(Deno.args, { from: "user" })
  .opts();

const int = (flag: string, value: string) => wholeNumber("serve", flag, value);

/** `name=dir` or a bare `dir` (named after its last folder). */
function namedAdapter(spec: string): NamedAdapter {
  const eq = spec.indexOf("=");
  const [name, dir] = eq > 0
    ? [spec.slice(0, eq), spec.slice(eq + 1)]
    : [basename(spec.replace(/\/+$/, "")), spec];
  return { name, dir: userPath(dir) };
}

// Numbers first, so a typo fails before the model loads.
const port = int("--port", opts.port);
const queueSize = int("--queue-size", opts.queueSize);
const defaultMaxTokens = Math.max(1, int("--max-tokens", opts.maxTokens));
const maxBodyBytes = int("--max-body-bytes", opts.maxBodyBytes);

try {
  setThreads(int("--threads", opts.threads));
  const { loaded, stopTokens, template } = await loadForGeneration({
    model: opts.model,
    quantize: opts.quantize,
  });
  const { model, tokenizer, config, source } = loaded;
  const models = new ModelRegistry(model, config, opts.modelName, opts.adapter.map(namedAdapter));
  const handler = new RequestHandler({
    models,
    tokenizer,
    template,
    stopTokens,
    contextLength: config.maxPositionEmbeddings,
    vocabSize: config.vocabSize,
    defaultMaxTokens,
    maxBodyBytes,
    queue: new GenerationQueue(queueSize),
    log: (line) => console.error(line),
  });
  const server = await listen(handler, {
    hostname: opts.host,
    port,
    onListen: (url) => console.log(`serving ${models.ids().join(", ")} (${source}) at ${url}/v1`),
  });
  let stopping = false;
  const stop = () => {
    if (stopping) {
      console.error("ending the running generations now");
      handler.abortAll();
      return;
    }
    stopping = true;
    console.error("shutting down: finishing accepted requests (again to end them now)");
    server.shutdown().catch((error) => console.error(`serve: ${(error as Error).message}`));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
  await server.finished;
  model.close();
  console.error("stopped");
} catch (error) {
  console.error(`serve: ${(error as Error).message}`);
  Deno.exit(1);
}
