/**
 * The first records of a loaded dataset as the trainer will see them: the record, then its tokens with the
 * trained ones (those carrying loss, `mask[t] = 1`) highlighted — in HTML as marked spans, in plain text
 * between ⟦ ⟧ — and the split's counts (examples, tokens, trained tokens, truncated, dropped). Checking this
 * before training catches a wrong format, a template that masks the answer away, or truncation.
 */
import type { Dataset, Example, SplitStats } from "../data/dataset.ts";
import type { DataRecord } from "../data/formats.ts";
import { formatInt, formatPercent } from "./format.ts";
import { escapeHtml, htmlTable, trusted } from "./html.ts";
import { DISPLAY, type Displayable, type MimeBundle } from "./jupyter.ts";

/** What the preview needs from a tokenizer. */
export interface TokenDecoder {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
}

export interface DatasetPreviewOptions {
  /** Which split (default "train"). */
  split?: "train" | "valid";
  /** Examples shown (default 3). */
  count?: number;
  /** Tokens shown per example; the rest is summarised (default 200). */
  maxTokens?: number;
}

export interface PreviewToken {
  id: number;
  /** The token decoded on its own (a piece of a multi-byte character decodes as U+FFFD). */
  text: string;
  trained: boolean;
}

export interface PreviewRow {
  /** `file:line`. */
  source: string;
  /** The record as text: `role: content` lines for chats, `prompt:`/`completion:` for completions. */
  record: string;
  tokens: PreviewToken[];
  /** Tokens in the example (after truncation) and how many are trained. */
  tokenCount: number;
  trainedCount: number;
}

/** The first `count` examples of a split and the split's statistics. */
export function datasetPreview(
  dataset: Dataset,
  tokenizer: TokenDecoder,
  opts: DatasetPreviewOptions = {},
): DatasetPreview {
  const split = opts.split ?? "train";
  const maxTokens = opts.maxTokens ?? 200;
  const rows = dataset[split].slice(0, opts.count ?? 3).map((e) => previewRow(e, tokenizer, maxTokens));
  return new DatasetPreview(split, dataset.format, dataset.stats[split], rows);
}

function previewRow(example: Example, tokenizer: TokenDecoder, maxTokens: number): PreviewRow {
  const shown = example.ids.slice(0, maxTokens);
  return {
    source: `${example.record.file}:${example.record.line}`,
    record: recordText(example.record),
    tokens: shown.map((id, t) => ({ id, text: tokenizer.decode([id]), trained: example.mask[t] === 1 })),
    tokenCount: example.ids.length,
    trainedCount: example.mask.reduce((s, m) => s + m, 0),
  };
}

/** A record as readable text. */
export function recordText(record: DataRecord): string {
  switch (record.format) {
    case "text":
      return record.text;
    case "completions":
      return `prompt: ${record.prompt}\ncompletion: ${record.completion}`;
    case "chat":
      return record.messages.map((m) => `${m.role}: ${m.content}`).join("\n");
  }
}

const TOKEN_STYLE = "border:1px solid #ddd;border-radius:3px;margin:0 1px;padding:0 2px;white-space:pre-wrap";
const TRAINED_STYLE = `${TOKEN_STYLE};background:#ffd966;border-color:#e0a800`;
const PROMPT_STYLE = `${TOKEN_STYLE};background:#f4f4f4;color:#666`;

/** Whitespace made visible inside a token: a newline shows as ↵ (and still breaks the line). */
function visible(text: string): string {
  return text.replaceAll("\n", "↵\n");
}

export class DatasetPreview implements Displayable {
  constructor(
    readonly split: string,
    readonly format: string,
    readonly stats: SplitStats,
    readonly rows: readonly PreviewRow[],
  ) {}

  /** One line of counts for the split. */
  countsLine(): string {
    const s = this.stats;
    const trainedShare = s.tokens > 0 ? ` (${formatPercent(s.lossTokens / s.tokens)})` : "";
    return `${this.split} (${this.format}): ${formatInt(s.examples)} examples from ${formatInt(s.records)} ` +
      `records, ${formatInt(s.tokens)} tokens, ${formatInt(s.lossTokens)} trained${trainedShare}, ` +
      `${s.truncated} truncated (${formatInt(s.truncatedTokens)} tokens cut), ${s.dropped.length} dropped, ` +
      `longest ${s.longest}`;
  }

  /** An example's tokens with trained runs between ⟦ ⟧, e.g. `…assistant↵⟦2017-07-25<|im_end|>⟧↵`. */
  static markedText(row: PreviewRow): string {
    let out = "";
    let inside = false;
    for (const token of row.tokens) {
      if (token.trained !== inside) {
        out += token.trained ? "⟦" : "⟧";
        inside = token.trained;
      }
      out += token.text.replaceAll("\n", "↵");
    }
    if (inside) out += "⟧";
    const more = row.tokenCount - row.tokens.length;
    return more > 0 ? `${out} … (${more} more tokens)` : out;
  }

  [DISPLAY](): MimeBundle {
    const plain = [this.countsLine(), "trained tokens are between ⟦ ⟧", ""];
    for (const [i, row] of this.rows.entries()) {
      plain.push(
        `#${i + 1} ${row.source} (${row.tokenCount} tokens, ${row.trainedCount} trained)`,
        ...row.record.split("\n").map((line) => `  ${line}`),
        `  tokens: ${DatasetPreview.markedText(row)}`,
        "",
      );
    }
    const rows = this.rows.map((row, i) => [
      String(i + 1),
      row.source,
      trusted(`<div style="white-space:pre-wrap">${escapeHtml(row.record)}</div>`),
      trusted(tokensHtml(row)),
    ]);
    const legend = `<div style="font-size:12px;margin:2px 0">${escapeHtml(this.countsLine())}<br>` +
      `<span style="${TRAINED_STYLE}">trained</span> tokens carry the loss; ` +
      `<span style="${PROMPT_STYLE}">grey</span> ones are context only</div>`;
    return {
      "text/plain": plain.join("\n").trimEnd(),
      "text/html": legend +
        htmlTable(["#", "source", "record", "tokens (trained highlighted)"], rows, {
          caption: `Dataset preview: ${this.split}`,
        }),
    };
  }
}

function tokensHtml(row: PreviewRow): string {
  const spans = row.tokens.map((t) =>
    `<span class="${t.trained ? "trained" : "context"}" title="id ${t.id}" style="${
      t.trained ? TRAINED_STYLE : PROMPT_STYLE
    }">${escapeHtml(visible(t.text))}</span>`
  ).join("");
  const more = row.tokenCount - row.tokens.length;
  const tail = more > 0 ? ` <i>… ${more} more tokens</i>` : "";
  return `<div style="line-height:1.9">${spans}${tail}</div>` +
    `<div style="font-size:11px;color:#666">${row.tokenCount} tokens, ${row.trainedCount} trained</div>`;
}
