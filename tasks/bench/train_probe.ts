/**
 * Child process of the bench: QLoRA training steps on the default model (SmolLM2-135M-Instruct, NF4),
 * sequence 256, batch 1, LoRA r=16 on every block linear, AdamW — the reference setting. Prints one
 * JSON line: tokens/s, the time per step in each kernel, and this process's peak RSS.
 *
 *   deno run -A tasks/bench/train_probe.ts [--checkpointing]
 */
import type { Batch } from "../../lib/data/batch.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { loadModel } from "../../lib/nn/load_model.ts";
import { LoraModel } from "../../lib/train/lora_model.ts";
import { AdamW } from "../../lib/train/optimizer.ts";
import { kernelProfile, resetKernelProfile, startKernelProfile } from "../../ffi/profile.ts";
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

const lora = new LoraModel(model, { rank: 16, alpha: 32, dropout: 0, seed: 0 });
const params = [...lora.parameters()].map(([name, t]) => ({ name, data: t.data, grad: t.grad! }));
const optimizer = new AdamW(params);
const step = () => {
  lora.zeroGrad();
  lora.trainingForward(batch, { checkpointing });
  lora.backward();
  optimizer.step(1e-4);
};
startKernelProfile();
step();
resetKernelProfile();
const steps = 3;
const t0 = performance.now();
for (let s = 0; s < steps; s++) step();
const ms = (performance.now() - t0) / steps;
console.log(JSON.stringify({
  tokensPerSecond: T / (ms / 1000),
  msPerStep: ms,
  // Milliseconds per step in each FFI symbol.
  kernelMs: Object.fromEntries(Object.entries(kernelProfile()).map(([name, t]) => [name, t.ms / steps])),
  peakRss: peakRss(),
  trainable: lora.parameterCount,
  // The same shape as an HF config.json, for the PyTorch + PEFT baseline (peft_reference.py).
  hfConfig: {
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings,
  },
}));
