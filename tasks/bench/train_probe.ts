/**
 * Child process of the bench: QLoRA training steps, sequence 256, batch 1, LoRA r=16 on every block linear,
 * AdamW — the reference setting — on the default model (SmolLM2-135M-Instruct, NF4) or `--model DIR`.
 * Prints one JSON line: tokens/s, the time per step in each kernel, the load time and this process's peak RSS.
 *
 *   deno run -A tasks/bench/train_probe.ts [--recompute-blocks] [--model DIR] [--steps N]
 *     [--compute f32|bf16] [--nf4-cache ROOT]
 */
import { parseArgs } from "node:util";
import type { Batch } from "../../lib/data/batch.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { hfConfigJson } from "../../lib/pretrained/export/hf_config.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { AdamW } from "../../lib/train/optimizer.ts";
import type { Compute } from "../../ffi/nf4.ts";
import { kernelProfile, resetKernelProfile, startKernelProfile } from "../../ffi/profile.ts";
import { median, peakRss } from "./measure.ts";
import { takeBufferPoolCounts } from "../../ffi/buffer_pool.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    "recompute-blocks": { type: "boolean", default: false },
    model: { type: "string" },
    // The median step is reported: this machine's speed drifts by tens of percent within a minute.
    steps: { type: "string", default: "7" },
    compute: { type: "string", default: "f32" },
    "nf4-cache": { type: "string" },
  },
});
const T = 256;
const recomputeBlocks = flags["recompute-blocks"];
const compute = flags.compute as Compute;
const steps = Number(flags.steps);
const cacheRoot = flags["nf4-cache"];
const loaded = await loadModel(flags.model ?? await defaultModelPath(), {
  progress: false,
  nf4Cache: cacheRoot ? { root: cacheRoot } : undefined,
  embeddingsOnDisk: recomputeBlocks, // as deno task finetune --gradient-checkpointing does
});
const { model } = loaded;
const rssAfterLoad = peakRss();
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

const RANK = 16;
const lora = new LoraModel(model, { rank: RANK, alpha: 32, dropout: 0, seed: 0 });
const params = [...lora.parameters()].map(([name, t]) => ({ name, data: t.data, grad: t.grad! }));
const optimizer = new AdamW(params);
const step = () => {
  lora.zeroGrad();
  lora.trainingForward(batch, { recomputeBlocks, compute });
  lora.backward();
  optimizer.step(1e-4);
};
startKernelProfile();
const warm = performance.now();
step();
const warmMs = performance.now() - warm;
resetKernelProfile();
takeBufferPoolCounts();
const times: number[] = [];
for (let s = 0; s < steps; s++) {
  const t0 = performance.now();
  step();
  times.push(performance.now() - t0);
}
// --steps 0: only the first step (a 7B step takes minutes); its time includes first-touch page faults.
const ms = steps > 0 ? median(times) : warmMs;
const scale = steps > 0 ? ms / (times.reduce((a, b) => a + b, 0) / steps) : 1; // kernel totals, to the median step
const pool = takeBufferPoolCounts();
console.log(JSON.stringify({
  tokensPerSecond: T / (ms / 1000),
  // The step's shape, for the bench's arithmetic: one sequence of T tokens, every one with a target.
  tokens: T,
  rank: RANK,
  outputBytesPerStep: {
    recycled: pool.recycledBytes / Math.max(steps, 1),
    fresh: pool.freshBytes / Math.max(steps, 1),
  },
  msPerStep: ms,
  // Milliseconds per step in each FFI symbol.
  kernelMs: Object.fromEntries(
    Object.entries(kernelProfile()).map(([name, t]) => [name, t.ms / Math.max(steps, 1) * scale]),
  ),
  peakRss: peakRss(),
  rssAfterLoad,
  loadSeconds: loaded.loadSeconds,
  nf4Cache: loaded.nf4Cache ?? "off",
  trainable: lora.parameterCount,
  // The same shape as an HF config.json, for the PyTorch + PEFT baseline (peft_reference.py).
  hfConfig: hfConfigJson(c, { tied: c.tieWordEmbeddings }),
}));
