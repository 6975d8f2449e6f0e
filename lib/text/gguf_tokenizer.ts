/**
 * A GGUF file has no tokenizer.json: it stores the vocabulary, merges, token kinds and special ids as
 * `tokenizer.ggml.*` metadata. We rebuild the tokenizer.json those describe and hand it to the same
 * Tokenizer class, so GGUF and Hugging Face checkpoints tokenize through one code path.
 *
 * Two vocabularies are understood:
 * - "gpt2": byte-level BPE (SmolLM2, Llama 3, Qwen2); `tokenizer.ggml.pre` picks the split rule.
 * - "llama": SentencePiece-style BPE with byte fallback (Llama 2, Mistral); merges come from scores.
 */
import { gguf } from "@huggingface/gguf";
import { FormatError } from "../errors.ts";
import { byteSpell, isByteSpelled } from "./byte_alphabet.ts";
import { byteLevelPreTokenizer, SUPPORTED_GGUF_PRE } from "./gguf_pretokenizers.ts";
import { bosEosTemplate, type TokenRef } from "./post_processor.ts";
import { mergesFromScores } from "./spm_merges.ts";
import { Tokenizer } from "./tokenizer.ts";
import type { TokenizerSettings } from "./tokenizer_config.ts";

/** llama.cpp's token kinds (`tokenizer.ggml.token_type`). */
const TokenType = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** SentencePiece's word-boundary mark, which stands for a space. */
const SPACE_MARK = "\u2581";

/** GGUF key/value metadata, e.g. the `metadata` that `gguf()` from @huggingface/gguf returns. */
export type GgufMetadata = object;

export interface GgufTokenizerSpec {
  /** A complete tokenizer.json object (also loadable by the Python `tokenizers` library). */
  tokenizerJson: Record<string, unknown>;
  settings: TokenizerSettings;
}

/** Reads a GGUF file's metadata and builds its tokenizer. */
export async function loadGgufTokenizer(path: string): Promise<Tokenizer> {
  let metadata: GgufMetadata;
  try {
    metadata = (await gguf(path, { allowLocalFile: true })).metadata;
  } catch (error) {
    throw new FormatError(path, `cannot read GGUF metadata (${(error as Error).message})`);
  }
  return tokenizerFromGguf(metadata, path);
}

/** The tokenizer described by GGUF metadata (as returned by `gguf()`); `file` names it in errors. */
export function tokenizerFromGguf(metadata: GgufMetadata, file = "model.gguf"): Tokenizer {
  const { tokenizerJson, settings } = ggufTokenizerSpec(metadata, file);
  return Tokenizer.fromJson(tokenizerJson, settings, file);
}

/** The tokenizer.json and settings equivalent to a GGUF file's tokenizer metadata. */
export function ggufTokenizerSpec(metadata: GgufMetadata, file = "model.gguf"): GgufTokenizerSpec {
  const read = new MetadataReader(metadata as Record<string, unknown>, file);
  const model = read.raw("tokenizer.ggml.model");
  if (model === undefined) {
    throw new FormatError(file, `has no tokenizer (missing "tokenizer.ggml.model" in the metadata)`);
  }
  const tokens = read.strings("tokenizer.ggml.tokens");
  if (tokens === undefined) throw new FormatError(file, `missing "tokenizer.ggml.tokens"`);
  const types = read.numbers("tokenizer.ggml.token_type") ?? tokens.map(() => TokenType.normal);
  if (types.length !== tokens.length) {
    throw new FormatError(
      file,
      `"tokenizer.ggml.token_type" has ${types.length} entries for ${tokens.length} tokens`,
    );
  }
  const tokenAt = (key: string): TokenRef | null => {
    const id = read.number(key);
    if (id === undefined) return null;
    if (!Number.isInteger(id) || id < 0 || id >= tokens.length) {
      throw new FormatError(file, `"${key}" is ${id}, outside the ${tokens.length} tokens`);
    }
    return { token: tokens[id], id };
  };
  const bos = tokenAt("tokenizer.ggml.bos_token_id");
  const eos = tokenAt("tokenizer.ggml.eos_token_id");
  const pad = tokenAt("tokenizer.ggml.padding_token_id");
  let unk = tokenAt("tokenizer.ggml.unknown_token_id");

  let body: Record<string, unknown>;
  let addBos: boolean;
  if (model === "gpt2") {
    body = byteLevelBody(tokens, read, file);
    addBos = read.flag("tokenizer.ggml.add_bos_token") ?? false;
    unk = null; // every byte has a token: nothing is ever unknown
  } else if (model === "llama") {
    unk ??= refOfType(tokens, types, TokenType.unknown);
    body = sentencePieceBody(tokens, read, unk, file);
    // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
    addBos = read.flag("tokenizer.ggml.add_bos_token") ?? true;
  } else {
    throw new FormatError(
      file,
      `unsupported "tokenizer.ggml.model" ${JSON.stringify(model)} (supported: gpt2, llama)`,
    );
  }
  const addEos = read.flag("tokenizer.ggml.add_eos_token") ?? false;

  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(tokens, types),
    ...body,
    post_processor: bosEosTemplate(addBos ? bos : null, addEos ? eos : null),
  };
  const settings: TokenizerSettings = {
    bosToken: bos?.token ?? null,
    eosToken: eos?.token ?? null,
    padToken: pad?.token ?? null,
    unkToken: unk?.token ?? null,
    chatTemplate: read.string("tokenizer.chat_template") ?? null,
    namedChatTemplates: namedTemplates(metadata as Record<string, unknown>),
    // Already in the post-processor above.
    addBosToken: null,
    addEosToken: null,
  };
  return { tokenizerJson, settings };
}

function byteLevelBody(tokens: string[], read: MetadataReader, file: string): Record<string, unknown> {
  const merges = read.strings("tokenizer.ggml.merges");
  if (merges === undefined) throw new FormatError(file, `missing "tokenizer.ggml.merges" (needed for gpt2)`);
  const pre = read.string("tokenizer.ggml.pre");
  const split = byteLevelPreTokenizer(pre);
  if (split === undefined) {
    throw new FormatError(
      file,
      `unsupported "tokenizer.ggml.pre" "${pre}" (supported: ${SUPPORTED_GGUF_PRE.join(", ")})`,
    );
  }
  // Some converters store a token in plain text instead of the byte alphabet; respell it.
  const vocab = Object.fromEntries(
    tokens.map((token, id) => [isByteSpelled(token) ? token : byteSpell(token), id]),
  );
  return {
    normalizer: null,
    pre_tokenizer: split.preTokenizer,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: split.ignoreMerges,
      vocab,
      merges,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  };
}

function sentencePieceBody(
  tokens: string[],
  read: MetadataReader,
  unk: TokenRef | null,
  file: string,
): Record<string, unknown> {
  let merges: unknown[] | undefined = read.strings("tokenizer.ggml.merges");
  if (merges === undefined) {
    const scores = read.numbers("tokenizer.ggml.scores");
    if (scores === undefined) {
      throw new FormatError(
        file,
        `missing both "tokenizer.ggml.merges" and "tokenizer.ggml.scores" (one is needed)`,
      );
    }
    merges = mergesFromScores(tokens, scores);
  }
  // SentencePiece marks a word start with "▁" and, by default, treats the text as starting a word.
  const addSpacePrefix = read.flag("tokenizer.ggml.add_space_prefix") ?? true;
  const spaceToMark = { type: "Replace", pattern: { String: " " }, content: SPACE_MARK };
  return {
    normalizer: addSpacePrefix
      ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE_MARK }, spaceToMark] }
      : spaceToMark,
    pre_tokenizer: null,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk?.token ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(tokens.map((token, id) => [token, id])),
      merges,
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        // Undo the prefix space the normalizer added.
        ...(addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
  };
}

/**
 * Control and unknown tokens (`<|im_start|>`, `<unk>`) become special added tokens, user-defined ones
 * plain added tokens: either way the text is searched for them first, so they are never cut up.
 */
function addedTokens(tokens: string[], types: number[]): Record<string, unknown>[] {
  const added: Record<string, unknown>[] = [];
  tokens.forEach((content, id) => {
    const type = types[id];
    if (type !== TokenType.control && type !== TokenType.unknown && type !== TokenType.userDefined) return;
    added.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: type !== TokenType.userDefined,
    });
  });
  return added;
}

function refOfType(tokens: string[], types: number[], wanted: number): TokenRef | null {
  const id = types.indexOf(wanted);
  return id < 0 ? null : { token: tokens[id], id };
}

/** `tokenizer.chat_template.<name>` entries (e.g. "tool_use"), beside the default template. */
function namedTemplates(metadata: Record<string, unknown>): Record<string, string> {
  const prefix = "tokenizer.chat_template.";
  const named: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (key.startsWith(prefix) && typeof value === "string") named[key.slice(prefix.length)] = value;
  }
  return named;
}

/** Typed access to metadata values, with errors naming the file and key. */
class MetadataReader {
  constructor(private readonly metadata: Record<string, unknown>, private readonly file: string) {}

  raw(key: string): unknown {
    return this.metadata[key];
  }

  #wrong(key: string, expected: string): never {
    throw new FormatError(this.file, `"${key}" must be ${expected}`);
  }

  string(key: string): string | undefined {
    const value = this.metadata[key];
    if (value === undefined || typeof value === "string") return value;
    return this.#wrong(key, "a string");
  }

  number(key: string): number | undefined {
    const value = this.metadata[key];
    if (value === undefined) return undefined;
    if (typeof value === "number" || typeof value === "bigint") return Number(value);
    return this.#wrong(key, "a number");
  }

  flag(key: string): boolean | undefined {
    const value = this.metadata[key];
    if (value === undefined || typeof value === "boolean") return value;
    return this.#wrong(key, "true or false");
  }

  strings(key: string): string[] | undefined {
    const value = this.metadata[key];
    if (value === undefined) return undefined;
    if (Array.isArray(value) && value.every((item) => typeof item === "string")) return value;
    return this.#wrong(key, "a list of strings");
  }

  numbers(key: string): number[] | undefined {
    const value = this.metadata[key];
    if (value === undefined) return undefined;
    if (Array.isArray(value) && value.every((item) => typeof item === "number" || typeof item === "bigint")) {
      return value.map(Number);
    }
    return this.#wrong(key, "a list of numbers");
  }
}
