/**
 * The HTTP side of the OpenAI-compatible server as a plain `(Request) => Response` function (no sockets
 * here; see listen.ts): routing, body limits, validation, the generation queue, whole and streamed answers.
 * Generation runs on this thread, one token per event-loop turn, so while one request generates the server
 * still answers others (a model list, a 503 for a full queue) and notices a client that has gone away.
 */
import { type AsyncGenerateOptions, generateAsync, type Generation } from "../generate/generate.ts";
import { type ChatMessage, type ChatTemplate, ChatTemplateError } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { ApiError, errorResponse } from "./errors.ts";
import type { ModelLookup } from "./models.ts";
import {
  chatChunk,
  chatCompletion,
  type FinishReason,
  type ResponseHead,
  responseHead,
  textChunk,
  textCompletion,
  usageChunk,
  usageOf,
} from "./openai.ts";
import { GenerationQueue, QueueFullError } from "./queue.ts";
import {
  type ChatCompletionRequest,
  chatCompletionRequest,
  type CompletionRequest,
  completionRequest,
  parseRequest,
} from "./schemas.ts";
import { SSE_DONE, SSE_HEADERS, sseEvent } from "./sse.ts";

export interface HandlerOptions {
  models: ModelLookup;
  tokenizer: Tokenizer;
  /** The chat template; without one, /v1/chat/completions answers 400 (use /v1/completions). */
  template: ChatTemplate | null;
  stopTokens: readonly number[];
  /** Prompt plus answer must fit in this many tokens (the model's context). */
  contextLength: number;
  /** Vocabulary size of the model (token-id prompts are checked against it). */
  vocabSize: number;
  /** The answer length when a request names none (still capped by the context). */
  defaultMaxTokens: number;
  /** Larger request bodies get 413. */
  maxBodyBytes: number;
  queue: GenerationQueue;
  /** One line per request (method, path, status, tokens, seconds). */
  log?: (line: string) => void;
}

type Kind = "chat" | "completion";

/** A validated generation request, whichever endpoint it came from. */
interface Job {
  kind: Kind;
  modelId: string;
  promptIds: number[];
  generate: AsyncGenerateOptions;
  stream: boolean;
  includeUsage: boolean;
}

export class RequestHandler {
  /** Requests in line or generating: what abortAll ends. */
  readonly #running = new Set<AbortController>();
  #stopping = false;

  constructor(readonly opts: HandlerOptions) {}

  /**
   * Ends every generation now (their answers end with what they have) and refuses those still waiting:
   * a second Ctrl-C.
   */
  abortAll(): void {
    this.#stopping = true;
    for (const controller of this.#running) controller.abort(new Error("the server is shutting down"));
  }

  handle = async (req: Request): Promise<Response> => {
    const t0 = performance.now();
    const path = new URL(req.url).pathname.replace(/\/+$/, "");
    let response: Response;
    let note = "";
    try {
      ({ response, note } = await this.#route(req, path));
    } catch (error) {
      response = errorResponse(error);
      note = error instanceof ApiError ? error.message : `internal error: ${(error as Error).message}`;
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(2);
    this.opts.log?.(`${req.method} ${path} ${response.status} ${seconds} s${note ? ` ${note}` : ""}`);
    return response;
  };

  async #route(req: Request, path: string): Promise<{ response: Response; note: string }> {
    const routes: Record<
      string,
      { method: string; run: () => Promise<{ response: Response; note: string }> }
    > = {
      "/v1/models": { method: "GET", run: () => Promise.resolve({ response: this.#modelList(), note: "" }) },
      "/v1/chat/completions": { method: "POST", run: () => this.#completion(req, "chat") },
      "/v1/completions": { method: "POST", run: () => this.#completion(req, "completion") },
    };
    const modelPath = /^\/v1\/models\/(.+)$/.exec(path);
    const route = modelPath
      ? { method: "GET", run: () => Promise.resolve({ response: this.#modelInfo(modelPath[1]), note: "" }) }
      : routes[path];
    if (route === undefined) {
      throw new ApiError(
        404,
        `no such endpoint: ${req.method} ${path}`,
        "invalid_request_error",
        null,
        "unknown_url",
      );
    }
    if (req.method !== route.method) {
      throw new ApiError(
        405,
        `${path} takes ${route.method}, not ${req.method}`,
        "invalid_request_error",
        null,
        "method_not_allowed",
        { allow: route.method },
      );
    }
    return await route.run();
  }

  #modelList(): Response {
    return Response.json({ object: "list", data: this.opts.models.ids().map(modelObject) });
  }

  #modelInfo(id: string): Response {
    const name = decodeURIComponent(id);
    this.opts.models.get(name); // 404 for an unknown name
    return Response.json(modelObject(name));
  }

  async #completion(req: Request, kind: Kind): Promise<{ response: Response; note: string }> {
    const body = await readJson(req, this.opts.maxBodyBytes);
    const job = kind === "chat"
      ? this.#chatJob(parseRequest(chatCompletionRequest, body))
      : this.#completionJob(parseRequest(completionRequest, body));
    const model = this.opts.models.get(job.modelId);
    const controller = new AbortController();
    req.signal.addEventListener("abort", () => controller.abort(req.signal.reason), { once: true });
    let turn: Promise<() => void>;
    try {
      turn = this.opts.queue.join(controller.signal);
    } catch (error) {
      if (!(error instanceof QueueFullError)) throw error;
      throw new ApiError(503, error.message, "server_error", null, "queue_full", { "retry-after": "1" });
    }
    this.#running.add(controller);
    const head = responseHead(kind, job.modelId);
    const note = `model=${job.modelId} prompt=${job.promptIds.length} tokens`;
    if (job.stream) {
      return { response: this.#streamed(req, job, model, head, turn, controller), note: `${note} stream` };
    }

    const release = await turn.catch(() => {
      this.#running.delete(controller);
      throw this.#stopping
        ? new ApiError(503, "the server is shutting down", "server_error", null, "shutting_down")
        : new ApiError(
          499,
          "the client closed the request while it waited",
          undefined,
          null,
          "client_closed",
        );
    });
    let g: Generation;
    try {
      g = await generateAsync(model, this.opts.tokenizer, job.promptIds, {
        ...job.generate,
        signal: controller.signal,
      });
    } finally {
      this.#running.delete(controller);
      release();
    }
    const finish = finishReason(g);
    const answer = kind === "chat"
      ? chatCompletion(head, g.text, finish, usageOf(g))
      : textCompletion(head, g.text, finish, usageOf(g));
    return { response: Response.json(answer), note: `${note}, ${g.ids.length} generated, ${g.finishReason}` };
  }

  /** An SSE response whose chunks are written as tokens decode; cancelling the stream aborts generation. */
  #streamed(
    req: Request,
    job: Job,
    model: ReturnType<ModelLookup["get"]>,
    head: ResponseHead,
    turn: Promise<() => void>,
    controller: AbortController,
  ): Response {
    const { tokenizer, log } = this.opts;
    const done = () => this.#running.delete(controller);
    const stopping = () => this.#stopping;
    // The client can leave (cancel) or the server abort generation at shutdown (then the stream ends properly).
    let gone = false;
    const body = new ReadableStream<Uint8Array>({
      start(out) {
        const send = (data: unknown) => {
          if (!gone) out.enqueue(sseEvent(data));
        };
        const piece = (text: string) =>
          send(job.kind === "chat" ? chatChunk(head, { content: text }, null) : textChunk(head, text, null));
        const run = async () => {
          const release = await turn;
          try {
            if (job.kind === "chat") send(chatChunk(head, { role: "assistant", content: "" }, null));
            // Let the headers (and the role) go out before the prompt pass holds the thread.
            await new Promise((resolve) => setTimeout(resolve, 0));
            const g = await generateAsync(model, tokenizer, job.promptIds, {
              ...job.generate,
              onText: piece,
              signal: controller.signal,
            });
            const finish = finishReason(g);
            send(job.kind === "chat" ? chatChunk(head, {}, finish) : textChunk(head, "", finish));
            if (job.includeUsage) send(usageChunk(head, job.kind, usageOf(g)));
            log?.(`  ${head.id}: ${g.ids.length} generated, ${gone ? "client left" : g.finishReason}`);
          } finally {
            release();
          }
        };
        run().catch((error) => {
          if (gone) return log?.(`  ${head.id}: client left before generating`);
          // Headers are out: the error travels as an event in OpenAI's shape.
          const shutdown = new ApiError(
            503,
            "the server is shutting down",
            "server_error",
            null,
            "shutting_down",
          );
          send(errorBody(stopping() ? shutdown : error));
        }).finally(() => {
          done();
          if (gone) return;
          out.enqueue(SSE_DONE);
          out.close();
        });
      },
      cancel(reason) {
        gone = true;
        controller.abort(reason ?? new Error("the client closed the stream"));
      },
    });
    req.signal.addEventListener("abort", () => gone = true, { once: true });
    return new Response(body, { headers: SSE_HEADERS });
  }

  #chatJob(req: ChatCompletionRequest): Job {
    const template = this.opts.template;
    if (template === null) {
      throw new ApiError(400, "this model has no chat template: use /v1/completions", undefined, "messages");
    }
    const messages: ChatMessage[] = req.messages.map((m) => ({
      role: m.role === "developer" ? "system" : m.role,
      content: typeof m.content === "string" ? m.content : m.content.map((part) => part.text).join(""),
    }));
    let prompt: string;
    try {
      prompt = template.render(messages, { addGenerationPrompt: true });
    } catch (error) {
      // Templates refuse what the model was not trained on (e.g. roles that do not alternate).
      if (!(error instanceof ChatTemplateError)) throw error;
      throw new ApiError(
        400,
        `the model's chat template refuses these messages: ${error.message}`,
        undefined,
        "messages",
      );
    }
    const promptIds = this.opts.tokenizer.encode(prompt, { addSpecialTokens: false });
    const maxTokens = req.max_completion_tokens ?? req.max_tokens;
    return this.#job("chat", req, promptIds, maxTokens, "messages");
  }

  #completionJob(req: CompletionRequest): Job {
    const prompt = req.prompt;
    let promptIds: number[];
    if (typeof prompt === "string" || typeof prompt[0] === "string") {
      const text = typeof prompt === "string" ? prompt : prompt[0] as string;
      promptIds = this.opts.tokenizer.encode(text, { addSpecialTokens: true });
    } else {
      promptIds = prompt as number[];
      const bad = promptIds.findIndex((id) => id >= this.opts.vocabSize);
      if (bad >= 0) {
        throw new ApiError(
          400,
          `prompt[${bad}]: token id ${
            promptIds[bad]
          } is outside the vocabulary (size ${this.opts.vocabSize})`,
          undefined,
          "prompt",
        );
      }
    }
    return this.#job("completion", req, promptIds, req.max_tokens, "prompt");
  }

  #job(
    kind: Kind,
    req: ChatCompletionRequest | CompletionRequest,
    promptIds: number[],
    maxTokens: number | null | undefined,
    promptField: string,
  ): Job {
    const { contextLength, defaultMaxTokens } = this.opts;
    if (promptIds.length === 0) {
      throw new ApiError(400, "the prompt is empty (no tokens)", undefined, promptField);
    }
    const room = contextLength - promptIds.length;
    if (room < 1 || (maxTokens != null && maxTokens > room)) {
      const asked = maxTokens != null ? ` + ${maxTokens} (max_tokens)` : "";
      throw new ApiError(
        400,
        `the model's context is ${contextLength} tokens; the request needs ${promptIds.length} (prompt)${asked}`,
        undefined,
        promptField,
        "context_length_exceeded",
      );
    }
    // top_p 0 keeps only the most likely token: greedy.
    const greedy = req.temperature === 0 || req.top_p === 0;
    const stop = req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
    return {
      kind,
      modelId: req.model,
      promptIds,
      stream: req.stream ?? false,
      includeUsage: req.stream_options?.include_usage ?? false,
      generate: {
        maxNewTokens: maxTokens ?? Math.min(defaultMaxTokens, room),
        temperature: greedy ? 0 : req.temperature ?? 1,
        topP: greedy ? 1 : req.top_p ?? 1,
        topK: req.top_k ?? 0,
        seed: req.seed ?? Math.floor(Math.random() * 2 ** 32),
        stopTokens: this.opts.stopTokens,
        stopSequences: stop.filter((s) => s.length > 0),
      },
    };
  }
}

function modelObject(id: string) {
  return { id, object: "model", created: 0, owned_by: "qlora-deno" };
}

/** Only a gone client aborts, and it reads no reason; what it did get had stopped. */
function finishReason(g: Generation): FinishReason {
  return g.finishReason === "length" ? "length" : "stop";
}

function errorBody(error: unknown) {
  return error instanceof ApiError ? error.body() : {
    error: {
      message: `internal error: ${(error as Error)?.message ?? error}`,
      type: "server_error",
      param: null,
      code: null,
    },
  };
}

/** The body as JSON, read no further than `limit` bytes (413 beyond). */
async function readJson(req: Request, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new ApiError(
      413,
      `the request body is larger than ${limit} bytes`,
      "invalid_request_error",
      null,
      "body_too_large",
    );
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > limit) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body !== null) {
    for await (const chunk of req.body) {
      size += chunk.length;
      if (size > limit) throw tooLarge();
      chunks.push(chunk);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  const text = new TextDecoder().decode(bytes);
  if (text.trim() === "") throw new ApiError(400, "the request body is empty: expected a JSON object");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON (${(error as Error).message})`);
  }
}
