/**
 * The tensors of a merged model in HF names, each as a producer the safetensors writer calls when it reaches
 * that tensor: a block linear becomes `W' = W + s·B·A` (NF4 dequantized first; the product and the sum run in
 * the Rust GEMM) rounded to bf16; embeddings and LM head are written from the bf16 bits the model holds;
 * norms and biases are rounded to bf16. Only one tensor is materialised at a time.
 */
import { sgemm } from "../../../ffi/gemm.ts";
import { Nf4Weight } from "../../../ffi/nf4.ts";
import type { ModelConfig } from "../../nn/config.ts";
import type { LlamaModel } from "../../nn/llama.ts";
import { DenseLinear, type Linear } from "../../nn/linear.ts";
import { f32ToBf16 } from "../dtype.ts";
import type { LoraWeights } from "../peft/read.ts";
import type { TensorToWrite } from "../safetensors/writer.ts";

/** The merged weight `W + s·B·A` `[out, in]` in f32, a fresh array (the model's weight is left as it is). */
export function mergedWeight(base: Linear, lora?: LoraWeights, module = "linear"): Float32Array {
  const { rows: out, cols: inDim } = base;
  if (lora !== undefined) checkLoraShape(base, lora, module);
  const w = denseCopy(base, module);
  if (lora === undefined) return w;
  const { A, B, r, scale } = lora;
  // W[out, in] += scale · B[out, r] · A[r, in]
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
  return w;
}

function checkLoraShape(base: Linear, { A, B, r }: LoraWeights, module: string): void {
  const { rows: out, cols: inDim } = base;
  if (A.length !== r * inDim || B.length !== out * r) {
    throw new RangeError(
      `${module}: LoRA A has ${A.length} and B ${B.length} values, expected [${r}, ${inDim}] and [${out}, ${r}]`,
    );
  }
}

function denseCopy(base: Linear, module: string): Float32Array {
  if (base instanceof DenseLinear) return base.weight.slice();
  if (base instanceof Nf4Weight) return base.dequantize();
  throw new TypeError(`${module}: cannot read the weight of a ${base.constructor.name} to merge it`);
}

/**
 * Every tensor of `model` with `adapters` (keyed by module path, e.g. "model.layers.0.self_attn.q_proj")
 * merged, in state-dict order. `lm_head.weight` is left out when the head is the embedding matrix.
 */
export function mergedTensors(
  model: LlamaModel,
  adapters: ReadonlyMap<string, LoraWeights> = new Map(),
): TensorToWrite[] {
  const c = model.config;
  checkExportable(c);
  const w = model.weights;
  const used = new Set<string>();
  const tensors: TensorToWrite[] = [];
  const bits = (name: string, shape: number[], data: Uint16Array) =>
    tensors.push({ name, dtype: "BF16", shape, data });
  const rounded = (name: string, values: Float32Array) =>
    tensors.push({ name, dtype: "BF16", shape: [values.length], data: () => f32ToBf16(values) });
  const linear = (module: string, base: Linear) => {
    const lora = adapters.get(module);
    if (lora) {
      checkLoraShape(base, lora, module); // now, before anything is written
      used.add(module);
    }
    tensors.push({
      name: `${module}.weight`,
      dtype: "BF16",
      shape: [base.rows, base.cols],
      data: () => {
        const merged = mergedWeight(base, lora, module);
        const rounded = f32ToBf16(merged);
        // Free the f32 copy now: the GC collects large external buffers late, and a 7B export makes
        // hundreds of them.
        if (merged.buffer instanceof ArrayBuffer) merged.buffer.transfer(0);
        return rounded;
      },
    });
  };

  bits("model.embed_tokens.weight", [w.embedTokens.rows, w.embedTokens.cols], w.embedTokens.bits);
  for (const [l, layer] of w.layers.entries()) {
    const p = `model.layers.${l}`;
    const a = layer.attention;
    rounded(`${p}.input_layernorm.weight`, layer.inputNorm);
    linear(`${p}.self_attn.q_proj`, a.q);
    linear(`${p}.self_attn.k_proj`, a.k);
    linear(`${p}.self_attn.v_proj`, a.v);
    linear(`${p}.self_attn.o_proj`, a.o);
    if (a.qBias) rounded(`${p}.self_attn.q_proj.bias`, a.qBias);
    if (a.kBias) rounded(`${p}.self_attn.k_proj.bias`, a.kBias);
    if (a.vBias) rounded(`${p}.self_attn.v_proj.bias`, a.vBias);
    rounded(`${p}.post_attention_layernorm.weight`, layer.postAttentionNorm);
    linear(`${p}.mlp.gate_proj`, layer.mlp.gate);
    linear(`${p}.mlp.up_proj`, layer.mlp.up);
    linear(`${p}.mlp.down_proj`, layer.mlp.down);
  }
  rounded("model.norm.weight", w.norm);
  if (w.lmHead !== w.embedTokens) bits("lm_head.weight", [w.lmHead.rows, w.lmHead.cols], w.lmHead.bits);

  const unknown = [...adapters.keys()].filter((m) => !used.has(m));
  if (unknown.length > 0) {
    throw new RangeError(`mergedTensors: no such linear in the model: ${unknown.join(", ")}`);
  }
  return tensors;
}

/** The model must hold every weight its HF architecture declares, or the export would be incomplete. */
function checkExportable(c: ModelConfig): void {
  // The model carries q/k/v biases only; transformers' Llama ties them to an o bias, Mistral has none.
  const missing = c.oBias || c.mlpBias || (c.qkvBias && c.architecture !== "Qwen2ForCausalLM");
  if (missing) {
    throw new Error(
      `cannot export this ${c.architecture}: its o_proj / MLP / attention biases are not held by the model`,
    );
  }
}
