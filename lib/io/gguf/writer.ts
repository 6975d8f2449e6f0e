/**
 * A GGUF (version 3) writer: header, metadata key/values (scalars and arrays), tensor infos, then the
 * tensor data, each tensor aligned to 32 bytes. All little-endian. Tensors may be given as bytes or as
 * producers called one at a time while the file is written, so a model bigger than RAM streams through
 * one tensor at a time. The file appears atomically (written to `path + ".tmp"`, then renamed); a failure
 * part-way removes the temporary file and leaves whatever `path` held before untouched.
 */
import { bytesOf } from "../dtype.ts";
import { writeFileAtomically } from "../atomic_file.ts";
import { FormatError } from "../../errors.ts";
import { type GgmlType, ggmlTypeByName } from "../../../ffi/ggml_types.ts";

/** A scalar metadata value's GGUF type. */
export type GgufScalarType = "u32" | "i32" | "f32" | "u64";

/** A metadata value: strings and booleans as such, numbers with the GGUF type they are stored as, arrays. */
export type GgufMetadataValue =
  | string
  | boolean
  | { type: GgufScalarType; value: number }
  | { type: "array"; itemType: "string"; values: readonly string[] }
  | { type: "array"; itemType: GgufScalarType; values: ArrayLike<number> };

export type GgufTensorData = ArrayBufferView;

export interface GgufTensorToWrite {
  name: string;
  /** HF / PyTorch order (slowest dimension first); written reversed as ggml's `ne`. */
  shape: readonly number[];
  /** A ggml type name ("F32", "F16", "BF16", "Q8_0", "Q4_K", …). */
  type: string;
  /**
   * The encoded bytes (Float32Array for F32, Uint16Array bit patterns for F16 / BF16, any view of the
   * block bytes for quantized types), or a function that produces them when the writer reaches this
   * tensor (called once, in order).
   */
  data: GgufTensorData | (() => GgufTensorData);
}

const MAGIC = "GGUF";
const VERSION = 3;
/** GGUF's default alignment (`general.alignment` unset). */
const ALIGNMENT = 32;
/** gguf_type ids of the metadata value types we write. */
const VALUE_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10 } as const;

export function writeGguf(
  path: string,
  metadata: ReadonlyArray<readonly [string, GgufMetadataValue]>,
  tensors: readonly GgufTensorToWrite[],
): void {
  const header = new ByteWriter();
  header.raw(new TextEncoder().encode(MAGIC));
  header.u32(VERSION);
  header.u64(tensors.length);
  header.u64(metadata.length);
  const keys = new Set<string>();
  for (const [key, value] of metadata) {
    if (keys.has(key)) throw new FormatError(path, `metadata key "${key}" given twice`);
    keys.add(key);
    header.string(key);
    writeValue(header, value);
  }
  let offset = 0;
  const names = new Set<string>();
  const sizes: number[] = [];
  for (const tensor of tensors) {
    const { type, byteLength } = checkTensor(path, tensor, names);
    header.string(tensor.name);
    header.u32(tensor.shape.length);
    for (const dim of tensor.shape.toReversed()) header.u64(dim);
    header.u32(type.id);
    header.u64(offset);
    sizes.push(byteLength);
    offset += padded(byteLength);
  }
  header.raw(new Uint8Array(padded(header.length) - header.length));

  writeFileAtomically(path, (write) => {
    write(header.bytes());
    for (const [i, tensor] of tensors.entries()) {
      const data = typeof tensor.data === "function" ? tensor.data() : tensor.data;
      checkData(path, tensor, data, sizes[i]);
      write(bytesOf(data));
      write(new Uint8Array(padded(data.byteLength) - data.byteLength));
    }
  });
}

/** The bytes a tensor of `type` and `shape` takes; the row (`shape.at(-1)`) must be whole blocks. */
export function ggufTensorBytes(type: GgmlType, shape: readonly number[]): number {
  const elements = shape.reduce((a, b) => a * b, 1);
  return (elements / type.blockElements) * type.blockBytes;
}

function checkTensor(
  path: string,
  tensor: GgufTensorToWrite,
  names: Set<string>,
): { type: GgmlType; byteLength: number } {
  const { name, shape } = tensor;
  if (names.has(name)) throw new FormatError(path, "tensor name given twice", name);
  names.add(name);
  if (shape.length < 1 || shape.length > 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(path, `shape ${JSON.stringify(shape)} is not 1 to 4 positive dimensions`, name);
  }
  let type: GgmlType;
  try {
    type = ggmlTypeByName(tensor.type);
  } catch (error) {
    throw new FormatError(path, (error as Error).message, name);
  }
  const row = shape[shape.length - 1];
  if (row % type.blockElements !== 0) {
    throw new FormatError(
      path,
      `row length ${row} is not a multiple of the ${type.name} block size ${type.blockElements}`,
      name,
    );
  }
  const byteLength = ggufTensorBytes(type, shape);
  if (typeof tensor.data !== "function") checkData(path, tensor, tensor.data, byteLength);
  return { type, byteLength };
}

function checkData(path: string, tensor: GgufTensorToWrite, data: GgufTensorData, expected: number): void {
  const { name, shape, type } = tensor;
  const array = type === "F32" ? Float32Array : type === "F16" || type === "BF16" ? Uint16Array : undefined;
  // Bytes are always accepted (quantizers return them); typed arrays must be the type's own.
  const wrongKind = array !== undefined && !(data instanceof array) && !(data instanceof Uint8Array);
  if (wrongKind || data.byteLength !== expected) {
    throw new FormatError(
      path,
      `${type} ${JSON.stringify(shape)} needs ${array ? `a ${array.name} of ` : ""}${expected} bytes, ` +
        `found a ${data.constructor.name} of ${data.byteLength}`,
      name,
    );
  }
}

function writeValue(out: ByteWriter, value: GgufMetadataValue): void {
  if (typeof value === "string") {
    out.u32(VALUE_TYPE.string);
    out.string(value);
  } else if (typeof value === "boolean") {
    out.u32(VALUE_TYPE.bool);
    out.raw(new Uint8Array([value ? 1 : 0]));
  } else if (value.type === "array") {
    out.u32(VALUE_TYPE.array);
    out.u32(VALUE_TYPE[value.itemType]);
    out.u64(value.values.length);
    if (value.itemType === "string") {
      for (const s of value.values as readonly string[]) out.string(s);
    } else {
      const type = value.itemType;
      const values = value.values as ArrayLike<number>;
      const bytes = new Uint8Array(values.length * (type === "u64" ? 8 : 4));
      const view = new DataView(bytes.buffer);
      for (let i = 0; i < values.length; i++) setScalar(view, i * (type === "u64" ? 8 : 4), type, values[i]);
      out.raw(bytes);
    }
  } else {
    out.u32(VALUE_TYPE[value.type]);
    const bytes = new Uint8Array(value.type === "u64" ? 8 : 4);
    setScalar(new DataView(bytes.buffer), 0, value.type, value.value);
    out.raw(bytes);
  }
}

function setScalar(view: DataView, at: number, type: GgufScalarType, value: number): void {
  if (type === "f32") view.setFloat32(at, value, true);
  else if (type === "u32") view.setUint32(at, value, true);
  else if (type === "i32") view.setInt32(at, value, true);
  else view.setBigUint64(at, BigInt(value), true);
}

function padded(length: number): number {
  return Math.ceil(length / ALIGNMENT) * ALIGNMENT;
}

/** Appends little-endian fields to a growing list of byte chunks. */
class ByteWriter {
  private chunks: Uint8Array[] = [];
  length = 0;

  raw(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  u32(value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value, true);
    this.raw(bytes);
  }

  u64(value: number): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
    this.raw(bytes);
  }

  /** u64 byte length, then UTF-8 bytes (no terminator). */
  string(value: string): void {
    const bytes = new TextEncoder().encode(value);
    this.u64(bytes.length);
    this.raw(bytes);
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}
