/**
 * Reads a safetensors file one tensor at a time with positioned reads: opening parses only the header,
 * and each read allocates exactly the tensor it returns, so peak memory stays near the largest tensor.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { type DType, halfToF32, type TensorData, viewAs } from "../dtype.ts";
import { FormatError } from "../../errors.ts";
import { HEADER_LENGTH_BYTES, parseHeader, parseHeaderLength, type TensorInfo } from "./header.ts";

/** A tensor as read from disk; F16/BF16 data are raw bits, I64/U64 are bigint arrays. */
export interface RawTensor<D extends DType = DType> {
  dtype: D;
  shape: number[];
  data: TensorData<D>;
}

/** What a model's safetensors offer, whether one file or many shards. */
export interface TensorSource {
  /** The file or directory this source was opened from (used in error messages). */
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readTensor(name: string): RawTensor;
  /** Reads an F32, F16 or BF16 tensor as f32. */
  readTensorF32(name: string): RawTensor<"F32">;
}

/** The largest single read; a few platforms refuse reads of 2 GiB or more. */
const MAX_READ_BYTES = 1 << 30;
/** Elements of a half-precision tensor widened per step, so its raw bits never exist whole in memory. */
const HALF_CHUNK_ELEMENTS = 1 << 20;

export class SafetensorsReader implements TensorSource, Disposable {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and validates its header; throws FormatError when it is not a valid safetensors file. */
  static open(path: string): SafetensorsReader {
    const fd = openSync(path, "r");
    try {
      const fileSize = fstatSync(fd).size;
      const prefix = readAt(path, fd, 0, Math.min(HEADER_LENGTH_BYTES, fileSize));
      const headerLength = parseHeaderLength(path, prefix, fileSize);
      const json = readAt(path, fd, HEADER_LENGTH_BYTES, headerLength);
      const { tensors, metadata } = parseHeader(path, json, fileSize);
      return new SafetensorsReader(path, fd, tensors, metadata);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) throw new FormatError(this.path, "no such tensor in this file", name);
    return info;
  }

  /** The tensor's bytes as stored (little-endian). */
  readBytes(name: string): Uint8Array<ArrayBuffer> {
    const { offset, byteLength } = this.info(name);
    return readAt(this.path, this.openFd(), offset, byteLength);
  }

  readTensor(name: string): RawTensor {
    const { dtype, shape } = this.info(name);
    // A fresh buffer per read starts at offset 0, so every element type is aligned for its view.
    return { dtype, shape: [...shape], data: viewAs(dtype, this.readBytes(name)) };
  }

  readTensorF32(name: string): RawTensor<"F32"> {
    const { dtype, shape, offset, byteLength } = this.info(name);
    if (dtype === "F32") return this.readTensor(name) as RawTensor<"F32">;
    if (dtype !== "F16" && dtype !== "BF16") {
      throw new FormatError(this.path, `expected a float tensor (F32, F16 or BF16), found ${dtype}`, name);
    }
    const out = new Float32Array(byteLength / 2);
    const bits = new Uint16Array(Math.min(out.length, HALF_CHUNK_ELEMENTS));
    const fd = this.openFd();
    for (let start = 0; start < out.length; start += bits.length) {
      const count = Math.min(bits.length, out.length - start);
      const chunk = bits.subarray(0, count);
      readInto(this.path, fd, offset + start * 2, new Uint8Array(chunk.buffer, 0, count * 2));
      halfToF32(dtype, chunk, out.subarray(start, start + count));
    }
    return { dtype: "F32", shape: [...shape], data: out };
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

/** Reads exactly `length` bytes at `position` into a new buffer. */
function readAt(path: string, fd: number, position: number, length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  readInto(path, fd, position, bytes);
  return bytes;
}

function readInto(path: string, fd: number, position: number, target: Uint8Array): void {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(target.length - done, MAX_READ_BYTES);
    const got = readSync(fd, target, done, want, position + done);
    if (got === 0) {
      throw new FormatError(
        path,
        `truncated: expected ${target.length} bytes at offset ${position}, found only ${done}`,
      );
    }
    done += got;
  }
}
