import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { halfToF32 } from "../../lib/io/dtype.ts";
import { writeGgufLora } from "../../lib/io/peft/gguf_lora.ts";
import type { LoraWeights } from "../../lib/lora/weights.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { assertFormatError, withTempDir } from "./helpers.ts";
import { peftFixture, REF_PYTHON, runFixtureScript, tinyLlama } from "./_peft.ts";

const model = await tinyLlama();
const GGML = { F32: 0, F16: 1, BF16: 30 } as const;

interface ReadBack {
  metadata: Record<string, unknown>;
  /** name → { ggml ne, type, f32 values } */
  tensors: Map<string, { ne: number[]; type: number; values: Float32Array }>;
}

/** Reads a GGUF file with @huggingface/gguf (an independent parser) and decodes its float tensors. */
async function readBack(path: string): Promise<ReadBack> {
  const parsed = await gguf(path, { allowLocalFile: true });
  const bytes = readFileSync(path);
  const tensors = new Map<string, { ne: number[]; type: number; values: Float32Array }>();
  for (const info of parsed.tensorInfos) {
    const ne = info.shape.map(Number);
    const count = ne.reduce((a, b) => a * b, 1);
    const start = Number(parsed.tensorDataOffset + info.offset);
    assert.equal(start % 32, 0, `${info.name} is 32-byte aligned`);
    const raw = bytes.buffer.slice(
      bytes.byteOffset + start,
      bytes.byteOffset + start + count * (info.dtype === 0 ? 4 : 2),
    );
    const values = info.dtype === GGML.F32
      ? new Float32Array(raw)
      : halfToF32(info.dtype === GGML.F16 ? "F16" : "BF16", new Uint16Array(raw));
    tensors.set(info.name, { ne, type: info.dtype, values });
  }
  return { metadata: parsed.metadata as Record<string, unknown>, tensors };
}

/** HF "halves" → llama.cpp "interleaved pairs" row order, written out plainly (row i of head h). */
function interleave(b: Float32Array, rows: number, heads: number): Float32Array {
  const cols = b.length / rows;
  const headDim = rows / heads;
  const out = new Float32Array(b.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < headDim; i++) {
      // Output row 2j + s takes input row j + s·headDim/2.
      const from = h * headDim + (i % 2) * (headDim / 2) + Math.floor(i / 2);
      out.set(b.subarray(from * cols, (from + 1) * cols), (h * headDim + i) * cols);
    }
  }
  return out;
}

function assertClose(actual: Float32Array, expected: Float32Array, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tolerance, `${what}: max difference ${worst} > ${tolerance}`);
}

/** What lora_b must hold: B scaled to llama.cpp's alpha / r, q/k rows interleaved. */
function expectedB(module: string, w: LoraWeights, alpha: number): Float32Array {
  const factor = w.scale / (alpha / w.r);
  const b = w.B.map((x) => x * factor);
  const out = b.length / w.r;
  if (module.endsWith("q_proj")) return interleave(b, out, model.numAttentionHeads);
  if (module.endsWith("k_proj")) return interleave(b, out, model.numKeyValueHeads);
  return b;
}

const GGUF_NAME: Record<string, string> = {
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

function ggufStem(module: string): string {
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(module)!;
  return `blk.${m[1]}.${GGUF_NAME[m[2]]}.weight`;
}

Deno.test("GGUF LoRA: metadata, names, ggml shapes and values (all-linear, llama q/k permuted)", async () => {
  const { config, layers } = readPeftAdapter(peftFixture("all_linear"), model);
  await withTempDirAsync(async (dir) => {
    const path = join(dir, "adapter.gguf");
    writeGgufLora(path, { model, config, layers, name: "tiny test adapter" });
    const { metadata, tensors } = await readBack(path);
    assert.equal(metadata["general.architecture"], "llama");
    assert.equal(metadata["general.type"], "adapter");
    assert.equal(metadata["general.name"], "tiny test adapter");
    assert.equal(metadata["adapter.type"], "lora");
    assert.equal(metadata["adapter.lora.alpha"], 8);
    assert.equal(tensors.size, 2 * layers.size);
    for (const [module, w] of layers) {
      const stem = ggufStem(module);
      const a = tensors.get(`${stem}.lora_a`)!;
      const b = tensors.get(`${stem}.lora_b`)!;
      const out = w.B.length / w.r;
      // ggml dims are fastest first: lora_a [in, r], lora_b [r, out].
      assert.deepEqual(a.ne, [w.A.length / w.r, w.r], `${stem}.lora_a`);
      assert.deepEqual(b.ne, [w.r, out], `${stem}.lora_b`);
      assert.equal(a.type, GGML.F32);
      assert.deepEqual(a.values, w.A);
      assert.deepEqual(b.values, expectedB(module, w, 8));
    }
    // The permutation really moved rows of q (and not of v).
    const q = layers.get("model.layers.0.self_attn.q_proj")!;
    assert.notDeepEqual(tensors.get("blk.0.attn_q.weight.lora_b")!.values, q.B);
    assert.deepEqual(
      tensors.get("blk.0.attn_v.weight.lora_b")!.values,
      layers.get("model.layers.0.self_attn.v_proj")!.B,
    );
  });
});

Deno.test("GGUF LoRA: rsLoRA and rank_pattern scales become one alpha plus scaled lora_b", async () => {
  const { config, layers } = readPeftAdapter(peftFixture("qv_rslora"), model);
  await withTempDirAsync(async (dir) => {
    const path = join(dir, "adapter.gguf");
    writeGgufLora(path, { model, config, layers, dtype: "F32" });
    const { metadata, tensors } = await readBack(path);
    // rsLoRA r=4, alpha 8: llama.cpp's alpha / r must be 8 / √4, so alpha = 8 · √4.
    const alpha = metadata["adapter.lora.alpha"] as number;
    assert.equal(alpha, 16);
    for (const [module, w] of layers) {
      const stem = ggufStem(module);
      const stored = tensors.get(`${stem}.lora_b`)!.values;
      assertClose(stored, expectedB(module, w, alpha), 1e-7, stem);
      // What llama.cpp then computes: (alpha / r) · lora_b = PEFT's scale · B (up to the permutation).
      const effective = stored.map((x) => x * alpha / w.r);
      const heads = module.endsWith("q_proj") ? model.numAttentionHeads : undefined;
      const peft = w.B.map((x) => x * w.scale);
      assertClose(
        effective,
        heads === undefined ? peft : interleave(peft, w.B.length / w.r, heads),
        1e-6,
        stem,
      );
    }
    // v_proj (r=2) is rescaled, q_proj (r=4) is written as is.
    const v = layers.get("model.layers.0.self_attn.v_proj")!;
    assert.notDeepEqual(tensors.get("blk.0.attn_v.weight.lora_b")!.values, v.B);
  });
});

Deno.test("GGUF LoRA: F16 / BF16 storage, Qwen2 unpermuted", async () => {
  const { config, layers } = readPeftAdapter(peftFixture("bf16_layers"), model);
  await withTempDirAsync(async (dir) => {
    for (const dtype of ["F16", "BF16"] as const) {
      const path = join(dir, `adapter.${dtype}.gguf`);
      writeGgufLora(path, { model, config, layers, dtype });
      const { tensors } = await readBack(path);
      const k = layers.get("model.layers.1.self_attn.k_proj")!;
      const stored = tensors.get("blk.1.attn_k.weight.lora_b")!;
      assert.equal(stored.type, GGML[dtype]);
      assertClose(stored.values, expectedB("k_proj", k, 8), dtype === "BF16" ? 0 : 1e-4, dtype);
      // down_proj has alpha 16 (alpha_pattern): its B is doubled to match alpha 8 / r.
      const down = layers.get("model.layers.1.mlp.down_proj")!;
      assertClose(
        tensors.get("blk.1.ffn_down.weight.lora_b")!.values,
        down.B.map((x) => 2 * x),
        1e-4,
        "down",
      );
    }
    const qwenPath = join(dir, "qwen.gguf");
    const qwen = { ...model, architecture: "Qwen2ForCausalLM" as const };
    writeGgufLora(qwenPath, { model: qwen, config, layers });
    const { metadata, tensors } = await readBack(qwenPath);
    assert.equal(metadata["general.architecture"], "qwen2");
    assert.deepEqual(
      tensors.get("blk.1.attn_q.weight.lora_b")!.values,
      layers.get("model.layers.1.self_attn.q_proj")!.B,
    );
  });
});

Deno.test("GGUF LoRA: layers that do not fit the model are refused", () => {
  const { config, layers } = readPeftAdapter(peftFixture("qv_rslora"), model);
  withTempDir((dir) => {
    const path = join(dir, "adapter.gguf");
    const q = layers.get("model.layers.0.self_attn.q_proj")!;
    assertFormatError(
      () =>
        writeGgufLora(path, {
          model,
          config,
          layers: new Map([["model.layers.0.self_attn.q_proj", { ...q, A: q.A.subarray(4) }]]),
        }),
      { file: path, words: ["q_proj", "[4, 96]"] },
    );
    assertFormatError(
      () => writeGgufLora(path, { model, config, layers: new Map([["model.layers.9.self_attn.q_proj", q]]) }),
      { file: path, words: ["model.layers.9.self_attn.q_proj", "not a linear module"] },
    );
  });
});

// A cross-check with the reference libraries: registered only where QLORA_REF_PYTHON points at them (CI has
// none, and a skipped test would count as a check that did not run).
if (REF_PYTHON !== undefined) {
  Deno.test({
    name: "GGUF LoRA: Python's gguf reader agrees (needs QLORA_REF_PYTHON)",
    async fn() {
      for (const name of ["all_linear", "qv_rslora"]) {
        const { config, layers } = readPeftAdapter(peftFixture(name), model);
        await withTempDirAsync(async (dir) => {
          const path = join(dir, "adapter.gguf");
          writeGgufLora(path, { model, config, layers });
          const out = await runFixtureScript(["--check-gguf", path, peftFixture(name)]);
          assert.match(out, /^OK$/m, out);
        });
      }
    },
  });
}

async function withTempDirAsync(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qlora-gguf-lora-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
