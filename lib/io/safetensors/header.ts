/**
 * The safetensors header: 8 bytes of little-endian u64 length, then that many bytes of UTF-8 JSON
 * mapping tensor names to {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings).
 * Offsets count from the first byte after the header. Everything is validated here, before any tensor
 * data is read, so later reads can trust the table.
 */
import { type DType, dtypeBytes, DTYPES, elementCount, isDType } from "../dtype.ts";
import { FormatError } from "../../errors.ts";

/** Bytes of the length prefix. */
export const HEADER_LENGTH_BYTES = 8;
/** Largest header we accept; the reference implementation refuses larger ones too. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Key of the free-form string metadata inside the header JSON. */
export const METADATA_KEY = "__metadata__";

/** Where one tensor lives in a file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** The file that holds the tensor. */
  file: string;
  /** Absolute byte position of the first element in `file`. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  /** Tensors in the order of their data in the file. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute position of the data section (8 + header length). */
  dataStart: number;
}

/** Reads the length prefix; `prefix` holds the file's first bytes (fewer than 8 means truncated). */
export function parseHeaderLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (prefix.length < HEADER_LENGTH_BYTES) {
    throw new FormatError(
      file,
      `truncated: expected at least ${HEADER_LENGTH_BYTES} bytes for the header length, found ${prefix.length}`,
    );
  }
  const length = new DataView(prefix.buffer, prefix.byteOffset, HEADER_LENGTH_BYTES).getBigUint64(0, true);
  const available = fileSize - HEADER_LENGTH_BYTES;
  if (length > BigInt(available)) {
    throw new FormatError(
      file,
      `header length ${length} is beyond the end of the file (only ${available} bytes follow the length)`,
    );
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(file, `header length ${length} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  }
  return Number(length);
}

/** Decodes and validates the JSON header; `fileSize` bounds the data section. */
export function parseHeader(file: string, json: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = HEADER_LENGTH_BYTES + json.length;
  const dataSize = fileSize - dataStart;
  const root = decodeJson(file, json);
  if (!isPlainObject(root)) {
    throw new FormatError(file, `header must be a JSON object, found ${describe(root)}`);
  }

  const entries: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(root)) {
    if (name === METADATA_KEY) metadata = parseMetadata(file, entry);
    else entries.push(parseEntry(file, name, entry, dataStart, dataSize));
  }
  // File order: JSON.parse moves integer-like keys ("0", "12") to the front of an object.
  entries.sort((a, b) => a.offset - b.offset);
  rejectOverlaps(file, entries, dataStart);
  return { tensors: new Map(entries.map((info) => [info.name, info])), metadata, dataStart };
}

function decodeJson(file: string, json: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    throw new FormatError(file, "header is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FormatError(file, `header is not valid JSON (${(error as Error).message})`);
  }
}

function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (!isPlainObject(value)) {
    throw new FormatError(file, `"${METADATA_KEY}" must be an object of strings, found ${describe(value)}`);
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new FormatError(file, `"${METADATA_KEY}.${key}" must be a string, found ${describe(item)}`);
    }
  }
  return value as Record<string, string>;
}

function parseEntry(
  file: string,
  name: string,
  entry: unknown,
  dataStart: number,
  dataSize: number,
): TensorInfo {
  const fail = (problem: string) => new FormatError(file, problem, name);
  if (!isPlainObject(entry)) {
    throw fail(`expected an object {dtype, shape, data_offsets}, found ${describe(entry)}`);
  }

  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isDType(dtype)) {
    throw fail(`unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(", ")})`);
  }
  if (!Array.isArray(shape)) throw fail(`shape must be an array, found ${describe(shape)}`);
  for (const dim of shape) {
    if (!isCount(dim)) {
      throw fail(`shape ${JSON.stringify(shape)} has a dimension that is not an integer ≥ 0`);
    }
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw fail(`data_offsets must be two integers ≥ 0, found ${JSON.stringify(offsets)}`);
  }

  const [begin, end] = offsets as [number, number];
  if (begin > end) throw fail(`data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataSize) {
    throw fail(`data_offsets [${begin}, ${end}] are out of bounds: the data section has ${dataSize} bytes`);
  }
  const expectedBytes = elementCount(shape) * dtypeBytes(dtype);
  if (expectedBytes !== end - begin) {
    throw fail(
      `shape ${JSON.stringify(shape)} of ${dtype} needs ${expectedBytes} bytes, ` +
        `but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { name, dtype, shape, file, offset: dataStart + begin, byteLength: end - begin };
}

/** Two tensors sharing bytes would alias each other; no writer produces that on purpose. */
function rejectOverlaps(file: string, tensors: readonly TensorInfo[], dataStart: number): void {
  const byStart = tensors.filter((t) => t.byteLength > 0);
  // Sorted by start (as given), any overlapping pair implies an overlapping neighbour pair.
  for (let i = 1; i < byStart.length; i++) {
    const previous = byStart[i - 1];
    const current = byStart[i];
    const previousEnd = previous.offset + previous.byteLength;
    if (current.offset < previousEnd) {
      throw new FormatError(
        file,
        `its bytes overlap those of tensor "${previous.name}": expected data_offsets to begin at ` +
          `${previousEnd - dataStart} or later, found ${current.offset - dataStart}`,
        current.name,
      );
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** A short description of a JSON value for error messages. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${JSON.stringify(value)}`;
}
