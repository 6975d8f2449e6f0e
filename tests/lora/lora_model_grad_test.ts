/**
 * The whole tiny model's LoRA gradients against central finite differences of its loss (unquantized and NF4
 * bases: the base is frozen and deterministic either way), and gradient checkpointing against the plain
 * graph (bit for bit). B starts small and random so that A's gradients are not zero.
 */
import assert from "node:assert/strict";
import { logSoftmaxGather } from "../../ffi/ops.ts";
import type { Batch } from "../../lib/data/batch.ts";
import type { Quantization } from "../../lib/pretrained/load_model.ts";
import type { LinearModule } from "../../lib/nn/config.ts";
import { Rng } from "../../lib/random.ts";
import { type LoraConfig, LoraModel } from "../../lib/lora/model.ts";
import { values } from "../autograd/_fd.ts";
import { batchOf, tinyModel, type TinyModelName } from "../train/_tiny.ts";

const SEQS = [[1, 17, 299, 0, 42, 128, 7, 9, 33, 250], [1, 5, 6, 77, 200, 13]];
const BATCH = batchOf(SEQS, [2, 0]);

function randomizeB(lora: LoraModel, scale = 0.05): void {
  let seed = 100;
  for (const p of lora.parameters().values()) {
    if (p.name!.endsWith("lora_B.weight")) p.data.set(values(p.size, seed++, scale));
  }
}

// Not tiny_phi3: its LongRoPE switches to the long factors for a whole forward once a position passes its
// original context of 8 (as transformers does per call), so the 10-token row changes the 6-token row's loss.
for (const name of ["tiny_llama", "tiny_qwen2", "tiny_qwen3", "tiny_gemma3"] as const) {
  Deno.test(`${name}: fresh adapters (B = 0) leave the loss of the base model unchanged`, async () => {
    using model = await tinyModel(name, "nf4");
    const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 1 });
    const got = lora.loss(BATCH);
    let sum = 0;
    for (const [r, ids] of SEQS.entries()) {
      const inputs = Uint32Array.from(ids.slice(0, -1));
      const targets = BATCH.targets.slice(r * BATCH.width, r * BATCH.width + inputs.length);
      const logp = logSoftmaxGather(model.forward(inputs), targets, inputs.length, model.config.vocabSize);
      for (const v of logp) sum -= v;
    }
    assert.equal(got.count, BATCH.lossTokens);
    const want = sum / BATCH.lossTokens;
    assert.ok(
      Math.abs(got.lossSum / got.count - want) <= 1e-5 * want,
      `${got.lossSum / got.count} vs ${want}`,
    );
  });
}

const CASES: [string, TinyModelName, Quantization, Partial<LoraConfig>][] = [
  ["tiny_llama", "tiny_llama", "none", {}],
  ["tiny_llama", "tiny_llama", "nf4", {}],
  ["tiny_qwen2", "tiny_qwen2", "nf4", {}],
  ["tiny_qwen2, q/v of block 1 only, rsLoRA", "tiny_qwen2", "none", {
    targetModules: ["q_proj", "v_proj"],
    layers: [1],
    rslora: true,
  }],
  // Per-head q/k RMSNorm: q_proj's and k_proj's gradients pass through it.
  ["tiny_qwen3", "tiny_qwen3", "nf4", {}],
  // Fused qkv_proj / gate_up_proj (PEFT's names): gradients through the column split.
  ["tiny_phi3", "tiny_phi3", "nf4", {}],
  // GeGLU, the norms on the attention and MLP outputs, a windowed local layer.
  ["tiny_gemma3", "tiny_gemma3", "nf4", {}],
];

for (const [label, name, quantize, extra] of CASES) {
  Deno.test(`${label} (${quantize === "none" ? "unquantized" : "NF4"}): LoRA gradients by finite differences`, async () => {
    using model = await tinyModel(name, quantize);
    const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 1, ...extra });
    randomizeB(lora);
    lora.zeroGrad();
    lora.trainingForward(BATCH);
    lora.backward();
    const f = () => {
      const l = lora.loss(BATCH);
      return l.lossSum / l.count; // f64
    };
    const eps = 1e-2;
    const pick = new Rng(7);
    const checked: { name: string; analytic: number; numeric: number }[] = [];
    for (const p of lora.parameters().values()) {
      for (let j = 0; j < 3; j++) {
        const i = pick.nextU32() % p.size;
        const v = p.data[i];
        const [up, down] = [Math.fround(v + eps), Math.fround(v - eps)];
        p.data[i] = up;
        const fu = f();
        p.data[i] = down;
        const fd = f();
        p.data[i] = v;
        checked.push({ name: `${p.name}[${i}]`, analytic: p.grad![i], numeric: (fu - fd) / (up - down) });
      }
    }
    const scale = Math.max(...checked.map((c) => Math.abs(c.numeric)));
    const worst = checked.reduce((w, c) =>
      Math.abs(c.analytic - c.numeric) > Math.abs(w.analytic - w.numeric) ? c : w
    );
    const err = Math.abs(worst.analytic - worst.numeric) / scale;
    assert.ok(scale > 1e-3, "gradients are too small to test");
    assert.ok(
      err <= 1e-3,
      `${checked.length} coordinates; worst ${worst.name}: ${worst.analytic} vs ${worst.numeric} (${
        err.toExponential(2)
      } of max)`,
    );
    assert.ok(
      checked.filter((c) => c.name.includes("lora_A")).every((c) => c.numeric !== 0),
      "A gradients vanish",
    );
  });
}

function gradsAfterStep(lora: LoraModel, batch: Batch, checkpointing: boolean) {
  lora.zeroGrad();
  const loss = lora.trainingForward(batch, { recomputeBlocks: checkpointing });
  lora.backward();
  return { loss, grads: [...lora.parameters().values()].map((p) => p.grad!.slice()), rng: lora.rng.state };
}

const CHECKPOINTING = [
  ["tiny_llama", "none"],
  ["tiny_llama", "nf4"],
  // The column split, LongRoPE and the window (Phi-3); GeGLU's recomputed output and the extra norms (Gemma 3).
  ["tiny_phi3", "nf4"],
  ["tiny_gemma3", "nf4"],
] as const;
for (const [name, quantize] of CHECKPOINTING) {
  Deno.test(`${name} (${quantize}): gradient checkpointing gives bit-identical loss and gradients (dropout on)`, async () => {
    using model = await tinyModel(name, quantize);
    const make = () => {
      const lora = new LoraModel(model, { rank: 4, alpha: 8, dropout: 0.1, seed: 3 });
      randomizeB(lora);
      return lora;
    };
    const [plain, ckpt] = [make(), make()];
    for (let step = 0; step < 2; step++) {
      const a = gradsAfterStep(plain, BATCH, false);
      const b = gradsAfterStep(ckpt, BATCH, true);
      assert.equal(b.loss, a.loss);
      assert.deepEqual(b.rng, a.rng);
      for (let i = 0; i < a.grads.length; i++) assert.deepEqual(b.grads[i], a.grads[i], `parameter ${i}`);
    }
  });
}

Deno.test("gradient checkpointing's recomputation leaves out down_proj's forward (nothing reads it)", async () => {
  for (const adapted of [true, false]) {
    using model = await tinyModel("tiny_llama", "nf4");
    const targetModules: LinearModule[] | undefined = adapted
      ? undefined
      : ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"];
    const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 3, targetModules });
    randomizeB(lora);
    let downCalls = 0;
    for (const layer of model.weights.layers) {
      const down = layer.mlp.down;
      const matmul = down.matmul.bind(down);
      down.matmul = (...args: Parameters<typeof matmul>) => (downCalls++, matmul(...args));
    }
    const layers = model.weights.layers.length;
    lora.zeroGrad();
    lora.trainingForward(BATCH, { recomputeBlocks: true });
    assert.equal(downCalls, layers, "the forward runs every down_proj once");
    lora.backward();
    assert.equal(downCalls, layers, `adapted ${adapted}: the recomputation ran down_proj again`);
    assert.ok([...lora.parameters().values()].every((p) => p.grad!.every(Number.isFinite)));
  }
});

Deno.test("dropout draws a new mask each step; evaluation has none", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const lora = new LoraModel(model, { rank: 4, alpha: 8, dropout: 0.3, seed: 3 });
  randomizeB(lora, 0.2);
  const first = lora.trainingForward(BATCH);
  const second = lora.trainingForward(BATCH);
  assert.notEqual(first, second);
  assert.equal(lora.loss(BATCH).loss.data[0], lora.loss(BATCH).loss.data[0]);
});

Deno.test("a packed row equals its examples in separate rows", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 1 });
  randomizeB(lora);
  const separate = lora.loss(batchOf(SEQS));
  // The two examples one after the other in one row; positions restart at the second.
  const rows = batchOf(SEQS);
  const [n0, n1] = SEQS.map((s) => s.length - 1);
  const width = n0 + n1 + 2; // two padding positions at the end
  const pick = (a: ArrayLike<number>, r: number, n: number) =>
    Array.from(a).slice(r * rows.width, r * rows.width + n);
  const packed: Batch = {
    rows: 1,
    width,
    inputs: Uint32Array.from([...pick(rows.inputs, 0, n0), ...pick(rows.inputs, 1, n1), 0, 0]),
    targets: Int32Array.from([...pick(rows.targets, 0, n0), ...pick(rows.targets, 1, n1), -100, -100]),
    positions: Uint32Array.from([...pick(rows.positions, 0, n0), ...pick(rows.positions, 1, n1), n1, n1 + 1]),
    segmentStarts: [[0, n0]],
    tokens: n0 + n1,
    lossTokens: rows.lossTokens,
    examples: 2,
  };
  const together = lora.loss(packed);
  assert.equal(together.count, separate.count);
  assert.ok(
    Math.abs(together.lossSum - separate.lossSum) < 1e-4,
    `${together.lossSum} vs ${separate.lossSum}`,
  );
});

Deno.test("denominator scales the loss and gradients (gradient accumulation); bf16 compute stays close", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const lora = new LoraModel(model, { rank: 4, alpha: 8, seed: 1 });
  randomizeB(lora);
  const mean = gradsAfterStep(lora, BATCH, false);
  lora.zeroGrad();
  const half = lora.trainingForward(BATCH, { denominator: 2 * BATCH.lossTokens });
  lora.backward();
  assert.ok(Math.abs(half - mean.loss / 2) < 1e-6);
  const grads = [...lora.parameters().values()].map((p) => p.grad!);
  for (const [i, g] of grads.entries()) {
    for (let j = 0; j < g.length; j++) {
      assert.ok(Math.abs(2 * g[j] - mean.grads[i][j]) <= 1e-6 * (1 + Math.abs(g[j])));
    }
  }
  lora.zeroGrad();
  const bf16 = lora.trainingForward(BATCH, { compute: "bf16" });
  lora.backward();
  assert.ok(Math.abs(bf16 - mean.loss) < 1e-2 * mean.loss, `${bf16} vs ${mean.loss}`);
});
