/**
 * Sample answers during training (`--sample-every N`): a glance at what the model says now, beside the
 * loss curve. Prompts are the user's (`--sample-prompt`) or the first records of the eval set; each is
 * turned into ids the way the data is (a chat prompt through the chat template, a completion prompt with the
 * tokenizer's own specials), then answered greedily, so samples at different steps are comparable.
 */
import type { DataFormat, DataRecord } from "../data/formats.ts";
import { RecordTokenizer } from "../data/tokenize.ts";
import { generate } from "../generate/generate.ts";
import type { ChatTemplate } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { CausalLm } from "../nn/llama.ts";

export interface SamplePrompt {
  /** What to show as the prompt: the user's text, or `file:line` of a record. */
  label: string;
  ids: number[];
}

export interface Sample {
  label: string;
  output: string;
}

export interface SamplePromptOptions {
  /** The data's kind: chats get the chat template, the others raw text. */
  format: DataFormat;
  /** The user's prompts; without them, the first `count` records. */
  prompts: readonly string[];
  records: readonly DataRecord[];
  count?: number;
  chatTemplate?: ChatTemplate;
}

/** Tokens of a text record shown as its prompt (it has no prompt of its own). */
const TEXT_PROMPT_TOKENS = 16;

export function samplePrompts(tokenizer: Tokenizer, options: SamplePromptOptions): SamplePrompt[] {
  const records = new RecordTokenizer(tokenizer, { chatTemplate: options.chatTemplate });
  const at = { file: "--sample-prompt", line: 0 };
  if (options.prompts.length > 0) {
    return options.prompts.map((text) => {
      const record: DataRecord = options.format === "chat"
        ? {
          ...at,
          format: "chat",
          messages: [{ role: "user", content: text }, { role: "assistant", content: "" }],
        }
        : { ...at, format: "completions", prompt: text, completion: " " };
      return { label: text, ids: records.promptFor(record).ids };
    });
  }
  return options.records.slice(0, options.count ?? 2).map((record) => {
    const label = `${record.file}:${record.line}`;
    if (record.format === "text") {
      return { label, ids: tokenizer.encode(record.text).slice(0, TEXT_PROMPT_TOKENS) };
    }
    return { label, ids: records.promptFor(record).ids };
  });
}

/** Greedy answers to each prompt. */
export function sampleGenerations(
  model: CausalLm,
  tokenizer: Tokenizer,
  prompts: readonly SamplePrompt[],
  options: { maxNewTokens: number; stopTokens: number[] },
): Sample[] {
  return prompts.map(({ label, ids }) => ({
    label,
    output: generate(model, tokenizer, ids, options).text,
  }));
}
