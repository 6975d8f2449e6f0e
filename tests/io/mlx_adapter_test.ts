/**
 * mlx-lm adapter export (lib/io/mlx_adapter.ts): mlx-lm computes `scale · (x @ lora_a) @ lora_b` with
 * lora_a `[in, r]`, lora_b `[r, out]` (mlx_lm/tuner/lora.py); checked here by evaluating that formula on
 * the written tensors against PEFT's `s · B · (A · x)` from the same adapter, plus the config mlx-lm's
 * `load_adapters` reads (fine_tune_type, num_layers, lora_parameters {rank, scale, dropout, keys}).
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeMlxAdapter } from "../../lib/io/mlx_adapter.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { peftFixture, tinyLlama } from "./_peft.ts";
import { fileURLToPath } from "node:url";
import { LoraModel } from "../../lib/lora/model.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";

function withTmp(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "qlora-mlx-"));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const name of ["all_linear", "one scale differs"]) {
  Deno.test(`${name}: mlx-lm's formula on the written tensors gives PEFT's update`, async () => {
    const model = await tinyLlama();
    const adapter = readPeftAdapter(peftFixture("all_linear"), model);
    if (name === "one scale differs") {
      // As alpha_pattern makes it: mlx-lm has one scale, so the ratio goes into that module's lora_b.
      const [module, w] = [...adapter.layers][3];
      adapter.layers.set(module, { ...w, scale: w.scale * 2.5 });
    }
    withTmp((tmp) => {
      const dir = join(tmp, "mlx");
      const { scale } = writeMlxAdapter(dir, { model, config: adapter.config, layers: adapter.layers });
      const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
      const first = adapter.layers.values().next().value!;
      const expectedKeys = [
        "mlp.down_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "self_attn.k_proj",
        "self_attn.o_proj",
        "self_attn.q_proj",
        "self_attn.v_proj",
      ];
      assert.equal(config.fine_tune_type, "lora");
      assert.equal(config.num_layers, model.numHiddenLayers);
      assert.equal(config.lora_parameters.rank, first.r);
      assert.equal(config.lora_parameters.scale, first.scale); // alpha / r (alpha / √r with rsLoRA)
      assert.equal(scale, first.scale);
      assert.deepEqual(config.lora_parameters.keys, expectedKeys);

      using file = SafetensorsReader.open(join(dir, "adapters.safetensors"));
      assert.equal(file.names().length, 2 * adapter.layers.size);
      for (const [module, w] of adapter.layers) {
        const inDim = w.A.length / w.r, out = w.B.length / w.r;
        const a = file.readTensorF32(`${module}.lora_a`);
        const b = file.readTensorF32(`${module}.lora_b`);
        assert.deepEqual(file.info(`${module}.lora_a`).shape, [inDim, w.r]);
        assert.deepEqual(file.info(`${module}.lora_b`).shape, [w.r, out]);
        const x = Float64Array.from({ length: inDim }, (_, i) => Math.sin(i + 1));
        // mlx: scale · (x @ lora_a) @ lora_b
        const z = Array.from(
          { length: w.r },
          (_, k) => x.reduce((s, v, i) => s + v * a.data[i * w.r + k], 0),
        );
        const mlx = Array.from(
          { length: out },
          (_, o) => scale * z.reduce((s, v, k) => s + v * b.data[k * out + o], 0),
        );
        // PEFT: s · B · (A · x)
        const ax = Array.from(
          { length: w.r },
          (_, k) => x.reduce((s, v, i) => s + v * w.A[k * inDim + i], 0),
        );
        const peft = Array.from(
          { length: out },
          (_, o) => w.scale * ax.reduce((s, v, k) => s + v * w.B[o * w.r + k], 0),
        );
        const worst = Math.max(...mlx.map((v, o) => Math.abs(v - peft[o])));
        // Transposes are exact; a folded scale rounds each B value to f32 once (≤ 2⁻²⁴ relative).
        assert.ok(worst <= 1e-6 * Math.max(1, ...peft.map(Math.abs)), `${module}: ${worst}`);
      }
    });
  });
}

Deno.test("mlx export refuses adapters mlx-lm cannot express, and existing directories", async () => {
  const model = await tinyLlama();
  const adapter = readPeftAdapter(peftFixture("all_linear"), model);
  withTmp((tmp) => {
    const firstLayerOnly = new Map([...adapter.layers].filter(([m]) => m.startsWith("model.layers.0.")));
    assert.throws(
      () => writeMlxAdapter(join(tmp, "a"), { model, config: adapter.config, layers: firstLayerOnly }),
      /last num_layers layers; this adapter covers layers \[0\] of 2/,
    );
    const mixed = new Map(adapter.layers);
    const [module, w] = [...mixed][0];
    mixed.set(module, {
      ...w,
      A: new Float32Array(2 * w.A.length / w.r),
      B: new Float32Array(2 * w.B.length / w.r),
      r: 2,
    });
    assert.throws(
      () => writeMlxAdapter(join(tmp, "b"), { model, config: adapter.config, layers: mixed }),
      /one rank per adapter/,
    );
    const dir = join(tmp, "taken");
    writeMlxAdapter(dir, { model, config: adapter.config, layers: adapter.layers });
    writeFileSync(join(dir, "note.txt"), "mine");
    assert.throws(
      () => writeMlxAdapter(dir, { model, config: adapter.config, layers: adapter.layers }),
      /not empty; refusing/,
    );
    assert.equal(readFileSync(join(dir, "note.txt"), "utf8"), "mine");
  });
});

const MLX_PYTHON = Deno.env.get("QLORA_MLX_PYTHON");

// mlx-lm itself loads the adapter (needs QLORA_MLX_PYTHON: a Python with `pip install "mlx[cpu]" mlx-lm`).
if (MLX_PYTHON !== undefined) {
  Deno.test({
    name: "mlx-lm itself runs the exported adapter on tiny_llama to our logits (QLORA_MLX_PYTHON)",
    fn: async () => {
      const dir = fileURLToPath(new URL("../fixtures/model/tiny_llama", import.meta.url));
      const config = await tinyLlama();
      const adapter = readPeftAdapter(peftFixture("all_linear"), config);
      const source = SafetensorsSource.open(dir);
      using base = buildModel(source, config, { quantize: "none" });
      source.close();
      const ids = Uint32Array.from([1, 17, 99, 0, 42, 128, 7, 250]);
      const tmp = mkdtempSync(join(tmpdir(), "qlora-mlx-"));
      try {
        writeMlxAdapter(join(tmp, "mlx"), { model: config, config: adapter.config, layers: adapter.layers });
        // mlx-lm reads rope settings from the older `rope_scaling` / `rope_theta` keys of config.json.
        const model = join(tmp, "model");
        mkdirSync(model);
        copyFileSync(join(dir, "model.safetensors"), join(model, "model.safetensors"));
        const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
        const { rope_theta, ...scaling } = json.rope_parameters;
        writeFileSync(
          join(model, "config.json"),
          JSON.stringify({ ...json, rope_theta, rope_scaling: scaling }),
        );
        const expected = {
          ids: [...ids],
          logits: [...LoraModel.fromWeights(base, adapter.layers).forward(ids)],
          base: [...base.forward(ids)],
        };
        writeFileSync(join(tmp, "expected.json"), JSON.stringify(expected));
        const script = fileURLToPath(new URL("../fixtures/export/check_mlx.py", import.meta.url));
        const out = await new Deno.Command(MLX_PYTHON!, {
          args: [script, model, join(tmp, "mlx"), join(tmp, "expected.json")],
        }).output();
        const text = new TextDecoder();
        assert.equal(out.code, 0, text.decode(out.stderr));
        const result = JSON.parse(text.decode(out.stdout));
        console.log(result);
        // Both sides compute in f32 from the same weights: only summation order differs (measured 2e-6).
        assert.ok(result.base_max_diff < 1e-4, `mlx base vs ours: ${result.base_max_diff}`);
        assert.ok(result.adapter_moves > 0.1, `the adapter moves mlx's logits: ${result.adapter_moves}`);
        assert.ok(result.max_diff < 1e-4, `mlx with the adapter vs ours: ${result.max_diff}`);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  });
}
