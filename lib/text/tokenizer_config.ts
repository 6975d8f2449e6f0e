/**
 * The settings a tokenizer needs beyond its `tokenizer.json`: which strings are the special tokens,
 * whether encoding adds BOS/EOS, and the chat template. Hugging Face keeps them in
 * `tokenizer_config.json`; GGUF files keep them in metadata (see gguf_tokenizer.ts).
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { FormatError } from "../errors.ts";

export interface TokenizerSettings {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
  /** The template `apply_chat_template` uses by default. */
  chatTemplate: string | null;
  /** Every template by name, when the file has several (e.g. "default", "tool_use"). */
  namedChatTemplates: Record<string, string>;
  /** When set, overrides whether encoding adds BOS (transformers rebuilds the post-processor the same way). */
  addBosToken: boolean | null;
  addEosToken: boolean | null;
}

export const NO_SETTINGS: TokenizerSettings = {
  bosToken: null,
  eosToken: null,
  padToken: null,
  unkToken: null,
  chatTemplate: null,
  namedChatTemplates: {},
  addBosToken: null,
  addEosToken: null,
};

// Special tokens are written either as a plain string or as a serialised AddedToken {content, ...}.
const specialToken = z.union([z.string(), z.object({ content: z.string() })], {
  error: 'a string or an object with a "content" string',
}).nullish();

const chatTemplate = z.union([
  z.string(),
  z.array(z.object({ name: z.string(), template: z.string() })),
], { error: 'a string or a list of {"name", "template"} objects' }).nullish();

const flag = z.boolean({ error: "true or false" }).nullish();

const configSchema = z.object({
  bos_token: specialToken,
  eos_token: specialToken,
  pad_token: specialToken,
  unk_token: specialToken,
  chat_template: chatTemplate,
  add_bos_token: flag,
  add_eos_token: flag,
});

/** Reads and validates a `tokenizer_config.json`. */
export async function loadTokenizerConfig(path: string): Promise<TokenizerSettings> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new FormatError(path, `cannot read the tokenizer config (${(error as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new FormatError(path, `not valid JSON (${(error as Error).message})`);
  }
  return parseTokenizerConfig(json, path);
}

/** Validates the parsed contents of a `tokenizer_config.json`; `file` names it in errors. */
export function parseTokenizerConfig(json: unknown, file = "tokenizer_config.json"): TokenizerSettings {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(file, "expected a JSON object");
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue.path[0]);
    const found = JSON.stringify((json as Record<string, unknown>)[key]) ?? "undefined";
    throw new FormatError(file, `"${key}" must be ${issue.message}, found ${found.slice(0, 60)}`);
  }
  const config = parsed.data;
  const named: Record<string, string> = {};
  let template: string | null = null;
  if (typeof config.chat_template === "string") {
    template = config.chat_template;
  } else if (Array.isArray(config.chat_template)) {
    for (const { name, template } of config.chat_template) named[name] = template;
    template = named["default"] ?? null;
  }
  return {
    bosToken: tokenText(config.bos_token),
    eosToken: tokenText(config.eos_token),
    padToken: tokenText(config.pad_token),
    unkToken: tokenText(config.unk_token),
    chatTemplate: template,
    namedChatTemplates: named,
    addBosToken: config.add_bos_token ?? null,
    addEosToken: config.add_eos_token ?? null,
  };
}

function tokenText(token: string | { content: string } | null | undefined): string | null {
  if (token == null) return null;
  return typeof token === "string" ? token : token.content;
}
