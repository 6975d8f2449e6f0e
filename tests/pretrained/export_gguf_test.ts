/**
 * Merged GGUF export (lib/pretrained/export_gguf.ts), for every export type, on the tiny Llama (HF dir,
 * f32, llama3 rope scaling → rope_freqs.weight) and the tiny Qwen2 (GGUF, tied embeddings, q/k/v biases):
 * - the file reads back through our own reader: metadata equal to the config, each tensor of the type the
 *   plan says, and every merged weight within its type's quantization budget of `W + s·B·A` computed here
 *   in f64 (q/k rows un-permuted by our reader, so the permutation is checked too);
 * - the exported model's logits track the unmerged adapted model (same source weights, adapter on the
 *   side) within a per-type budget; the adapter's own effect is much larger than that budget, so a lost
 *   fine-tune (the NF4 failure) would fail;
 * - with QLORA_REF_PYTHON, llama.cpp's reader (gguf-py) dequantizes every tensor to exactly our values and
 *   reads the same metadata (tests/fixtures/export/check_gguf.py);
 * - nothing on disk is replaced without `overwrite`, and bad input is refused before a byte is written.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { GgufHfView } from "../../lib/io/gguf/hf_view.ts";
import { writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import type { LoraWeights } from "../../lib/lora/weights.ts";
import {
  blockModules,
  configFromGguf,
  linearShape,
  type ModelConfig,
  modulePath,
  ropeInvFreq,
} from "../../lib/nn/config.ts";
import { exportGguf, readSourceConfig } from "../../lib/pretrained/export_gguf.ts";
import {
  GGUF_EXPORT_TYPES,
  type GgufExportType,
  useMoreBits,
} from "../../lib/pretrained/export/gguf_types.ts";
import { buildModel } from "../../lib/pretrained/load_model.ts";
import { GgufSource, SafetensorsSource, type WeightSource } from "../../lib/pretrained/weight_source.ts";
import { Rng } from "../../lib/random.ts";
import type { LlamaModel } from "../../lib/nn/llama.ts";
import { REF_PYTHON } from "../io/_peft.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
const LLAMA_DIR = join(FIXTURES, "model", "tiny_llama");
const QWEN2_GGUF = join(FIXTURES, "gguf", "tiny_qwen2.gguf");
const CHECK_SCRIPT = join(FIXTURES, "export", "check_gguf.py");

/**
 * Budgets. Weights: max |exported - exact| ≤ budget · max|row block| — each format's step over its block
 * (F16: 2⁻¹¹ relative; Q8_0 ½ of amax/127 plus the f16 scale's rounding; Q4_0/Q5_0 one step of amax/8 or
 * /16 at the capped top code; Q4_K/Q6_K are fitted, bounded loosely by their 4/6-bit steps). Logits: the
 * export vs the unmerged model, as a fraction of max|logit|, ≈ 2× what these tiny models measure (printed
 * by the test: tiny_llama f16 6e-4, q8_0 0.018, q4_0 0.41; tiny_qwen2, whose 40-wide rows are not whole
 * blocks and so stay F16 in every type, 2.9e-3). 4 bits on random 96-wide matrices is coarse, so for the
 * 4-bit types the telling check is the other one: the export sits at most half as far from the adapted
 * model as from the base (mean |Δlogit|) — a merge snapped back to the base codes would sit at the base.
 */
const WEIGHT_BUDGET: Record<GgufExportType, number> = {
  f16: 2 ** -10,
  q8_0: 0.006,
  q4_0: 0.14,
  q4_k_m: 0.14,
};
const LOGIT_BUDGET: Record<GgufExportType, number> = { f16: 6e-3, q8_0: 0.04, q4_0: 0.8, q4_k_m: 0.8 };

async function withTmp(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-export-gguf-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function openSource(path: string): Promise<WeightSource> {
  return path.endsWith(".gguf") ? await GgufSource.open(path) : SafetensorsSource.open(path);
}

/** A LoRA on every linear of every layer: seeded A ~ U(±1/√in), B large enough to move the logits. */
function randomAdapters(config: ModelConfig, seed = 3, r = 4, scale = 2): Map<string, LoraWeights> {
  const rng = new Rng(seed);
  const uniform = (n: number, bound: number) =>
    Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
  const adapters = new Map<string, LoraWeights>();
  for (let l = 0; l < config.numHiddenLayers; l++) {
    for (const m of blockModules(config)) {
      const [out, inDim] = linearShape(config, m);
      adapters.set(modulePath(l, m), {
        A: uniform(r * inDim, 1 / Math.sqrt(inDim)),
        B: uniform(out * r, 0.2),
        r,
        scale,
      });
    }
  }
  return adapters;
}

/** `W + s·B·A` in f64. */
function exactMerge(w: Float32Array, out: number, inDim: number, lora: LoraWeights): Float64Array {
  const merged = Float64Array.from(w);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < lora.r; k++) {
      const b = lora.scale * lora.B[o * lora.r + k];
      for (let i = 0; i < inDim; i++) merged[o * inDim + i] += b * lora.A[k * inDim + i];
    }
  }
  return merged;
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

function diffs(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0, sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

/** The exported file as a model (unquantized), with the source's rope scaling (our loader reads no rope_freqs). */
function loadExported(file: GgufFile, sourceConfig: ModelConfig): LlamaModel {
  const config = {
    ...configFromGguf(file.metadata, file.names(), file.path),
    ropeScaling: sourceConfig.ropeScaling,
  };
  return buildModel(new GgufSource(file), config, { quantize: "none" });
}

const CASES = [
  { name: "tiny_llama (HF dir)", source: LLAMA_DIR, arch: "llama" },
  { name: "tiny_qwen2 (GGUF)", source: QWEN2_GGUF, arch: "qwen2" },
] as const;

for (const c of CASES) {
  Deno.test(`${c.name}: every export type reads back with its metadata, merged weights and logits`, async () => {
    await withTmp(async (tmp) => {
      const config = await readSourceConfig(c.source);
      const adapters = randomAdapters(config);
      using source = await openSource(c.source);
      using base = buildModel(await openSource(c.source), config, { quantize: "none" });
      const ids = Uint32Array.from([1, 17, 99, 0, 42, 128, 7, 250], (id) => id % config.vocabSize);
      const baseLogits = base.forward(ids);
      const adapted = LoraModel.fromWeights(base, adapters).forward(ids);
      const table: string[] = [];
      for (const type of GGUF_EXPORT_TYPES) {
        const path = join(tmp, `${type}.gguf`);
        const result = await exportGguf(path, { source: c.source, adapters, type, name: "tiny" });
        using file = await GgufFile.open(path);

        // Metadata as llama.cpp names it.
        const m = file.metadata;
        assert.equal(m["general.architecture"], c.arch);
        assert.equal(m["general.name"], "tiny");
        assert.equal(m[`${c.arch}.block_count`], config.numHiddenLayers);
        assert.equal(m[`${c.arch}.embedding_length`], config.hiddenSize);
        assert.equal(m[`${c.arch}.feed_forward_length`], config.intermediateSize);
        assert.equal(m[`${c.arch}.attention.head_count_kv`], config.numKeyValueHeads);
        assert.equal(m[`${c.arch}.rope.dimension_count`], config.headDim);
        assert.equal(m[`${c.arch}.context_length`], config.maxPositionEmbeddings);
        assert.equal(Math.fround(config.rmsNormEps), m[`${c.arch}.attention.layer_norm_rms_epsilon`]);
        const back = configFromGguf(m, file.names(), path);
        assert.deepEqual({
          ...back,
          ropeScaling: null,
          torchDtype: null,
          bosTokenId: null,
          eosTokenIds: [],
          padTokenId: null,
          slidingWindow: null,
          rmsNormEps: 0,
        }, {
          ...config,
          ropeScaling: null,
          torchDtype: null,
          bosTokenId: null,
          eosTokenIds: [],
          padTokenId: null,
          slidingWindow: null,
          rmsNormEps: 0,
        });
        if (config.ropeScaling?.type === "llama3") {
          // rope_freqs.weight holds the divisors that turn plain frequencies into llama3-scaled ones.
          const factors = file.readTensorF32("rope_freqs.weight");
          const plain = ropeInvFreq({ ...config, ropeScaling: null });
          const scaled = ropeInvFreq(config);
          factors.forEach((f, i) => assert.ok(Math.abs(plain[i] / f - scaled[i]) <= 1e-6 * scaled[i]));
        }

        // Types as planned (spot checks of the mix) and every merged weight within budget.
        const types = Object.fromEntries(file.names().map((n) => [n, file.info(n).type.name]));
        assert.equal(types["blk.0.attn_norm.weight"], "F32");
        const last = config.numHiddenLayers - 1;
        if (type === "q4_k_m" && config.hiddenSize % 32 === 0) {
          // Rows of 96 / 64 values are not whole 256-value super-blocks: llama.cpp's fallbacks apply.
          assert.equal(
            types[`blk.${last}.ffn_down.weight`],
            useMoreBits(last, config.numHiddenLayers) ? "Q8_0" : "Q5_0",
          );
          assert.equal(types["blk.0.attn_q.weight"], "Q5_0");
        }
        if (type === "q4_0") {
          // A row that is not whole 32-value blocks cannot be Q4_0 at all: F16, as llama-quantize does.
          assert.equal(types["blk.0.ffn_up.weight"], config.hiddenSize % 32 === 0 ? "Q4_0" : "F16");
        }
        assert.deepEqual(
          result.tensorTypes,
          Object.values(types).reduce((acc: Record<string, number>, t) => {
            acc[t] = (acc[t] ?? 0) + 1;
            return acc;
          }, {}),
        );
        const view = new GgufHfView(file);
        for (let l = 0; l < config.numHiddenLayers; l++) {
          for (const mod of blockModules(config)) {
            const module = modulePath(l, mod);
            const [out, inDim] = linearShape(config, mod);
            const exact = exactMerge(source.readF32(`${module}.weight`), out, inDim, adapters.get(module)!);
            const got = view.readTensorF32(`${module}.weight`);
            const worst = maxAbs(got.map((v, i) => v - exact[i]));
            assert.ok(
              worst <= WEIGHT_BUDGET[type] * maxAbs(exact),
              `${type} ${module}: ${worst} vs max ${maxAbs(exact)}`,
            );
          }
        }

        // Logits against the unmerged adapted model.
        using exported = loadExported(file, config);
        const logits = exported.forward(ids);
        const d = diffs(logits, adapted);
        const fromBase = diffs(logits, baseLogits);
        const top = maxAbs(adapted);
        const line = `${type}: vs unmerged max ${d.max.toFixed(4)} mean ${d.mean.toFixed(5)}; vs base mean ` +
          `${fromBase.mean.toFixed(4)} (max|logit| ${top.toFixed(2)}) ${
            (result.bytes / 1024).toFixed(0)
          } KiB`;
        console.log(`${c.name} ${line}`);
        table.push(line);
        assert.ok(d.max <= LOGIT_BUDGET[type] * top, `${type}: logits differ by ${d.max}`);
        // The fine-tune survives: the export is far nearer the adapted model than the base (a merge
        // snapped back to the base codes, as NF4 re-quantization does, would sit at the base).
        assert.ok(
          d.mean < fromBase.mean / 2,
          `${type}: ${d.mean} from the adapted model, ${fromBase.mean} from the base`,
        );

        if (REF_PYTHON) {
          const expected = Object.fromEntries(file.names().map((n) => [n, file.readTensorF32(n)]));
          writeSafetensors(
            join(tmp, "expected.safetensors"),
            Object.entries(expected).map(([name, data]) => ({
              name,
              dtype: "F32" as const,
              shape: [data.length],
              data,
            })),
          );
          const scalars = Object.fromEntries(
            Object.entries(m).filter(([, v]) => typeof v !== "object" && typeof v !== "bigint"),
          );
          writeFileSync(join(tmp, "expected.json"), JSON.stringify({ types, metadata: scalars }));
          const run = await new Deno.Command(REF_PYTHON, {
            args: [CHECK_SCRIPT, path, join(tmp, "expected.safetensors"), join(tmp, "expected.json")],
          }).output();
          const text = new TextDecoder();
          assert.equal(run.code, 0, `${type}: gguf-py disagrees:\n${text.decode(run.stderr)}`);
          table.push(`  gguf-py: ${text.decode(run.stdout).trim()}`);
        }
      }
      console.log(`${c.name}, exported vs unmerged logits:\n  ${table.join("\n  ")}`);
    });
  });
}

Deno.test("export refuses the families whose blocks it cannot map yet, by name, before writing", async () => {
  await withTmp(async (tmp) => {
    for (const [dir, name] of [["tiny_qwen3", "Qwen3ForCausalLM"], ["tiny_phi3", "Phi3ForCausalLM"]]) {
      const path = join(tmp, `${dir}.gguf`);
      await assert.rejects(
        exportGguf(path, { source: join(FIXTURES, "model", dir), type: "f16" }),
        new RegExp(`not ${name} yet`),
      );
      assert.ok(!existsSync(path) && !existsSync(`${path}.tmp`));
    }
  });
});

Deno.test("export refuses to replace a file without overwrite, and keeps it when an export fails", async () => {
  await withTmp(async (tmp) => {
    const path = join(tmp, "model.gguf");
    writeFileSync(path, "precious");
    await assert.rejects(
      exportGguf(path, { source: QWEN2_GGUF, type: "q8_0" }),
      /exists; refusing to overwrite/,
    );
    const config = await readSourceConfig(QWEN2_GGUF);
    const bad = new Map([["model.layers.9.mlp.up_proj", randomAdapters(config).values().next().value!]]);
    await assert.rejects(
      exportGguf(path, { source: QWEN2_GGUF, type: "q8_0", adapters: bad, overwrite: true }),
      /model\.layers\.9\.mlp\.up_proj, which is not a linear of this model/,
    );
    const wrongShape = new Map([["model.layers.0.mlp.up_proj", {
      A: new Float32Array(3),
      B: new Float32Array(3),
      r: 1,
      scale: 1,
    }]]);
    await assert.rejects(
      exportGguf(path, { source: QWEN2_GGUF, type: "q8_0", adapters: wrongShape, overwrite: true }),
    );
    assert.equal(readFileSync(path, "utf8"), "precious");
    assert.ok(!existsSync(`${path}.tmp`));
    await assert.rejects(
      exportGguf(QWEN2_GGUF, { source: QWEN2_GGUF, type: "f16", overwrite: true }),
      /is the source model/,
    );
    await assert.rejects(
      exportGguf(join(tmp, "new.gguf"), { source: join(tmp, "nope.gguf"), type: "f16" }),
      /nope\.gguf: no such file/,
    );
    // With overwrite the file is replaced by a complete export.
    await exportGguf(path, { source: QWEN2_GGUF, type: "f16", overwrite: true });
    using file = await GgufFile.open(path);
    assert.equal(file.architecture, "qwen2");
  });
});
