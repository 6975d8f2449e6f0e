/**
 * A safetensors model whose every tensor is checked against a checksum recorded when it was written: a
 * damaged or altered file is refused when a tensor is read (never returned as wrong numbers).
 */
import { checksum64 } from "../../../ffi/checksum.ts";
import { bytesOf, halfToF32 } from "../dtype.ts";
import { FormatError } from "../../errors.ts";
import type { TensorInfo } from "./header.ts";
import type { RawTensor, TensorSource } from "./reader.ts";
import { ShardedSafetensors } from "./sharded.ts";

export class ChecksummedSafetensors implements TensorSource, Disposable {
  private constructor(
    private readonly files: ShardedSafetensors,
    /** Tensor name → checksum64 of its bytes as stored. */
    private readonly checksums: Readonly<Record<string, string>>,
  ) {}

  /** Opens `dir`; every tensor in it must have a checksum and every checksum a tensor. */
  static open(dir: string, checksums: Readonly<Record<string, string>>): ChecksummedSafetensors {
    const files = ShardedSafetensors.open(dir);
    const names = new Set(files.names());
    const listed = Object.keys(checksums);
    const unlisted = [...names].find((name) => !(name in checksums));
    const missing = listed.find((name) => !names.has(name));
    if (unlisted !== undefined || missing !== undefined || listed.length !== names.size) {
      files.close();
      throw new FormatError(
        dir,
        unlisted !== undefined
          ? `holds a tensor without a recorded checksum`
          : `lacks a tensor whose checksum was recorded`,
        unlisted ?? missing,
      );
    }
    return new ChecksummedSafetensors(files, checksums);
  }

  get path(): string {
    return this.files.path;
  }

  names(): string[] {
    return this.files.names();
  }

  has(name: string): boolean {
    return this.files.has(name);
  }

  info(name: string): TensorInfo {
    return this.files.info(name);
  }

  readTensor(name: string): RawTensor {
    const tensor = this.files.readTensor(name);
    const found = checksum64(bytesOf(tensor.data));
    if (found !== this.checksums[name]) {
      throw new FormatError(
        this.files.info(name).file,
        `damaged: checksum ${found}, expected ${this.checksums[name]} (recorded when it was written)`,
        name,
      );
    }
    return tensor;
  }

  readTensorF32(name: string): RawTensor<"F32"> {
    const tensor = this.readTensor(name);
    if (tensor.dtype === "F32") return tensor as RawTensor<"F32">;
    if (tensor.dtype !== "BF16" && tensor.dtype !== "F16") {
      throw new FormatError(
        this.files.info(name).file,
        `expected a float tensor, found ${tensor.dtype}`,
        name,
      );
    }
    const data = new Float32Array(tensor.data.length);
    halfToF32(tensor.dtype, tensor.data as Uint16Array, data);
    return { dtype: "F32", shape: tensor.shape, data };
  }

  close(): void {
    this.files.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
