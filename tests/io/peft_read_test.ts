import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { halfToF32 } from "../../lib/io/dtype.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { type TensorToWrite, writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { assertFormatError, f32Bits, withTempDir } from "./helpers.ts";
import { copyAdapter, editConfig, peftFixture, tinyLlama } from "./_peft.ts";

const model = await tinyLlama();
const Q0 = "model.layers.0.self_attn.q_proj";
const Q0_A = `base_model.model.${Q0}.lora_A.weight`;
const Q0_B = `base_model.model.${Q0}.lora_B.weight`;

/** The fixture's tensors, as stored, for rewriting with changes. */
function fixtureTensors(name: string): TensorToWrite[] {
  using reader = SafetensorsReader.open(peftFixture(name, "adapter_model.safetensors"));
  return reader.names().map((tensor) => {
    const { dtype, shape, data } = reader.readTensor(tensor);
    return { name: tensor, dtype, shape, data };
  });
}

/** A copy of fixture `name` in `dir` whose tensors went through `edit`. */
function alteredAdapter(
  name: string,
  dir: string,
  edit: (tensors: TensorToWrite[]) => TensorToWrite[],
): string {
  copyAdapter(name, dir);
  const path = join(dir, "adapter_model.safetensors");
  writeSafetensors(path, edit(fixtureTensors(name)), { format: "pt" });
  return path;
}

Deno.test("reads the PEFT fixtures: modules, shapes, ranks, scales", () => {
  const allLinear = readPeftAdapter(peftFixture("all_linear"), model);
  assert.equal(allLinear.layers.size, 14);
  const q = allLinear.layers.get(Q0)!;
  assert.equal(q.r, 4);
  assert.equal(q.scale, 2);
  assert.equal(q.A.length, 4 * 96);
  assert.equal(q.B.length, 96 * 4);
  const down = allLinear.layers.get("model.layers.1.mlp.down_proj")!;
  assert.equal(down.A.length, 4 * 160);
  assert.equal(down.B.length, 96 * 4);

  const rs = readPeftAdapter(peftFixture("qv_rslora"), model);
  assert.deepEqual([...rs.layers.keys()], [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  const v = rs.layers.get("model.layers.1.self_attn.v_proj")!;
  assert.equal(v.r, 2);
  assert.equal(v.scale, 8 / Math.sqrt(2));
  assert.equal(v.A.length, 2 * 96);
  assert.equal(v.B.length, 48 * 2);
  assert.equal(rs.layers.get(Q0)!.scale, 4);

  const bf16 = readPeftAdapter(peftFixture("bf16_layers"), model);
  assert.deepEqual([...bf16.layers.keys()], [
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.k_proj",
    "model.layers.1.self_attn.o_proj",
    "model.layers.1.mlp.down_proj",
  ]);
  assert.equal(bf16.layers.get("model.layers.1.mlp.down_proj")!.scale, 16 / 4);
  assert.equal(bf16.layers.get("model.layers.1.self_attn.k_proj")!.scale, 8 / 4);
});

Deno.test("values are the file's, BF16 widened exactly", () => {
  using reader = SafetensorsReader.open(peftFixture("bf16_layers", "adapter_model.safetensors"));
  const name = "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight";
  const raw = reader.readTensor(name);
  assert.equal(raw.dtype, "BF16");
  const adapter = readPeftAdapter(peftFixture("bf16_layers"), model);
  assert.deepEqual(
    f32Bits(adapter.layers.get("model.layers.1.self_attn.k_proj")!.B),
    f32Bits(halfToF32("BF16", raw.data as Uint16Array)),
  );
  assert.ok(
    adapter.layers.get("model.layers.1.self_attn.k_proj")!.B.some((x) => x !== 0),
    "B was set non-zero",
  );
});

Deno.test("tensor names with PEFT's adapter name (lora_A.default.weight) are accepted", () => {
  withTempDir((dir) => {
    alteredAdapter(
      "qv_rslora",
      dir,
      (tensors) =>
        tensors.map((t) => ({
          ...t,
          name: t.name.replace(/\.lora_([AB])\.weight$/, ".lora_$1.default.weight"),
        })),
    );
    const adapter = readPeftAdapter(dir, model);
    const reference = readPeftAdapter(peftFixture("qv_rslora"), model);
    assert.equal(adapter.layers.size, 4);
    assert.deepEqual(f32Bits(adapter.layers.get(Q0)!.A), f32Bits(reference.layers.get(Q0)!.A));
  });
});

Deno.test("a shape that does not fit the model names the tensor, expected and found shapes", () => {
  withTempDir((dir) => {
    const path = alteredAdapter(
      "qv_rslora",
      dir,
      (tensors) =>
        tensors.map((t) =>
          t.name === Q0_A ? { ...t, shape: [4, 48], data: (t.data as Float32Array).subarray(0, 4 * 48) } : t
        ),
    );
    assertFormatError(() => readPeftAdapter(dir, model), {
      file: path,
      tensor: Q0_A,
      words: ["expected shape [4,96]", "found [4,48]", "[r, in]"],
    });
  });
  // The same adapter against a model with other dimensions.
  const wider = { ...model, intermediateSize: 128 };
  const gate = "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight";
  assertFormatError(() => readPeftAdapter(peftFixture("all_linear"), wider), {
    file: peftFixture("all_linear", "adapter_model.safetensors"),
    tensor: gate,
    words: ["expected shape [128,4]", "found [160,4]", "[out, r]"],
  });
  // A rank that is not the config's.
  withTempDir((dir) => {
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.rank_pattern = {});
    assertFormatError(() => readPeftAdapter(dir, model), {
      file: join(dir, "adapter_model.safetensors"),
      tensor: "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
      words: ["expected shape [4,96]", "found [2,96]"],
    });
  });
});

Deno.test("a targeted module without lora_B is an error naming the missing tensor", () => {
  withTempDir((dir) => {
    const path = alteredAdapter("qv_rslora", dir, (tensors) => tensors.filter((t) => t.name !== Q0_B));
    assertFormatError(() => readPeftAdapter(dir, model), { file: path, tensor: Q0_B, words: ["missing"] });
  });
});

Deno.test("tensors the config does not target are an error naming them", () => {
  withTempDir((dir) => {
    const extra = "base_model.model.model.embed_tokens.lora_embedding_A";
    const path = alteredAdapter("qv_rslora", dir, (tensors) => [
      ...tensors,
      { name: extra, dtype: "F32", shape: [4, 300], data: new Float32Array(1200) },
    ]);
    assertFormatError(() => readPeftAdapter(dir, model), { file: path, tensor: extra, words: ["1 tensor"] });
  });
  // Modules outside the config's layers_to_transform.
  withTempDir((dir) => {
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.layers_to_transform = [1]);
    assertFormatError(() => readPeftAdapter(dir, model), {
      file: join(dir, "adapter_model.safetensors"),
      words: ["4 tensor(s)", "model.layers.0."],
    });
  });
});

Deno.test("bad adapter directories: config problems, missing files, pickles", () => {
  withTempDir((dir) => {
    const configPath = join(dir, "adapter_config.json");
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ["cannot read"] });
    copyAdapter("qv_rslora", dir);
    writeFileSync(configPath, '{"peft_type": "LORA", "r": 4,');
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ["not valid JSON"] });
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.peft_type = "LOHA");
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ['"LOHA"'] });
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.use_dora = true);
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ["DoRA"] });
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.modules_to_save = ["lm_head", "embed_tokens"]);
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ["modules_to_save"] });
    copyAdapter("qv_rslora", dir);
    editConfig(dir, (json) => json.target_modules = ["query_key_value"]);
    assertFormatError(() => readPeftAdapter(dir, model), { file: configPath, words: ["query_key_value"] });

    copyAdapter("qv_rslora", dir);
    const weights = join(dir, "adapter_model.safetensors");
    rmSync(weights);
    assertFormatError(() => readPeftAdapter(dir, model), { file: weights, words: ["not found"] });
    writeFileSync(join(dir, "adapter_model.bin"), "pickle");
    assertFormatError(() => readPeftAdapter(dir, model), {
      file: weights,
      words: ["adapter_model.bin", "pickle"],
    });
  });
});
