/**
 * Text generation with a KV cache: the prompt runs once, then one token per step; stops at a stop token, a
 * stop sequence or the token limit; text is streamed as it becomes printable. `generate` runs to the end in
 * one go; `generateAsync` gives the event loop a turn after every token and can be aborted (a server keeps
 * taking requests and notices a client that left, a REPL sees Ctrl-C).
 */
import type { CausalLm } from "../nn/llama.ts";
import type { KvCache } from "../nn/kv_cache.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { Rng } from "../random.ts";
import { sample, type SamplingOptions, validateSampling } from "./sampler.ts";
import { TextStream } from "./text_stream.ts";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Token ids that end generation (not included in the output). */
  stopTokens?: Iterable<number>;
  /** Strings that end generation: the text ends before the first one (which is not included). */
  stopSequences?: readonly string[];
  seed?: number;
  /** Called with each new piece of text as soon as it decodes cleanly (and cannot start a stop sequence). */
  onText?: (piece: string) => void;
}

export interface AsyncGenerateOptions extends GenerateOptions {
  /** Ends generation before the next token (finishReason "abort"). */
  signal?: AbortSignal;
  /** Work between two event-loop turns, in ms (a turn costs ~1–3 ms); default 50. */
  turnEveryMs?: number;
}

export interface Generation {
  /** Every token sampled (a stop token excluded; the tokens of a stop sequence included). */
  ids: number[];
  text: string;
  /** "stop" (a stop token or stop sequence), "length" (maxNewTokens reached) or "abort" (the signal). */
  finishReason: "stop" | "length" | "abort";
  promptTokens: number;
  promptSeconds: number;
  generateSeconds: number;
}

export function generate(
  model: CausalLm,
  tokenizer: Tokenizer,
  promptIds: readonly number[],
  opts: GenerateOptions = {},
): Generation {
  const run = new Decoding(model, tokenizer, promptIds, opts);
  while (run.step());
  return run.result();
}

export async function generateAsync(
  model: CausalLm,
  tokenizer: Tokenizer,
  promptIds: readonly number[],
  opts: AsyncGenerateOptions = {},
): Promise<Generation> {
  opts.signal?.throwIfAborted();
  const every = opts.turnEveryMs ?? 50;
  const run = new Decoding(model, tokenizer, promptIds, opts);
  let last = performance.now();
  while (!opts.signal?.aborted && run.step()) {
    if (performance.now() - last < every) continue;
    await nextTurn();
    last = performance.now();
  }
  if (opts.signal?.aborted) run.abort();
  return run.result();
}

/**
 * Resolves after the event loop has polled I/O. A timer, not setImmediate: in Deno, immediates run many
 * times before sockets are served (measured: a request to a local server needed >100 of them, one timer).
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** One generation, a token per `step()`. The prompt runs in the constructor. */
class Decoding {
  readonly ids: number[] = [];
  #finishReason?: Generation["finishReason"];
  readonly #sampling;
  readonly #maxNewTokens: number;
  readonly #stop: Set<number>;
  readonly #text: TextStream;
  readonly #rng: Rng;
  readonly #cache: KvCache;
  readonly #t0: number;
  readonly #t1: number;
  #logits: Float32Array;
  /** The last sampled token, not yet fed to the model (fed only if another token is wanted). */
  #pending?: number;

  constructor(
    readonly model: CausalLm,
    readonly tokenizer: Tokenizer,
    readonly promptIds: readonly number[],
    readonly opts: GenerateOptions,
  ) {
    this.#sampling = validateSampling(opts);
    this.#maxNewTokens = opts.maxNewTokens ?? 128;
    if (!Number.isInteger(this.#maxNewTokens) || this.#maxNewTokens < 0) {
      throw new RangeError(`maxNewTokens must be an integer ≥ 0, got ${this.#maxNewTokens}`);
    }
    if (promptIds.length === 0) throw new RangeError("the prompt is empty (no tokens)");
    this.#stop = new Set(opts.stopTokens ?? []);
    this.#text = new TextStream(opts.stopSequences);
    this.#rng = new Rng(opts.seed ?? 0);
    this.#cache = model.newCache(promptIds.length + this.#maxNewTokens);
    this.#t0 = performance.now();
    this.#logits = model.forward(Uint32Array.from(promptIds), { cache: this.#cache, logits: "last" });
    this.#t1 = performance.now();
  }

  /** Samples one more token; false once generation has ended. */
  step(): boolean {
    if (this.#finishReason !== undefined) return false;
    if (this.ids.length >= this.#maxNewTokens) return this.#end("length");
    if (this.#pending !== undefined) {
      this.#logits = this.model.forward(Uint32Array.of(this.#pending), {
        cache: this.#cache,
        logits: "last",
      });
    }
    const next = sample(this.#logits, this.#sampling, this.#rng);
    if (this.#stop.has(next)) return this.#end("stop");
    this.ids.push(next);
    this.#pending = next;
    this.#emit(this.#text.update(this.#decode()));
    if (this.#text.stopped) return this.#end("stop");
    if (this.ids.length >= this.#maxNewTokens) return this.#end("length");
    return true;
  }

  abort(): void {
    if (this.#finishReason === undefined) this.#end("abort");
  }

  result(): Generation {
    if (this.#finishReason === undefined) throw new Error("Decoding.result: generation has not ended");
    return {
      ids: this.ids,
      text: this.#text.text,
      finishReason: this.#finishReason,
      promptTokens: this.promptIds.length,
      promptSeconds: (this.#t1 - this.#t0) / 1000,
      generateSeconds: (performance.now() - this.#t1) / 1000,
    };
  }

  #end(reason: Generation["finishReason"]): false {
    this.#finishReason = reason;
    this.#emit(this.#text.finish(this.#decode()));
    return false;
  }

  #decode(): string {
    return this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
  }

  #emit(piece: string): void {
    if (piece.length > 0) this.opts.onText?.(piece);
  }
}

/** Stop tokens for a chat model: the config's eos ids, the tokenizer's eos, and common end-of-turn tokens. */
export function defaultStopTokens(tokenizer: Tokenizer, eosTokenIds: readonly number[]): number[] {
  const ids = new Set(eosTokenIds);
  if (tokenizer.eosTokenId !== undefined && tokenizer.eosTokenId !== null) ids.add(tokenizer.eosTokenId);
  for (const token of ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"]) {
    const id = tokenizer.tokenToId(token);
    if (id !== undefined) ids.add(id);
  }
  return [...ids];
}
