/**
 * Merged-model export (lib/io/export_merged.ts): the directory loads back (our loader here; transformers in
 * tests/fixtures/export/check_merged.py) and computes the adapted model's logits.
 *
 * Error budget. The export stores `bf16(W + s·B·A)`. The reference below builds that same model
 * independently: the merge summed in f64 in this file, rounded to f32 then to bf16. It may differ from the
 * export only where the f32 GEMM's result and the f64 sum round to different bf16 neighbours (a value within
 * ~1e-7 relative of a bf16 midpoint): at most one bf16 step on ≤ 0.1 % of the weights, asserted directly,
 * and 1e-4 on the logits.
 * Against PEFT or our unmerged adapted model (f32 weights) the gap is the bf16 rounding of every merged
 * weight: 8 significant bits, a relative error ≤ 2⁻⁹ per weight, which compounds through the layers; we
 * allow 2⁻⁶·max|logit| (8× the per-weight bound; measured: 0.46 % of max|logit| on tiny_llama with PEFT's
 * adapter, 0.68 % on tiny_qwen2 with a random one) and, for PEFT on tiny_llama, 2e-2 absolute (measured
 * 0.0115, where the adapter moves the logits by 1.47). That the reference shows the same gap to PEFT,
 * within 1e-4, says all of the gap is that rounding. (That gap grows with depth — 0.84 on SmolLM2's 30
 * layers, max|logit| 36 — which is why check_merged.py compares deep models with PEFT's own merge rounded to
 * bf16 instead: there the weights agree bit for bit.)
 */
import assert from "node:assert/strict";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { ShardedSafetensors } from "../../lib/io/safetensors/sharded.ts";
import { f32ToBf16, halfToF32 } from "../../lib/io/dtype.ts";
import { exportMergedModel, type ExportSource } from "../../lib/pretrained/export_merged.ts";
import { ggufTokenizerFiles } from "../../lib/pretrained/export/tokenizer_files.ts";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import type { LoraWeights } from "../../lib/lora/weights.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import {
  blockModules,
  configFromGguf,
  type LinearModule,
  loadModelConfig,
  type ModelConfig,
  modulePath,
  parseModelConfig,
  queryScale,
} from "../../lib/nn/config.ts";
import { blockLinear, type DecoderLayerWeights, LlamaModel } from "../../lib/nn/llama.ts";
import { DenseLinear, type Linear } from "../../lib/nn/linear.ts";
import { buildModel, type Quantization } from "../../lib/pretrained/load_model.ts";
import { GgufSource, SafetensorsSource, type WeightSource } from "../../lib/pretrained/weight_source.ts";
import { tokenizerFromGguf } from "../../lib/text/gguf_tokenizer.ts";
import { Tokenizer } from "../../lib/text/tokenizer.ts";
import { Rng } from "../../lib/random.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { smollm2Path } from "../text/_smollm2.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
const MODEL = (name: string) => join(FIXTURES, "model", name);
const GGUF = (name: string) => join(FIXTURES, "gguf", `${name}.gguf`);
const PEFT_ALL_LINEAR = join(FIXTURES, "peft", "all_linear");

async function withTmp(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-export-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadSource(source: ExportSource, quantize: Quantization): Promise<LlamaModel> {
  let weights: WeightSource, config: ModelConfig;
  if (source.kind === "hf-dir") {
    config = await loadModelConfig(join(source.dir, "config.json"));
    weights = SafetensorsSource.open(source.dir);
  } else {
    const gguf = await GgufSource.open(source.path);
    config = configFromGguf(gguf.file.metadata, gguf.file.names(), source.path);
    weights = gguf;
  }
  using _ = weights;
  return buildModel(weights, config, { quantize });
}

/** An exported directory loaded back with our loader, unquantized (bf16 widened to f32). */
function loadMerged(dir: string): Promise<LlamaModel> {
  return loadSource({ kind: "hf-dir", dir }, "none");
}

function weightOf(linear: Linear): Float32Array {
  if (linear instanceof DenseLinear) return linear.weight;
  if (linear instanceof Nf4Weight) return linear.dequantize();
  throw new TypeError("unexpected linear");
}

const toBf16 = (values: Float32Array) => halfToF32("BF16", f32ToBf16(values));

/** `bf16(W + s·B·A)` with the product summed in f64 here (independent of the exporter's GEMM). */
function referenceWeight(base: Linear, lora?: LoraWeights): Float32Array {
  const w = Float32Array.from(weightOf(base));
  if (lora) {
    const { rows: out, cols: inDim } = base;
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inDim; i++) {
        let sum = 0;
        for (let k = 0; k < lora.r; k++) sum += lora.B[o * lora.r + k] * lora.A[k * inDim + i];
        w[o * inDim + i] = w[o * inDim + i] + lora.scale * sum;
      }
    }
  }
  return toBf16(w);
}

/** The merged model as the export should store it, built in memory. */
function referenceModel(base: LlamaModel, adapters: ReadonlyMap<string, LoraWeights>): LlamaModel {
  const round = (v?: Float32Array) => (v === undefined ? undefined : toBf16(v));
  // A norm as the checkpoint stores it (Gemma: w of `1 + w`, q's folded scale undone) in bf16, read back.
  const f = Math.fround;
  const [offset, qScale] = [base.config.normWeightOffset, queryScale(base.config)];
  const norm = (v: Float32Array | undefined, scale = 1) =>
    v && toBf16(v.map((x) => f(f(x / scale) - offset))).map((x) => f(f(offset + x) * scale));
  const modules = blockModules(base.config);
  const layers = base.weights.layers.map((layer, l): DecoderLayerWeights => {
    const at = (m: LinearModule) => {
      if (!modules.includes(m)) return undefined;
      const linear = blockLinear(layer, m);
      return new DenseLinear(
        referenceWeight(linear, adapters.get(modulePath(l, m))),
        linear.rows,
        linear.cols,
      );
    };
    const a = layer.attention;
    return {
      inputNorm: norm(layer.inputNorm)!,
      postAttentionNorm: norm(layer.postAttentionNorm)!,
      attentionOutNorm: norm(layer.attentionOutNorm),
      mlpOutNorm: norm(layer.mlpOutNorm),
      attention: {
        q: at("q_proj"),
        k: at("k_proj"),
        v: at("v_proj"),
        qkv: at("qkv_proj"),
        o: at("o_proj")!,
        qBias: round(a.qBias),
        kBias: round(a.kBias),
        vBias: round(a.vBias),
        qNorm: norm(a.qNorm, qScale),
        kNorm: norm(a.kNorm),
      },
      mlp: { gate: at("gate_proj"), up: at("up_proj"), gateUp: at("gate_up_proj"), down: at("down_proj")! },
    };
  });
  return new LlamaModel(base.config, { ...base.weights, layers, norm: norm(base.weights.norm)! });
}

/** A LoRA with seeded A ~ U(±1/√in) and small B on every linear of every layer. */
function randomAdapters(model: LlamaModel, r = 4, scale = 2, seed = 7): Map<string, LoraWeights> {
  const rng = new Rng(seed);
  const uniform = (n: number, bound: number) =>
    Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
  const adapters = new Map<string, LoraWeights>();
  for (const [l, layer] of model.weights.layers.entries()) {
    for (const m of blockModules(model.config)) {
      const linear = blockLinear(layer, m);
      adapters.set(modulePath(l, m), {
        A: uniform(r * linear.cols, 1 / Math.sqrt(linear.cols)),
        B: uniform(linear.rows * r, 0.05),
        r,
        scale,
      });
    }
  }
  return adapters;
}

/** 2⁻⁶·max|logit|: the bf16 rounding budget explained at the top. */
function bf16Budget(logits: Float32Array): number {
  let max = 0;
  for (const v of logits) max = Math.max(max, Math.abs(v));
  return max / 64;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Every block linear of `merged` equals the reference's, up to one bf16 step on a few weights. */
function assertWeightsMatch(merged: LlamaModel, reference: LlamaModel): void {
  let flips = 0, total = 0;
  for (const [l, layer] of merged.weights.layers.entries()) {
    const ref = reference.weights.layers[l];
    const pairs = blockModules(merged.config).map((m) => [blockLinear(layer, m), blockLinear(ref, m)]);
    for (const [got, want] of pairs) {
      const g = f32ToBf16(weightOf(got)), w = f32ToBf16(weightOf(want));
      for (let i = 0; i < g.length; i++) {
        const steps = Math.abs(g[i] - w[i]);
        assert.ok(steps <= 1, `layer ${l}: weight ${i} is ${steps} bf16 steps from the reference`);
        flips += steps;
      }
      total += g.length;
    }
    assert.deepEqual(layer.inputNorm, ref.inputNorm);
    assert.deepEqual(layer.postAttentionNorm, ref.postAttentionNorm);
    assert.deepEqual(layer.attention.qBias, ref.attention.qBias);
    assert.deepEqual(layer.attention.kNorm, ref.attention.kNorm);
    assert.deepEqual(layer.attention.qNorm, ref.attention.qNorm);
    assert.deepEqual(layer.mlpOutNorm, ref.mlpOutNorm);
  }
  assert.ok(flips <= total * 1e-3, `${flips} of ${total} weights one bf16 step off`);
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, "utf8"));
}

const HF_LLAMA: ExportSource = { kind: "hf-dir", dir: MODEL("tiny_llama") };
const HF_QWEN2: ExportSource = { kind: "hf-dir", dir: MODEL("tiny_qwen2") };

Deno.test("tiny_llama + PEFT all_linear: the merged export gives PEFT's logits within bf16 rounding", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_LLAMA, "none");
    const adapters = readPeftAdapter(PEFT_ALL_LINEAR, base.config).layers;
    const out = join(tmp, "merged");
    const result = await exportMergedModel(out, { model: base, adapters, source: HF_LLAMA });
    assert.deepEqual(result.files, ["config.json", "model.safetensors"]);
    assert.equal(result.tensors, 3 + 2 * 9); // embeddings, norm, head; 2 norms + 7 linears per layer

    using merged = await loadMerged(out);
    using reference = referenceModel(base, adapters);
    assertWeightsMatch(merged, reference);
    using want = SafetensorsReader.open(join(PEFT_ALL_LINEAR, "expected_logits.safetensors"));
    const ids = Uint32Array.from(want.readTensor("input_ids").data as Int32Array);
    const peft = want.readTensorF32("logits").data;
    const moved = maxAbsDiff(peft, want.readTensorF32("logits.base").data);
    const logits = merged.forward(ids);
    const vsReference = maxAbsDiff(logits, reference.forward(ids));
    const vsPeft = maxAbsDiff(logits, peft);
    const referenceVsPeft = maxAbsDiff(reference.forward(ids), peft);
    assert.ok(moved > 1, `the adapter moves the logits (${moved})`);
    assert.ok(vsReference <= 1e-4, `merged vs reference: ${vsReference}`);
    assert.ok(vsPeft <= 2e-2 && vsPeft <= bf16Budget(peft), `merged vs PEFT: ${vsPeft}`);
    assert.ok(Math.abs(vsPeft - referenceVsPeft) <= 1e-4, `reference vs PEFT: ${referenceVsPeft}`);
  });
});

Deno.test("an NF4 base merges as bf16(dequant(W) + s·B·A); the result tracks the unmerged adapted model", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_LLAMA, "nf4");
    const adapters = readPeftAdapter(PEFT_ALL_LINEAR, base.config).layers;
    const out = join(tmp, "merged");
    await exportMergedModel(out, { model: base, adapters, source: HF_LLAMA });
    using merged = await loadMerged(out);
    using reference = referenceModel(base, adapters);
    assertWeightsMatch(merged, reference);
    const ids = Uint32Array.from([1, 17, 299, 0, 42, 128, 7]);
    const logits = merged.forward(ids);
    assert.ok(maxAbsDiff(logits, reference.forward(ids)) <= 1e-4);
    // NF4 values (code × absmax in f32) are not bf16 numbers either: the same rounding budget applies.
    const adapted = LoraModel.fromWeights(base, adapters).forward(ids);
    const unmerged = maxAbsDiff(logits, adapted);
    assert.ok(unmerged <= bf16Budget(adapted), `merged vs unmerged NF4: ${unmerged}`);
  });
});

Deno.test("untied tiny_llama: lm_head written from its bf16 bits; embeddings too; all tensors bf16", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_LLAMA, "none");
    const out = join(tmp, "merged");
    await exportMergedModel(out, { model: base, source: HF_LLAMA });
    using file = SafetensorsReader.open(join(out, "model.safetensors"));
    assert.ok(file.names().every((name) => file.info(name).dtype === "BF16"));
    assert.deepEqual(file.readTensor("lm_head.weight").data, base.weights.lmHead.bits);
    assert.deepEqual(file.readTensor("model.embed_tokens.weight").data, base.weights.embedTokens.bits);
    assert.equal(readJson(join(out, "config.json")).tie_word_embeddings, false);
    // Without adapters the export is the base model in bf16 (tiny_llama's weights are bf16 values).
    using back = await loadMerged(out);
    const ids = Uint32Array.from([1, 2, 3, 250]);
    assert.deepEqual(back.forward(ids), base.forward(ids));
  });
});

Deno.test("tied tiny_qwen2: no lm_head.weight, q/k/v biases in bf16, logits of the adapted model", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_QWEN2, "none");
    assert.equal(base.weights.lmHead, base.weights.embedTokens);
    const adapters = randomAdapters(base);
    const out = join(tmp, "merged");
    await exportMergedModel(out, { model: base, adapters, source: HF_QWEN2 });
    using file = SafetensorsReader.open(join(out, "model.safetensors"));
    assert.ok(!file.names().includes("lm_head.weight"));
    assert.equal(file.info("model.layers.1.self_attn.k_proj.bias").dtype, "BF16");
    const config = readJson(join(out, "config.json"));
    assert.equal(config.tie_word_embeddings, true);
    assert.equal(config.model_type, "qwen2");

    using merged = await loadMerged(out);
    assert.equal(merged.weights.lmHead, merged.weights.embedTokens);
    using reference = referenceModel(base, adapters);
    assertWeightsMatch(merged, reference);
    const ids = Uint32Array.from([1, 17, 299, 0, 42, 128, 7]);
    const logits = merged.forward(ids);
    assert.ok(maxAbsDiff(logits, reference.forward(ids)) <= 1e-4);
    const adapted = LoraModel.fromWeights(base, adapters).forward(ids);
    assert.ok(maxAbsDiff(adapted, base.forward(ids)) > 0.1, "the adapter changes the logits");
    assert.ok(maxAbsDiff(logits, adapted) <= bf16Budget(adapted));
  });
});

const FAMILIES = [
  ["tiny_qwen3", "qwen3", "model.layers.1.self_attn.k_norm.weight"],
  ["tiny_phi3", "phi3", "model.layers.1.mlp.gate_up_proj.weight"],
  ["tiny_gemma3", "gemma3_text", "model.layers.1.post_feedforward_layernorm.weight"],
] as const;
for (const [name, modelType, tensor] of FAMILIES) {
  Deno.test(`${name}: ${tensor.split(".").slice(-2).join(".")} exported; the merged model loads back with the adapted logits`, async () => {
    await withTmp(async (tmp) => {
      const source: ExportSource = { kind: "hf-dir", dir: MODEL(name) };
      using base = await loadSource(source, "none");
      const adapters = randomAdapters(base);
      const out = join(tmp, "merged");
      await exportMergedModel(out, { model: base, adapters, source });
      using file = SafetensorsReader.open(join(out, "model.safetensors"));
      assert.equal(file.info(tensor).dtype, "BF16");
      assert.equal(readJson(join(out, "config.json")).model_type, modelType);

      using merged = await loadMerged(out);
      using reference = referenceModel(base, adapters);
      assertWeightsMatch(merged, reference);
      const ids = Uint32Array.from([1, 17, 299, 0, 42, 128, 7]);
      const logits = merged.forward(ids);
      assert.ok(maxAbsDiff(logits, reference.forward(ids)) <= 1e-4);
      const adapted = LoraModel.fromWeights(base, adapters).forward(ids);
      assert.ok(maxAbsDiff(adapted, base.forward(ids)) > 0.1, "the adapter changes the logits");
      assert.ok(maxAbsDiff(logits, adapted) <= bf16Budget(adapted));
    });
  });
}

Deno.test("config.json from an HF dir: its keys pass through, quantization_config goes, dtype is bf16", async () => {
  await withTmp(async (tmp) => {
    const src = join(tmp, "src");
    mkdirSync(src);
    copyFileSync(join(MODEL("tiny_llama"), "model.safetensors"), join(src, "model.safetensors"));
    const original = readJson(join(MODEL("tiny_llama"), "config.json"));
    const quantized = { ...original, quantization_config: { quant_method: "bitsandbytes" }, custom_key: [1] };
    writeFileSync(join(src, "config.json"), JSON.stringify(quantized));
    const side = {
      "tokenizer.json": "{}",
      "tokenizer_config.json": '{"bos_token": "<s>"}',
      "chat_template.jinja": "{{ messages }}",
      "generation_config.json": '{"eos_token_id": 2}',
      "special_tokens_map.json": "{}",
    };
    for (const [name, text] of Object.entries(side)) writeFileSync(join(src, name), text);
    const source: ExportSource = { kind: "hf-dir", dir: src };
    using base = await loadSource(source, "none");
    const out = join(tmp, "merged");
    const result = await exportMergedModel(out, { model: base, source });
    for (const [name, text] of Object.entries(side)) {
      assert.equal(readFileSync(join(out, name), "utf8"), text, `${name} copied as it is`);
    }
    assert.deepEqual(
      result.files.toSorted(),
      ["config.json", "model.safetensors", ...Object.keys(side)].toSorted(),
    );
    const config = readJson(join(out, "config.json"));
    const { quantization_config: _, ...expected } = quantized;
    assert.deepEqual(config, { ...expected, dtype: "bfloat16", torch_dtype: "bfloat16" });
    assert.deepEqual(Object.keys(config), Object.keys(config).toSorted());
    assert.deepEqual(
      { ...parseModelConfig(config), torchDtype: null },
      { ...parseModelConfig(original), torchDtype: null },
    );
  });
});

for (const name of ["tiny_llama", "tiny_qwen2"]) {
  Deno.test(`config.json built from GGUF metadata (${name}.gguf) describes the same model`, async () => {
    await withTmp(async (tmp) => {
      const source: ExportSource = { kind: "gguf", path: GGUF(name) };
      using base = await loadSource(source, "none");
      const out = join(tmp, "merged");
      const result = await exportMergedModel(out, { model: base, adapters: randomAdapters(base), source });
      // These fixtures carry no tokenizer metadata: no tokenizer files, but a generation config.
      assert.deepEqual(result.files, ["config.json", "model.safetensors", "generation_config.json"]);
      const config = readJson(join(out, "config.json"));
      const qwen = name === "tiny_qwen2";
      assert.deepEqual(config, {
        architectures: [qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
        ...(qwen
          ? { use_sliding_window: false, sliding_window: null }
          : { attention_bias: false, mlp_bias: false }),
        bos_token_id: null,
        dtype: "bfloat16",
        eos_token_id: null,
        head_dim: 8,
        hidden_act: "silu",
        hidden_size: 16,
        intermediate_size: 24,
        max_position_embeddings: 64,
        model_type: qwen ? "qwen2" : "llama",
        num_attention_heads: 2,
        num_hidden_layers: 2,
        num_key_value_heads: 1,
        pad_token_id: null,
        rms_norm_eps: 1e-5,
        rope_scaling: null,
        rope_theta: 10000,
        tie_word_embeddings: qwen,
        torch_dtype: "bfloat16",
        use_cache: true,
        vocab_size: 16,
      });
      const reparsed = parseModelConfig(config);
      assert.deepEqual(
        { ...reparsed, rmsNormEps: Math.fround(reparsed.rmsNormEps), torchDtype: null },
        { ...base.config, rmsNormEps: Math.fround(base.config.rmsNormEps) },
      );
      using merged = await loadMerged(out);
      using reference = referenceModel(base, randomAdapters(base));
      const ids = Uint32Array.from([0, 5, 9, 15, 3]);
      assert.ok(maxAbsDiff(merged.forward(ids), reference.forward(ids)) <= 1e-4);
    });
  });
}

Deno.test("GGUF tokenizer (SmolLM2): the written tokenizer.json + tokenizer_config.json tokenize the same", async () => {
  await withTmp(async (tmp) => {
    const path = await smollm2Path();
    using file = await GgufFile.open(path);
    const files = ggufTokenizerFiles(file.metadata, { file: path, modelMaxLength: 8192 });
    assert.deepEqual(Object.keys(files), ["tokenizer.json", "tokenizer_config.json"]);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(tmp, name), text);
    const original = tokenizerFromGguf(file.metadata, path);
    const copy = await Tokenizer.fromDir(tmp);
    for (
      const text of [
        "Hello world!",
        "  two  spaces\nand a line",
        "<|im_start|>user\nHi<|im_end|>",
        "émoji 🎉 123",
      ]
    ) {
      for (const addSpecialTokens of [true, false]) {
        assert.deepEqual(
          copy.encode(text, { addSpecialTokens }),
          original.encode(text, { addSpecialTokens }),
        );
      }
    }
    assert.equal(copy.chatTemplate, original.chatTemplate);
    assert.deepEqual(
      [copy.bosTokenId, copy.eosTokenId, copy.padTokenId, copy.vocabSize],
      [original.bosTokenId, original.eosTokenId, original.padTokenId, original.vocabSize],
    );
    const config = readJson(join(tmp, "tokenizer_config.json"));
    assert.equal(config.tokenizer_class, "PreTrainedTokenizerFast");
    assert.equal(config.model_max_length, 8192);
  });
});

Deno.test("past maxShardBytes the export is sharded with an index, and loads back the same", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_LLAMA, "none");
    const adapters = readPeftAdapter(PEFT_ALL_LINEAR, base.config).layers;
    const single = join(tmp, "single"), sharded = join(tmp, "sharded");
    await exportMergedModel(single, { model: base, adapters, source: HF_LLAMA });
    const result = await exportMergedModel(sharded, {
      model: base,
      adapters,
      source: HF_LLAMA,
      maxShardBytes: 200_000,
    });
    const shards = result.files.filter((f) => f.startsWith("model-"));
    assert.ok(shards.length >= 3, `${shards.length} shards`);
    assert.deepEqual(shards, shards.map((_, i) => `model-0000${i + 1}-of-0000${shards.length}.safetensors`));
    const index = readJson(join(sharded, "model.safetensors.index.json")) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.equal(index.metadata.total_size, result.tensorBytes);
    for (const shard of shards) {
      using file = SafetensorsReader.open(join(sharded, shard));
      const bytes = file.names().reduce((n, name) => n + file.info(name).byteLength, 0);
      const alone = file.names().length === 1;
      assert.ok(bytes <= 200_000 || alone, `${shard}: ${bytes} bytes`);
    }
    using a = ShardedSafetensors.open(single);
    using b = ShardedSafetensors.open(sharded);
    assert.deepEqual(Object.keys(index.weight_map).toSorted(), a.names().toSorted());
    for (const name of a.names()) assert.deepEqual(b.readTensor(name).data, a.readTensor(name).data, name);
  });
});

Deno.test("a non-empty output directory is refused unless overwrite is asked; failures leave nothing", async () => {
  await withTmp(async (tmp) => {
    using base = await loadSource(HF_LLAMA, "none");
    const out = join(tmp, "merged");
    mkdirSync(out);
    writeFileSync(join(out, "keep.txt"), "mine");
    await assert.rejects(
      exportMergedModel(out, { model: base, source: HF_LLAMA }),
      /merged is not empty; refusing to overwrite it/,
    );
    assert.deepEqual(readdirSync(out), ["keep.txt"]);
    assert.ok(!existsSync(`${out}.tmp`));

    await exportMergedModel(out, { model: base, source: HF_LLAMA, overwrite: true });
    assert.deepEqual(readdirSync(out).toSorted(), ["config.json", "model.safetensors"]);
    assert.deepEqual(readdirSync(tmp), ["merged"], "no .tmp or .old left beside it");

    const empty = join(tmp, "empty");
    mkdirSync(empty);
    await exportMergedModel(empty, { model: base, source: HF_LLAMA });
    assert.ok(existsSync(join(empty, "model.safetensors")));

    const bad = new Map([["model.layers.9.mlp.up_proj", {
      A: new Float32Array(96),
      B: new Float32Array(160),
      r: 1,
      scale: 1,
    }]]);
    const failed = join(tmp, "failed");
    await assert.rejects(
      exportMergedModel(failed, { model: base, adapters: bad, source: HF_LLAMA }),
      /no such linear in the model: model\.layers\.9\.mlp\.up_proj/,
    );
    assert.ok(!existsSync(failed) && !existsSync(`${failed}.tmp`));
    const misshapen = new Map([["model.layers.0.mlp.up_proj", {
      A: new Float32Array(95),
      B: new Float32Array(160),
      r: 1,
      scale: 1,
    }]]);
    await assert.rejects(
      exportMergedModel(failed, { model: base, adapters: misshapen, source: HF_LLAMA }),
      /model\.layers\.0\.mlp\.up_proj: LoRA A has 95 and B 160 values, expected \[1, 96\] and \[160, 1\]/,
    );
    assert.ok(!existsSync(failed) && !existsSync(`${failed}.tmp`));
    await assert.rejects(
      exportMergedModel(MODEL("tiny_llama"), { model: base, source: HF_LLAMA, overwrite: true }),
      /is the source model's directory/,
    );
  });
});
