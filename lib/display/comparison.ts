/**
 * Answers before and after fine-tuning, side by side: prompt, expected answer (when known), the base
 * model's answer and the tuned model's, each marked ✓/✗ when the exact-match evaluation said so.
 */
import type { DataRecord } from "../data/formats.ts";
import type { ExactMatchReport } from "../data/metrics.ts";
import { escapeHtml, htmlTable, trusted } from "./html.ts";
import { DISPLAY, type Displayable, type MimeBundle } from "./jupyter.ts";

export interface ComparisonRow {
  prompt: string;
  expected?: string;
  before: string;
  after: string;
  /** Whether each answer matched `expected` (left unmarked when unknown). */
  beforeMatch?: boolean;
  afterMatch?: boolean;
}

export interface ComparisonOptions {
  /** Shown above the table, e.g. the exact-match totals. */
  caption?: string;
}

/** A side-by-side table of answers. */
export function compareAnswers(rows: readonly ComparisonRow[], opts: ComparisonOptions = {}): Comparison {
  return new Comparison(rows, opts.caption);
}

/**
 * Rows from two exact-match runs over the same `records` (their samples, in record order: run `exactMatch`
 * with `samples` ≥ the records to show), with a caption of both totals.
 */
export function compareExactMatch(
  records: readonly DataRecord[],
  before: ExactMatchReport,
  after: ExactMatchReport,
): Comparison {
  const n = Math.min(records.length, before.samples.length, after.samples.length);
  const rows: ComparisonRow[] = [];
  for (let i = 0; i < n; i++) {
    const [b, a] = [before.samples[i], after.samples[i]];
    const source = `${records[i].file}:${records[i].line}`;
    if (b.source !== source || a.source !== source) {
      throw new RangeError(
        `compareExactMatch: sample ${
          i + 1
        } is ${b.source} before and ${a.source} after, but record ${source}; ` +
          `evaluate the same records in the same order`,
      );
    }
    rows.push({
      prompt: promptText(records[i]),
      expected: b.reference,
      before: b.output,
      after: a.output,
      beforeMatch: b.match,
      afterMatch: a.match,
    });
  }
  const caption =
    `exact match: ${before.correct}/${before.total} before → ${after.correct}/${after.total} after`;
  return new Comparison(rows, caption);
}

/** What the model was asked: the last user message of a chat, a completion's prompt, or the text. */
export function promptText(record: DataRecord): string {
  switch (record.format) {
    case "text":
      return record.text;
    case "completions":
      return record.prompt;
    case "chat":
      return record.messages.findLast((m) => m.role === "user")?.content ?? "";
  }
}

function mark(match: boolean | undefined): string {
  return match === undefined ? "" : match ? "✓ " : "✗ ";
}

const MATCH_STYLE = "color:#1a7f37";
const MISS_STYLE = "color:#cf222e";

function answerHtml(text: string, match: boolean | undefined): string {
  const style = match === undefined ? "" : ` style="${match ? MATCH_STYLE : MISS_STYLE}"`;
  return `<span${style}>${escapeHtml(mark(match))}</span><span style="white-space:pre-wrap">${
    escapeHtml(text)
  }</span>`;
}

export class Comparison implements Displayable {
  constructor(readonly rows: readonly ComparisonRow[], readonly caption?: string) {}

  [DISPLAY](): MimeBundle {
    const withExpected = this.rows.some((r) => r.expected !== undefined);
    const header = ["prompt", ...(withExpected ? ["expected"] : []), "before", "after"];
    const plainRows = this.rows.map((r) => [
      r.prompt,
      ...(withExpected ? [r.expected ?? ""] : []),
      mark(r.beforeMatch) + r.before,
      mark(r.afterMatch) + r.after,
    ]);
    const htmlRows = this.rows.map((r) => [
      r.prompt,
      ...(withExpected ? [r.expected ?? ""] : []),
      trusted(answerHtml(r.before, r.beforeMatch)),
      trusted(answerHtml(r.after, r.afterMatch)),
    ]);
    const plain = plainRows.map((cells) =>
      cells.map((c, i) => `${header[i]}: ${c.replaceAll("\n", "↵")}`).join("\n  ")
    );
    return {
      "text/plain": [...(this.caption ? [this.caption] : []), ...plain].join("\n"),
      "text/html": htmlTable(header, htmlRows, { caption: this.caption ?? "Before and after fine-tuning" }),
    };
  }
}
