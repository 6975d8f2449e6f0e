/**
 * Text generation with a KV cache: the prompt runs once, then one token per step; stops at a stop token or
 * the token limit; text is streamed as it becomes printable.
 */
import type { CausalLm } from "../nn/llama.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { Rng } from "../random.ts";
import { sample, type SamplingOptions, validateSampling } from "./sampler.ts";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Token ids that end generation (not included in the output). */
  stopTokens?: Iterable<number>;
  seed?: number;
  /** Called with each new piece of text as soon as it decodes cleanly. */
  onText?: (piece: string) => void;
}

export interface Generation {
  ids: number[];
  text: string;
  /** "stop" (a stop token) or "length" (maxNewTokens reached). */
  finishReason: "stop" | "length";
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
  const sampling = validateSampling(opts);
  const maxNewTokens = opts.maxNewTokens ?? 128;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new RangeError(`maxNewTokens must be an integer ≥ 0, got ${maxNewTokens}`);
  }
  if (promptIds.length === 0) throw new RangeError("the prompt is empty (no tokens)");
  const stop = new Set(opts.stopTokens ?? []);
  const rng = new Rng(opts.seed ?? 0);
  const cache = model.newCache(promptIds.length + maxNewTokens);

  const t0 = performance.now();
  let logits = model.forward(Uint32Array.from(promptIds), { cache, logits: "last" });
  const t1 = performance.now();
  const ids: number[] = [];
  let printed = "";
  let finishReason: Generation["finishReason"] = "length";
  for (let step = 0; step < maxNewTokens; step++) {
    const next = sample(logits, sampling, rng);
    if (stop.has(next)) {
      finishReason = "stop";
      break;
    }
    ids.push(next);
    const text = tokenizer.decode(ids, { skipSpecialTokens: true });
    // A token can end in the middle of a UTF-8 character: hold the text back until it is whole.
    if (opts.onText && !text.endsWith("\uFFFD") && text.length > printed.length) {
      opts.onText(text.slice(printed.length));
      printed = text;
    }
    if (step + 1 < maxNewTokens) logits = model.forward(Uint32Array.of(next), { cache, logits: "last" });
  }
  const text = tokenizer.decode(ids, { skipSpecialTokens: true });
  if (opts.onText && text.length > printed.length) opts.onText(text.slice(printed.length));
  return {
    ids,
    text,
    finishReason,
    promptTokens: promptIds.length,
    promptSeconds: (t1 - t0) / 1000,
    generateSeconds: (performance.now() - t1) / 1000,
  };
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
