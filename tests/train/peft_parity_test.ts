/**
 * Golden test against PEFT (tests/fixtures/train/make_train_fixtures.py): the tiny Llama, unquantized, with
 * an r=4 / alpha=8 adapter on all seven linears set to the fixture's weights. The loss and every lora_A /
 * lora_B gradient must match within 1e-4 (relative to the largest value of each tensor), and 5 AdamW steps
 * on the same batch must give the same 5 losses within 1e-4.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { adamwStep } from "../../ffi/ops.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import type { Batch } from "../../lib/data/batch.ts";
import { tinyModel } from "./_tiny.ts";

const DIR = new URL("../fixtures/train/", import.meta.url);
const FIXTURE = fileURLToPath(new URL("peft_tiny_llama.safetensors", DIR));
const BUDGET = 1e-4;

function readFixture() {
  const manifest = JSON.parse(Deno.readTextFileSync(new URL("manifest.json", DIR)));
  using reader = SafetensorsReader.open(FIXTURE);
  const f32 = (name: string) => reader.readTensorF32(name).data as Float32Array;
  const raw = (name: string) => reader.readTensor(name);
  const inputs = raw("inputs");
  const [B, T] = inputs.shape;
  const ids = inputs.data as Int32Array;
  const targets = raw("targets").data as Int32Array;
  const batch: Batch = {
    rows: B,
    width: T,
    inputs: Uint32Array.from(ids),
    targets: Int32Array.from(targets),
    positions: Uint32Array.from({ length: B * T }, (_, i) => i % T),
    segmentStarts: Array.from({ length: B }, () => [0]),
    tokens: (manifest.sequences as number[][]).reduce((n, s) => n + s.length - 1, 0),
    lossTokens: targets.filter((t) => t !== -100).length,
    examples: B,
  };
  const names = reader.names().filter((n) => n.startsWith("init.")).map((n) => n.slice(5));
  const tensors = (prefix: string) => new Map(names.map((n) => [n, f32(prefix + n)]));
  return {
    batch,
    init: tensors("init."),
    grads: tensors("grad."),
    final: tensors("final."),
    loss: f32("loss")[0],
    losses: [...f32("adamw.losses")],
  };
}

async function setUp() {
  const fx = readFixture();
  const model = await tinyModel("tiny_llama", "none");
  const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 0 });
  const params = lora.parameters();
  assert.deepEqual([...params.keys()].sort(), [...fx.init.keys()].sort(), "parameter names are PEFT's");
  for (const [name, p] of params) p.data.set(fx.init.get(name)!);
  return { fx, model, lora, params };
}

function relativeMax(got: Float32Array, want: Float32Array): number {
  let [diff, scale] = [0, 0];
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}

Deno.test("PEFT parity (tiny_llama, unquantized): loss and every LoRA gradient within 1e-4", async () => {
  const { fx, model, lora, params } = await setUp();
  using _ = model;
  lora.zeroGrad();
  const loss = lora.trainingForward(fx.batch);
  lora.backward();
  const lossErr = Math.abs(loss - fx.loss) / fx.loss;
  let worst = { name: "", err: 0 };
  for (const [name, p] of params) {
    const err = relativeMax(p.grad!, fx.grads.get(name)!);
    if (err > worst.err) worst = { name, err };
  }
  console.log(
    `  loss ${loss} vs PEFT ${fx.loss} (rel ${lossErr.toExponential(2)}); ` +
      `worst gradient ${worst.name}: ${worst.err.toExponential(2)} of its max`,
  );
  assert.ok(lossErr <= BUDGET, `loss: ${loss} vs ${fx.loss}`);
  assert.ok(worst.err <= BUDGET, `${worst.name}: ${worst.err}`);
});

Deno.test("PEFT parity: 5 AdamW steps give torch's 5 losses within 1e-4", async () => {
  const { fx, model, lora, params } = await setUp();
  using _ = model;
  const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const state = new Map(
    [...params].map(([n, p]) => [n, { m: new Float32Array(p.size), v: new Float32Array(p.size) }]),
  );
  const losses: number[] = [];
  for (let step = 1; step <= fx.losses.length; step++) {
    lora.zeroGrad();
    losses.push(lora.trainingForward(fx.batch));
    lora.backward();
    for (const [name, p] of params) {
      adamwStep(p.data, p.grad!, state.get(name)!.m, state.get(name)!.v, step, hp);
    }
  }
  const errs = losses.map((l, i) => Math.abs(l - fx.losses[i]) / fx.losses[i]);
  let finalErr = 0;
  for (const [name, p] of params) finalErr = Math.max(finalErr, relativeMax(p.data, fx.final.get(name)!));
  console.log(
    `  losses ${losses.map((l) => l.toFixed(6)).join(", ")}; worst rel ${
      Math.max(...errs).toExponential(2)
    }; ` +
      `final weights worst ${finalErr.toExponential(2)} of max`,
  );
  for (const [i, e] of errs.entries()) {
    assert.ok(e <= BUDGET, `step ${i + 1}: ${losses[i]} vs ${fx.losses[i]}`);
  }
});
