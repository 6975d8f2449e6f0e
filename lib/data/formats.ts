/**
 * The three record formats (as in mlx-lm's datasets), recognised from the first record's keys:
 *
 * - `{"text": "..."}`: plain text, trained on every token.
 * - `{"prompt": "...", "completion": "..."}`: raw text; the loss is on the completion only.
 * - `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}`: a chat rendered with the
 *   model's chat template; the loss is on the assistant turns only.
 *
 * Every record of a file must have the first record's format. Besides the format's own keys a record may
 * carry `id` and `meta` (common bookkeeping fields in published datasets; ignored). Any other key is an
 * error, because a misspelt key ("completions", "message") would otherwise silently change what is trained.
 * Tool calls and `tool` messages are rejected: no template path for them is tested here.
 */
import { z } from "zod";
import { DataError } from "./errors.ts";
import { type JsonlLine, readJsonl } from "./jsonl.ts";

export type DataFormat = "text" | "completions" | "chat";

export type ChatRole = "system" | "user" | "assistant";

/** A type, not an interface, so it is assignable to the chat template's open-ended message type. */
export type ChatTurn = {
  role: ChatRole;
  content: string;
};

/** Where a record came from, for errors and statistics. */
export interface RecordSource {
  file: string;
  line: number;
}

export type DataRecord =
  & RecordSource
  & (
    | { format: "text"; text: string }
    | { format: "completions"; prompt: string; completion: string }
    | { format: "chat"; messages: ChatTurn[] }
  );

/** Keys any record may carry besides its format's keys; their values are not read. */
export const IGNORED_KEYS = ["id", "meta"] as const;

const ROLES = ["system", "user", "assistant"] as const;

const ignored = { id: z.unknown().optional(), meta: z.unknown().optional() };

const turn = z.strictObject({
  role: z.enum(ROLES, {
    error: (issue) =>
      issue.input === "tool"
        ? `tool messages are not supported (roles: ${ROLES.join(", ")})`
        : `expected one of ${ROLES.join(", ")}, found ${JSON.stringify(issue.input)}`,
  }),
  content: z.string({ error: "expected a string (multi-part content is not supported)" }),
});

const SCHEMAS = {
  text: z.strictObject({ text: z.string().min(1, "must not be empty"), ...ignored }),
  completions: z.strictObject({
    prompt: z.string(),
    completion: z.string().min(1, "must not be empty"),
    ...ignored,
  }),
  chat: z.strictObject({ messages: z.array(turn).min(1, "must hold at least one message"), ...ignored }),
};

/** The keys that define each format (what the first record is recognised by). */
const FORMAT_KEYS: Record<DataFormat, string[]> = {
  text: ["text"],
  completions: ["prompt", "completion"],
  chat: ["messages"],
};

const EXPECTED = `expected {"text"}, {"prompt", "completion"} or {"messages"}`;

/** A file's records, all of one format. */
export interface RecordFile {
  file: string;
  format: DataFormat;
  records: DataRecord[];
}

/** Reads and validates a JSONL data file; an empty file is an error. */
export async function readRecords(path: string): Promise<RecordFile> {
  return parseRecords(await readJsonl(path), path);
}

/** Validates parsed JSONL lines (the format comes from the first one). */
export function parseRecords(lines: readonly JsonlLine[], file: string): RecordFile {
  if (lines.length === 0) throw new DataError(file, undefined, "no records (the file is empty)");
  const format = detectFormat(lines[0].value, file, lines[0].line);
  const records = lines.map(({ value, line }) => parseRecord(value, format, file, line));
  return { file, format, records };
}

/** The format a record's keys announce (`messages` wins over `prompt` wins over `text`). */
export function detectFormat(value: unknown, file: string, line: number): DataFormat {
  const keys = objectKeys(value, file, line);
  if (keys.includes("messages")) return "chat";
  if (keys.includes("prompt") || keys.includes("completion")) return "completions";
  if (keys.includes("text")) return "text";
  throw new DataError(file, line, `unknown format: keys ${list(keys)}; ${EXPECTED}`);
}

/** Checks one record against `format` and returns it typed. */
export function parseRecord(value: unknown, format: DataFormat, file: string, line: number): DataRecord {
  const keys = objectKeys(value, file, line);
  const own = detectOwnFormat(keys);
  if (own !== undefined && own !== format) {
    throw new DataError(
      file,
      line,
      `mixed formats: the file's first record is "${format}" (${list(FORMAT_KEYS[format])}), ` +
        `this one is "${own}" (${list(keys)})`,
    );
  }
  const allowed = [...FORMAT_KEYS[format], ...IGNORED_KEYS];
  const unknown = keys.filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    throw new DataError(
      file,
      line,
      `unknown key${unknown.length > 1 ? "s" : ""} ${list(unknown)}; a "${format}" record has ` +
        `${list(FORMAT_KEYS[format])} (and optionally ${list([...IGNORED_KEYS])})`,
    );
  }
  const parsed = SCHEMAS[format].safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${pathOf(issue.path)}: ${issue.message}`);
    throw new DataError(file, line, problems.join("; "));
  }
  const source = { file, line };
  const data = parsed.data as Record<string, unknown>;
  switch (format) {
    case "text":
      return { ...source, format, text: data.text as string };
    case "completions":
      return { ...source, format, prompt: data.prompt as string, completion: data.completion as string };
    case "chat":
      return { ...source, format, messages: data.messages as ChatTurn[] };
  }
}

function detectOwnFormat(keys: string[]): DataFormat | undefined {
  for (const format of ["chat", "completions", "text"] as const) {
    if (FORMAT_KEYS[format].some((key) => keys.includes(key))) return format;
  }
  return undefined;
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
