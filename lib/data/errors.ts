/**
 * The one error type of lib/data: a training file (or one record in it) is not what it must be. It names
 * `file:line` so a user with a 50 000-line JSONL file can jump straight to the bad record.
 */
export class DataError extends Error {
  override name = "DataError";

  constructor(
    /** The file being read. */
    readonly file: string,
    /** 1-based line of the record at fault, when the problem belongs to one record. */
    readonly line: number | undefined,
    /** What is wrong, ideally "expected X, found Y". */
    readonly problem: string,
  ) {
    super(`${line === undefined ? file : `${file}:${line}`}: ${problem}`);
  }
}

/** `file:line`, the way records are named in errors and statistics. */
export function where(file: string, line: number): string {
  return `${file}:${line}`;
}
