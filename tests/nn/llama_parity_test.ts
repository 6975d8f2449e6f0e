/**
 * The model against HF transformers: tiny random Llama (GQA, llama3 rope scaling, in % 64 ≠ 0) and Qwen2
 * (q/k/v biases, tied embeddings) written by tests/fixtures/model/make_model_fixtures.py, and the families of
 * make_family_fixtures.py: Qwen3 (per-head q/k RMSNorm, head_dim ≠ hidden / heads), Phi-3 (fused qkv_proj and
 * gate_up_proj, partial rotary, LongRoPE: short factors at length 7, long ones at 19). Logits on the
 * unquantized weights within 1e-4 max-abs; with NF4 within 1e-3 of transformers run on the NF4-dequantized
 * weights (bitsandbytes' quantize → dequantize, which our quantization reproduces byte for byte).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { buildModel, type Quantization } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/model/", import.meta.url));

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function load(name: string, quantize: Quantization) {
  const dir = join(FIXTURES, name);
  const config = await loadModelConfig(join(dir, "config.json"));
  using source = SafetensorsSource.open(dir);
  return buildModel(source, config, { quantize });
}

function expected(name: string) {
  const reader = SafetensorsReader.open(join(FIXTURES, name, "expected.safetensors"));
  return {
    f32: (key: string) => reader.readTensorF32(key).data,
    ids: (key: string) => Uint32Array.from(reader.readTensor(key).data as Int32Array),
    close: () => reader.close(),
  };
}

for (const name of ["tiny_llama", "tiny_qwen2", "tiny_qwen3", "tiny_phi3", "tiny_gemma3"]) {
  for (const [quantize, key, budget] of [["none", "f32", 1e-4], ["nf4", "nf4", 1e-3]] as const) {
    Deno.test(`${name}: logits (${quantize === "none" ? "unquantized" : "NF4"}) match transformers within ${budget}`, async () => {
      using model = await load(name, quantize);
      const want = expected(name);
      try {
        for (const len of [7, 19]) {
          const logits = model.forward(want.ids(`input_ids.len${len}`));
          const diff = maxAbsDiff(logits, want.f32(`logits.${key}.len${len}`));
          assert.ok(diff <= budget, `length ${len}: max |Δlogit| = ${diff.toExponential(2)} > ${budget}`);
        }
      } finally {
        want.close();
      }
    });
  }

  Deno.test(`${name}: incremental decoding with the KV cache equals the full forward`, async () => {
    using model = await load(name, "nf4");
    const want = expected(name);
    try {
      const ids = want.ids("input_ids.len19");
      const full = model.forward(ids);
      const cache = model.newCache(4);
      const steps = [model.forward(ids.subarray(0, 12), { cache })];
      for (let t = 12; t < 19; t++) {
        steps.push(model.forward(ids.subarray(t, t + 1), { cache, logits: "last" }));
      }
      const vocab = model.config.vocabSize;
      const joined = new Float32Array(19 * vocab);
      let offset = 0;
      for (const s of steps) (joined.set(s, offset), (offset += s.length));
      const diff = maxAbsDiff(joined, full);
      assert.ok(diff <= 1e-4, `max |Δlogit| between cached and full = ${diff.toExponential(2)}`);
      assert.equal(cache.length, 19);
    } finally {
      want.close();
    }
  });
}
