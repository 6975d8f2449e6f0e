/**
 * A data file → its rows, by extension: `.jsonl` (one JSON object a line), `.json` (an array of objects),
 * `.csv` / `.tsv` (a header row, then one record a row), `.parquet`. Each row keeps the number a user finds
 * it by: the line in text files (a CSV record's first line), the 1-based row in Parquet.
 */
import { extname } from "node:path";
import { DataError } from "../errors.ts";
import { parseJsonl, readDataFile } from "../jsonl.ts";
import { parseCsv } from "./csv.ts";
import { parseParquet } from "./parquet.ts";

export interface RawRow {
  /** 1-based line (JSONL, JSON, CSV) or row (Parquet). */
  line: number;
  value: unknown;
}

export const DATA_EXTENSIONS = [".jsonl", ".json", ".csv", ".tsv", ".parquet"] as const;

/** The rows of `path`; `tabular` tells whether they come from a table (fixed columns for every row). */
export async function readRows(path: string): Promise<{ rows: RawRow[]; tabular: boolean }> {
  const ext = extname(path).toLowerCase();
  if (!(DATA_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new DataError(
      path,
      undefined,
      `unknown file type "${ext}"; expected ${DATA_EXTENSIONS.join(", ")}`,
    );
  }
  const bytes = await readDataFile(path);
  if (ext === ".parquet") return { rows: await parseParquet(bytes, path), tabular: true };
  const text = new TextDecoder().decode(bytes);
  if (ext === ".csv" || ext === ".tsv") {
    return { rows: parseCsv(text, path, ext === ".tsv" ? "\t" : ","), tabular: true };
  }
  if (ext === ".json") return { rows: parseJsonArray(text, path), tabular: false };
  return { rows: parseJsonl(text, path), tabular: false };
}

/** A JSON array of records; each keeps the line its object starts on. */
function parseJsonArray(text: string, file: string): RawRow[] {
  let value: unknown;
  try {
    value = JSON.parse(text.startsWith("\uFEFF") ? text.slice(1) : text);
  } catch (error) {
    throw new DataError(file, undefined, `not valid JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(value)) {
    throw new DataError(file, undefined, "a .json data file must hold an array of records (or use .jsonl)");
  }
  const starts = objectStartLines(text);
  // Top-level objects appear in order, so the k-th start is the k-th record's (when every element is one).
  return value.map((v, i) => ({ line: starts.length === value.length ? starts[i] : i + 1, value: v }));
}

/** Lines on which the array's top-level elements start, found by a scan that skips strings. */
function objectStartLines(text: string): number[] {
  const out: number[] = [];
  let depth = 0;
  let line = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      if (depth === 1) out.push(line);
      depth++;
    } else if (c === "]" || c === "}") depth--;
  }
  return out;
}
