/**
 * PEFT-written adapters (tests/fixtures/peft, made by make_peft_fixtures.py with PEFT 0.21.2) applied to our
 * model give PEFT's logits: all-linear, a q/v rsLoRA adapter with a rank pattern, and a bf16 adapter on
 * tiny_llama; all-linear on tiny_phi3 (PEFT's adapters on the fused qkv_proj and gate_up_proj).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";
import { LoraModel } from "../../lib/lora/model.ts";

const MODELS = fileURLToPath(new URL("../fixtures/model/", import.meta.url));
const TINY = join(MODELS, "tiny_llama");
const PEFT = fileURLToPath(new URL("../fixtures/peft/", import.meta.url));

for (
  const [name, baseName] of [
    ["all_linear", "tiny_llama"],
    ["qv_rslora", "tiny_llama"],
    ["bf16_layers", "tiny_llama"],
    ["phi3_all_linear", "tiny_phi3"],
  ]
) {
  Deno.test(`PEFT adapter ${name}: our logits with it applied equal PEFT's within 1e-4`, async () => {
    const dir = join(MODELS, baseName);
    const config = await loadModelConfig(join(dir, "config.json"));
    using source = SafetensorsSource.open(dir);
    using base = buildModel(source, config, { quantize: "none" });
    const adapter = readPeftAdapter(join(PEFT, name), config);
    const adapted = LoraModel.fromWeights(base, adapter.layers);
    using want = SafetensorsReader.open(join(PEFT, name, "expected_logits.safetensors"));
    const ids = Uint32Array.from(want.readTensor("input_ids").data as Int32Array);
    const expected = want.readTensorF32("logits").data;
    const baseLogits = want.readTensorF32("logits.base").data;
    const logits = adapted.forward(ids);
    let worst = 0, moved = 0;
    for (let i = 0; i < expected.length; i++) {
      worst = Math.max(worst, Math.abs(logits[i] - expected[i]));
      moved = Math.max(moved, Math.abs(expected[i] - baseLogits[i]));
    }
    assert.ok(moved > 0.1, "the adapter changes the logits (else the test proves nothing)");
    assert.ok(worst <= 1e-4, `max |Δlogit| = ${worst}`);
  });
}

Deno.test("applying an adapter for a module the model lacks is an error naming it", async () => {
  const config = await loadModelConfig(join(TINY, "config.json"));
  using source = SafetensorsSource.open(TINY);
  using base = buildModel(source, config);
  const lora = { A: new Float32Array(4 * 96), B: new Float32Array(48 * 4), r: 4, scale: 2 };
  assert.throws(
    () => LoraModel.fromWeights(base, new Map([["model.layers.9.self_attn.k_proj", lora]])),
    /no such linear in the model: model\.layers\.9\.self_attn\.k_proj/,
  );
});
