/**
 * CSV and TSV through csv-parse (RFC 4180: quoted fields may hold separators, quotes and newlines). The first
 * row names the columns; every cell is a string. A row keeps the line it starts on, and a malformed row
 * (an open quote, a wrong number of cells) is an error naming its line.
 */
import { parse } from "csv-parse/sync";
import { DataError } from "../errors.ts";
import type { RawRow } from "./read_rows.ts";

export function parseCsv(text: string, file: string, delimiter: "," | "\t" = ","): RawRow[] {
  let records: { record: Record<string, string>; info: { lines: number; raw?: string } }[];
  try {
    records = parse(text, {
      bom: true,
      columns: (header: string[]) => header.map((name) => name.trim()),
      delimiter,
      info: true,
      raw: true,
      skip_empty_lines: true,
      relax_column_count: false,
    }) as unknown as typeof records;
  } catch (error) {
    const e = error as Error & { lines?: number };
    throw new DataError(file, e.lines, `not valid CSV (${e.message.replace(/^Invalid[^:]*:\s*/, "")})`);
  }
  return records.map(({ record, info }) => {
    // info.lines is the line the record ends on; a quoted field may have spanned several.
    const spanned = (info.raw?.replace(/\r?\n$/, "").match(/\n/g) ?? []).length;
    return { line: info.lines - spanned, value: record };
  });
}
