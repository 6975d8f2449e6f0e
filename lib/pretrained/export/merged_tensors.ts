/**
 * The tensors of a merged model in HF names, each as a producer the safetensors writer calls when it reaches
 * that tensor: a block linear becomes `W' = W + s·B·A` (NF4 dequantized first; the product and the sum run in
 * the Rust GEMM) rounded to bf16; embeddings and LM head are written from the bf16 bits the model holds;
 * norms and biases are rounded to bf16. Only one tensor is materialised at a time.
 */
import {
  blockModules,
  type LinearModule,
  type ModelConfig,
  modulePath,
  queryScale,
} from "../../nn/config.ts";
import { blockLinear, type LlamaModel } from "../../nn/llama.ts";
import type { Linear } from "../../nn/linear.ts";
import { f32ToBf16 } from "../../io/dtype.ts";
import { mergedWeight } from "../../lora/merge.ts";
import { checkLoraShape, type LoraWeights } from "../../lora/weights.ts";
import type { TensorToWrite } from "../../io/safetensors/writer.ts";

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
  // A norm weight as the checkpoint stores it: the loader's `offset + w` (Gemma) and q's folded attention
  // scale undone (both exact or within an f32 rounding, far below bf16's).
  const qScale = queryScale(c);
  const normWeight = (name: string, values: Float32Array, scale = 1) =>
    rounded(
      name,
      c.normWeightOffset === 0 && scale === 1
        ? values
        : values.map((v) => Math.fround(Math.fround(v / scale) - c.normWeightOffset)),
    );
  const linear = (module: string, base: Linear) => {
    const lora = adapters.get(module);
    if (lora) {
      checkLoraShape(lora, base.rows, base.cols, module); // now, before anything is written
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
    const modules = blockModules(c);
    const isMlp = (m: LinearModule) => modulePath(l, m).includes(".mlp.");
    normWeight(`${p}.input_layernorm.weight`, layer.inputNorm);
    for (const m of modules.filter((m) => !isMlp(m))) linear(modulePath(l, m), blockLinear(layer, m));
    if (a.qBias) rounded(`${p}.self_attn.q_proj.bias`, a.qBias);
    if (a.kBias) rounded(`${p}.self_attn.k_proj.bias`, a.kBias);
    if (a.vBias) rounded(`${p}.self_attn.v_proj.bias`, a.vBias);
    if (a.qNorm) normWeight(`${p}.self_attn.q_norm.weight`, a.qNorm, qScale);
    if (a.kNorm) normWeight(`${p}.self_attn.k_norm.weight`, a.kNorm);
    if (layer.attentionOutNorm) {
      // Gemma: its post_attention_layernorm is on the attention output; the MLP's input norm is separate.
      normWeight(`${p}.post_attention_layernorm.weight`, layer.attentionOutNorm);
      normWeight(`${p}.pre_feedforward_layernorm.weight`, layer.postAttentionNorm);
    } else {
      normWeight(`${p}.post_attention_layernorm.weight`, layer.postAttentionNorm);
    }
    for (const m of modules.filter(isMlp)) linear(modulePath(l, m), blockLinear(layer, m));
    if (layer.mlpOutNorm) normWeight(`${p}.post_feedforward_layernorm.weight`, layer.mlpOutNorm);
  }
  normWeight("model.norm.weight", w.norm);
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
