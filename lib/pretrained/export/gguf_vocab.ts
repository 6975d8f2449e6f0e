/**
 * An HF directory's tokenizer as GGUF `tokenizer.*` metadata, for byte-level BPE vocabularies (GPT-2 style:
 * SmolLM2, Llama 3, Qwen2) — the kind llama.cpp calls "gpt2". Tokens in id order (gaps filled with
 * `[PAD<id>]`, type UNUSED), token types (added special tokens CONTROL, other added tokens USER_DEFINED),
 * merges as "left right", special ids, the chat template. The pre-tokenizer (`tokenizer.ggml.pre`) is
 * recognised by comparing tokenizer.json's `pre_tokenizer` with the ones lib/text knows by name; an
 * unrecognised one is written as "default" with a warning, since llama.cpp would then split text with
 * GPT-2's rule. Other tokenizer kinds (SentencePiece / Unigram) are left out with a warning.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FormatError } from "../../errors.ts";
import type { ModelConfig } from "../../nn/config.ts";
import { byteLevelPreTokenizer, SUPPORTED_GGUF_PRE } from "../../text/gguf_pretokenizers.ts";
import { loadTokenizerConfig, NO_SETTINGS, type TokenizerSettings } from "../../text/tokenizer_config.ts";
import type { MetadataEntry } from "./gguf_metadata.ts";

/** llama.cpp's token types. */
const NORMAL = 1, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5;

export interface HfTokenizerMetadata {
  entries: MetadataEntry[];
  chatTemplate: string | null;
  stopTokens: string[];
  warnings: string[];
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  pre_tokenizer?: unknown;
  decoder?: unknown;
  post_processor?: { single?: unknown; processors?: unknown } | null;
}

export async function hfTokenizerMetadata(dir: string, config: ModelConfig): Promise<HfTokenizerMetadata> {
  const none = (why: string): HfTokenizerMetadata => ({
    entries: [],
    chatTemplate: null,
    stopTokens: [],
    warnings: [why],
  });
  const path = join(dir, "tokenizer.json");
  if (!existsSync(path)) return none(`${dir} has no tokenizer.json: the GGUF gets no tokenizer`);
  let json: TokenizerJson;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new FormatError(path, `not valid JSON (${(error as Error).message})`);
  }
  const model = json.model;
  if (
    model?.type !== "BPE" || !JSON.stringify(json.pre_tokenizer ?? json.decoder ?? "").includes("ByteLevel")
  ) {
    return none(
      `${path}: only byte-level BPE tokenizers are converted to GGUF metadata (found ${
        model?.type ?? "none"
      }); ` +
        "the GGUF gets no tokenizer — convert with llama.cpp's convert_hf_to_gguf.py instead",
    );
  }
  const configPath = join(dir, "tokenizer_config.json");
  const settings: TokenizerSettings = existsSync(configPath)
    ? await loadTokenizerConfig(configPath)
    : NO_SETTINGS;

  const byId = new Map<number, { text: string; type: number }>();
  for (const [text, id] of Object.entries(model.vocab ?? {})) byId.set(id, { text, type: NORMAL });
  for (const t of json.added_tokens ?? []) {
    byId.set(t.id, { text: t.content, type: t.special ? CONTROL : USER_DEFINED });
  }
  let count = config.vocabSize;
  for (const id of byId.keys()) count = Math.max(count, id + 1);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < count; id++) {
    const t = byId.get(id);
    tokens.push(t?.text ?? `[PAD${id}]`);
    types.push(t?.type ?? UNUSED);
  }
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(" ") : m));

  const warnings: string[] = [];
  const pre = recognisePre(json.pre_tokenizer);
  if (pre === undefined) {
    warnings.push(
      `${path}: the pre-tokenizer is not one we can name for llama.cpp; written as "default" (GPT-2's split), ` +
        "which may tokenize some text differently",
    );
  }
  const idOf = (text: string | null) => {
    if (text === null) return undefined;
    const i = tokens.indexOf(text);
    return i < 0 ? undefined : i;
  };
  const bos = config.bosTokenId ?? idOf(settings.bosToken);
  const eos = config.eosTokenIds[0] ?? idOf(settings.eosToken);
  const pad = config.padTokenId ?? idOf(settings.padToken);
  const unk = idOf(settings.unkToken);
  // Whether encoding starts with BOS: tokenizer_config.json's add_bos_token when set, else whether the
  // post-processor's single-sequence template names the BOS token. llama.cpp's own default differs by
  // model, so the key is always written.
  const bosText = bos === undefined ? undefined : tokens[bos];
  const template = JSON.stringify(json.post_processor?.single ?? json.post_processor?.processors ?? null);
  const addBos = settings.addBosToken ??
    (bosText !== undefined && template.includes(JSON.stringify(bosText)));
  const u32 = (value: number) => ({ type: "u32" as const, value });
  const entries: MetadataEntry[] = [
    ["tokenizer.ggml.model", "gpt2"],
    ["tokenizer.ggml.pre", pre ?? "default"],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", values: tokens }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", values: types }],
    ["tokenizer.ggml.merges", { type: "array", itemType: "string", values: merges }],
  ];
  if (bos !== undefined) entries.push(["tokenizer.ggml.bos_token_id", u32(bos)]);
  if (eos !== undefined) entries.push(["tokenizer.ggml.eos_token_id", u32(eos)]);
  if (pad !== undefined) entries.push(["tokenizer.ggml.padding_token_id", u32(pad)]);
  if (unk !== undefined) entries.push(["tokenizer.ggml.unknown_token_id", u32(unk)]);
  entries.push(["tokenizer.ggml.add_bos_token", addBos]);
  // Byte-level BPE marks spaces itself; no SentencePiece-style prefix space.
  entries.push(["tokenizer.ggml.add_space_prefix", false]);
  if (settings.chatTemplate !== null) entries.push(["tokenizer.chat_template", settings.chatTemplate]);
  const stops = config.eosTokenIds.filter((id) => id < tokens.length).map((id) => tokens[id]);
  return { entries, chatTemplate: settings.chatTemplate, stopTokens: [...new Set(stops)], warnings };
}

/** The `tokenizer.ggml.pre` name whose rule equals this tokenizer.json `pre_tokenizer`, if any. */
function recognisePre(preTokenizer: unknown): string | undefined {
  const canonical = (v: unknown): string =>
    JSON.stringify(
      v,
      (_k, value) =>
        value && typeof value === "object" && !Array.isArray(value)
          ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
          : value,
    );
  const wanted = canonical(preTokenizer);
  return SUPPORTED_GGUF_PRE.find((name) => canonical(byteLevelPreTokenizer(name)?.preTokenizer) === wanted);
}
