/**
 * When exact match is a fair score. It compares a greedy answer with the reference character for
 * character, which says something only when there is one short right answer (the shipped date task:
 * "2024-03-07"). On free-form replies it is ~0 before and after training and hides real progress. The rule:
 *
 * - every record is a prompt/completion pair, or a chat whose only assistant message is the last one
 *   (no tool calls: a call's text is not the reference the metric compares), and
 * - every reference answer is at most `maxAnswerTokens` tokens (default 32).
 *
 * Plain text records have no answer. `--metric exact-match` forces the metric on data that fails the rule
 * (but not on text); `--metric none` turns it off.
 */
import type { Tokenizer } from "../text/tokenizer.ts";
import type { DataRecord } from "./formats.ts";

export const MAX_EXACT_MATCH_ANSWER_TOKENS = 32;

export interface MetricFit {
  fits: boolean;
  /** Why not (naming the first record that breaks the rule), or what the rule found. */
  reason: string;
}

export function exactMatchFits(
  records: readonly DataRecord[],
  tokenizer: Tokenizer,
  maxAnswerTokens = MAX_EXACT_MATCH_ANSWER_TOKENS,
): MetricFit {
  if (records.length === 0) return { fits: false, reason: "no records to score" };
  let longest = 0;
  for (const record of records) {
    const at = `${record.file}:${record.line}`;
    let answer: string;
    if (record.format === "text") return { fits: false, reason: "text records have no answer to compare" };
    if (record.format === "completions") answer = record.completion;
    else {
      const assistants = record.messages.filter((m) => m.role === "assistant");
      const last = record.messages.at(-1)!;
      if (assistants.length !== 1 || last.role !== "assistant" || last.tool_calls) {
        return {
          fits: false,
          reason: `${at} is not a single-answer chat (one assistant reply, last, without tool calls)`,
        };
      }
      answer = last.content;
    }
    const tokens = tokenizer.encode(answer.trim(), { addSpecialTokens: false }).length;
    if (tokens > maxAnswerTokens) {
      return {
        fits: false,
        reason: `${at} has a ${tokens}-token answer; exact match needs short ones (≤ ${maxAnswerTokens})`,
      };
    }
    longest = Math.max(longest, tokens);
  }
  return { fits: true, reason: `one short answer per record, the longest ${longest} tokens` };
}

export interface MetricDecision {
  /** Score exact match. */
  score: boolean;
  /** What to tell the user (undefined when there is nothing to say). */
  note?: string;
}

/**
 * The decision for `--metric auto|exact-match|none` on these records: `auto` follows the rule above,
 * `exact-match` forces it (text records have no answer: an error), `none` never scores.
 */
export function chooseExactMatch(
  metric: "auto" | "exact-match" | "none",
  records: readonly DataRecord[],
  tokenizer: Tokenizer,
): MetricDecision {
  if (metric === "none" || records.length === 0) return { score: false };
  if (metric === "exact-match") {
    if (records[0].format === "text") {
      throw new RangeError("--metric exact-match: text records have no answer to compare; use --metric none");
    }
    return { score: true };
  }
  const fit = exactMatchFits(records, tokenizer);
  return fit.fits
    ? { score: true, note: `exact match: scoring (${fit.reason})` }
    : { score: false, note: `exact match: not scored, ${fit.reason} (--metric exact-match forces it)` };
}
