/**
 * Writes safetensors files laid out byte for byte as the reference `safetensors` library lays them out:
 * tensors ordered by dtype (larger elements first, so every tensor starts aligned for its type) then by
 * name, compact JSON with "__metadata__" first, header padded with spaces to a multiple of 8 bytes.
 * The file appears atomically: it is written to `path + ".tmp"` and renamed when complete.
 */
import { Buffer } from "node:buffer";
import { bytesOf, type DType, dtypeBytes, DTYPES, elementCount, isDType } from "../dtype.ts";
import { writeFileAtomically } from "../atomic_file.ts";
import { FormatError } from "../../errors.ts";
import { HEADER_LENGTH_BYTES, METADATA_KEY } from "./header.ts";

/** Host byte order is assumed little-endian (x86-64, aarch64), the byte order of the format. */
export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: readonly number[];
  /**
   * The elements in the dtype's TypedArray (Uint16Array bits for F16/BF16) or as raw bytes. A function
   * is called only when this tensor is written, so an export can produce one tensor at a time.
   */
  data: ArrayBufferView | (() => ArrayBufferView);
}

/** The reference writer's dtype order (its enum, descending): element sizes never grow along it. */
const WRITE_ORDER: readonly DType[] = [
  "U64",
  "I64",
  "F64",
  "F32",
  "U32",
  "I32",
  "BF16",
  "F16",
  "U16",
  "I16",
  "I8",
  "U8",
  "BOOL",
];

export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
): void {
  const ordered = orderLikeSafetensors(path, tensors);
  const header = encodeHeader(path, ordered, metadata);
  writeFileAtomically(path, (write) => {
    const length = new Uint8Array(HEADER_LENGTH_BYTES);
    new DataView(length.buffer).setBigUint64(0, BigInt(header.length), true);
    write(length);
    write(header);
    for (const tensor of ordered) write(tensorBytes(path, tensor));
  });
}

/** Validates the list and sorts it as the reference writer does: by dtype, then by name. */
function orderLikeSafetensors(path: string, tensors: readonly TensorToWrite[]): TensorToWrite[] {
  const seen = new Set<string>();
  for (const { name, dtype, shape } of tensors) {
    if (name === METADATA_KEY || name === "") throw new FormatError(path, "reserved tensor name", name);
    if (seen.has(name)) throw new FormatError(path, "tensor name given twice", name);
    seen.add(name);
    if (!isDType(dtype)) throw new FormatError(path, `unknown dtype ${JSON.stringify(dtype)}`, name);
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      throw new FormatError(
        path,
        `shape ${JSON.stringify(shape)} has a dimension that is not an integer ≥ 0`,
        name,
      );
    }
  }
  // The reference compares names as UTF-8 bytes, which is not JS's UTF-16 order beyond the BMP.
  const byName = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const rank = (dtype: DType) => WRITE_ORDER.indexOf(dtype);
  return [...tensors].sort((a, b) => rank(a.dtype) - rank(b.dtype) || byName(a.name, b.name));
}

function encodeHeader(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>> | undefined,
): Uint8Array {
  // Built entry by entry: JSON.stringify of one object would move integer-like names ("0") to the front.
  const entries: string[] = [];
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new FormatError(path, `metadata "${key}" must be a string, found ${typeof value}`);
      }
    }
    entries.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const { name, dtype, shape } of tensors) {
    const byteLength = elementCount(shape) * dtypeBytes(dtype);
    const info = { dtype, shape, data_offsets: [offset, offset + byteLength] };
    entries.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += byteLength;
  }
  const json = `{${entries.join(",")}}`;
  const padding = (HEADER_LENGTH_BYTES - (new TextEncoder().encode(json).length % HEADER_LENGTH_BYTES)) %
    HEADER_LENGTH_BYTES;
  return new TextEncoder().encode(json + " ".repeat(padding));
}

/** The tensor's bytes, checked against its dtype and shape. */
function tensorBytes(path: string, { name, dtype, shape, data }: TensorToWrite): Uint8Array {
  const view = typeof data === "function" ? data() : data;
  const expectedType = DTYPES[dtype].array;
  if (!(view instanceof expectedType) && !(view instanceof Uint8Array)) {
    throw new FormatError(
      path,
      `data for ${dtype} must be a ${expectedType.name} or raw bytes (Uint8Array), found ${view.constructor.name}`,
      name,
    );
  }
  const expectedBytes = elementCount(shape) * dtypeBytes(dtype);
  if (view.byteLength !== expectedBytes) {
    throw new FormatError(
      path,
      `shape ${JSON.stringify(shape)} of ${dtype} needs ${expectedBytes} bytes, found ${view.byteLength}`,
      name,
    );
  }
  return bytesOf(view);
}
