/**
 * Text ⇄ token ids for a model, backed by @huggingface/tokenizers (which matches the Python
 * `tokenizers` library on the BPE tokenizers we use). This class adds what training and generation
 * need around it: the special tokens, the chat template, and readable errors for bad files.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { FormatError } from "../errors.ts";
import { bosEosTemplate, type TokenRef } from "./post_processor.ts";
import { loadTokenizerConfig, NO_SETTINGS, type TokenizerSettings } from "./tokenizer_config.ts";

export interface EncodeOptions {
  /** Add what the tokenizer adds around a text (e.g. BOS for Llama 2); default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens such as `<|im_end|>`; default false. */
  skipSpecialTokens?: boolean;
}

export class Tokenizer {
  /** Number of token ids, added tokens included (may be below the model's padded vocab_size). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  /** The default chat template, when the tokenizer comes with one. */
  readonly chatTemplate: string | null;
  readonly namedChatTemplates: Readonly<Record<string, string>>;
  /** The added tokens marked special, e.g. `<|im_start|>`. */
  readonly specialTokens: readonly string[];
  readonly #specialIds: Set<number>;
  readonly #inner: HfTokenizer;

  private constructor(inner: HfTokenizer, settings: TokenizerSettings, readonly source: string) {
    this.#inner = inner;
    const added = [...inner.get_added_tokens_decoder().values()];
    const special = added.filter((token) => token.special);
    this.specialTokens = special.map((token) => token.content);
    this.#specialIds = new Set(special.map((token) => token.id));
    let maxId = -1;
    for (const id of inner.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const idOf = (token: string | null) => token === null ? null : inner.token_to_id(token) ?? null;
    this.bosToken = settings.bosToken;
    this.eosToken = settings.eosToken;
    this.padToken = settings.padToken;
    this.unkToken = settings.unkToken;
    this.bosTokenId = idOf(settings.bosToken);
    this.eosTokenId = idOf(settings.eosToken);
    this.padTokenId = idOf(settings.padToken);
    this.chatTemplate = settings.chatTemplate;
    this.namedChatTemplates = settings.namedChatTemplates;
  }

  /**
   * A tokenizer from a `tokenizer.json` file. `configPath` optionally names its `tokenizer_config.json`
   * (special tokens, chat template); `fromDir` finds both files itself.
   */
  static async fromFile(path: string, options: { configPath?: string } = {}): Promise<Tokenizer> {
    const json = await readJson(path, "tokenizer file");
    const settings = options.configPath === undefined
      ? NO_SETTINGS
      : await loadTokenizerConfig(options.configPath);
    return Tokenizer.fromJson(json, settings, path);
  }

  /**
   * A tokenizer from a model directory: `tokenizer.json`, plus `tokenizer_config.json` and
   * `chat_template.jinja` when present (newer checkpoints keep the template in that separate file).
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    const json = await readJson(join(dir, "tokenizer.json"), "tokenizer file");
    const configPath = join(dir, "tokenizer_config.json");
    const settings = await exists(configPath) ? await loadTokenizerConfig(configPath) : { ...NO_SETTINGS };
    const templatePath = join(dir, "chat_template.jinja");
    if (settings.chatTemplate === null && await exists(templatePath)) {
      settings.chatTemplate = await readFile(templatePath, "utf8");
    }
    return Tokenizer.fromJson(json, settings, join(dir, "tokenizer.json"));
  }

  /** A tokenizer from the parsed contents of a `tokenizer.json`; `source` names it in errors. */
  static fromJson(
    json: unknown,
    settings: TokenizerSettings = NO_SETTINGS,
    source = "tokenizer.json",
  ): Tokenizer {
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new FormatError(source, "expected a JSON object");
    }
    const spec = { added_tokens: [], ...json } as Record<string, unknown>;
    if (typeof spec.model !== "object" || spec.model === null) {
      throw new FormatError(source, `missing "model" (the vocabulary and merges)`);
    }
    if (!Array.isArray(spec.added_tokens)) {
      throw new FormatError(source, `"added_tokens" must be a list`);
    }
    if (settings.addBosToken !== null || settings.addEosToken !== null) {
      spec.post_processor = configuredTemplate(spec, settings);
    }
    let inner: HfTokenizer;
    try {
      // Decoding stays raw, as in Python `tokenizers` and transformers for BPE: the library's default
      // "clean up" would remove real spaces before punctuation.
      inner = new HfTokenizer(spec, { clean_up_tokenization_spaces: false });
    } catch (error) {
      throw new FormatError(source, `cannot build a tokenizer from it (${(error as Error).message})`);
    }
    return new Tokenizer(inner, settings, source);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.#inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /** Ids with no token (e.g. from a model whose vocab is padded past the tokenizer's) are skipped. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.#inner.id_to_token(id) !== undefined);
    // The library throws on an empty list; an empty list decodes to "".
    if (known.length === 0) return "";
    return this.#inner.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.#inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.#inner.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.#specialIds.has(id);
  }
}

/**
 * The post-processor transformers builds when a config says explicitly whether to add BOS/EOS
 * (a token the vocabulary lacks is left out, as there).
 */
function configuredTemplate(
  spec: Record<string, unknown>,
  settings: TokenizerSettings,
): Record<string, unknown> {
  const ref = (wanted: boolean | null, token: string | null): TokenRef | null => {
    if (!wanted || token === null) return null;
    const id = findTokenId(spec, token);
    return id === undefined ? null : { token, id };
  };
  return bosEosTemplate(
    ref(settings.addBosToken, settings.bosToken),
    ref(settings.addEosToken, settings.eosToken),
  );
}

function findTokenId(spec: Record<string, unknown>, token: string): number | undefined {
  const added = (spec.added_tokens as { content?: unknown; id?: unknown }[]).find((t) => t.content === token);
  if (typeof added?.id === "number") return added.id;
  const vocab = (spec.model as { vocab?: unknown }).vocab;
  if (typeof vocab === "object" && vocab !== null && !Array.isArray(vocab) && Object.hasOwn(vocab, token)) {
    const id = (vocab as Record<string, unknown>)[token];
    if (typeof id === "number") return id;
  }
  return undefined;
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const missing = (error as { code?: string }).code === "ENOENT";
    throw new FormatError(
      path,
      missing ? `${what} not found` : `cannot read ${what} (${(error as Error).message})`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FormatError(path, `not valid JSON (${(error as Error).message})`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
