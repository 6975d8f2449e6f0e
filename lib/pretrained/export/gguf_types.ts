/**
 * Which ggml type each tensor of an exported GGUF gets, per export type — the choices llama.cpp's own
 * tools make, so a file we write is laid out like one they write:
 * - 1-D tensors (norms, biases, rope_freqs) stay F32 everywhere (they are tiny and precision-critical);
 * - `f16` and `q8_0`: every matrix in that type (as `convert_hf_to_gguf.py --outtype`);
 * - `q4_0`: matrices Q4_0, the output projection Q6_K (llama-quantize keeps the head at 6 bits);
 * - `q4_k_m`: matrices Q4_K; Q6_K for the output projection and for attn_v / ffn_down in the layers
 *   `useMoreBits` picks (the first and last eighth, and every third in between) — llama-quantize's mix.
 * With tied embeddings there is no output.weight: token_embd is the output projection and is treated as one.
 * K-quants need rows of 256 values; where a row is not, llama-quantize falls back (Q4_K → Q5_0,
 * Q6_K → Q8_0), and so do we. A row that is not even a whole 32-value block stays F16.
 */
import type { QuantizableType } from "../../../ffi/ggml.ts";

export const GGUF_EXPORT_TYPES = ["f16", "q8_0", "q4_0", "q4_k_m"] as const;
export type GgufExportType = typeof GGUF_EXPORT_TYPES[number];

export type TensorType = QuantizableType | "F32";

/** llama.cpp's `general.file_type` (enum llama_ftype) of each export type. */
export const FILE_TYPE: Record<GgufExportType, number> = { f16: 1, q8_0: 7, q4_0: 2, q4_k_m: 15 };

export interface TensorRole {
  /** GGUF name, e.g. "blk.3.attn_v.weight". */
  name: string;
  /** HF order: [rows, row length]. */
  shape: readonly number[];
  /** The tensor that projects to the vocabulary (output.weight, or token_embd.weight when tied). */
  isOutput: boolean;
  numLayers: number;
}

const QK = 32;
const QK_K = 256;

/** llama.cpp's `use_more_bits`: the layers that get extra precision in the *_M mixes. */
export function useMoreBits(layer: number, numLayers: number): boolean {
  const eighth = Math.floor(numLayers / 8);
  return layer < eighth || layer >= Math.floor((7 * numLayers) / 8) || (layer - eighth) % 3 === 2;
}

export function tensorType(exportType: GgufExportType, t: TensorRole): TensorType {
  if (t.shape.length < 2) return "F32";
  const row = t.shape[t.shape.length - 1];
  if (row % QK !== 0) return "F16";
  const wanted = preferredType(exportType, t);
  if (row % QK_K === 0) return wanted;
  return wanted === "Q4_K" ? "Q5_0" : wanted === "Q6_K" ? "Q8_0" : wanted;
}

function preferredType(exportType: GgufExportType, t: TensorRole): QuantizableType {
  switch (exportType) {
    case "f16":
      return "F16";
    case "q8_0":
      return "Q8_0";
    case "q4_0":
      return t.isOutput ? "Q6_K" : "Q4_0";
    case "q4_k_m": {
      if (t.isOutput) return "Q6_K";
      const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(t.name);
      return m && useMoreBits(Number(m[1]), t.numLayers) ? "Q6_K" : "Q4_K";
    }
  }
}
