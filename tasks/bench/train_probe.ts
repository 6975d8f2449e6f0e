/**
 * Child process of the bench: QLoRA training steps on the default model (SmolLM2-135M-Instruct, NF4),
 * sequence 256, batch 1, LoRA r=16 on every block linear, AdamW — the reference setting. Prints one
 * JSON line: tokens/s, the split of step time, and this process's peak RSS.
 *
 *   deno run -A tasks/bench/train_probe.ts [--checkpointing]
 */
import type { Batch } from "../../lib/data/batch.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import type { Linear } from "../../lib/nn/linear.ts";
import { loadModel } from "../../lib/nn/load_model.ts";
import { LoraModel } from "../../lib/train/lora_model.ts";
import { AdamW } from "../../lib/train/optimizer.ts";
import { peakRss } from "./measure.ts";

const T = 256;
const checkpointing = Deno.args.includes("--checkpointing");
const { model } = await loadModel(await defaultModelPath(), { progress: false });
const c = model.config;
const batch: Batch = {
  rows: 1,
  width: T,
  inputs: Uint32Array.from({ length: T }, (_, i) => (i * 7919) % c.vocabSize),
  targets: Int32Array.from({ length: T }, (_, i) => (i * 104729 + 13) % c.vocabSize),
  positions: Uint32Array.from({ length: T }, (_, i) => i),
  segmentStarts: [[0]],
  tokens: T,
  lossTokens: T,
  examples: 1,
};

// Time spent in the frozen weights' products, by wrapping each linear's two methods.
const spent = { nf4: 0, head: 0 };
function timed(target: Linear | typeof model.weights.lmHead, key: keyof typeof spent): void {
  const t = target as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const method of ["matmul", "matmulT"]) {
    const inner = t[method].bind(target);
    t[method] = (...args: unknown[]) => {
      const t0 = performance.now();
      const result = inner(...args);
      spent[key] += performance.now() - t0;
      return result;
    };
  }
}
for (const l of model.weights.layers) {
  for (
    const lin of [
      l.attention.q,
      l.attention.k,
      l.attention.v,
      l.attention.o,
      l.mlp.gate,
      l.mlp.up,
      l.mlp.down,
    ]
  ) {
    timed(lin, "nf4");
  }
}
timed(model.weights.lmHead, "head");

const lora = new LoraModel(model, { rank: 16, alpha: 32, dropout: 0, seed: 0 });
const params = [...lora.parameters()].map(([name, t]) => ({ name, data: t.data, grad: t.grad! }));
const optimizer = new AdamW(params);
const step = () => {
  lora.zeroGrad();
  lora.trainingForward(batch, { checkpointing });
  lora.backward();
  optimizer.step(1e-4);
};
step();
spent.nf4 = spent.head = 0;
const steps = 3;
const t0 = performance.now();
for (let s = 0; s < steps; s++) step();
const ms = (performance.now() - t0) / steps;
console.log(JSON.stringify({
  tokensPerSecond: T / (ms / 1000),
  msPerStep: ms,
  nf4Ms: spent.nf4 / steps,
  headMs: spent.head / steps,
  peakRss: peakRss(),
  trainable: lora.parameterCount,
}));
