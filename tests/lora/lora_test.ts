/** LoraLinear: PEFT's initialisation, scaling, fuse(); LoraModel: which modules, PEFT names. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { ALL_LINEAR, createAdapterConfig } from "../../lib/io/peft/config.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { writePeftAdapter } from "../../lib/io/peft/write.ts";
import { Tensor } from "../../lib/autograd/tensor.ts";
import { DenseLinear } from "../../lib/nn/linear.ts";
import { Rng } from "../../lib/random.ts";
import { LoraLinear } from "../../lib/lora/linear.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { values } from "../autograd/_fd.ts";
import { tinyModel } from "../train/_tiny.ts";

Deno.test("init as PEFT: A ~ U(±1/√in) (kaiming_uniform, a = √5), B = 0; seeded", () => {
  const base = new DenseLinear(values(64 * 400, 1), 64, 400);
  const lora = LoraLinear.fromBase(base, { rank: 16, alpha: 32, rng: new Rng(9) });
  const bound = 1 / Math.sqrt(400);
  const a = lora.a.data;
  assert.deepEqual(lora.a.shape, [16, 400]);
  assert.deepEqual(lora.b.shape, [64, 16]);
  assert.ok(a.every((v) => Math.abs(v) <= bound));
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const variance = a.reduce((s, v) => s + v * v, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.02 * bound, `mean ${mean}`);
  assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.03, `variance ${variance}`); // U(±b): b²/3
  assert.ok(Math.max(...a) > 0.99 * bound && Math.min(...a) < -0.99 * bound);
  assert.ok(lora.b.data.every((v) => v === 0));
  assert.deepEqual(LoraLinear.fromBase(base, { rank: 16, alpha: 32, rng: new Rng(9) }).a.data, a);
  assert.equal(lora.scale, 2);
  assert.equal(LoraLinear.fromBase(base, { rank: 16, alpha: 32, rslora: true, rng: new Rng(9) }).scale, 8);
  assert.ok(lora.a.grad && lora.b.grad, "parameters carry gradient buffers");
});

Deno.test("fromBase rejects bad hyperparameters", () => {
  const base = new DenseLinear(values(8 * 8, 1), 8, 8);
  const rng = new Rng(1);
  assert.throws(() => LoraLinear.fromBase(base, { rank: 0, alpha: 8, rng }), /rank/);
  assert.throws(() => LoraLinear.fromBase(base, { rank: 2.5, alpha: 8, rng }), /rank/);
  assert.throws(() => LoraLinear.fromBase(base, { rank: 2, alpha: 0, rng }), /alpha/);
  assert.throws(() => LoraLinear.fromBase(base, { rank: 2, alpha: 4, dropout: 1, rng }), /dropout/);
});

Deno.test("fuse(): W + s·B·A computes what the adapter computes (dense and NF4 bases)", () => {
  const w = values(24 * 70, 2);
  using nf4 = Nf4Weight.quantize(w, 24, 70);
  for (const base of [new DenseLinear(w, 24, 70), nf4]) {
    const lora = LoraLinear.fromBase(base, { rank: 3, alpha: 6, rng: new Rng(4) });
    lora.b.data.set(values(lora.b.size, 5, 0.3));
    const x = new Tensor(values(5 * 70, 6), [5, 70]);
    const want = lora.forward(undefined, x).data;
    const fused = lora.fuse();
    assert.deepEqual([fused.rows, fused.cols], [24, 70]);
    const got = fused.matmul(x.data, 5);
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs(got[i] - want[i]) < 1e-5, `${got[i]} vs ${want[i]}`);
    }
    // The base is untouched.
    if (base instanceof DenseLinear) assert.deepEqual(base.weight, w);
  }
});

Deno.test("LoraModel: PEFT names, all seven linears by default, target and layer selection", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const all = new LoraModel(model, { rank: 4, alpha: 8 });
  const names = [...all.parameters().keys()];
  assert.equal(names.length, 2 * 7 * 2);
  assert.equal(names[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  assert.equal(names[1], "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  assert.ok(names.includes("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
  const [d, f, r] = [96, 160, 4];
  const perLayer = r * (d + 4 * 24) + r * (d + 2 * 24) * 2 + r * (4 * 24 + d) + 2 * r * (d + f) + r * (f + d);
  assert.equal(all.parameterCount, 2 * perLayer);
  assert.deepEqual(all.parameters().get(names[1])!.shape, [96, 4]);

  const some = new LoraModel(model, { rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj"], layers: [1] });
  assert.deepEqual([...some.adapters.keys()], [
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  assert.throws(
    () => new LoraModel(model, { rank: 2, alpha: 4, targetModules: ["lm_head" as "q_proj"] }),
    /lm_head/,
  );
  assert.throws(() => new LoraModel(model, { rank: 2, alpha: 4, layers: [2] }), /no layer 2/);
  // The same seed gives the same adapters.
  const again = new LoraModel(model, { rank: 4, alpha: 8 });
  assert.deepEqual(again.parameters().get(names[0])!.data, all.parameters().get(names[0])!.data);
});

Deno.test("LoraModel: backward needs a forward first; zeroGrad clears", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const lora = new LoraModel(model, { rank: 4, alpha: 8 });
  assert.throws(() => lora.backward(), /trainingForward first/);
  const p = [...lora.parameters().values()][0];
  p.grad!.fill(3);
  lora.zeroGrad();
  assert.ok(p.grad!.every((v) => v === 0));
});

Deno.test("Phi-3's fused linears: all-linear adapts qkv_proj, o_proj, gate_up_proj, down_proj and saves under PEFT's names", async () => {
  using model = await tinyModel("tiny_phi3", "nf4");
  const lora = new LoraModel(model, { rank: 2, alpha: 4, seed: 1 });
  const modules = [...lora.adapters.keys()].filter((m) => m.startsWith("model.layers.0."));
  assert.deepEqual(modules, [
    "model.layers.0.self_attn.qkv_proj",
    "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.gate_up_proj",
    "model.layers.0.mlp.down_proj",
  ]);
  assert.throws(
    () => new LoraModel(model, { rank: 2, alpha: 4, targetModules: ["q_proj"] }),
    /LoRA target module "q_proj" is not a linear of this Phi3ForCausalLM \(it has qkv_proj, o_proj, gate_up_proj, down_proj\)/,
  );
  const dir = Deno.makeTempDirSync();
  try {
    const config = createAdapterConfig({ r: 2, loraAlpha: 4, targetModules: ALL_LINEAR });
    writePeftAdapter(dir, config, lora.adapterWeights(), { model: model.config });
    const saved = JSON.parse(Deno.readTextFileSync(join(dir, "adapter_config.json")));
    assert.deepEqual(saved.target_modules, ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]);
    const back = readPeftAdapter(dir, model.config);
    assert.equal(back.layers.size, 2 * 4);
    assert.deepEqual([...back.layers.get("model.layers.1.self_attn.qkv_proj")!.A], [
      ...lora.adapterWeights().get("model.layers.1.self_attn.qkv_proj")!.A,
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
