import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";
import { loadAdapterInto } from "../../lib/lora/load_weights.ts";
import { LoraModel } from "../../lib/lora/model.ts";

const TINY = fileURLToPath(new URL("../fixtures/model/tiny_llama/", import.meta.url));
const PEFT = fileURLToPath(new URL("../fixtures/peft/all_linear/", import.meta.url));

Deno.test("a PEFT adapter loaded into a LoraModel trains on from its values (evaluation loss = adapted model)", async () => {
  const config = await loadModelConfig(join(TINY, "config.json"));
  using source = SafetensorsSource.open(TINY);
  using model = buildModel(source, config, { quantize: "none" });
  const adapter = readPeftAdapter(PEFT, config);
  const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 1 });
  loadAdapterInto(lora, adapter.layers, PEFT);
  const q = lora.adapters.get("model.layers.0.self_attn.q_proj")!;
  assert.deepEqual(q.b.data, adapter.layers.get("model.layers.0.self_attn.q_proj")!.B);
  // Same logits path as applyAdapters: the next-token loss on one sequence agrees.
  const ids = Uint32Array.of(1, 17, 299, 0, 42, 128, 7);
  const batch = {
    rows: 1,
    width: 7,
    inputs: ids,
    targets: Int32Array.of(17, 299, 0, 42, 128, 7, -100),
    positions: Uint32Array.from({ length: 7 }, (_, i) => i),
    segmentStarts: [[0]],
    tokens: 7,
    lossTokens: 6,
    examples: 1,
  };
  const viaLora = lora.loss(batch);
  const logits = LoraModel.fromWeights(model, adapter.layers).forward(ids);
  let sum = 0;
  for (let t = 0; t < 6; t++) {
    const row = logits.subarray(t * 300, (t + 1) * 300);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    sum += lse - row[batch.targets[t]];
  }
  assert.ok(Math.abs(viaLora.lossSum - sum) < 1e-3, `${viaLora.lossSum} vs ${sum}`);
});

Deno.test("an adapter of another rank or other targets is refused with the reason", async () => {
  const config = await loadModelConfig(join(TINY, "config.json"));
  using source = SafetensorsSource.open(TINY);
  using model = buildModel(source, config);
  const adapter = readPeftAdapter(PEFT, config);
  assert.throws(
    () => loadAdapterInto(new LoraModel(model, { rank: 8, alpha: 16, seed: 1 }), adapter.layers),
    /rank 4 and scale 2.*rank 8/,
  );
  assert.throws(
    () =>
      loadAdapterInto(
        new LoraModel(model, { rank: 4, alpha: 8, seed: 1, targetModules: ["q_proj"] }),
        adapter.layers,
      ),
    /only in the adapter: model\.layers\.0\.self_attn\.k_proj/,
  );
});
