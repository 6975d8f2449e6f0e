/**
 * A model with LoRA adapters applied for inference: every adapted linear computes `W·x + s·B·(A·x)` with the
 * frozen weight shared, not merged (so NF4 weights stay NF4). Used to generate with a trained or a loaded
 * PEFT adapter.
 */
import { matmulXWt } from "../../ffi/gemm.ts";
import type { LoraWeights } from "../io/peft/read.ts";
import type { Linear } from "../nn/linear.ts";
import { LlamaModel } from "../nn/llama.ts";

/** `y = W·x + s·B·A·x`; inference only (no backward). */
export function adaptedLinear(base: Linear, lora: LoraWeights): Linear {
  const { A, B, r, scale } = lora;
  if (A.length !== r * base.cols || B.length !== base.rows * r) {
    throw new RangeError(
      `adaptedLinear: A has ${A.length} and B ${B.length} values, expected [${r}, ${base.cols}] and [${base.rows}, ${r}]`,
    );
  }
  return {
    rows: base.rows,
    cols: base.cols,
    bytes: base.bytes + 4 * (A.length + B.length),
    matmul(x, m, y, opts) {
      const out = base.matmul(x, m, y, opts);
      const h = matmulXWt(x, A, m, base.cols, r);
      return matmulXWt(h, B, m, r, base.rows, out, { alpha: scale, beta: 1 });
    },
    matmulT() {
      throw new Error("adaptedLinear: inference only (train with LoraModel)");
    },
    close() {
      // The base belongs to the model the adapters were applied to.
    },
  };
}

/** `model` with `layers` (keyed by module path, e.g. "model.layers.0.self_attn.q_proj") applied. */
export function applyAdapters(model: LlamaModel, layers: ReadonlyMap<string, LoraWeights>): LlamaModel {
  const used = new Set<string>();
  const wrap = (module: string, base: Linear): Linear => {
    const lora = layers.get(module);
    if (!lora) return base;
    used.add(module);
    return adaptedLinear(base, lora);
  };
  const blocks = model.weights.layers.map((w, l) => {
    const at = (path: string, base: Linear) => wrap(`model.layers.${l}.${path}`, base);
    const a = w.attention;
    return {
      ...w,
      attention: {
        ...a,
        q: at("self_attn.q_proj", a.q),
        k: at("self_attn.k_proj", a.k),
        v: at("self_attn.v_proj", a.v),
        o: at("self_attn.o_proj", a.o),
      },
      mlp: {
        gate: at("mlp.gate_proj", w.mlp.gate),
        up: at("mlp.up_proj", w.mlp.up),
        down: at("mlp.down_proj", w.mlp.down),
      },
    };
  });
  const unknown = [...layers.keys()].filter((m) => !used.has(m));
  if (unknown.length > 0) {
    throw new RangeError(`applyAdapters: no such linear in the model: ${unknown.join(", ")}`);
  }
  return new LlamaModel(model.config, { ...model.weights, layers: blocks });
}
