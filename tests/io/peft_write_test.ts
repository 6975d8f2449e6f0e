import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdapterConfig } from "../../lib/io/peft/config.ts";
import type { LoraWeights } from "../../lib/lora/weights.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { writePeftAdapter } from "../../lib/io/peft/write.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { assertFormatError, f32Bits, withTempDir } from "./helpers.ts";
import { CASES, peftFixture, REF_PYTHON, runFixtureScript, tinyLlama } from "./_peft.ts";

const model = await tinyLlama();

function assertSameLayers(actual: Map<string, LoraWeights>, expected: Map<string, LoraWeights>): void {
  assert.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [module, want] of expected) {
    const got = actual.get(module)!;
    assert.equal(got.r, want.r, module);
    assert.equal(got.scale, want.scale, module);
    assert.deepEqual(f32Bits(got.A), f32Bits(want.A), `${module} A`);
    assert.deepEqual(f32Bits(got.B), f32Bits(want.B), `${module} B`);
  }
}

Deno.test("write → read round-trips every fixture, F32 and BF16", () => {
  for (const name of CASES) {
    const original = readPeftAdapter(peftFixture(name), model);
    for (const dtype of ["F32", "BF16"] as const) {
      withTempDir((dir) => {
        writePeftAdapter(dir, original.config, original.layers, { dtype, model });
        const back = readPeftAdapter(dir, model);
        assert.deepEqual(back.config.r, original.config.r);
        assert.deepEqual(back.config.rankPattern, original.config.rankPattern);
        assert.deepEqual(back.config.alphaPattern, original.config.alphaPattern);
        assert.deepEqual(back.config.layersToTransform, original.config.layersToTransform);
        assert.equal(back.config.useRslora, original.config.useRslora);
        // BF16 of the f32 fixtures rounds; the bf16 fixture's values survive either way.
        if (dtype === "F32" || name === "bf16_layers") assertSameLayers(back.layers, original.layers);
        else assert.equal(back.layers.size, original.layers.size);
        assert.deepEqual(readdirSync(dir).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
      });
    }
  }
});

Deno.test("the weights file is byte for byte the one PEFT saved", () => {
  for (
    const [name, dtype] of [["all_linear", "F32"], ["qv_rslora", "F32"], ["bf16_layers", "BF16"]] as const
  ) {
    const original = readPeftAdapter(peftFixture(name), model);
    withTempDir((dir) => {
      writePeftAdapter(dir, original.config, original.layers, { dtype });
      const ours = readFileSync(join(dir, "adapter_model.safetensors"));
      const peft = readFileSync(peftFixture(name, "adapter_model.safetensors"));
      assert.ok(ours.equals(peft), `${name}: adapter_model.safetensors differs from PEFT's`);
      using reader = SafetensorsReader.open(join(dir, "adapter_model.safetensors"));
      assert.deepEqual(reader.metadata, { format: "pt" });
    });
  }
});

Deno.test("writing over an existing adapter replaces it and leaves no temporary files", () => {
  withTempDir((dir) => {
    const first = readPeftAdapter(peftFixture("all_linear"), model);
    writePeftAdapter(dir, first.config, first.layers);
    const second = readPeftAdapter(peftFixture("qv_rslora"), model);
    writePeftAdapter(dir, second.config, second.layers);
    assertSameLayers(readPeftAdapter(dir, model).layers, second.layers);
    assert.deepEqual(readdirSync(dir).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
  });
});

Deno.test("layers that disagree with the config are refused before anything is written", () => {
  const { config, layers } = readPeftAdapter(peftFixture("qv_rslora"), model);
  const q0 = "model.layers.0.self_attn.q_proj";
  const withLayer = (module: string, weights: LoraWeights) => new Map([...layers, [module, weights]]);
  withTempDir((dir) => {
    const file = join(dir, "adapter_model.safetensors");
    const q = layers.get(q0)!;
    const cases: Array<[Map<string, LoraWeights>, string[]]> = [
      [withLayer("model.layers.0.mlp.up_proj", q), ["up_proj", "not targeted"]],
      [withLayer(q0, { ...q, r: 2 }), [q0, "rank 2", "r=4"]],
      [withLayer(q0, { ...q, scale: 2 }), [q0, "scale 2", "4"]],
      [withLayer(q0, { ...q, A: q.A.subarray(1) }), [q0, "A has 383 values"]],
      [new Map(), ["no layers"]],
    ];
    for (const [bad, words] of cases) {
      assertFormatError(() => writePeftAdapter(dir, config, bad), { file, words });
    }
    // With the model: every target needs a layer, of the model's shape.
    const missing = new Map(layers);
    missing.delete(q0);
    assertFormatError(() => writePeftAdapter(dir, config, missing, { model }), {
      file,
      words: ["no layer given", q0],
    });
    const narrow = withLayer(q0, { ...q, A: new Float32Array(4 * 64) });
    assertFormatError(() => writePeftAdapter(dir, config, narrow, { model }), {
      file,
      words: [q0, "64 → 96", "96 → 96"],
    });
    assert.deepEqual(readdirSync(dir), []);
  });
});

Deno.test("a config made from scratch writes a loadable adapter", () => {
  const config = createAdapterConfig({
    r: 2,
    loraAlpha: 4,
    targetModules: ["o_proj"],
    layersToTransform: [0],
  });
  const layers = new Map([["model.layers.0.self_attn.o_proj", {
    A: new Float32Array(2 * 96).fill(0.5),
    B: new Float32Array(96 * 2).fill(-0.25),
    r: 2,
    scale: 2,
  }]]);
  withTempDir((dir) => {
    writePeftAdapter(dir, config, layers, { model });
    assertSameLayers(readPeftAdapter(dir, model).layers, layers);
  });
});

// PEFT itself loads what we wrote and computes its fixture logits with it (needs QLORA_REF_PYTHON).
// A cross-check with the reference libraries: registered only where QLORA_REF_PYTHON points at them (CI has
// none, and a skipped test would count as a check that did not run).
if (REF_PYTHON !== undefined) {
  Deno.test({
    name: "PEFT loads our adapters (PeftModel.from_pretrained) and gets the fixture logits",
    async fn() {
      for (const name of CASES) {
        const { config, layers } = readPeftAdapter(peftFixture(name), model);
        const dir = mkdtempSync(join(tmpdir(), "qlora-peft-"));
        try {
          writePeftAdapter(dir, config, layers, { dtype: name === "bf16_layers" ? "BF16" : "F32", model });
          const out = await runFixtureScript([
            "--check",
            dir,
            "--expect",
            peftFixture(name, "expected_logits.safetensors"),
          ]);
          assert.match(out, /^OK$/m, out);
          const summary = JSON.parse(out.split("\n")[0]) as Record<string, { r: number; scaling: number }>;
          for (const [module, weights] of layers) {
            const peft = summary[`base_model.model.${module}`];
            assert.equal(peft.r, weights.r, module);
            assert.ok(
              Math.abs(peft.scaling - weights.scale) < 1e-12,
              `${module}: ${peft.scaling} vs ${weights.scale}`,
            );
          }
          assert.equal(Object.keys(summary).length, layers.size);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    },
  });
}
