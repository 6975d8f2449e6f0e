/**
 * What gradient checkpointing costs in kernel calls: its recomputation runs every base projection of a block
 * again except down_proj (nothing reads its output) and no LoRA product (x·Aᵀ is kept from the first
 * forward), and the step's gradients stay those of the plain graph.
 */
import assert from "node:assert/strict";
import { kernelProfile, resetKernelProfile, startKernelProfile } from "../../ffi/profile.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { values } from "../autograd/_fd.ts";
import { batchOf, tinyModel } from "../train/_tiny.ts";

const BATCH = batchOf([[1, 17, 299, 0, 42, 128, 7, 9, 33, 250], [1, 5, 6, 77, 200, 13]], [2, 0]);

Deno.test("checkpointing recomputes the base projections but down_proj, and no LoRA product", async () => {
  using model = await tinyModel("tiny_llama", "nf4");
  const layers = model.weights.layers.length;
  startKernelProfile();
  const step = (recomputeBlocks: boolean) => {
    const lora = new LoraModel(model, { rank: 4, alpha: 8, dropout: 0.1, seed: 3 });
    let seed = 100;
    for (const p of lora.parameters().values()) {
      if (p.name!.endsWith("lora_B.weight")) p.data.set(values(p.size, seed++, 0.05));
    }
    resetKernelProfile();
    lora.zeroGrad();
    const loss = lora.trainingForward(BATCH, { recomputeBlocks });
    lora.backward();
    const calls = (name: string) => kernelProfile()[name]?.calls ?? 0;
    const grads = [...lora.parameters().values()].map((p) => p.grad!.slice());
    return {
      loss,
      grads,
      lora: calls("sgemm"),
      forward: calls("nf4_matmul"),
      backward: calls("nf4_matmul_t"),
    };
  };
  const plain = step(false);
  const ckpt = step(true);
  assert.ok(plain.lora > 0 && plain.forward === 7 * layers, `plain: ${JSON.stringify(plain)}`);
  assert.equal(ckpt.lora, plain.lora, "LoRA products");
  assert.equal(ckpt.forward, plain.forward + 6 * layers, "base forwards: all but down_proj again");
  assert.equal(ckpt.backward, plain.backward);
  assert.equal(ckpt.loss, plain.loss);
  for (const [i, g] of plain.grads.entries()) assert.deepEqual(ckpt.grads[i], g, `parameter ${i}`);
});
