/**
 * Exact-match evaluation: for each record, generate greedily from its prompt (everything before the last
 * answer) and compare the output with the reference answer, both with surrounding whitespace stripped.
 * A crisp metric for tasks with one right answer (the shipped date-normalisation set); generation stops at
 * the model's stop tokens or a few tokens past the reference's length, which is enough to tell a match.
 */
import { defaultStopTokens, generate } from "../generate/generate.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { DataRecord } from "./formats.ts";
import { RecordTokenizer } from "./tokenize.ts";

/** Anything `generate` accepts as a model (the plain model, or one with LoRA adapters). */
export type GenerationModel = Parameters<typeof generate>[0];

export interface ExactMatchOptions {
  /** Stop tokens; default the tokenizer's EOS and end-of-turn tokens. */
  stopTokens?: number[];
  /** Tokens generated beyond the reference's token count (so an over-long answer shows); default 8. */
  slackTokens?: number;
  /** How many outputs to keep as samples (the first ones, matches and misses alike); default 5. */
  samples?: number;
  /** Called after each record, e.g. for a progress line. */
  onResult?: (result: MatchResult, index: number) => void;
}

export interface MatchResult {
  /** `file:line` of the record. */
  source: string;
  reference: string;
  output: string;
  match: boolean;
}

export interface ExactMatchReport {
  total: number;
  correct: number;
  /** correct / total. */
  rate: number;
  samples: MatchResult[];
  /** Wall time of the whole evaluation. */
  seconds: number;
  /** Tokens generated in all. */
  generatedTokens: number;
}

/** Exact match of greedy generations against the records' answers (completions or chat records). */
export function exactMatch(
  model: GenerationModel,
  tokenizer: Tokenizer,
  records: readonly DataRecord[],
  options: ExactMatchOptions = {},
): ExactMatchReport {
  if (records.length === 0) throw new RangeError("exactMatch: no records to evaluate");
  const prompts = new RecordTokenizer(tokenizer);
  const stopTokens = options.stopTokens ?? defaultStopTokens(tokenizer, []);
  const slack = options.slackTokens ?? 8;
  const keep = options.samples ?? 5;
  const t0 = performance.now();
  const samples: MatchResult[] = [];
  let correct = 0;
  let generatedTokens = 0;
  records.forEach((record, index) => {
    const { ids, reference } = prompts.promptFor(record);
    const referenceTokens = tokenizer.encode(reference.trim(), { addSpecialTokens: false }).length;
    const out = generate(model, tokenizer, ids, { maxNewTokens: referenceTokens + slack, stopTokens });
    generatedTokens += out.ids.length;
    const result = {
      source: `${record.file}:${record.line}`,
      reference,
      output: out.text,
      match: out.text.trim() === reference.trim(),
    };
    if (result.match) correct++;
    if (samples.length < keep) samples.push(result);
    options.onResult?.(result, index);
  });
  return {
    total: records.length,
    correct,
    rate: correct / records.length,
    samples,
    seconds: (performance.now() - t0) / 1000,
    generatedTokens,
  };
}
