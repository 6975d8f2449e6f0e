/**
 * GGUF tensor names ↔ Hugging Face (transformers Llama / Qwen2 / Qwen3) names, and the RoPE row
 * permutation that llama-architecture GGUFs apply to attn_q / attn_k.
 *
 * Why the permutation: HF Llama rotates the two halves of each head (`rotate_half`), llama.cpp rotates
 * adjacent pairs. Its converter reorders each head's rows from "halves" [a0..a(h/2-1), b0..b(h/2-1)] to
 * "interleaved" [a0, b0, a1, b1, ...] so both compute the same thing. Loading such a GGUF into a model that
 * applies RoPE the HF way must undo it (q with n_head heads, k with n_head_kv); exporting a LoRA for such a
 * GGUF must redo it on lora_B of q/k. Qwen2/Qwen3 GGUFs are written unpermuted.
 */

/** Architectures whose GGUF q/k rows are permuted (the ones transformers' GGUF loader un-permutes). */
export const ROPE_PERMUTED_ARCHITECTURES: ReadonlySet<string> = new Set(["llama"]);

const GLOBAL_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["token_embd.weight", "model.embed_tokens.weight"],
  ["output_norm.weight", "model.norm.weight"],
  ["output.weight", "lm_head.weight"],
];

/** Per-block tensors: GGUF `blk.N.<gguf>` ↔ HF `model.layers.N.<hf>`, each with `.weight` or `.bias`. */
const BLOCK_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["attn_norm", "input_layernorm"],
  ["ffn_norm", "post_attention_layernorm"],
  ["attn_q", "self_attn.q_proj"],
  ["attn_k", "self_attn.k_proj"],
  ["attn_v", "self_attn.v_proj"],
  ["attn_output", "self_attn.o_proj"],
  ["attn_q_norm", "self_attn.q_norm"],
  ["attn_k_norm", "self_attn.k_norm"],
  ["ffn_gate", "mlp.gate_proj"],
  ["ffn_up", "mlp.up_proj"],
  ["ffn_down", "mlp.down_proj"],
];

const GGUF_TO_HF_GLOBAL = new Map(GLOBAL_NAMES);
const HF_TO_GGUF_GLOBAL = new Map(GLOBAL_NAMES.map(([g, h]) => [h, g]));
const GGUF_TO_HF_BLOCK = new Map(BLOCK_NAMES);
const HF_TO_GGUF_BLOCK = new Map(BLOCK_NAMES.map(([g, h]) => [h, g]));

const GGUF_BLOCK_RE = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/;
const HF_BLOCK_RE = /^model\.layers\.(\d+)\.([\w.]+)\.(weight|bias)$/;

/** The HF name of a GGUF tensor, or undefined for tensors HF models do not have (e.g. `rope_freqs.weight`). */
export function ggufToHfName(name: string): string | undefined {
  const global = GGUF_TO_HF_GLOBAL.get(name);
  if (global !== undefined) return global;
  const m = GGUF_BLOCK_RE.exec(name);
  const module = m && GGUF_TO_HF_BLOCK.get(m[2]);
  return m && module ? `model.layers.${m[1]}.${module}.${m[3]}` : undefined;
}

/** The GGUF name of an HF tensor (the inverse of `ggufToHfName`), or undefined. */
export function hfToGgufName(name: string): string | undefined {
  const global = HF_TO_GGUF_GLOBAL.get(name);
  if (global !== undefined) return global;
  const m = HF_BLOCK_RE.exec(name);
  const tensor = m && HF_TO_GGUF_BLOCK.get(m[2]);
  return m && tensor ? `blk.${m[1]}.${tensor}.${m[3]}` : undefined;
}

/**
 * How many heads the RoPE permutation of GGUF tensor `name` is taken over, in a file of `architecture`:
 * n_head for attn_q, n_head_kv for attn_k (weights and biases), undefined when the tensor is not permuted.
 */
export function ropePermutationHeads(
  architecture: string,
  name: string,
  nHead: number,
  nHeadKv: number,
): number | undefined {
  if (!ROPE_PERMUTED_ARCHITECTURES.has(architecture)) return undefined;
  const m = GGUF_BLOCK_RE.exec(name);
  if (m?.[2] === "attn_q") return nHead;
  if (m?.[2] === "attn_k") return nHeadKv;
  return undefined;
}

/** GGUF (interleaved pairs) → HF (halves) row order of a `[rows, cols]` q/k weight (or `[rows]` bias). */
export function unpermuteRows(data: Float32Array, rows: number, nHeads: number): Float32Array {
  return reorderRows(
    data,
    rows,
    nHeads,
    "unpermuteRows",
    (h, hd, s, j) => [h * hd + (hd / 2) * s + j, h * hd + 2 * j + s],
  );
}

/** HF (halves) → GGUF (interleaved pairs) row order; the inverse of `unpermuteRows`. */
export function permuteRows(data: Float32Array, rows: number, nHeads: number): Float32Array {
  return reorderRows(
    data,
    rows,
    nHeads,
    "permuteRows",
    (h, hd, s, j) => [h * hd + 2 * j + s, h * hd + (hd / 2) * s + j],
  );
}

/**
 * Copies rows so that, for every head h, half s ∈ {0, 1} and pair j, output row `to` gets input row `from`
 * where `[to, from] = map(h, headDim, s, j)`.
 */
function reorderRows(
  data: Float32Array,
  rows: number,
  nHeads: number,
  fn: string,
  map: (h: number, headDim: number, s: number, j: number) => [number, number],
): Float32Array {
  if (!Number.isInteger(nHeads) || nHeads < 1) {
    throw new RangeError(`${fn}: nHeads: expected a positive integer, got ${nHeads}`);
  }
  if (rows % nHeads !== 0 || (rows / nHeads) % 2 !== 0) {
    throw new RangeError(`${fn}: rows: ${rows} is not ${nHeads} heads of an even head dimension`);
  }
  if (data.length % rows !== 0) {
    throw new RangeError(`${fn}: data: ${data.length} values is not ${rows} whole rows`);
  }
  const cols = data.length / rows;
  const headDim = rows / nHeads;
  const out = new Float32Array(data.length);
  for (let h = 0; h < nHeads; h++) {
    for (let s = 0; s < 2; s++) {
      for (let j = 0; j < headDim / 2; j++) {
        const [to, from] = map(h, headDim, s, j);
        out.set(data.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
