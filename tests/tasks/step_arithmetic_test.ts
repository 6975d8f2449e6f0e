import assert from "node:assert/strict";
import { arithmeticCeiling, stepArithmetic } from "../../tasks/bench/step_arithmetic.ts";

// SmolLM2-135M's shape, counted by hand per layer: q and o 576 × 576, k and v 576 × 192, gate, up and down
// 576 × 1536 — 3,538,944 weights; in + out of the seven: 10,176.
const SMOLLM2 = {
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  head_dim: 64,
  vocab_size: 49152,
};

Deno.test("a step's arithmetic counts each product of SmolLM2-135M once", () => {
  const a = stepArithmetic(SMOLLM2, 256, 16);
  assert.equal(a.linears, 30 * 4 * 3_538_944);
  assert.equal(a.head, 4 * 49152 * 576);
  // Per linear: x·Aᵀ, dxa·A, dA (in × r each) and ·Bᵀ, dY·B, dB (out × r each), 2 FLOPs a multiply-add.
  assert.equal(a.lora, 30 * 16 * (3 * 2 * 10_176));
  // Token i of 256 attends to i + 1 positions: Σ (i + 1) = 256 · 257 / 2; 2 FLOPs × 64 × 9 heads per position
  // for each of Q·Kᵀ and P·V, three times over (forward, backward's four products).
  assert.equal(a.attention * 256, 30 * 3 * 2 * 2 * 64 * 9 * (256 * 257 / 2));
  assert.equal(a.total, a.linears + a.head + a.lora + a.attention);
});

Deno.test("a step's arithmetic refuses a config without a shape it needs", () => {
  const { vocab_size: _, ...noVocab } = SMOLLM2;
  assert.throws(() => stepArithmetic(noVocab, 256, 16), /config\.vocab_size should be a positive integer/);
  assert.throws(() => stepArithmetic({ ...SMOLLM2, hidden_size: 57.5 }, 256, 16), /hidden_size/);
});

Deno.test("the ceiling line divides the peak by the step's FLOPs", () => {
  const a = stepArithmetic(SMOLLM2, 256, 16);
  const line = arithmeticCeiling(a, 220, [["ours", 200], ["theirs", 100]]);
  const ceiling = 220e9 / a.total;
  assert.match(line, new RegExp(`cannot pass ${ceiling.toFixed(0)} tok/s`));
  assert.match(line, new RegExp(`ours runs at ${(100 * 200 / ceiling).toFixed(0)} %`));
  assert.match(line, new RegExp(`${(ceiling / 100).toFixed(2)}× its rate\\)\\.$`));
});
