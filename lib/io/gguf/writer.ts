/**
 * A small GGUF (version 3) writer for unquantized tensors: header, metadata key/values, tensor infos,
 * then the tensor data, each piece aligned to 32 bytes. All little-endian. Enough for LoRA adapters;
 * the file appears atomically (written to `path + ".tmp"`, then renamed).
 */
import { bytesOf } from "../dtype.ts";
import { writeFileAtomically } from "../atomic_file.ts";
import { FormatError } from "../../errors.ts";

/** A metadata value: strings and booleans as such, numbers with the GGUF type they are stored as. */
export type GgufMetadataValue = string | boolean | { type: "u32" | "i32" | "f32"; value: number };

export interface GgufTensorToWrite {
  name: string;
  /** HF / PyTorch order (slowest dimension first); written reversed as ggml's `ne`. */
  shape: readonly number[];
  type: "F32" | "F16" | "BF16";
  /** Float32Array for F32, Uint16Array bit patterns for F16 / BF16. */
  data: Float32Array | Uint16Array;
}

const MAGIC = "GGUF";
const VERSION = 3;
/** GGUF's default alignment (`general.alignment` unset). */
const ALIGNMENT = 32;
/** gguf_type ids of the metadata value types we write. */
const VALUE_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8 } as const;
/** ggml_type ids. */
const TENSOR_TYPE = { F32: 0, F16: 1, BF16: 30 } as const;
const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;

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
  for (const [key, value] of metadata) {
    header.string(key);
    writeValue(header, value);
  }
  let offset = 0;
  const names = new Set<string>();
  for (const tensor of tensors) {
    checkTensor(path, tensor, names);
    header.string(tensor.name);
    header.u32(tensor.shape.length);
    for (const dim of tensor.shape.toReversed()) header.u64(dim);
    header.u32(TENSOR_TYPE[tensor.type]);
    header.u64(offset);
    offset += padded(tensor.data.byteLength);
  }
  header.raw(new Uint8Array(padded(header.length) - header.length));

  writeFileAtomically(path, (write) => {
    write(header.bytes());
    for (const { data } of tensors) {
      write(bytesOf(data));
      write(new Uint8Array(padded(data.byteLength) - data.byteLength));
    }
  });
}

function checkTensor(path: string, tensor: GgufTensorToWrite, names: Set<string>): void {
  const { name, shape, type, data } = tensor;
  if (names.has(name)) throw new FormatError(path, "tensor name given twice", name);
  names.add(name);
  if (shape.length < 1 || shape.length > 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(path, `shape ${JSON.stringify(shape)} is not 1 to 4 positive dimensions`, name);
  }
  const expected = shape.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[type];
  const array = type === "F32" ? Float32Array : Uint16Array;
  if (!(data instanceof array) || data.byteLength !== expected) {
    throw new FormatError(
      path,
      `${type} ${JSON.stringify(shape)} needs a ${array.name} of ${expected} bytes, ` +
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
  } else {
    out.u32(VALUE_TYPE[value.type]);
    const bytes = new Uint8Array(4);
    const view = new DataView(bytes.buffer);
    if (value.type === "f32") view.setFloat32(0, value.value, true);
    else if (value.type === "u32") view.setUint32(0, value.value, true);
    else view.setInt32(0, value.value, true);
    out.raw(bytes);
  }
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
