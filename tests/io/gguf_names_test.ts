import assert from "node:assert/strict";
import {
  ggufToHfName,
  hfToGgufName,
  permuteRows,
  ropePermutationHeads,
  unpermuteRows,
} from "../../lib/io/gguf/names.ts";

const PAIRS: [string, string][] = [
  ["token_embd.weight", "model.embed_tokens.weight"],
  ["output_norm.weight", "model.norm.weight"],
  ["output.weight", "lm_head.weight"],
  ["blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"],
  ["blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"],
  ["blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"],
  ["blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight"],
  ["blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"],
  ["blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"],
  ["blk.3.attn_q.bias", "model.layers.3.self_attn.q_proj.bias"],
  ["blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"],
  ["blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"],
  ["blk.3.attn_q_norm.weight", "model.layers.3.self_attn.q_norm.weight"],
  ["blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"],
  ["blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"],
  ["blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"],
];

Deno.test("GGUF and HF tensor names map both ways", () => {
  for (const [gguf, hf] of PAIRS) {
    assert.equal(ggufToHfName(gguf), hf);
    assert.equal(hfToGgufName(hf), gguf);
  }
  for (
    const name of ["rope_freqs.weight", "blk.0.attn_qkv.weight", "blk.x.attn_q.weight", "blk.0.attn_q.scale"]
  ) {
    assert.equal(ggufToHfName(name), undefined, name);
  }
  assert.equal(hfToGgufName("model.layers.0.self_attn.rotary_emb.inv_freq"), undefined);
});

Deno.test("only llama q/k (weights and biases) are RoPE-permuted; k uses the kv head count", () => {
  assert.equal(ropePermutationHeads("llama", "blk.0.attn_q.weight", 9, 3), 9);
  assert.equal(ropePermutationHeads("llama", "blk.0.attn_k.weight", 9, 3), 3);
  assert.equal(ropePermutationHeads("llama", "blk.0.attn_q.bias", 9, 3), 9);
  assert.equal(ropePermutationHeads("llama", "blk.0.attn_v.weight", 9, 3), undefined);
  assert.equal(ropePermutationHeads("llama", "blk.0.attn_q_norm.weight", 9, 3), undefined);
  assert.equal(ropePermutationHeads("qwen2", "blk.0.attn_q.weight", 9, 3), undefined);
});

Deno.test("unpermuteRows turns interleaved pairs back into halves, per head", () => {
  // 2 heads of dim 4, one column: GGUF rows [a0 b0 a1 b1 | c0 d0 c1 d1] → HF [a0 a1 b0 b1 | c0 c1 d0 d1].
  const gguf = new Float32Array([10, 20, 11, 21, 30, 40, 31, 41]);
  assert.deepEqual(unpermuteRows(gguf, 8, 2), new Float32Array([10, 11, 20, 21, 30, 31, 40, 41]));
  assert.deepEqual(permuteRows(new Float32Array([10, 11, 20, 21, 30, 31, 40, 41]), 8, 2), gguf);
});

Deno.test("permute and unpermute are inverses, on ragged shapes", () => {
  for (const [heads, headDim, cols] of [[1, 2, 1], [9, 64, 3], [3, 6, 5], [4, 10, 1]]) {
    const rows = heads * headDim;
    const x = Float32Array.from({ length: rows * cols }, (_, i) => i * 0.5 - 7);
    const there = permuteRows(x, rows, heads);
    if (headDim > 2) assert.notDeepEqual(there, x); // a head of 2 rows has nothing to reorder
    assert.deepEqual(unpermuteRows(there, rows, heads), x);
    assert.deepEqual(permuteRows(unpermuteRows(x, rows, heads), rows, heads), x);
  }
});

Deno.test("bad permutation arguments are RangeErrors naming the argument", () => {
  const x = new Float32Array(12);
  assert.throws(() => unpermuteRows(x, 12, 0), /unpermuteRows: nHeads/);
  assert.throws(
    () => unpermuteRows(x, 12, 4),
    /unpermuteRows: rows: 12 is not 4 heads of an even head dimension/,
  );
  assert.throws(() => permuteRows(x, 8, 2), /permuteRows: data: 12 values is not 8 whole rows/);
});
