/**
 * A conversation with a chat model: the history is rendered through the chat template every turn (the
 * model sees exactly the text it was trained on), the answer joins the history, and the oldest turns are
 * dropped when prompt plus answer would no longer fit in the model's context.
 */
import type { CausalLm } from "../nn/llama.ts";
import type { ChatMessage, ChatTemplate } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { type AsyncGenerateOptions, generateAsync, type Generation } from "./generate.ts";

export interface ChatSessionOptions {
  template: ChatTemplate;
  /** Tokens that end an answer (see defaultStopTokens). */
  stopTokens: readonly number[];
  /** The model's context in tokens. */
  contextLength: number;
  system?: string;
}

export interface ChatReply extends Generation {
  /** Earlier exchanges dropped from the history to make room (0 mostly). */
  droppedTurns: number;
}

export class ChatSession {
  /** A system message placed before the history, when set. */
  system: string | undefined;
  /** User and assistant messages, alternating, oldest first. */
  readonly history: ChatMessage[] = [];

  constructor(readonly model: CausalLm, readonly tokenizer: Tokenizer, readonly opts: ChatSessionOptions) {
    this.system = opts.system;
  }

  /** Forgets the conversation (the system message stays). */
  reset(): void {
    this.history.length = 0;
  }

  /** The messages the next prompt renders: system, history, then `user`. */
  messagesWith(user: string): ChatMessage[] {
    const system = this.system === undefined ? [] : [{ role: "system", content: this.system }];
    return [...system, ...this.history, { role: "user", content: user }];
  }

  /**
   * Answers `user` in the context of the history; the exchange is then part of it. An aborted answer is
   * kept as far as it got (that is what the user saw).
   */
  async say(user: string, opts: AsyncGenerateOptions = {}): Promise<ChatReply> {
    const wanted = opts.maxNewTokens ?? 128;
    let droppedTurns = 0;
    let ids = this.#encode(user);
    // Drop whole exchanges, oldest first, until the prompt leaves room for the answer.
    while (ids.length + wanted > this.opts.contextLength && this.history.length >= 2) {
      this.history.splice(0, 2);
      droppedTurns++;
      ids = this.#encode(user);
    }
    const room = this.opts.contextLength - ids.length;
    if (room < 1) {
      throw new RangeError(
        `the message needs ${ids.length} tokens with the chat template; the model's context is ` +
          `${this.opts.contextLength}`,
      );
    }
    const reply = await generateAsync(this.model, this.tokenizer, ids, {
      ...opts,
      stopTokens: opts.stopTokens ?? this.opts.stopTokens,
      maxNewTokens: Math.min(wanted, room),
    });
    this.history.push({ role: "user", content: user }, { role: "assistant", content: reply.text });
    return { ...reply, droppedTurns };
  }

  #encode(user: string): number[] {
    const prompt = this.opts.template.render(this.messagesWith(user), { addGenerationPrompt: true });
    return this.tokenizer.encode(prompt, { addSpecialTokens: false });
  }
}
