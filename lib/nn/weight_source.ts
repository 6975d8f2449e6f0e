/**
 * One view over the places weights come from — an HF safetensors checkpoint (plain or bnb-4bit) or a GGUF
 * file — in HF tensor names and layouts, read one tensor at a time.
 */
import { Checkpoint } from "../io/checkpoint.ts";
import { findBnb4bitLinears, readBnb4bitLinear } from "../io/bnb4bit.ts";
import type { Bnb4bitLinear } from "../io/bnb4bit.ts";
import { GgufFile } from "../io/gguf.ts";
import { GgufHfView } from "../io/gguf_hf.ts";
import { FormatError } from "../io/errors.ts";

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

export class CheckpointSource implements WeightSource {
  readonly path: string;
  private readonly linears: Set<string>;

  constructor(readonly checkpoint: Checkpoint) {
    this.path = checkpoint.path;
    this.linears = new Set(findBnb4bitLinears(checkpoint));
  }

  static open(dir: string): CheckpointSource {
    return new CheckpointSource(Checkpoint.open(dir));
  }

  has(name: string): boolean {
    return this.checkpoint.has(name) || this.linears.has(name.replace(/\.weight$/, ""));
  }

  shape(name: string): number[] {
    const module = name.replace(/\.weight$/, "");
    if (this.linears.has(module)) return [...readBnb4bitLinear(this.checkpoint, module).shape];
    return [...this.checkpoint.info(name).shape];
  }

  readF32(name: string): Float32Array {
    if (this.linears.has(name.replace(/\.weight$/, ""))) {
      throw new FormatError(this.path, "is stored in 4 bits; read it with bnb4bit()", name);
    }
    return this.checkpoint.readTensorF32(name).data;
  }

  bnb4bit(module: string): Bnb4bitLinear | undefined {
    return this.linears.has(module) ? readBnb4bitLinear(this.checkpoint, module) : undefined;
  }

  close(): void {
    this.checkpoint.close();
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
