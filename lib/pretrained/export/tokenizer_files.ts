/**
 * The tokenizer files of an exported model. From an HF directory they are copied byte for byte; a GGUF file
 * keeps its tokenizer as metadata, so we write the tokenizer.json our GGUF tokenizer is built from, plus a
 * tokenizer_config.json with the special tokens and chat template. `tokenizer_class` is the generic fast
 * tokenizer so that transformers uses tokenizer.json as written instead of rebuilding a model-specific
 * pipeline (e.g. a SentencePiece one for model_type "llama" around SmolLM2's byte-level BPE).
 */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { type GgufMetadata, ggufTokenizerSpec } from "../../text/gguf_tokenizer.ts";

/** Files an HF model directory may hold beside its weights that belong in the export too. */
export const HF_SIDE_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "generation_config.json",
  // Slow (SentencePiece / GPT-2) tokenizer files, for models whose config names such a class.
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
] as const;

/** Copies whichever of `HF_SIDE_FILES` exist in `fromDir`; returns the names copied. */
export function copyHfSideFiles(fromDir: string, toDir: string): string[] {
  const copied: string[] = [];
  for (const name of HF_SIDE_FILES) {
    const from = join(fromDir, name);
    if (!existsSync(from)) continue;
    copyFileSync(from, join(toDir, name));
    copied.push(name);
  }
  return copied;
}

/**
 * The tokenizer.json and tokenizer_config.json texts for a GGUF file's tokenizer, by file name; none when
 * the file has no tokenizer metadata. Built before anything is written, so an unsupported tokenizer is
 * refused up front.
 */
export function ggufTokenizerFiles(
  metadata: GgufMetadata,
  opts: { file?: string; modelMaxLength?: number } = {},
): Record<string, string> {
  if ((metadata as Record<string, unknown>)["tokenizer.ggml.model"] === undefined) return {};
  const { tokenizerJson, settings } = ggufTokenizerSpec(metadata, opts.file);
  const named = Object.entries(settings.namedChatTemplates);
  const chatTemplate = named.length === 0 ? settings.chatTemplate : [
    ...(settings.chatTemplate === null ? [] : [{ name: "default", template: settings.chatTemplate }]),
    ...named.map(([name, template]) => ({ name, template })),
  ];
  const config: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: settings.bosToken,
    eos_token: settings.eosToken,
    pad_token: settings.padToken,
    unk_token: settings.unkToken,
    // BOS/EOS insertion is already in tokenizer.json's post-processor; no add_bos_token to override it.
    clean_up_tokenization_spaces: false,
    ...(opts.modelMaxLength === undefined ? {} : { model_max_length: opts.modelMaxLength }),
    ...(chatTemplate === null ? {} : { chat_template: chatTemplate }),
  };
  return {
    "tokenizer.json": JSON.stringify(tokenizerJson, null, 2) + "\n",
    "tokenizer_config.json": JSON.stringify(config, null, 2) + "\n",
  };
}
