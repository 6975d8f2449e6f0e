/**
 * A GGUF model seen as an HF state dict: HF tensor names, HF shapes, f32 values, with llama's RoPE row
 * permutation of q/k undone. Tensors HF models do not have (e.g. `rope_freqs.weight`) are left out.
 */
import { FormatError } from "../../errors.ts";
import type { GgufFile } from "./file.ts";
import { ggufToHfName, ropePermutationHeads, unpermuteRows } from "./names.ts";

export class GgufHfView {
  private readonly byHfName: ReadonlyMap<string, string>;
  readonly architecture: string;
  readonly nHead: number;
  readonly nHeadKv: number;

  constructor(readonly file: GgufFile) {
    this.architecture = file.architecture;
    this.nHead = file.number(`${this.architecture}.attention.head_count`);
    this.nHeadKv = file.number(`${this.architecture}.attention.head_count_kv`, this.nHead);
    const byHfName = new Map<string, string>();
    for (const name of file.names()) {
      const hf = ggufToHfName(name);
      if (hf !== undefined) byHfName.set(hf, name);
    }
    this.byHfName = byHfName;
  }

  /** HF names, in file order. */
  names(): string[] {
    return [...this.byHfName.keys()];
  }

  has(hfName: string): boolean {
    return this.byHfName.has(hfName);
  }

  /** The GGUF tensor behind an HF name. */
  ggufName(hfName: string): string {
    const name = this.byHfName.get(hfName);
    if (name === undefined) {
      throw new FormatError(this.file.path, "no GGUF tensor maps to this HF name", hfName);
    }
    return name;
  }

  shape(hfName: string): number[] {
    return [...this.file.info(this.ggufName(hfName)).shape];
  }

  /** The tensor in HF layout as f32 (q/k rows of llama files restored to HF's order). */
  readTensorF32(hfName: string): Float32Array {
    const name = this.ggufName(hfName);
    const data = this.file.readTensorF32(name);
    const heads = ropePermutationHeads(this.architecture, name, this.nHead, this.nHeadKv);
    if (heads === undefined) return data;
    const rows = this.file.info(name).shape[0];
    try {
      return unpermuteRows(data, rows, heads);
    } catch (error) {
      throw new FormatError(
        this.file.path,
        `cannot undo the RoPE permutation: ${(error as Error).message}`,
        name,
      );
    }
  }
}
