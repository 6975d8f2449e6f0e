/**
 * The small HTML vocabulary the display helpers share: escaping, and tables built from already-escaped cells.
 * Styles are inline attributes (not `<style>` blocks), because notebook viewers that sanitise output keep
 * inline styles more often than style sheets, and a style sheet in one output would leak into the others.
 */

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Text → HTML that shows exactly that text (safe in element content and in quoted attributes). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** A fragment of HTML that is already safe to insert as is (built by these helpers, never from raw input). */
export interface Html {
  readonly html: string;
}

/** Marks a string as trusted HTML. Only for markup these helpers build themselves. */
export function trusted(html: string): Html {
  return { html };
}

/** A cell's content: text is escaped, `Html` is inserted as is. */
export type Cell = string | number | Html;

export function cellHtml(cell: Cell): string {
  if (typeof cell === "number") return escapeHtml(String(cell));
  if (typeof cell === "string") return escapeHtml(cell);
  return cell.html;
}

const TABLE_STYLE = "border-collapse:collapse;font-size:13px;margin:4px 0";
const CELL_STYLE = "border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top";

export interface TableOptions {
  /** Shown above the table. */
  caption?: string;
  /** Columns (0-based) aligned right, e.g. numbers. */
  numeric?: readonly number[];
}

/** An HTML `<table>` with a header row; every cell is escaped unless it is `Html`. */
export function htmlTable(
  header: readonly Cell[],
  rows: readonly (readonly Cell[])[],
  opts: TableOptions = {},
) {
  const numeric = new Set(opts.numeric ?? []);
  const style = (col: number) => numeric.has(col) ? `${CELL_STYLE};text-align:right` : CELL_STYLE;
  const head = header.map((c, i) => `<th style="${style(i)};background:#f4f4f4">${cellHtml(c)}</th>`).join(
    "",
  );
  const body = rows.map((row) =>
    `<tr>${row.map((c, i) => `<td style="${style(i)}">${cellHtml(c)}</td>`).join("")}</tr>`
  ).join("");
  const caption = opts.caption === undefined
    ? ""
    : `<caption style="caption-side:top;text-align:left;font-weight:bold;padding:2px 0">${
      escapeHtml(opts.caption)
    }</caption>`;
  return `<table style="${TABLE_STYLE}">${caption}<thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

/** Plain-text table: columns padded to their widest cell, a rule under the header, one line per row. */
export function textTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  opts: { numeric?: readonly number[] } = {},
): string {
  const numeric = new Set(opts.numeric ?? []);
  // One line per row: line breaks inside a cell are shown as ↵.
  rows = rows.map((r) => r.map((c) => c.replaceAll("\n", "↵")));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => numeric.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}
