/** A server on 127.0.0.1 (a free port) over the tiny chat model and its PEFT adapter, for the serve tests. */
import { defaultStopTokens } from "../../lib/generate/generate.ts";
import type { CausalLm } from "../../lib/nn/llama.ts";
import { type LoadedModel, loadModel } from "../../lib/pretrained/load_model.ts";
import { RequestHandler } from "../../lib/serve/handler.ts";
import { listen, type RunningServer } from "../../lib/serve/listen.ts";
import { type ModelLookup, ModelRegistry } from "../../lib/serve/models.ts";
import { GenerationQueue } from "../../lib/serve/queue.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { TINY_ADAPTER, tinyChatModelDir } from "./_tiny_chat_model.ts";

let loaded: Promise<LoadedModel> | undefined;

/** The tiny chat model, loaded once per test file (NF4, as the server task loads it). */
export function tinyChat(): Promise<LoadedModel> {
  loaded ??= tinyChatModelDir().then((dir) => loadModel(dir, { progress: false }));
  return loaded;
}

export interface TestServer extends RunningServer, AsyncDisposable {
  handler: RequestHandler;
  registry: ModelRegistry;
  /** Every line the server logged. */
  log: string[];
}

export async function startServer(
  opts: { queueSize?: number; msPerToken?: number; maxBodyBytes?: number } = {},
): Promise<TestServer> {
  const { model, tokenizer, config } = await tinyChat();
  const registry = new ModelRegistry(model, config, "base", [{ name: "lora", dir: TINY_ADAPTER }]);
  const ms = opts.msPerToken ?? 0;
  const models: ModelLookup = ms === 0
    ? registry
    : { ids: () => registry.ids(), get: (id) => slowed(registry.get(id), ms) };
  const log: string[] = [];
  const handler = new RequestHandler({
    models,
    tokenizer,
    template: ChatTemplate.fromTokenizer(tokenizer),
    stopTokens: defaultStopTokens(tokenizer, config.eosTokenIds),
    contextLength: config.maxPositionEmbeddings,
    vocabSize: config.vocabSize,
    defaultMaxTokens: 16,
    maxBodyBytes: opts.maxBodyBytes ?? 1 << 20,
    queue: new GenerationQueue(opts.queueSize ?? 4),
    log: (line) => log.push(line),
  });
  const server = await listen(handler, { port: 0 });
  return {
    ...server,
    handler,
    registry,
    log,
    [Symbol.asyncDispose]: async () => {
      handler.abortAll();
      await server.shutdown();
    },
  };
}

/**
 * The model, each forward pass taking at least `ms` more (busy, as real work would): long enough for a
 * test to act while a generation runs, without depending on how fast this machine is.
 */
export function slowed(model: CausalLm, ms: number): CausalLm {
  return {
    newCache: (capacity) => model.newCache(capacity),
    forward: (ids, opts) => {
      const until = performance.now() + ms;
      while (performance.now() < until) { /* busy */ }
      return model.forward(ids, opts);
    },
  };
}
