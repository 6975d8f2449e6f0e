import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gguf } from "@huggingface/gguf";
import { FormatError } from "../../lib/errors.ts";
import {
  configFromGguf,
  loadModelConfig,
  type ModelConfig,
  parseModelConfig,
  ropeInvFreq,
  ropeSettingsAt,
} from "../../lib/nn/config.ts";
import { smollm2Path } from "../text/_smollm2.ts";

const fixtures = fileURLToPath(new URL("../fixtures/configs/", import.meta.url));
type Expected = Record<string, number | boolean | number[] | string | null> & {
  invFreq: number[];
  invFreqLong?: number[];
  localInvFreq?: number[];
  attentionScaling: number;
};
const expected: Record<string, Expected> = JSON.parse(
  await readFile(join(fixtures, "expected.json"), "utf8"),
);
const rawConfig = async (name: string) =>
  JSON.parse(await readFile(join(fixtures, name, "config.json"), "utf8")) as Record<string, unknown>;

/** Distance in float32 steps (units in the last place) between two float32 values. */
function ulps(a: number, b: number): number {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  return Math.abs(bits[0] - bits[1]);
}

for (const name of Object.keys(expected)) {
  Deno.test(`${name}: config fields match transformers`, async () => {
    const config = await loadModelConfig(join(fixtures, name, "config.json"));
    const want = expected[name];
    for (const key of Object.keys(want)) {
      if (["invFreq", "invFreqLong", "localInvFreq", "ropeType", "attentionScaling"].includes(key)) continue;
      assert.deepEqual(config[key as keyof ModelConfig], want[key], key);
    }
    assert.equal(config.ropeScaling?.type ?? "default", want.ropeType);
  });

  Deno.test(`${name}: rope inverse frequencies equal transformers' float32 values`, async () => {
    const config = await loadModelConfig(join(fixtures, name, "config.json"));
    const invFreq = ropeInvFreq(config);
    const want = expected[name].invFreq;
    assert.equal(invFreq.length, want.length);
    const worst = Math.max(...want.map((value, i) => ulps(invFreq[i], value)));
    // Bit-identical today; were torch's powf ever to round differently, this says by how much.
    assert.equal(worst, 0, `largest difference ${worst} ulp`);
    const { attentionScaling } = ropeSettingsAt(config, 0);
    assert.ok(Math.abs(attentionScaling - expected[name].attentionScaling) < 1e-12, `${attentionScaling}`);
    const long = expected[name].invFreqLong;
    if (long !== undefined) {
      const got = ropeInvFreq(config, undefined, { long: true });
      assert.equal(Math.max(...long.map((value, i) => ulps(got[i], value))), 0, "long factors");
      assert.equal(ropeSettingsAt(config, config.maxPositionEmbeddings - 1).long, true);
    }
    const local = expected[name].localInvFreq;
    if (local !== undefined) {
      const got = ropeInvFreq({ ...config, ropeTheta: config.localRopeTheta!, ropeScaling: null });
      assert.equal(Math.max(...local.map((value, i) => ulps(got[i], value))), 0, "local layers");
    }
  });
}

Deno.test("rope scaling under the old key `type` and transformers 5's `rope_parameters` read the same", async () => {
  const raw = await rawConfig("llama-3.2-1b-instruct");
  const modern = parseModelConfig(raw);
  const { rope_type: _, ...scaling } = raw.rope_scaling as Record<string, unknown>;
  const old = parseModelConfig({ ...raw, rope_scaling: { ...scaling, type: "llama3" } });
  const v5 = parseModelConfig({
    ...raw,
    rope_theta: undefined,
    rope_scaling: undefined,
    rope_parameters: { ...scaling, rope_type: "llama3", rope_theta: 500000 },
  });
  assert.deepEqual(old, modern);
  assert.deepEqual(v5, modern);
  assert.deepEqual(modern.ropeScaling, {
    type: "llama3",
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
});

Deno.test("defaults: kv heads = heads, head_dim = hidden/heads, rope_theta 10000, untied, no biases", async () => {
  const raw = await rawConfig("llama-2-linear-rope");
  const config = parseModelConfig(raw);
  assert.equal(config.numKeyValueHeads, 32);
  assert.equal(config.headDim, 128);
  assert.equal(config.ropeTheta, 10000);
  assert.equal(config.tieWordEmbeddings, false);
  assert.deepEqual([config.qkvBias, config.oBias, config.mlpBias], [false, false, false]);
  assert.equal(config.torchDtype, "float16");
  const bare = parseModelConfig({ ...raw, rms_norm_eps: undefined, max_position_embeddings: undefined });
  assert.equal(bare.rmsNormEps, 1e-6);
  assert.equal(bare.maxPositionEmbeddings, 2048);
});

Deno.test("Mistral records its sliding window; Qwen2 with use_sliding_window false has none", async () => {
  assert.equal(parseModelConfig(await rawConfig("mistral-7b-v0.1")).slidingWindow, 4096);
  assert.equal(parseModelConfig(await rawConfig("qwen2.5-0.5b-instruct")).slidingWindow, null);
});

Deno.test("attention_bias on Llama means biases on q, k, v and o", async () => {
  const config = parseModelConfig({ ...await rawConfig("smollm2-135m-instruct"), attention_bias: true });
  assert.deepEqual([config.qkvBias, config.oBias], [true, true]);
});

Deno.test("transformers 5 `dtype` is read like `torch_dtype`", async () => {
  const raw = await rawConfig("smollm2-135m-instruct");
  assert.equal(parseModelConfig({ ...raw, torch_dtype: undefined, dtype: "float32" }).torchDtype, "float32");
});

Deno.test("bad input: each error names the file and the problem", async () => {
  const raw = await rawConfig("smollm2-135m-instruct");
  const file = "models/x/config.json";
  const fails = (json: unknown, message: string) =>
    assert.throws(
      () => parseModelConfig(json, file),
      (error: Error) => error instanceof FormatError && error.message === `${file}: ${message}`,
    );
  fails(
    { ...raw, hidden_size: undefined },
    'missing "hidden_size" (needed for LlamaForCausalLM)',
  );
  fails(
    { ...raw, architectures: ["GPT2LMHeadModel"] },
    'unsupported architecture "GPT2LMHeadModel" ' +
      "(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma3ForCausalLM)",
  );
  fails(
    { ...raw, architectures: undefined },
    'missing "architectures" (expected one of LlamaForCausalLM, ' +
      "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma3ForCausalLM)",
  );
  fails({ ...raw, num_attention_heads: 0 }, '"num_attention_heads" must be a positive integer, found 0');
  fails({ ...raw, vocab_size: "49152" }, '"vocab_size" must be a positive integer, found "49152"');
  fails({ ...raw, eos_token_id: "x" }, '"eos_token_id" must be a token id or a list of token ids, found "x"');
  fails({ ...raw, hidden_act: "gelu" }, 'hidden_act "gelu" is not supported (LlamaForCausalLM uses "silu")');
  fails(
    { ...raw, rope_scaling: { rope_type: "yarn", factor: 4 } },
    'unsupported rope_scaling type "yarn" ' +
      "(supported: default, linear, llama3, longrope for Phi-3)",
  );
  fails(
    { ...raw, rope_scaling: { rope_type: "llama3", factor: 8 } },
    'missing "rope_scaling.low_freq_factor" ' +
      '(needed for rope type "llama3")',
  );
  fails(
    { ...raw, num_key_value_heads: 4 },
    "num_attention_heads 9 is not a multiple of num_key_value_heads 4",
  );
  fails(
    { ...await rawConfig("qwen2.5-0.5b-instruct"), use_sliding_window: true },
    "use_sliding_window: true " +
      "is not supported (only full attention)",
  );
  fails([1, 2], "expected a JSON object");
});

Deno.test("bad input: missing file and invalid JSON", async () => {
  const dir = await mkdtemp(join(tmpdir(), "qlora-config-"));
  try {
    const path = join(dir, "config.json");
    await assert.rejects(
      () => loadModelConfig(path),
      new RegExp(`^FormatError: ${path}: cannot read the model config`),
    );
    await writeFile(path, '{"architectures": [');
    await assert.rejects(() => loadModelConfig(path), new RegExp(`^FormatError: ${path}: not valid JSON`));
  } finally {
    await rm(dir, { recursive: true });
  }
});

Deno.test("configFromGguf: SmolLM2's GGUF gives the same config as its config.json", async () => {
  const path = await smollm2Path();
  const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
  const fromGguf = configFromGguf(metadata, tensorInfos.map((t) => t.name), path);
  const fromJson = await loadModelConfig(join(fixtures, "smollm2-135m-instruct", "config.json"));
  // GGUF stores eps as float32 and no dtype; eos comes from the tokenizer metadata.
  assert.equal(fromGguf.rmsNormEps, Math.fround(fromJson.rmsNormEps));
  assert.deepEqual(
    { ...fromGguf, rmsNormEps: 0, torchDtype: null },
    { ...fromJson, rmsNormEps: 0, torchDtype: null },
  );
  assert.deepEqual(ropeInvFreq(fromGguf), ropeInvFreq(fromJson));
});

Deno.test("configFromGguf: qwen2, untied output, kv heads default, rope freq factors", () => {
  const metadata = {
    "general.architecture": "qwen2",
    "qwen2.embedding_length": 896,
    "qwen2.block_count": 24,
    "qwen2.feed_forward_length": 4864,
    "qwen2.attention.head_count": 14,
    "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
    "qwen2.rope.freq_base": 1000000,
    "qwen2.context_length": 32768n,
    "tokenizer.ggml.tokens": ["a", "b", "c"],
    "tokenizer.ggml.eos_token_id": 2,
  };
  const config = configFromGguf(metadata, ["token_embd.weight", "output.weight", "rope_freqs.weight"]);
  assert.equal(config.architecture, "Qwen2ForCausalLM");
  assert.equal(config.numKeyValueHeads, 14);
  assert.equal(config.headDim, 64);
  assert.equal(config.vocabSize, 3);
  assert.equal(config.maxPositionEmbeddings, 32768);
  assert.equal(config.tieWordEmbeddings, false);
  assert.deepEqual([config.qkvBias, config.oBias], [true, false]);
  assert.deepEqual(config.eosTokenIds, [2]);
  assert.deepEqual(config.ropeScaling, { type: "freq_factors" });
  const factors = new Float32Array(32).fill(2);
  const plain = ropeInvFreq({ ...config, ropeScaling: null });
  assert.deepEqual(ropeInvFreq(config, factors), plain.map((v) => Math.fround(v / 2)));
  assert.throws(() => ropeInvFreq(config), /needs its rope_freqs.weight tensor \(32 values\), got none/);
});

Deno.test("configFromGguf: bad input names the file and key", () => {
  const file = "m.gguf";
  assert.throws(() => configFromGguf({}, [], file), /^FormatError: m.gguf: missing "general.architecture"$/);
  assert.throws(
    () => configFromGguf({ "general.architecture": "gpt2" }, [], file),
    /m.gguf: unsupported general.architecture "gpt2" \(supported: llama, qwen2, qwen3\)/,
  );
  assert.throws(
    () => configFromGguf({ "general.architecture": "llama", "llama.embedding_length": 64 }, [], file),
    /m.gguf: missing "llama.attention.head_count" \(needed for llama\)/,
  );
});

Deno.test("configFromGguf: qwen3 has q/k norms (attn_q_norm), an explicit head size and no biases", () => {
  const metadata = {
    "general.architecture": "qwen3",
    "qwen3.embedding_length": 1024,
    "qwen3.block_count": 28,
    "qwen3.feed_forward_length": 3072,
    "qwen3.attention.head_count": 16,
    "qwen3.attention.head_count_kv": 8,
    "qwen3.attention.key_length": 128,
    "qwen3.attention.layer_norm_rms_epsilon": 1e-6,
    "qwen3.rope.freq_base": 1000000,
    "qwen3.context_length": 40960,
    "tokenizer.ggml.tokens": ["a", "b", "c"],
  };
  const config = configFromGguf(metadata, ["token_embd.weight", "blk.0.attn_q_norm.weight"]);
  assert.equal(config.architecture, "Qwen3ForCausalLM");
  assert.equal(config.qkNorm, true);
  assert.equal(config.headDim, 128);
  assert.equal(config.qkvBias, false);
  assert.equal(config.tieWordEmbeddings, true);
});

Deno.test("Qwen3 with attention_bias: true is refused by name (its o_proj bias is not modelled)", async () => {
  const raw = await rawConfig("qwen3-0.6b");
  assert.throws(
    () => parseModelConfig({ ...raw, attention_bias: true }, "q3.json"),
    (e: Error) =>
      e instanceof FormatError && /q3\.json.*attention_bias: true is not supported/.test(e.message),
  );
});
