/**
 * Data files → tokenized training, validation and test examples. Validation comes from its own file or is
 * held out of the training file with a seed (or is absent); the test file, when given, is scored once at
 * the end of a run. Files may be in any format of formats.ts, as long as they become the same kind. Examples longer than `maxLength` keep their first `maxLength` tokens; an example whose
 * trained tokens were all cut off is dropped. Both are counted in the statistics, because silent
 * truncation is the usual reason a fine-tune "does not learn".
 */
import { Rng } from "../random.ts";
import type { ChatTemplate } from "../text/chat_template.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { DataError, where } from "./errors.ts";
import {
  type DataFormat,
  type DataRecord,
  readRecords,
  type RecordFile,
  type SourceFormat,
} from "./formats.ts";
import { RecordTokenizer } from "./tokenize.ts";

/** One training sequence. */
export interface Example {
  ids: number[];
  /** 1 where the token is a training target; `mask[0]` is always 0. */
  mask: Uint8Array;
  /** The record it was made from (file, line, and the text, e.g. for evaluation). */
  record: DataRecord;
}

export interface DatasetOptions {
  tokenizer: Tokenizer;
  /** The training file (JSONL, JSON, CSV, TSV or Parquet). */
  train: string;
  /** A validation file; without it, `validFraction` of `train` is held out. */
  valid?: string;
  /** A test file, kept apart from training and validation. */
  test?: string;
  /** Key renames applied to every file (canonical key → the file's key). */
  columns?: Readonly<Record<string, string>>;
  /** Share of `train` held out for validation when `valid` is absent (0 ≤ f < 1); default 0. */
  validFraction?: number;
  /** Seed of the held-out split; default 0. */
  seed?: number;
  /** Tokens per example at most (longer ones keep their first `maxLength` tokens). */
  maxLength: number;
  /** Train on prompts and user turns too; default false. */
  trainOnPrompt?: boolean;
  /** Chat template for `messages` records; default the tokenizer's. */
  chatTemplate?: ChatTemplate;
}

export interface SplitStats {
  /** Records read for this split. */
  records: number;
  /** Examples kept (records minus those dropped). */
  examples: number;
  /** Tokens in the kept examples, after truncation. */
  tokens: number;
  /** Trained tokens in the kept examples. */
  lossTokens: number;
  /** Examples longer than `maxLength`, and the tokens cut from them. */
  truncated: number;
  truncatedTokens: number;
  /** The longest example before truncation, and where it is. */
  longest: number;
  longestAt: string;
  /** `file:line` of examples dropped because truncation left nothing to train on. */
  dropped: string[];
  /** Examples whose prompt and answer had to be tokenized apart (BPE merged across the boundary). */
  splitAtBoundary: number;
}

export interface Dataset {
  format: DataFormat;
  /** How the training file writes its records (e.g. "alpaca" for records that became chats). */
  sourceFormat: SourceFormat;
  train: Example[];
  valid: Example[];
  test: Example[];
  stats: { train: SplitStats; valid: SplitStats; test: SplitStats };
  /** Per file, table columns no record key uses (reported, not read). */
  ignoredColumns: { file: string; columns: string[] }[];
}

export async function loadDataset(options: DatasetOptions): Promise<Dataset> {
  const { maxLength } = options;
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new RangeError(`maxLength must be an integer ≥ 2, got ${maxLength}`);
  }
  const fraction = options.validFraction ?? 0;
  if (!(fraction >= 0 && fraction < 1)) {
    throw new RangeError(`validFraction must be in [0, 1), got ${fraction}`);
  }

  const read = { columns: options.columns };
  const train = await readRecords(options.train, read);
  const files = [train];
  const alongside = async (path: string) => {
    const file = await readRecords(path, read);
    if (file.format !== train.format) {
      throw new DataError(
        file.file,
        undefined,
        `is in the "${file.format}" format but ${train.file} is "${train.format}"; use one format`,
      );
    }
    files.push(file);
    return file;
  };
  let trainRecords = train.records;
  let validRecords: DataRecord[] = [];
  const testRecords = options.test !== undefined ? (await alongside(options.test)).records : [];
  if (options.valid !== undefined) {
    validRecords = (await alongside(options.valid)).records;
  } else if (fraction > 0) {
    [trainRecords, validRecords] = splitRecords(train.records, fraction, options.seed ?? 0, train.file);
  }

  const tokenizer = new RecordTokenizer(options.tokenizer, options);
  const trainSplit = tokenizeSplit(trainRecords, tokenizer, maxLength);
  const validSplit = tokenizeSplit(validRecords, tokenizer, maxLength);
  const testSplit = tokenizeSplit(testRecords, tokenizer, maxLength);
  if (trainSplit.examples.length === 0) throw nothingLeft(options.train, trainSplit.stats, maxLength);
  if (validRecords.length > 0 && validSplit.examples.length === 0) {
    throw nothingLeft(options.valid ?? options.train, validSplit.stats, maxLength);
  }
  if (testRecords.length > 0 && testSplit.examples.length === 0) {
    throw nothingLeft(options.test!, testSplit.stats, maxLength);
  }
  return {
    format: train.format,
    sourceFormat: train.sourceFormat,
    train: trainSplit.examples,
    valid: validSplit.examples,
    test: testSplit.examples,
    stats: { train: trainSplit.stats, valid: validSplit.stats, test: testSplit.stats },
    ignoredColumns: files.filter((f: RecordFile) => f.ignoredColumns.length > 0)
      .map((f) => ({ file: f.file, columns: f.ignoredColumns })),
  };
}

/** A seeded split: `fraction` of the records (at least one) go to validation; both keep file order. */
export function splitRecords<T>(
  records: readonly T[],
  fraction: number,
  seed: number,
  file: string,
): [T[], T[]] {
  const count = Math.max(1, Math.round(records.length * fraction));
  if (count >= records.length) {
    throw new DataError(
      file,
      undefined,
      `has ${records.length} record(s): too few to hold out ${count} for validation and still train`,
    );
  }
  const order = records.map((_, i) => i);
  const rng = new Rng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const held = new Set(order.slice(0, count));
  return [records.filter((_, i) => !held.has(i)), records.filter((_, i) => held.has(i))];
}

function tokenizeSplit(
  records: readonly DataRecord[],
  tokenizer: RecordTokenizer,
  maxLength: number,
): { examples: Example[]; stats: SplitStats } {
  const stats: SplitStats = {
    records: records.length,
    examples: 0,
    tokens: 0,
    lossTokens: 0,
    truncated: 0,
    truncatedTokens: 0,
    longest: 0,
    longestAt: "",
    dropped: [],
    splitAtBoundary: 0,
  };
  const examples: Example[] = [];
  for (const record of records) {
    let { ids, mask, splitAtBoundary } = tokenizer.tokenize(record);
    if (splitAtBoundary) stats.splitAtBoundary++;
    if (ids.length > stats.longest) {
      stats.longest = ids.length;
      stats.longestAt = where(record.file, record.line);
    }
    if (ids.length > maxLength) {
      stats.truncated++;
      stats.truncatedTokens += ids.length - maxLength;
      ids = ids.slice(0, maxLength);
      mask = mask.slice(0, maxLength);
    }
    const lossTokens = mask.reduce((sum, m) => sum + m, 0);
    if (lossTokens === 0) {
      stats.dropped.push(where(record.file, record.line));
      continue;
    }
    stats.tokens += ids.length;
    stats.lossTokens += lossTokens;
    examples.push({ ids, mask, record });
  }
  stats.examples = examples.length;
  return { examples, stats };
}

function nothingLeft(file: string, stats: SplitStats, maxLength: number): DataError {
  const why = stats.dropped.length > 0
    ? `all ${stats.dropped.length} example(s) lost every trained token to truncation at maxLength ` +
      `${maxLength} (the longest has ${stats.longest} tokens, at ${stats.longestAt})`
    : "no records";
  return new DataError(file, undefined, `nothing left to train on: ${why}`);
}

/** A few lines summing up a split, for logs. */
export function describeSplit(name: string, stats: SplitStats, maxLength: number): string {
  const lines = [
    `${name}: ${stats.examples} examples (${stats.records} records), ${stats.tokens} tokens, ` +
    `${stats.lossTokens} trained, longest ${stats.longest}${stats.longestAt ? ` (${stats.longestAt})` : ""}`,
  ];
  if (stats.truncated > 0) {
    lines.push(
      `  ${stats.truncated} truncated to ${maxLength} tokens (${stats.truncatedTokens} tokens cut)`,
    );
  }
  if (stats.dropped.length > 0) {
    const shown = stats.dropped.slice(0, 5).join(", ");
    lines.push(
      `  ${stats.dropped.length} dropped, nothing left to train after truncation: ${shown}` +
        (stats.dropped.length > 5 ? ", …" : ""),
    );
  }
  if (stats.splitAtBoundary > 0) {
    lines.push(
      `  ${stats.splitAtBoundary} tokenized apart at the prompt/answer boundary (BPE merged across it)`,
    );
  }
  return lines.join("\n");
}
