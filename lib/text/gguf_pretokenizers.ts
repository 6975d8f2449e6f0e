/**
 * How a byte-level BPE vocabulary stored in a GGUF splits text before merging, keyed by the
 * file's `tokenizer.ggml.pre`. GGUF names the scheme, not the rule; the rules below are the split
 * patterns those vocabularies were trained with, written as `tokenizer.json` pre-tokenizers.
 */

/** Llama 3 (cl100k-style): case-insensitive contractions, numbers in runs of up to three digits. */
const LLAMA3_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** Qwen2: as Llama 3, but every digit on its own. */
const QWEN2_SPLIT = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}` +
  String.raw`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

export interface ByteLevelPreTokenizer {
  /** The `pre_tokenizer` entry of a tokenizer.json. */
  preTokenizer: Record<string, unknown>;
  /** Use a pre-token found whole in the vocab without merging (Llama 3 does). */
  ignoreMerges: boolean;
}

const split = (pattern: string) => ({
  type: "Split",
  pattern: { Regex: pattern },
  behavior: "Isolated",
  invert: false,
});
const byteLevel = (useRegex: boolean) => ({
  type: "ByteLevel",
  add_prefix_space: false,
  trim_offsets: true,
  use_regex: useRegex,
});

// ByteLevel with use_regex applies the original GPT-2 pattern itself.
const gpt2: ByteLevelPreTokenizer = { preTokenizer: byteLevel(true), ignoreMerges: false };
// Every digit alone, then the GPT-2 rule (StarCoder-family vocabularies such as SmolLM's).
const digitsThenGpt2: ByteLevelPreTokenizer = {
  preTokenizer: { type: "Sequence", pretokenizers: [split(String.raw`\p{N}`), byteLevel(true)] },
  ignoreMerges: false,
};
const llama3: ByteLevelPreTokenizer = {
  preTokenizer: { type: "Sequence", pretokenizers: [split(LLAMA3_SPLIT), byteLevel(false)] },
  ignoreMerges: true,
};
const qwen2: ByteLevelPreTokenizer = {
  preTokenizer: { type: "Sequence", pretokenizers: [split(QWEN2_SPLIT), byteLevel(false)] },
  ignoreMerges: false,
};

const BY_NAME: Record<string, ByteLevelPreTokenizer> = {
  "default": gpt2,
  "gpt-2": gpt2,
  "smollm": digitsThenGpt2,
  "starcoder": digitsThenGpt2,
  "refact": digitsThenGpt2,
  "llama-bpe": llama3,
  "llama3": llama3,
  "llama-v3": llama3,
  "smaug-bpe": llama3,
  "qwen2": qwen2,
  "deepseek-r1-qwen": qwen2,
};

export const SUPPORTED_GGUF_PRE = Object.keys(BY_NAME);

/** The pre-tokenizer for a `tokenizer.ggml.pre` value; a file without one gets GPT-2's rule. */
export function byteLevelPreTokenizer(pre: string | undefined): ByteLevelPreTokenizer | undefined {
  return BY_NAME[pre ?? "default"];
}
