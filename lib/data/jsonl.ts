/**
 * JSON Lines: one JSON value per line. The whole file is read as text (our datasets are megabytes, not
 * gigabytes), then parsed line by line so only the text and the parsed values are held.
 */
import { readFile } from "node:fs/promises";
import { DataError } from "./errors.ts";

/** One parsed line and where it came from. */
export interface JsonlLine {
  /** 1-based line number in the file. */
  line: number;
  value: unknown;
}

/** The bytes of a data file; a missing or unreadable one is a DataError naming it. */
export async function readDataFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (error) {
    const missing = (error as { code?: string }).code === "ENOENT";
    throw new DataError(
      path,
      undefined,
      missing ? "file not found" : `cannot read (${(error as Error).message})`,
    );
  }
}

/** Parses every non-blank line of `path`; a line that is not JSON throws a DataError naming `file:line`. */
export async function readJsonl(path: string): Promise<JsonlLine[]> {
  return parseJsonl(new TextDecoder().decode(await readDataFile(path)), path);
}

/** Parses JSONL text; `file` names it in errors. */
export function parseJsonl(text: string, file: string): JsonlLine[] {
  const out: JsonlLine[] = [];
  // A UTF-8 byte-order mark (some editors write one) is not part of the first record.
  let start = text.startsWith("\uFEFF") ? 1 : 0;
  // Walk the text line by line rather than split() it, so no second copy of the file is held.
  for (let line = 1; start <= text.length; line++) {
    const newline = text.indexOf("\n", start);
    const end = newline < 0 ? text.length : newline;
    const source = text.slice(start, end).trim();
    start = end + 1;
    if (source === "") continue;
    try {
      out.push({ line, value: JSON.parse(source) });
    } catch (error) {
      throw new DataError(file, line, `not valid JSON (${(error as Error).message})`);
    }
  }
  return out;
}
