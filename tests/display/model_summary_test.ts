import assert from "node:assert/strict";
import { join } from "node:path";
import { DISPLAY } from "../../lib/display/jupyter.ts";
import { modelSummary } from "../../lib/display/model_summary.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { MODELS, tinyModel } from "../train/_tiny.ts";

/** Parameters as the checkpoint file counts them (an independent tally of what the model holds). */
function checkpointParameters(name: string): number {
  using reader = SafetensorsReader.open(join(MODELS, name, "model.safetensors"));
  return reader.names().reduce((n, t) => n + reader.info(t).shape.reduce((a, b) => a * b, 1), 0);
}

Deno.test("modelSummary: shape, parameters and NF4 bytes of the tiny Llama", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const f = modelSummary(model, { rssBytes: 123e6 }).facts;
  assert.equal(f.architecture, "LlamaForCausalLM");
  assert.deepEqual([f.layers, f.hiddenSize, f.intermediateSize, f.heads, f.kvHeads, f.headDim, f.vocabSize], [
    2,
    96,
    160,
    4,
    2,
    24,
    300,
  ]);
  assert.equal(f.tiedEmbeddings, false);
  assert.equal(f.parameters, checkpointParameters("tiny_llama"));
  assert.equal(f.nf4Linears, 14);
  // Packed codes: half a byte per weight of the 14 block linears.
  const perLayer = 96 * 96 + 2 * (48 * 96) + 96 * 96 + 3 * (160 * 96);
  assert.equal(f.nf4CodeBytes, (2 * perLayer) / 2);
  assert.ok(f.nf4ScaleBytes > 0 && f.nf4ScaleBytes < f.nf4CodeBytes / 8, `${f.nf4ScaleBytes}`);
  assert.equal(f.nf4CodeBytes + f.nf4ScaleBytes + f.otherWeightBytes, model.weightBytes);
  // bf16 embeddings and head, f32 norms.
  assert.equal(f.otherWeightBytes, 2 * (2 * 300 * 96) + 4 * (96 + 2 * 2 * 96));
  assert.equal(f.rssBytes, 123e6);
  assert.equal(f.lora, undefined);
});

Deno.test("modelSummary: LoRA adapters' trainable share and training state", async () => {
  using model = await tinyModel("tiny_qwen2", "nf4");
  const lora = new LoraModel(model, { rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] });
  const f = modelSummary(model, { lora }).facts;
  assert.equal(f.parameters, checkpointParameters("tiny_qwen2"));
  // q: [96 → 96], v: [96 → 48]; r·(in + out) each, in 2 layers.
  const trainable = 2 * (4 * (96 + 96) + 4 * (96 + 48));
  assert.deepEqual(f.lora, {
    adapters: 4,
    rank: 4,
    alpha: 8,
    targets: ["q_proj", "v_proj"],
    parameters: trainable,
    fraction: trainable / (f.parameters + trainable),
    trainingBytes: 16 * trainable,
  });
  assert.ok(f.rssBytes > 1e6);
});

Deno.test("modelSummary: unquantized linears count as other weights, not NF4", async () => {
  using model = await tinyModel("tiny_llama", "none");
  const f = modelSummary(model).facts;
  assert.equal(f.nf4Linears, 0);
  assert.equal(f.nf4CodeBytes + f.nf4ScaleBytes, 0);
  assert.equal(f.otherWeightBytes, model.weightBytes);
});

Deno.test("modelSummary refuses adapters made for another model", async () => {
  using a = await tinyModel("tiny_llama", "nf4");
  using b = await tinyModel("tiny_llama", "nf4");
  assert.throws(() => modelSummary(a, { lora: new LoraModel(b, { rank: 2, alpha: 2 }) }), /another model/);
});

Deno.test("ModelSummary displays as an HTML table and aligned text with the same facts", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const lora = new LoraModel(model, { rank: 2, alpha: 4 });
  const summary = modelSummary({ model, source: "<script>x</script>.gguf", loadSeconds: 1.24 } as never, {
    lora,
    rssBytes: 2.5e9,
  });
  const bundle = summary[DISPLAY]();
  const html = bundle["text/html"];
  assert.match(html, /^<table/);
  assert.doesNotMatch(html, /<script>/);
  assert.match(html, /&lt;script&gt;x&lt;\/script&gt;\.gguf \(loaded in 1\.2 s\)/);
  assert.equal(html.match(/<tr>/g)?.length, summary.rows().length + 1);
  const plain = bundle["text/plain"];
  assert.match(plain, /^property\s+value$/m);
  assert.match(plain, /^layers\s+2$/m);
  assert.match(plain, /^process memory \(RSS\)\s+2\.5 GB$/m);
  assert.match(
    plain,
    /^LoRA adapters\s+14 \(rank 2, alpha 4\) on q_proj, k_proj, v_proj, o_proj, gate_proj/m,
  );
  assert.match(plain, /^trainable parameters\s+[\d,]+ \(\d\.\d\d %/m);
  assert.match(plain, /^NF4 weights\s+[\d.]+ kB in 14 linears: codes [\d.]+ kB, scales [\d.]+ (kB|B)$/m);
});
