/** The response objects of OpenAI's chat and text completion APIs (whole and streamed), from our results. */
import type { Generation } from "../generate/generate.ts";

export type FinishReason = "stop" | "length";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(g: Pick<Generation, "promptTokens" | "ids">): Usage {
  return {
    prompt_tokens: g.promptTokens,
    completion_tokens: g.ids.length,
    total_tokens: g.promptTokens + g.ids.length,
  };
}

/** What every object of one response shares. */
export interface ResponseHead {
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
}

export function responseHead(kind: "chat" | "completion", model: string): ResponseHead {
  const prefix = kind === "chat" ? "chatcmpl-" : "cmpl-";
  return {
    id: prefix + crypto.randomUUID().replaceAll("-", ""),
    created: Math.floor(Date.now() / 1000),
    model,
  };
}

export function chatCompletion(head: ResponseHead, text: string, finish: FinishReason, usage: Usage) {
  return {
    ...head,
    object: "chat.completion",
    choices: [{
      index: 0,
      message: { role: "assistant", content: text },
      logprobs: null,
      finish_reason: finish,
    }],
    usage,
  };
}

/** A streamed piece of a chat answer; the first carries the role, the last an empty delta and the reason. */
export function chatChunk(
  head: ResponseHead,
  delta: { role?: "assistant"; content?: string },
  finish: FinishReason | null,
) {
  return {
    ...head,
    object: "chat.completion.chunk",
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
}

export function textCompletion(head: ResponseHead, text: string, finish: FinishReason, usage: Usage) {
  return {
    ...head,
    object: "text_completion",
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    usage,
  };
}

export function textChunk(head: ResponseHead, text: string, finish: FinishReason | null) {
  return {
    ...head,
    object: "text_completion",
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  };
}

/** The last chunk of a stream with `stream_options.include_usage`: no choices, the token counts. */
export function usageChunk(head: ResponseHead, kind: "chat" | "completion", usage: Usage) {
  return {
    ...head,
    object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    choices: [],
    usage,
  };
}
