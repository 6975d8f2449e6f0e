/**
 * The one merge of an adapter into its frozen weight: `W' = W + s · B · A` `[out, in]` in f32 (NF4 weights are
 * dequantized first; the product and the sum run in the Rust GEMM). `LoraLinear.fuse` and the merged-model
 * export both come here.
 */
import { sgemm } from "../../ffi/gemm.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { DenseLinear, type Linear } from "../nn/linear.ts";
import { checkLoraShape, type LoraWeights } from "./weights.ts";

/** A fresh f32 array holding `base`'s weight, with `lora` added when given (the base is left as it is). */
export function mergedWeight(base: Linear, lora?: LoraWeights, module = "linear"): Float32Array {
  const { rows: out, cols: inDim } = base;
  if (lora !== undefined) checkLoraShape(lora, out, inDim, module);
  const w = denseCopy(base, module);
  if (lora !== undefined) addLoraDelta(w, out, inDim, lora);
  return w;
}

/**
 * `w[out, in] += s · B · A` in place, for a weight the caller already holds as f32 (the GGUF export reads
 * the source's own weights, not the model's NF4 ones). Shapes must have been checked (`checkLoraShape`).
 */
export function addLoraDelta(w: Float32Array, out: number, inDim: number, lora: LoraWeights): void {
  const { A, B, r, scale } = lora;
  sgemm(
    out,
    inDim,
    r,
    { data: B, rowStride: r, colStride: 1 },
    { data: A, rowStride: inDim, colStride: 1 },
    w,
    inDim,
    { alpha: scale, beta: 1 },
  );
}

function denseCopy(base: Linear, module: string): Float32Array {
  if (base instanceof DenseLinear) return base.weight.slice();
  if (base instanceof Nf4Weight) return base.dequantize();
  throw new TypeError(`${module}: cannot read the weight of a ${base.constructor.name} to merge it`);
}
