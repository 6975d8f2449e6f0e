/** Loading a model from broken directories: each problem is one clear error naming the file and what is wrong. */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FormatError } from "../../lib/errors.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { buildModel, loadModel } from "../../lib/pretrained/load_model.ts";
import { loadModelConfig } from "../../lib/nn/config.ts";
import { SafetensorsSource } from "../../lib/pretrained/weight_source.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";

const TINY = fileURLToPath(new URL("../fixtures/model/tiny_llama/", import.meta.url));
const TOKENIZER = fileURLToPath(new URL("../fixtures/text/llama2_tokenizer.json", import.meta.url));

/** A copy of the tiny Llama with a real tokenizer.json, changed by `edit`. */
function brokenModel(edit: (dir: string) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "qlora-load-"));
  copyFileSync(join(TINY, "config.json"), join(dir, "config.json"));
  copyFileSync(join(TINY, "model.safetensors"), join(dir, "model.safetensors"));
  copyFileSync(TOKENIZER, join(dir, "tokenizer.json"));
  edit(dir);
  return dir;
}

async function loadError(dir: string): Promise<Error> {
  try {
    await loadModel(dir, { progress: false });
  } catch (error) {
    return error as Error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error("expected loading to fail");
}

Deno.test("a complete directory loads (the baseline for the cases below)", async () => {
  const dir = brokenModel(() => {});
  try {
    const { model } = await loadModel(dir, { progress: false });
    assert.equal(model.forward(Uint32Array.of(1, 2, 3)).length, 3 * 300);
    model.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("missing tokenizer.json names the file", async () => {
  const error = await loadError(brokenModel((dir) => rmSync(join(dir, "tokenizer.json"))));
  assert.match(error.message, /tokenizer\.json/);
});

Deno.test("a config without a needed key names the key", async () => {
  const error = await loadError(brokenModel((dir) => {
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    delete config.num_hidden_layers;
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  }));
  assert.match(error.message, /config\.json.*num_hidden_layers/);
});

function rewriteWeights(
  dir: string,
  change: (name: string, data: Float32Array, shape: number[]) => [Float32Array, number[]] | null,
) {
  const path = join(dir, "model.safetensors");
  const reader = SafetensorsReader.open(path);
  const tensors = reader.names().flatMap((name) => {
    const t = reader.readTensorF32(name);
    const changed = change(name, t.data, t.shape);
    return changed ? [{ name, dtype: "F32" as const, shape: changed[1], data: changed[0] }] : [];
  });
  reader.close();
  writeSafetensors(path, tensors);
}

Deno.test("a missing tensor is named", async () => {
  const error = await loadError(
    brokenModel((dir) =>
      rewriteWeights(
        dir,
        (name, data, shape) => name === "model.layers.1.mlp.up_proj.weight" ? null : [data, shape],
      )
    ),
  );
  assert.ok(error instanceof FormatError);
  assert.match(error.message, /"model\.layers\.1\.mlp\.up_proj\.weight": missing/);
});

Deno.test("a tensor of the wrong shape names the expected and found shapes", async () => {
  const error = await loadError(
    brokenModel((dir) =>
      rewriteWeights(
        dir,
        (name, data, shape) =>
          name === "model.layers.0.self_attn.k_proj.weight"
            ? [data.subarray(0, 24 * 96), [24, 96]]
            : [data, shape],
      )
    ),
  );
  assert.ok(error instanceof FormatError);
  assert.match(error.message, /k_proj\.weight": expected shape \[48,96\], found \[24,96\]/);
});

Deno.test("a path that does not exist is named", async () => {
  await assert.rejects(
    loadModel("/nonexistent/model", { progress: false }),
    /\/nonexistent\/model: no such file/,
  );
});

Deno.test("a pre-quantized bnb-4bit checkpoint loads without re-quantizing: weights equal bitsandbytes' dequantization", async () => {
  const dir = fileURLToPath(new URL("../fixtures/safetensors/bnb4bit-llama/", import.meta.url));
  const config = await loadModelConfig(join(dir, "config.json"));
  using source = SafetensorsSource.open(dir);
  using model = buildModel(source, config);
  const q = model.weights.layers[0].attention.q as Nf4Weight;
  assert.ok(q instanceof Nf4Weight && q.doubleQuant);
  using expected = SafetensorsReader.open(join(dir, "expected.safetensors"));
  assert.deepEqual(q.dequantize(), expected.readTensorF32("q_proj.weight").data);
  const logits = model.forward(Uint32Array.of(1, 5, 9));
  assert.ok(logits.every(Number.isFinite));
  assert.throws(
    () => buildModel(source, config, { quantize: "none" }),
    /stored in 4 bits; it cannot be loaded unquantized/,
  );
});
