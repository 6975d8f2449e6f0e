/**
 * Chat templates are Jinja programs shipped with a tokenizer that turn a list of messages into the
 * exact text the model was trained on. We render them with @huggingface/jinja, given the same
 * variables transformers' `apply_chat_template(..., tokenize=False)` provides.
 */
import { Template } from "@huggingface/jinja";
import { PYTHON_STRIP_HELPERS, routePythonStrips } from "./python_strip.ts";
import type { Tokenizer } from "./tokenizer.ts";

export interface ChatMessage {
  role: string;
  content: string;
  /** Templates may read more fields (tool_calls, reasoning_content, …). */
  [field: string]: unknown;
}

export interface RenderOptions {
  /** End with the opening of an assistant turn, for generation; default false. */
  addGenerationPrompt?: boolean;
  /** Further template variables, e.g. `{ enable_thinking: false }` or `{ tools: [...] }`. */
  variables?: Record<string, unknown>;
}

/** The special-token names a template may refer to (`{{ bos_token }}`). */
export interface TemplateTokens {
  bosToken?: string | null;
  eosToken?: string | null;
  padToken?: string | null;
  unkToken?: string | null;
}

/** A chat template that does not parse, fails to render, or refuses the messages (raise_exception). */
export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

export class ChatTemplate {
  readonly #template: Template;

  /** `source` names where the template came from, for error messages. */
  constructor(
    readonly text: string,
    readonly tokens: TemplateTokens = {},
    readonly source = "chat template",
  ) {
    try {
      this.#template = new Template(text);
      routePythonStrips(this.#template.parsed);
    } catch (error) {
      throw new ChatTemplateError(`${source}: cannot parse the template (${(error as Error).message})`);
    }
  }

  /** The tokenizer's default template (or the one named `name`), with its special tokens. */
  static fromTokenizer(tokenizer: Tokenizer, name?: string): ChatTemplate {
    const text = name === undefined ? tokenizer.chatTemplate : tokenizer.namedChatTemplates[name];
    if (text == null) {
      const which = name === undefined ? "chat template" : `chat template named "${name}"`;
      throw new ChatTemplateError(`${tokenizer.source}: the tokenizer has no ${which}`);
    }
    const tokens = {
      bosToken: tokenizer.bosToken,
      eosToken: tokenizer.eosToken,
      padToken: tokenizer.padToken,
      unkToken: tokenizer.unkToken,
    };
    return new ChatTemplate(text, tokens, tokenizer.source);
  }

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    // Like transformers, define only the special tokens the tokenizer has: a missing one is undefined
    // in the template (renders as ""), never None.
    const special = Object.entries({
      bos_token: this.tokens.bosToken,
      eos_token: this.tokens.eosToken,
      pad_token: this.tokens.padToken,
      unk_token: this.tokens.unkToken,
    }).filter(([, token]) => token != null);
    const variables = {
      ...PYTHON_STRIP_HELPERS,
      ...Object.fromEntries(special),
      ...options.variables,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    try {
      return this.#template.render(variables);
    } catch (error) {
      // The renderer defines raise_exception itself (a plain Error carrying the template's message),
      // so a refusal and a broken template both arrive here; the message tells which.
      throw new ChatTemplateError(`${this.source}: the chat template failed: ${(error as Error).message}`);
    }
  }
}
