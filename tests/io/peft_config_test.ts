import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  adapterConfigJson,
  ALL_LINEAR,
  createAdapterConfig,
  parseAdapterConfig,
  parseAdapterConfigText,
} from "../../lib/io/peft/config.ts";
import { assertFormatError } from "./helpers.ts";
import { peftFixture } from "./_peft.ts";

const FILE = "adapter_config.json";

/** The smallest config PEFT would accept, plus `extra`. */
function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { peft_type: "LORA", r: 8, lora_alpha: 16, target_modules: ["q_proj"], ...extra };
}

function fixtureConfig(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(peftFixture(name, "adapter_config.json"), "utf8"));
}

Deno.test("PEFT-written configs parse, unknown keys ignored", () => {
  const allLinear = parseAdapterConfig(fixtureConfig("all_linear"), FILE);
  assert.equal(allLinear.r, 4);
  assert.equal(allLinear.loraAlpha, 8);
  assert.equal(allLinear.loraDropout, 0);
  assert.equal(allLinear.taskType, "CAUSAL_LM");
  assert.equal(allLinear.useRslora, false);
  assert.equal(allLinear.baseModelNameOrPath, "tests/fixtures/model/tiny_llama");
  // PEFT 0.21 saves "all-linear" expanded to full module names.
  assert.equal((allLinear.targetModules as string[]).length, 14);

  const rs = parseAdapterConfig(fixtureConfig("qv_rslora"), FILE);
  assert.deepEqual(rs.targetModules, ["q_proj", "v_proj"]);
  assert.deepEqual(rs.rankPattern, { v_proj: 2 });
  assert.equal(rs.useRslora, true);

  const bf16 = parseAdapterConfig(fixtureConfig("bf16_layers"), FILE);
  assert.deepEqual(bf16.layersToTransform, [1]);
  assert.deepEqual(bf16.alphaPattern, { down_proj: 16 });
  assert.equal(bf16.layersPattern, null);
});

Deno.test("config: defaults, shorthand and normalised forms", () => {
  const config = parseAdapterConfig(
    minimal({ target_modules: "ALL-LINEAR", some_future_key: { x: 1 } }),
    FILE,
  );
  assert.equal(config.targetModules, ALL_LINEAR);
  assert.equal(config.taskType, null);
  assert.equal(config.loraDropout, 0);
  assert.deepEqual(config.rankPattern, {});
  assert.equal(config.excludeModules, null);
  // PEFT's default targets for the Llama family when none are named.
  assert.deepEqual(parseAdapterConfig(minimal({ target_modules: null }), FILE).targetModules, [
    "q_proj",
    "v_proj",
  ]);
  // A single layer index and a single layers_pattern string become lists.
  const layers = parseAdapterConfig(minimal({ layers_to_transform: 3, layers_pattern: "layers" }), FILE);
  assert.deepEqual(layers.layersToTransform, [3]);
  assert.deepEqual(layers.layersPattern, ["layers"]);
});

Deno.test("config: unsupported PEFT features are refused by name", () => {
  const cases: Array<[Record<string, unknown>, string[]]> = [
    [{ peft_type: "IA3" }, ['"IA3"', 'only "LORA"']],
    [{ peft_type: undefined }, ["missing", "peft_type"]],
    [{ use_dora: true }, ["DoRA", "not supported"]],
    [{ modules_to_save: ["lm_head"] }, ["modules_to_save", "lm_head", "not supported"]],
    [{ bias: "lora_only" }, ["bias", "lora_only"]],
    [{ fan_in_fan_out: true }, ["fan_in_fan_out"]],
    [{ lora_bias: true }, ["LoRA biases"]],
    [{ target_parameters: ["mlp.experts.down_proj"] }, ["target_parameters"]],
    [{ trainable_token_indices: [1, 2] }, ["trainable_token_indices"]],
    [{ task_type: "SEQ_CLS" }, ["task_type", "SEQ_CLS"]],
  ];
  for (const [extra, words] of cases) {
    assertFormatError(() => parseAdapterConfig(minimal(extra), FILE), { file: FILE, words });
  }
  // Their "off" values are fine.
  parseAdapterConfig(
    minimal({
      use_dora: false,
      modules_to_save: null,
      bias: "none",
      lora_bias: false,
      target_parameters: null,
      trainable_token_indices: null,
      layer_replication: null,
    }),
    FILE,
  );
  parseAdapterConfig(minimal({ modules_to_save: [] }), FILE);
});

Deno.test("config: malformed input names the key and the value", () => {
  assertFormatError(() => parseAdapterConfigText("{ not json", FILE), {
    file: FILE,
    words: ["not valid JSON"],
  });
  assertFormatError(() => parseAdapterConfig([1, 2], FILE), { file: FILE, words: ["JSON object"] });
  assertFormatError(() => parseAdapterConfig(minimal({ r: undefined }), FILE), {
    file: FILE,
    words: ['missing "r"'],
  });
  assertFormatError(() => parseAdapterConfig(minimal({ r: 2.5 }), FILE), {
    file: FILE,
    words: ['"r"', "positive integer", "2.5"],
  });
  assertFormatError(() => parseAdapterConfig(minimal({ rank_pattern: { v_proj: "two" } }), FILE), {
    file: FILE,
    words: ["rank_pattern.v_proj", '"two"'],
  });
  assertFormatError(() => parseAdapterConfig(minimal({ target_modules: 7 }), FILE), {
    file: FILE,
    words: ["target_modules", "7"],
  });
  assertFormatError(() => parseAdapterConfig(minimal({ target_modules: "(unclosed" }), FILE), {
    file: FILE,
    words: ["target_modules", "not a valid regex"],
  });
  assertFormatError(
    () => parseAdapterConfig(minimal({ target_modules: ".*q_proj", layers_to_transform: [0] }), FILE),
    { file: FILE, words: ["layers_to_transform", "string"] },
  );
  assertFormatError(() => parseAdapterConfig(minimal({ layers_pattern: "layers" }), FILE), {
    file: FILE,
    words: ["layers_pattern", "layers_to_transform"],
  });
});

Deno.test("adapterConfigJson writes PEFT's keys, sorted, and parses back to the same config", () => {
  const config = createAdapterConfig({
    r: 16,
    loraAlpha: 32,
    loraDropout: 0.05,
    targetModules: ["v_proj", "q_proj"],
    useRslora: true,
    rankPattern: { v_proj: 4 },
    baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct",
  });
  const text = adapterConfigJson(config);
  const json = JSON.parse(text);
  assert.deepEqual(Object.keys(json), Object.keys(json).toSorted());
  assert.ok(text.startsWith('{\n  "alpha_pattern"'), "two-space indent like PEFT");
  const expected: Record<string, unknown> = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    inference_mode: true,
    target_modules: ["q_proj", "v_proj"],
    r: 16,
    lora_alpha: 32,
    lora_dropout: 0.05,
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: true,
    use_dora: false,
    modules_to_save: null,
    init_lora_weights: true,
    layers_to_transform: null,
    rank_pattern: { v_proj: 4 },
    alpha_pattern: {},
    revision: null,
    base_model_name_or_path: "HuggingFaceTB/SmolLM2-135M-Instruct",
  };
  for (const [key, value] of Object.entries(expected)) assert.deepEqual(json[key], value, key);
  assert.deepEqual(parseAdapterConfig(json, FILE), { ...config, targetModules: ["q_proj", "v_proj"] });

  // The shorthand is written as the list it stands for; a regex stays a string.
  assert.deepEqual(
    JSON.parse(adapterConfigJson(createAdapterConfig({ targetModules: ALL_LINEAR }))).target_modules,
    [
      "down_proj",
      "gate_proj",
      "k_proj",
      "o_proj",
      "q_proj",
      "up_proj",
      "v_proj",
    ],
  );
  const regex = String.raw`.*\.(q|v)_proj`;
  assert.equal(
    JSON.parse(adapterConfigJson(createAdapterConfig({ targetModules: regex }))).target_modules,
    regex,
  );
});
