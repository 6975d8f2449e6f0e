/**
 * Reads a local GGUF file one tensor at a time. The header (metadata and tensor infos) is parsed by
 * `@huggingface/gguf`; everything it does not check (truncation, unknown element types, tensor data past
 * the end of the file) is checked here, and its errors become FormatErrors naming the file. Tensor data is
 * read with positioned reads of just that tensor and dequantized to f32 by rust-kernels.
 */
import { gguf } from "@huggingface/gguf";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ggmlDequantize } from "../../../ffi/ggml.ts";
import { FormatError } from "../../errors.ts";
import { dequantizableTypeNames, type GgmlType, ggmlType } from "../../../ffi/ggml_types.ts";

/** A metadata value as stored: integers up to 32 bits and floats as numbers, 64-bit integers as bigints. */
export type GgufValue = string | number | bigint | boolean | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** HF / PyTorch order (slowest dimension first), the reverse of ggml's `ne`: [out, in] for a linear. */
  shape: number[];
  elements: number;
  /** Absolute position of the first byte in the file. */
  offset: number;
  byteLength: number;
}

/** The header of a GGUF file: magic, version, tensor count, metadata count. */
const MIN_HEADER_BYTES = 4 + 4 + 8 + 8;
/** ggml tensors have at most four dimensions (GGML_MAX_DIMS). */
const MAX_DIMS = 4;
/** Bytes of quantized data read and dequantized per step, so the raw tensor never exists whole in memory. */
const CHUNK_BYTES = 16 << 20;
/** The largest single read; a few platforms refuse reads of 2 GiB or more. */
const MAX_READ_BYTES = 1 << 30;
/** Keys the parser adds to the metadata that are header fields, not metadata. */
const HEADER_FIELDS = new Set(["version", "tensor_count", "kv_count"]);

export class GgufFile implements Disposable {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    readonly version: number,
    readonly metadata: Readonly<Record<string, GgufValue>>,
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
  ) {
    this.fd = fd;
  }

  /** Opens and validates `path`; throws FormatError when it is not a readable GGUF file. */
  static async open(path: string): Promise<GgufFile> {
    const fd = openSync(path, "r");
    try {
      const fileSize = fstatSync(fd).size;
      const version = checkPreamble(
        path,
        readAt(path, fd, 0, Math.min(MIN_HEADER_BYTES, fileSize)),
        fileSize,
      );
      const parsed = await parseHeader(path);
      if (parsed.tensorInfoByteRange[1] > fileSize) {
        throw new FormatError(
          path,
          `truncated: the header needs ${parsed.tensorInfoByteRange[1]} bytes, the file has ${fileSize}`,
        );
      }
      const metadata: Record<string, GgufValue> = {};
      for (const [key, value] of Object.entries(parsed.metadata)) {
        if (!HEADER_FIELDS.has(key)) metadata[key] = value as GgufValue;
      }
      const tensors = new Map<string, GgufTensorInfo>();
      for (const raw of parsed.tensorInfos) {
        const info = tensorInfo(path, raw, parsed.tensorDataOffset, fileSize);
        if (tensors.has(info.name)) throw new FormatError(path, "tensor name appears twice", info.name);
        tensors.set(info.name, info);
      }
      return new GgufFile(path, fd, version, metadata, tensors);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** `general.architecture`, e.g. "llama" or "qwen2". */
  get architecture(): string {
    return this.string("general.architecture");
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): GgufTensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new FormatError(this.path, "no such tensor in this file", name);
    return info;
  }

  /** A numeric metadata value (64-bit integers converted when exact); `fallback` when the key is absent. */
  number(key: string, fallback?: number): number {
    const value = this.metadata[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value === "number") return value;
    if (
      typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) &&
      value >= -BigInt(Number.MAX_SAFE_INTEGER)
    ) {
      return Number(value);
    }
    throw new FormatError(this.path, `metadata "${key}": expected a number, found ${describe(value)}`);
  }

  /** A string metadata value; `fallback` when the key is absent. */
  string(key: string, fallback?: string): string {
    const value = this.metadata[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value === "string") return value;
    throw new FormatError(this.path, `metadata "${key}": expected a string, found ${describe(value)}`);
  }

  /** The tensor's bytes as stored. */
  readBytes(name: string): Uint8Array<ArrayBuffer> {
    const { offset, byteLength } = this.info(name);
    const bytes = new Uint8Array(byteLength);
    readInto(this.path, this.openFd(), offset, bytes, name);
    return bytes;
  }

  /** The tensor as f32 values in row-major HF order (see `info(name).shape`), whatever its ggml type. */
  readTensorF32(name: string): Float32Array {
    const { type, offset, elements, byteLength } = this.info(name);
    if (!type.dequantize) {
      throw new FormatError(
        this.path,
        `ggml type ${type.name} (${type.id}) cannot be dequantized; supported: ${
          dequantizableTypeNames().join(", ")
        }`,
        name,
      );
    }
    const out = new Float32Array(elements);
    const fd = this.openFd();
    if (type.name === "F32") {
      // Little-endian f32 on disk is already our layout: read straight into the result.
      readInto(this.path, fd, offset, new Uint8Array(out.buffer), name);
      return out;
    }
    // Whole blocks per step, so every chunk is a valid input for the kernel.
    const blocksPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / type.blockBytes));
    const buffer = new Uint8Array(Math.min(byteLength, blocksPerChunk * type.blockBytes));
    const totalBlocks = elements / type.blockElements;
    for (let block = 0; block < totalBlocks; block += blocksPerChunk) {
      const blocks = Math.min(blocksPerChunk, totalBlocks - block);
      const src = buffer.subarray(0, blocks * type.blockBytes);
      readInto(this.path, fd, offset + block * type.blockBytes, src, name);
      const start = block * type.blockElements;
      ggmlDequantize(type, src, out.subarray(start, start + blocks * type.blockElements));
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private openFd(): number {
    if (this.fd === undefined) throw new FormatError(this.path, "read after close()");
    return this.fd;
  }
}

/** Checks magic, version and byte order ourselves, so these common mistakes get precise messages. */
function checkPreamble(path: string, bytes: Uint8Array, fileSize: number): number {
  const magic = new TextDecoder("latin1").decode(bytes.subarray(0, 4));
  if (bytes.length < 4 || magic !== "GGUF") {
    const found = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    throw new FormatError(
      path,
      `not a GGUF file: expected the magic "GGUF" (47 47 55 46), found ${found || "an empty file"}`,
    );
  }
  if (bytes.length < MIN_HEADER_BYTES) {
    throw new FormatError(
      path,
      `truncated: ${fileSize} bytes is shorter than a GGUF header (${MIN_HEADER_BYTES})`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version === 2 || version === 3) return version;
  if ((version & 0xffff) === 0 && [2, 3].includes(view.getUint32(4, false))) {
    throw new FormatError(path, "big-endian GGUF files are not supported");
  }
  if (version === 1) {
    throw new FormatError(
      path,
      "GGUF version 1 is not supported (it predates 64-bit sizes); convert it to version 3",
    );
  }
  throw new FormatError(path, `unsupported GGUF version ${version} (expected 2 or 3)`);
}

/** Runs the library parser, turning its errors (plain Errors, RangeErrors from DataView) into FormatErrors. */
async function parseHeader(path: string) {
  try {
    // computeParametersCount stays off (its default; the typings accept only `true`): we check sizes ourselves.
    return await gguf(path, { allowLocalFile: true });
  } catch (error) {
    if (error instanceof RangeError) {
      throw new FormatError(
        path,
        `truncated or corrupt header: a field runs past the end of the file (${error.message})`,
      );
    }
    throw new FormatError(path, `invalid GGUF header: ${(error as Error).message}`);
  }
}

interface RawTensorInfo {
  name: string;
  n_dims: number;
  shape: bigint[];
  dtype: number;
  offset: bigint;
}

function tensorInfo(path: string, raw: RawTensorInfo, dataOffset: bigint, fileSize: number): GgufTensorInfo {
  const { name } = raw;
  const type = ggmlType(raw.dtype);
  if (type === undefined) throw new FormatError(path, `unknown ggml type id ${raw.dtype}`, name);
  if (raw.n_dims < 1 || raw.n_dims > MAX_DIMS) {
    throw new FormatError(path, `expected 1 to ${MAX_DIMS} dimensions, found ${raw.n_dims}`, name);
  }
  const ne = raw.shape.map(Number);
  const elements = ne.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(elements)) throw new FormatError(path, `shape [${ne}] is too large`, name);
  if (ne[0] % type.blockElements !== 0) {
    throw new FormatError(
      path,
      `row length ${ne[0]} is not a multiple of the ${type.name} block size ${type.blockElements}`,
      name,
    );
  }
  const byteLength = (elements / type.blockElements) * type.blockBytes;
  const offset = Number(dataOffset + raw.offset);
  if (offset + byteLength > fileSize) {
    throw new FormatError(
      path,
      `data (${byteLength} bytes at offset ${offset}) runs past the end of the file (${fileSize} bytes): ` +
        "the file is truncated or its tensor offsets are corrupt",
      name,
    );
  }
  return { name, type, shape: ne.toReversed(), elements, offset, byteLength };
}

function describe(value: GgufValue | undefined): string {
  if (value === undefined) return "nothing (key absent)";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `${typeof value} ${JSON.stringify(typeof value === "bigint" ? value.toString() : value)}`;
}

function readAt(path: string, fd: number, position: number, length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  readInto(path, fd, position, bytes);
  return bytes;
}

function readInto(path: string, fd: number, position: number, target: Uint8Array, tensor?: string): void {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(target.length - done, MAX_READ_BYTES);
    const got = readSync(fd, target, done, want, position + done);
    if (got === 0) {
      throw new FormatError(
        path,
        `truncated: expected ${target.length} bytes at offset ${position}, found ${done}`,
        tensor,
      );
    }
    done += got;
  }
}
