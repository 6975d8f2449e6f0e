/**
 * One view over the places weights come from — HF safetensors files (plain or bnb-4bit) or a GGUF
 * file — in HF tensor names and layouts, read one tensor at a time.
 */
import { ShardedSafetensors } from "../io/safetensors/sharded.ts";
import { findBnb4bitLinears, readBnb4bitLinear } from "../io/bnb4bit.ts";
import type { Bnb4bitLinear } from "../io/bnb4bit.ts";
import { GgufFile } from "../io/gguf/file.ts";
import { GgufHfView } from "../io/gguf/hf_view.ts";
import { FormatError } from "../errors.ts";

export interface WeightSource extends Disposable {
  /** Where the weights come from (for messages). */
  readonly path: string;
  has(name: string): boolean;
  shape(name: string): number[];
  /** The tensor as f32 in HF layout. */
  readF32(name: string): Float32Array;
  /** For pre-quantized bnb-4bit linears (named by module path, e.g. `model.layers.0.mlp.up_proj`). */
  bnb4bit(module: string): Bnb4bitLinear | undefined;
  close(): void;
}

export class SafetensorsSource implements WeightSource {
  readonly path: string;
  private readonly linears: Set<string>;

  constructor(readonly files: ShardedSafetensors) {
    this.path = files.path;
    this.linears = new Set(findBnb4bitLinears(files));
  }

  static open(dir: string): SafetensorsSource {
    return new SafetensorsSource(ShardedSafetensors.open(dir));
  }

  has(name: string): boolean {
    return this.files.has(name) || this.linears.has(name.replace(/\.weight$/, ""));
  }

  shape(name: string): number[] {
    const module = name.replace(/\.weight$/, "");
    if (this.linears.has(module)) return [...readBnb4bitLinear(this.files, module).shape];
    return [...this.files.info(name).shape];
  }

  readF32(name: string): Float32Array {
    if (this.linears.has(name.replace(/\.weight$/, ""))) {
      throw new FormatError(this.path, "is stored in 4 bits; read it with bnb4bit()", name);
    }
    return this.files.readTensorF32(name).data;
  }

  bnb4bit(module: string): Bnb4bitLinear | undefined {
    return this.linears.has(module) ? readBnb4bitLinear(this.files, module) : undefined;
  }

  close(): void {
    this.files.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export class GgufSource implements WeightSource {
  readonly path: string;
  readonly view: GgufHfView;

  constructor(readonly file: GgufFile) {
    this.path = file.path;
    this.view = new GgufHfView(file);
  }

  static async open(path: string): Promise<GgufSource> {
    return new GgufSource(await GgufFile.open(path));
  }

  has(name: string): boolean {
    return this.view.has(name);
  }

  shape(name: string): number[] {
    return this.view.shape(name);
  }

  readF32(name: string): Float32Array {
    return this.view.readTensorF32(name);
  }

  bnb4bit(): undefined {
    return undefined;
  }

  close(): void {
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
