/**
 * Record formats, recognised from the first record's keys (as in mlx-lm's datasets), and turned into three
 * kinds of training record:
 *
 * - `{"text": "..."}`: plain text, trained on every token.
 * - `{"prompt": "...", "completion": "..."}`: raw text; the loss is on the completion only.
 * - `{"messages": [{"role", "content"}, …], "tools"?}`: OpenAI chat messages (multi-part text content,
 *   tool calls and tool messages: see formats/openai.ts) rendered with the model's chat template; the loss
 *   is on the assistant turns only.
 * - `{"conversations": [{"from", "value"}, …]}` (ShareGPT, formats/sharegpt.ts) and
 *   `{"instruction", "input"?, "output"}` (Alpaca, formats/alpaca.ts): read as chats.
 *
 * Every record of a file must have the first record's format. Besides the format's own keys a record may
 * carry `id` and `meta` (common bookkeeping fields in published datasets; ignored). Any other key is an
 * error, because a misspelt key ("completions", "message") would otherwise silently change what is trained.
 * Tables (CSV, Parquet) are different: their columns are fixed for the whole file and often include
 * unrelated ones, so unused columns are ignored and reported once (`RecordFile.ignoredColumns`).
 * `columns` renames keys before anything else (`{prompt: "question"}` reads the "question" column as
 * "prompt").
 */
import { z } from "zod";
import { alpacaTurns } from "./formats/alpaca.ts";
import { type ChatTurn, messageSchema, toolsSchema, toTurn } from "./formats/openai.ts";
import { conversationsSchema, sharegptTurns } from "./formats/sharegpt.ts";
import { DataError } from "./errors.ts";
import { type RawRow, readRows } from "./readers/read_rows.ts";

export type { ChatRole, ChatTurn } from "./formats/openai.ts";

/** What records become: the three kinds the tokenizer knows. */
export type DataFormat = "text" | "completions" | "chat";

/** How records are written in a file (what the first record's keys announce). */
export type SourceFormat = "text" | "completions" | "messages" | "sharegpt" | "alpaca";

/** Where a record came from, for errors and statistics. */
export interface RecordSource {
  file: string;
  /** 1-based line (JSONL, CSV) or row (Parquet). */
  line: number;
}

export type DataRecord =
  & RecordSource
  & (
    | { format: "text"; text: string }
    | { format: "completions"; prompt: string; completion: string }
    | { format: "chat"; messages: ChatTurn[]; tools?: Record<string, unknown>[] }
  );

/** Keys any record may carry besides its format's keys; their values are not read. */
export const IGNORED_KEYS = ["id", "meta"] as const;

const ignored = { id: z.unknown().optional(), meta: z.unknown().optional() };
const optionalText = z.string({ error: "expected a string" }).optional();

const SCHEMAS = {
  text: z.strictObject({ text: z.string().min(1, "must not be empty"), ...ignored }),
  completions: z.strictObject({
    prompt: z.string(),
    completion: z.string().min(1, "must not be empty"),
    ...ignored,
  }),
  messages: z.strictObject({
    messages: z.array(messageSchema).min(1, "must hold at least one message"),
    tools: toolsSchema.optional(),
    ...ignored,
  }),
  sharegpt: z.strictObject({
    conversations: conversationsSchema,
    system: optionalText,
    tools: toolsSchema.optional(),
    ...ignored,
  }),
  alpaca: z.strictObject({
    instruction: z.string().min(1, "must not be empty"),
    input: optionalText,
    output: z.string().min(1, "must not be empty"),
    system: optionalText,
    ...ignored,
  }),
};

/** Each format's keys: the first ones define it (what a record is recognised by), the rest are optional. */
const FORMAT_KEYS: Record<SourceFormat, { defining: string[]; optional: string[] }> = {
  messages: { defining: ["messages"], optional: ["tools"] },
  sharegpt: { defining: ["conversations"], optional: ["system", "tools"] },
  alpaca: { defining: ["instruction", "output"], optional: ["input", "system"] },
  completions: { defining: ["prompt", "completion"], optional: [] },
  text: { defining: ["text"], optional: [] },
};

/** Recognition order: the first format one of whose defining keys a record has. */
const DETECTION_ORDER: SourceFormat[] = ["messages", "sharegpt", "alpaca", "completions", "text"];

const EXPECTED = `expected {"text"}, {"prompt", "completion"}, {"messages"}, {"conversations"} (ShareGPT) ` +
  `or {"instruction", "output"} (Alpaca)`;

/** Keys stored as JSON text in a table cell (a CSV column of chats). */
const JSON_KEYS = ["messages", "conversations", "tools"];

export interface ReadOptions {
  /** Renames: canonical key → the file's key (`{prompt: "question", completion: "answer"}`). */
  columns?: Readonly<Record<string, string>>;
}

/** A file's records, all of one format. */
export interface RecordFile {
  file: string;
  format: DataFormat;
  sourceFormat: SourceFormat;
  records: DataRecord[];
  /** Table columns that no record key uses (CSV, Parquet). */
  ignoredColumns: string[];
}

/** Reads and validates a data file (JSONL, JSON array, CSV, TSV or Parquet); an empty file is an error. */
export async function readRecords(path: string, options: ReadOptions = {}): Promise<RecordFile> {
  const { rows, tabular } = await readRows(path);
  return parseRecords(rows, path, { ...options, tabular });
}

/** Validates parsed rows (the format comes from the first one). */
export function parseRecords(
  rows: readonly RawRow[],
  file: string,
  options: ReadOptions & { tabular?: boolean } = {},
): RecordFile {
  if (rows.length === 0) throw new DataError(file, undefined, "no records (the file is empty)");
  checkColumns(options.columns ?? {}, file);
  const renamed = rows.map(({ value, line }) => ({
    line,
    value: rename(value, options.columns, file, line),
  }));
  const sourceFormat = detectFormat(renamed[0].value, file, renamed[0].line);
  const known = [...allKeys(sourceFormat), ...IGNORED_KEYS];
  const optional = [...FORMAT_KEYS[sourceFormat].optional, ...IGNORED_KEYS];
  const ignoredColumns = options.tabular
    ? Object.keys(renamed[0].value as object).filter((key) => !known.includes(key))
    : [];
  const records = renamed.map(({ value, line }) => {
    let v = value as Record<string, unknown>;
    if (options.tabular) v = tableRecord(v, known, optional, file, line);
    return parseRecord(v, sourceFormat, file, line);
  });
  return { file, format: records[0].format, sourceFormat, records, ignoredColumns };
}

/** The format a record's keys announce (see DETECTION_ORDER). */
export function detectFormat(value: unknown, file: string, line: number): SourceFormat {
  const keys = objectKeys(value, file, line);
  const format = ownFormat(keys);
  if (format === undefined) {
    throw new DataError(file, line, `unknown format: keys ${list(keys)}; ${EXPECTED}`);
  }
  return format;
}

/** Checks one record against `format` and returns it typed. */
export function parseRecord(value: unknown, format: SourceFormat, file: string, line: number): DataRecord {
  const keys = objectKeys(value, file, line);
  const own = ownFormat(keys);
  if (own !== undefined && own !== format) {
    throw new DataError(
      file,
      line,
      `mixed formats: the file's first record is "${format}" (${list(FORMAT_KEYS[format].defining)}), ` +
        `this one is "${own}" (${list(keys)})`,
    );
  }
  const allowed = [...allKeys(format), ...IGNORED_KEYS];
  const unknown = keys.filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    const optional = [...FORMAT_KEYS[format].optional, ...IGNORED_KEYS];
    throw new DataError(
      file,
      line,
      `unknown key${unknown.length > 1 ? "s" : ""} ${list(unknown)}; a "${format}" record has ` +
        `${list(FORMAT_KEYS[format].defining)} (and optionally ${list(optional)}); ` +
        `--columns renames keys`,
    );
  }
  const parsed = SCHEMAS[format].safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`);
    throw new DataError(file, line, problems.join("; "));
  }
  const source = { file, line };
  switch (format) {
    case "text":
      return { ...source, format, text: (parsed.data as { text: string }).text };
    case "completions": {
      const data = parsed.data as z.output<typeof SCHEMAS.completions>;
      return { ...source, format, prompt: data.prompt, completion: data.completion };
    }
    case "messages": {
      const data = parsed.data as z.output<typeof SCHEMAS.messages>;
      return chatRecord(source, data.messages.map(toTurn), data.tools);
    }
    case "sharegpt": {
      const data = parsed.data as z.output<typeof SCHEMAS.sharegpt>;
      return chatRecord(source, sharegptTurns(data.conversations, data.system), data.tools);
    }
    case "alpaca":
      return chatRecord(source, alpacaTurns(parsed.data as z.output<typeof SCHEMAS.alpaca>));
  }
}

function chatRecord(
  source: RecordSource,
  messages: ChatTurn[],
  tools?: Record<string, unknown>[],
): DataRecord {
  return tools === undefined
    ? { ...source, format: "chat", messages }
    : { ...source, format: "chat", messages, tools };
}

function allKeys(format: SourceFormat): string[] {
  return [...FORMAT_KEYS[format].defining, ...FORMAT_KEYS[format].optional];
}

function ownFormat(keys: string[]): SourceFormat | undefined {
  return DETECTION_ORDER.find((format) => FORMAT_KEYS[format].defining.some((key) => keys.includes(key)));
}

function checkColumns(columns: Readonly<Record<string, string>>, file: string): void {
  const targets = new Set(DETECTION_ORDER.flatMap(allKeys));
  for (const [target, source] of Object.entries(columns)) {
    if (!targets.has(target)) {
      throw new DataError(
        file,
        undefined,
        `--columns ${target}=${source}: "${target}" is not a record key (${list([...targets])})`,
      );
    }
  }
}

/** The record with the file's keys renamed to ours (`columns`: ours → theirs). */
function rename(
  value: unknown,
  columns: Readonly<Record<string, string>> | undefined,
  file: string,
  line: number,
): unknown {
  if (!columns || Object.keys(columns).length === 0) return value;
  const out = { ...(objectKeys(value, file, line), value as Record<string, unknown>) };
  for (const [target, source] of Object.entries(columns)) {
    if (!(source in out)) {
      throw new DataError(
        file,
        line,
        `no key "${source}" (--columns ${target}=${source}); keys ${list(Object.keys(out))}`,
      );
    }
    const v = out[source];
    delete out[source];
    out[target] = v;
  }
  return out;
}

/** A table row as a record: unused columns dropped, empty optional cells absent, JSON cells parsed. */
function tableRecord(
  row: Record<string, unknown>,
  known: string[],
  optional: string[],
  file: string,
  line: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of known) {
    let v = row[key];
    if (v === undefined || v === null || (v === "" && optional.includes(key))) continue;
    if (JSON_KEYS.includes(key) && typeof v === "string") {
      try {
        v = JSON.parse(v);
      } catch (error) {
        throw new DataError(file, line, `${key}: not valid JSON (${(error as Error).message})`);
      }
    }
    out[key] = v;
  }
  return out;
}

function objectKeys(value: unknown, file: string, line: number): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const found = Array.isArray(value) ? "an array" : value === null ? "null" : typeof value;
    throw new DataError(file, line, `expected a JSON object, found ${found}`);
  }
  return Object.keys(value);
}

function list(keys: readonly string[]): string {
  return keys.length === 0 ? "(none)" : keys.map((key) => JSON.stringify(key)).join(", ");
}

function pathOf(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : `${out ? "." : ""}${String(part)}`;
  return out || "record";
}
