import assert from "node:assert/strict";
import { type AdapterConfig, ALL_LINEAR, createAdapterConfig } from "../../lib/io/peft/config.ts";
import { isTargeted, linearModules, rankOf, resolveTargets } from "../../lib/io/peft/targets.ts";
import { assertFormatError } from "./helpers.ts";
import { tinyLlama } from "./_peft.ts";

const model = await tinyLlama();

function modules(config: Partial<AdapterConfig>): string[] {
  return resolveTargets(model, createAdapterConfig({ r: 4, loraAlpha: 8, ...config })).map((t) => t.module);
}

Deno.test("linear modules of the tiny Llama with [out, in] shapes", () => {
  const all = linearModules(model);
  assert.equal(all.length, 2 * 7 + 1);
  const shape = (name: string) => {
    const m = all.find((m) => m.module === name)!;
    return [m.out, m.in];
  };
  // hidden 96, 4 heads × 24, 2 kv heads × 24, intermediate 160, vocab 300.
  assert.deepEqual(shape("model.layers.0.self_attn.q_proj"), [96, 96]);
  assert.deepEqual(shape("model.layers.1.self_attn.k_proj"), [48, 96]);
  assert.deepEqual(shape("model.layers.1.self_attn.v_proj"), [48, 96]);
  assert.deepEqual(shape("model.layers.0.self_attn.o_proj"), [96, 96]);
  assert.deepEqual(shape("model.layers.0.mlp.gate_proj"), [160, 96]);
  assert.deepEqual(shape("model.layers.0.mlp.up_proj"), [160, 96]);
  assert.deepEqual(shape("model.layers.0.mlp.down_proj"), [96, 160]);
  assert.deepEqual(shape("lm_head"), [300, 96]);
});

Deno.test("target_modules resolve as in PEFT: names, suffixes, full-match regexes, all-linear", () => {
  const all = modules({ targetModules: ALL_LINEAR });
  assert.equal(all.length, 14);
  assert.ok(!all.includes("lm_head"), "all-linear leaves out the output head");
  assert.deepEqual(modules({ targetModules: ["q_proj"] }), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.1.self_attn.q_proj",
  ]);
  // A dotted suffix and a full name; "proj" alone is no suffix at a dot boundary.
  assert.deepEqual(modules({ targetModules: ["mlp.up_proj", "model.layers.0.self_attn.o_proj", "proj"] }), [
    "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.up_proj",
    "model.layers.1.mlp.up_proj",
  ]);
  assert.deepEqual(modules({ targetModules: ["lm_head"] }), ["lm_head"]);
  // A string is a regex over the whole name.
  assert.deepEqual(modules({ targetModules: String.raw`.*\.1\.self_attn\.(k|v)_proj` }), [
    "model.layers.1.self_attn.k_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  // Python's named groups are accepted.
  assert.equal(modules({ targetModules: String.raw`.*(?P<kind>down)_proj` }).length, 2);
});

Deno.test("layers_to_transform, layers_pattern and exclude_modules", () => {
  assert.deepEqual(modules({ targetModules: ["q_proj", "v_proj"], layersToTransform: [1] }), [
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  assert.deepEqual(
    modules({ targetModules: ["q_proj"], layersToTransform: [0], layersPattern: ["layers"] }),
    ["model.layers.0.self_attn.q_proj"],
  );
  // A layers_pattern the names do not contain selects nothing.
  assert.throws(
    () => modules({ targetModules: ["q_proj"], layersToTransform: [0], layersPattern: ["h"] }),
    /match no linear module/,
  );
  assert.deepEqual(
    modules({ targetModules: ALL_LINEAR, excludeModules: ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"] })
      .length,
    8,
  );
  assert.deepEqual(modules({ targetModules: ["q_proj"], excludeModules: String.raw`.*\.0\..*` }), [
    "model.layers.1.self_attn.q_proj",
  ]);
});

Deno.test("rank_pattern / alpha_pattern and scales (incl. rsLoRA)", () => {
  const config = createAdapterConfig({
    r: 8,
    loraAlpha: 16,
    targetModules: ALL_LINEAR,
    // First matching key wins; keys match at the end of the name, at a dot boundary.
    rankPattern: { "model.layers.1.self_attn.v_proj": 2, v_proj: 4, proj: 100 },
    alphaPattern: { [String.raw`mlp\.(up|down)_proj`]: 64 },
  });
  assert.deepEqual(rankOf(config, "model.layers.0.self_attn.v_proj"), { r: 4, alpha: 16, scale: 4 });
  assert.deepEqual(rankOf(config, "model.layers.1.self_attn.v_proj"), { r: 2, alpha: 16, scale: 8 });
  assert.deepEqual(rankOf(config, "model.layers.0.self_attn.q_proj"), { r: 8, alpha: 16, scale: 2 });
  assert.deepEqual(rankOf(config, "model.layers.0.mlp.down_proj"), { r: 8, alpha: 64, scale: 8 });
  assert.deepEqual(rankOf(config, "model.layers.0.mlp.gate_proj"), { r: 8, alpha: 16, scale: 2 });

  const rs = createAdapterConfig({ r: 4, loraAlpha: 8, useRslora: true, rankPattern: { v_proj: 2 } });
  const targets = resolveTargets(model, rs);
  assert.equal(targets.length, 4);
  for (const t of targets) {
    const r = t.module.endsWith("v_proj") ? 2 : 4;
    assert.equal(t.r, r);
    assert.equal(t.scale, 8 / Math.sqrt(r));
  }
});

Deno.test("isTargeted works from the name alone", () => {
  const config = createAdapterConfig({ targetModules: ALL_LINEAR });
  assert.equal(isTargeted(config, "model.layers.40.mlp.down_proj"), true);
  assert.equal(isTargeted(config, "lm_head"), false);
  assert.equal(isTargeted(config, "model.embed_tokens"), false);
});

Deno.test("a target list that matches nothing is a FormatError", () => {
  const error = assertFormatError(
    () =>
      resolveTargets(model, createAdapterConfig({ targetModules: ["c_attn"] }), "dir/adapter_config.json"),
    { file: "dir/adapter_config.json", words: ["c_attn", "match no linear module"] },
  );
  assert.match(error.message, /q,k,v,o/);
  // Regexes must match the whole name: "q_proj" as a string matches no full module name.
  assert.throws(() => modules({ targetModules: "q_proj" }), /match no linear module/);
});
