/**
 * Child process of the bench: QLoRA training steps on the default model (SmolLM2-135M-Instruct, NF4),
 * sequence 256, batch 1, LoRA r=16 on every block linear, AdamW — the reference setting. Prints one
 * JSON line: tokens/s, the time per step in each kernel, and this process's peak RSS.
 *
 *   deno run -A tasks/bench/train_probe.ts [--recompute-blocks]
 */
import type { Batch } from "../../lib/data/batch.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { hfConfigJson } from "../../lib/pretrained/export/hf_config.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { AdamW } from "../../lib/train/optimizer.ts";
import { kernelProfile, resetKernelProfile, startKernelProfile } from "../../ffi/profile.ts";
import { median, peakRss } from "./measure.ts";

const T = 256;
const recomputeBlocks = Deno.args.includes("--recompute-blocks");
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

const lora = new LoraModel(model, { rank: 16, alpha: 32, dropout: 0, seed: 0 });
const params = [...lora.parameters()].map(([name, t]) => ({ name, data: t.data, grad: t.grad! }));
const optimizer = new AdamW(params);
const step = () => {
  lora.zeroGrad();
  lora.trainingForward(batch, { recomputeBlocks });
  lora.backward();
  optimizer.step(1e-4);
};
startKernelProfile();
step();
resetKernelProfile();
// The median step: this machine's speed drifts by tens of percent within a minute, a mean takes it all in.
const steps = 7;
const times: number[] = [];
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  step();
  times.push(performance.now() - t0);
}
const ms = median(times);
const scale = ms / (times.reduce((a, b) => a + b, 0) / steps); // kernel totals, to the median step
console.log(JSON.stringify({
  tokensPerSecond: T / (ms / 1000),
  msPerStep: ms,
  // Milliseconds per step in each FFI symbol.
  kernelMs: Object.fromEntries(
    Object.entries(kernelProfile()).map(([name, t]) => [name, t.ms / steps * scale]),
  ),
  peakRss: peakRss(),
  trainable: lora.parameterCount,
  // The same shape as an HF config.json, for the PyTorch + PEFT baseline (peft_reference.py).
  hfConfig: hfConfigJson(c, { tied: c.tieWordEmbeddings }),
}));
