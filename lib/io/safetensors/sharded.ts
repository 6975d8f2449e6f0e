/**
 * A model's weights in safetensors form: one file, or a directory holding either `model.safetensors`
 * or shards listed by `model.safetensors.index.json` (`weight_map`: tensor name → shard file).
 * Opening reads only headers and checks the index against the shards; tensors are read on demand.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { FormatError } from "../../errors.ts";
import type { TensorInfo } from "./header.ts";
import { type RawTensor, SafetensorsReader, type TensorSource } from "./reader.ts";

export const SINGLE_FILE_NAME = "model.safetensors";
export const INDEX_FILE_NAME = "model.safetensors.index.json";

export class ShardedSafetensors implements TensorSource, Disposable {
  private constructor(
    /** The file or directory the model was opened from. */
    readonly path: string,
    /** The shard holding each tensor, in index (or header) order. */
    private readonly readerOf: ReadonlyMap<string, SafetensorsReader>,
    /** Every opened file, in the order first named. */
    private readonly readers: readonly SafetensorsReader[],
  ) {}

  /** Opens a `.safetensors` file or a model directory (sharded or not). */
  static open(path: string): ShardedSafetensors {
    if (!existsSync(path)) throw new FormatError(path, "no such file or directory");
    if (!statSync(path).isDirectory()) return ShardedSafetensors.single(path, path);
    const indexPath = join(path, INDEX_FILE_NAME);
    if (existsSync(indexPath)) return ShardedSafetensors.sharded(path, indexPath);
    const singlePath = join(path, SINGLE_FILE_NAME);
    if (existsSync(singlePath)) return ShardedSafetensors.single(path, singlePath);
    throw new FormatError(
      path,
      `expected ${SINGLE_FILE_NAME} or ${INDEX_FILE_NAME} in this directory, found neither ` +
        `(it holds: ${readdirSync(path).join(", ") || "nothing"})`,
    );
  }

  private static single(path: string, file: string): ShardedSafetensors {
    const reader = SafetensorsReader.open(file);
    return new ShardedSafetensors(path, new Map(reader.names().map((name) => [name, reader])), [reader]);
  }

  private static sharded(dir: string, indexPath: string): ShardedSafetensors {
    const weightMap = readWeightMap(indexPath);
    const readerOfFile = new Map<string, SafetensorsReader>();
    try {
      for (const [tensor, file] of Object.entries(weightMap)) {
        if (readerOfFile.has(file)) continue;
        const shardPath = join(dir, file);
        if (basename(file) !== file || !existsSync(shardPath)) {
          throw new FormatError(
            indexPath,
            `weight_map names shard "${file}", which is not a file in ${dir}`,
            tensor,
          );
        }
        readerOfFile.set(file, SafetensorsReader.open(shardPath));
      }
      const readerOf = new Map<string, SafetensorsReader>();
      for (const [tensor, file] of Object.entries(weightMap)) {
        const reader = readerOfFile.get(file)!;
        if (!reader.has(tensor)) {
          const actual = [...readerOfFile.entries()].find(([, other]) => other.has(tensor))?.[0];
          throw new FormatError(
            indexPath,
            `weight_map places it in "${file}", but that shard does not hold it` +
              (actual === undefined ? " (no shard does)" : ` (found in "${actual}")`),
            tensor,
          );
        }
        readerOf.set(tensor, reader);
      }
      return new ShardedSafetensors(dir, readerOf, [...readerOfFile.values()]);
    } catch (error) {
      for (const reader of readerOfFile.values()) reader.close();
      throw error;
    }
  }

  /** The files read, one per shard. */
  get files(): string[] {
    return this.readers.map((reader) => reader.path);
  }

  /** The `__metadata__` of every shard, merged (shards normally agree, e.g. {"format": "pt"}). */
  get metadata(): Record<string, string> {
    return Object.assign({}, ...this.readers.map((reader) => reader.metadata));
  }

  names(): string[] {
    return [...this.readerOf.keys()];
  }

  has(name: string): boolean {
    return this.readerOf.has(name);
  }

  /** Shape, dtype and location (file, offset) of a tensor. */
  info(name: string): TensorInfo {
    return this.readerFor(name).info(name);
  }

  readTensor(name: string): RawTensor {
    return this.readerFor(name).readTensor(name);
  }

  readTensorF32(name: string): RawTensor<"F32"> {
    return this.readerFor(name).readTensorF32(name);
  }

  close(): void {
    for (const reader of this.readers) reader.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private readerFor(name: string): SafetensorsReader {
    const reader = this.readerOf.get(name);
    if (reader === undefined) throw new FormatError(this.path, "no such tensor in these files", name);
    return reader;
  }
}

/** The index's `weight_map`, checked to map names to file names. */
function readWeightMap(indexPath: string): Record<string, string> {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (error) {
    throw new FormatError(indexPath, `index is not valid JSON (${(error as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(
      indexPath,
      `expected an object with a "weight_map" object, found ${JSON.stringify(index)?.slice(0, 80)}`,
    );
  }
  for (const [tensor, file] of Object.entries(weightMap)) {
    if (typeof file !== "string") {
      throw new FormatError(
        indexPath,
        `weight_map must give a file name, found ${JSON.stringify(file)}`,
        tensor,
      );
    }
  }
  return weightMap as Record<string, string>;
}
