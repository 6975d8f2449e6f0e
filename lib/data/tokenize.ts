/**
 * Records → token ids plus a per-token loss mask (`mask[t] = 1`: the loss includes predicting token t from
 * the tokens before it). A mask rather than mlx-lm's single "loss starts here" offset, because a multi-turn
 * chat trains every assistant turn and none of the user turns between them.
 *
 * - text: the tokenizer's own special tokens around the text (e.g. BOS for Llama), then EOS; loss on all.
 * - completions: the same around `prompt + completion`; loss on the completion and EOS only.
 * - chat: the chat template renders the conversation (it writes its own special tokens, so the text is
 *   encoded without adding any, as transformers' `apply_chat_template` does). Each assistant turn is located
 *   by rendering the conversation up to it with the generation prompt; the loss covers the turn's content
 *   and its end-of-turn token (`<|im_end|>`), not the newline the template writes after it, which the model
 *   never generates (generation stops at the end-of-turn token).
 *
 * Boundaries between prompt and answer: the whole text is encoded once, and the encoding of each prefix must
 * be a prefix of it (true whenever the boundary falls between pre-tokenizer words, as after ChatML's
 * "assistant\n"). When BPE merges across a boundary (a prompt ending mid-word), there is no token boundary
 * to put the mask on; the pieces are then encoded separately and concatenated, which is also what the model
 * sees at generation time (prompt encoded alone, answer generated after it). `splitAtBoundary` reports it.
 */
import { ChatTemplate } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { DataError } from "./errors.ts";
import type { ChatTurn, DataRecord } from "./formats.ts";

export interface TokenizedRecord {
  ids: number[];
  /** One entry per id: 1 where the token is a training target. */
  mask: Uint8Array;
  /** True when the pieces had to be encoded separately (BPE merged across a prompt/answer boundary). */
  splitAtBoundary: boolean;
}

/** A prompt to generate from and the answer expected after it (for evaluation). */
export interface PromptAndReference {
  ids: number[];
  reference: string;
}

export interface RecordTokenizerOptions {
  /** Put the loss on every token, prompts and user turns included; default false. */
  trainOnPrompt?: boolean;
  /** The template for chat records; default the tokenizer's own. */
  chatTemplate?: ChatTemplate;
}

/** Texts that end an assistant turn in the chat templates we know; only those in the vocabulary are used. */
const END_OF_TURN_TEXTS = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>"];

/** A piece of text and whether its tokens are trained. */
export interface Segment {
  text: string;
  loss: 0 | 1;
}

export class RecordTokenizer {
  readonly trainOnPrompt: boolean;
  /** What `encode(text, {addSpecialTokens: true})` puts before and after a text. */
  readonly #before: number[];
  readonly #after: number[];
  readonly #endOfTurn: string[];
  #template: ChatTemplate | undefined;

  constructor(readonly tokenizer: Tokenizer, options: RecordTokenizerOptions = {}) {
    this.trainOnPrompt = options.trainOnPrompt ?? false;
    this.#template = options.chatTemplate;
    [this.#before, this.#after] = specialsAround(tokenizer);
    const ends = new Set([tokenizer.eosToken, ...END_OF_TURN_TEXTS]);
    this.#endOfTurn = [...ends].filter((t): t is string =>
      t !== null && tokenizer.tokenToId(t) !== undefined
    );
  }

  /** The record's ids and mask; the first token is never a target (nothing comes before it). */
  tokenize(record: DataRecord): TokenizedRecord {
    const out = this.#tokenize(record);
    if (out.mask.length > 0) out.mask[0] = 0;
    return out;
  }

  #tokenize(record: DataRecord): TokenizedRecord {
    switch (record.format) {
      case "text":
        return this.#withSpecials([{ text: record.text, loss: 1 }]);
      case "completions":
        return this.#withSpecials([
          { text: record.prompt, loss: this.trainOnPrompt ? 1 : 0 },
          { text: record.completion, loss: 1 },
        ]);
      case "chat":
        return encodeSegments(this.tokenizer, this.#chatSegments(record));
    }
  }

  /** The prompt before the last answer (the last assistant turn, or the completion) and that answer. */
  promptFor(record: DataRecord): PromptAndReference {
    if (record.format === "completions") {
      const ids = [...this.#before, ...this.tokenizer.encode(record.prompt, { addSpecialTokens: false })];
      return { ids, reference: record.completion };
    }
    if (record.format === "text") {
      throw new DataError(record.file, record.line, "a text record has no answer to evaluate against");
    }
    const last = record.messages.findLastIndex((m) => m.role === "assistant");
    if (last < 0) throw noAssistant(record);
    const prompt = this.#render(record, record.messages.slice(0, last), true);
    return {
      ids: this.tokenizer.encode(prompt, { addSpecialTokens: false }),
      reference: record.messages[last].content,
    };
  }

  /** Text segments with the tokenizer's own specials around them and EOS (trained) at the end. */
  #withSpecials(segments: Segment[]): TokenizedRecord {
    const body = encodeSegments(this.tokenizer, segments);
    const ids = [...this.#before, ...body.ids, ...this.#after];
    const mask = new Uint8Array(ids.length);
    mask.set(body.mask, this.#before.length);
    mask.fill(1, this.#before.length + body.ids.length);
    const eos = this.tokenizer.eosTokenId;
    if (eos !== null && ids.at(-1) !== eos) {
      ids.push(eos);
      return { ids, mask: Uint8Array.of(...mask, 1), splitAtBoundary: body.splitAtBoundary };
    }
    return { ids, mask, splitAtBoundary: body.splitAtBoundary };
  }

  /** The rendered chat cut into untrained and trained (assistant) pieces. */
  #chatSegments(record: DataRecord & { format: "chat" }): Segment[] {
    const messages = record.messages;
    const full = this.#render(record, messages, false);
    checkToolsRendered(record, full);
    const segments: Segment[] = [];
    let done = 0;
    let assistants = 0;
    for (let i = 0; i < messages.length; i++) {
      if (messages[i].role !== "assistant") continue;
      assistants++;
      const prompt = this.#render(record, messages.slice(0, i), true);
      const start = prompt.length;
      // The prefix render must agree with the whole render, else the turn cannot be located in it.
      if (start < done || !full.startsWith(prompt)) throw inconsistentTemplate(record, i);
      const end = start + this.#turnLength(record, full.slice(start), i);
      if (messages[i].weight === 0) continue;
      segments.push({ text: full.slice(done, start), loss: 0 }, { text: full.slice(start, end), loss: 1 });
      done = end;
    }
    if (assistants === 0) throw noAssistant(record);
    if (segments.length === 0) {
      throw new DataError(
        record.file,
        record.line,
        "every assistant message has weight 0: nothing to train on",
      );
    }
    segments.push({ text: full.slice(done), loss: 0 });
    if (this.trainOnPrompt) return [{ text: full, loss: 1 }];
    return segments;
  }

  /**
   * How much of the text after an assistant turn's opening is the turn: up to and including the first
   * end-of-turn token (not the newline a template writes after it, which the model never generates). Found
   * in the whole render rather than by rendering up to the turn, because some templates (Qwen3) render the
   * last message differently (an empty thinking block) from the same message followed by others.
   */
  #turnLength(record: DataRecord & { format: "chat" }, rest: string, i: number): number {
    let first = -1;
    for (const token of this.#endOfTurn) {
      const at = rest.indexOf(token);
      if (at >= 0 && (first < 0 || at + token.length < first)) first = at + token.length;
    }
    if (first >= 0) return first;
    // A template without an end-of-turn token: the turn is what rendering it as the last message adds.
    const prompt = this.#render(record, record.messages.slice(0, i), true);
    const turn = this.#render(record, record.messages.slice(0, i + 1), false);
    if (!(prompt.length + rest.length >= turn.length && (prompt + rest).startsWith(turn))) {
      throw inconsistentTemplate(record, i);
    }
    return turn.length - prompt.length;
  }

  #render(record: DataRecord, messages: readonly ChatTurn[], addGenerationPrompt: boolean): string {
    try {
      this.#template ??= ChatTemplate.fromTokenizer(this.tokenizer);
      // `weight` is our training switch, not something a template should see.
      const turns = messages.map(({ weight: _, ...m }) => m);
      const tools = record.format === "chat" ? record.tools : undefined;
      return this.#template.render(turns, {
        addGenerationPrompt,
        variables: tools === undefined ? undefined : { tools },
      });
    } catch (error) {
      throw new DataError(record.file, record.line, (error as Error).message);
    }
  }
}

function inconsistentTemplate(record: DataRecord, i: number): DataError {
  return new DataError(
    record.file,
    record.line,
    `the chat template renders the conversation up to message ${i + 1} differently from the whole ` +
      `conversation, so the assistant turns cannot be located (use "trainOnPrompt" or another template)`,
  );
}

/**
 * A template written without tools drops tool calls and tool definitions without a word, which would train
 * the model on conversations missing their calls; each call's function name and each tool message must
 * appear in the rendered text.
 */
function checkToolsRendered(record: DataRecord & { format: "chat" }, rendered: string): void {
  const missing: string[] = [];
  record.messages.forEach((m, i) => {
    for (const call of m.tool_calls ?? []) {
      if (!rendered.includes(call.function.name)) {
        missing.push(`the call to "${call.function.name}" (message ${i + 1})`);
      }
    }
    if (m.role === "tool" && !rendered.includes(m.content)) {
      missing.push(`the tool result (message ${i + 1})`);
    }
  });
  for (const tool of record.tools ?? []) {
    const name = (tool.function as { name?: unknown } | undefined)?.name ?? tool.name;
    if (typeof name === "string" && !rendered.includes(name)) missing.push(`the tool "${name}" in "tools"`);
  }
  if (missing.length > 0) {
    throw new DataError(
      record.file,
      record.line,
      `the chat template does not render ${missing.slice(0, 3).join(", ")}${
        missing.length > 3 ? ", …" : ""
      }: ` +
        `it does not support tools; use a model (or --chat-template) whose template does`,
    );
  }
}

function noAssistant(record: DataRecord): DataError {
  return new DataError(record.file, record.line, "the chat has no assistant message, so nothing to train on");
}

/** The ids `encode(x, {addSpecialTokens: true})` adds before and after the ids of `x` alone. */
function specialsAround(tokenizer: Tokenizer): [number[], number[]] {
  const plain = tokenizer.encode("a", { addSpecialTokens: false });
  const full = tokenizer.encode("a", { addSpecialTokens: true });
  for (let i = 0; i + plain.length <= full.length; i++) {
    if (plain.every((id, k) => full[i + k] === id)) return [full.slice(0, i), full.slice(i + plain.length)];
  }
  return [[], []];
}

/** Encodes the joined segments with a mask per segment (see the file comment for boundaries). */
export function encodeSegments(tokenizer: Tokenizer, segments: readonly Segment[]): TokenizedRecord {
  const pieces = segments.filter((s) => s.text !== "");
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const ids = encode(pieces.map((s) => s.text).join(""));
  const mask = new Uint8Array(ids.length);
  let text = "";
  let from = 0;
  for (let i = 0; i < pieces.length; i++) {
    text += pieces[i].text;
    const to = i === pieces.length - 1 ? ids.length : prefixLength(encode(text), ids);
    if (to < from) return encodeSeparately(encode, pieces);
    mask.fill(pieces[i].loss, from, to);
    from = to;
  }
  return { ids, mask, splitAtBoundary: false };
}

/** The length of `prefix` if it is a prefix of `ids`, else -1. */
function prefixLength(prefix: number[], ids: number[]): number {
  if (prefix.length > ids.length) return -1;
  return prefix.every((id, i) => ids[i] === id) ? prefix.length : -1;
}

function encodeSeparately(encode: (text: string) => number[], pieces: readonly Segment[]): TokenizedRecord {
  const ids: number[] = [];
  const masks: number[] = [];
  for (const piece of pieces) {
    const part = encode(piece.text);
    ids.push(...part);
    for (let i = 0; i < part.length; i++) masks.push(piece.loss);
  }
  return { ids, mask: Uint8Array.from(masks), splitAtBoundary: true };
}
