/**
 * A `LoraModel` as the trainer's `TrainableModel`: `lossAndGrad` adds the gradients of the **summed** token
 * losses (denominator 1), so gradient accumulation over micro-batches equals one bigger batch; the trainer
 * divides by the step's token count.
 */
import type { Compute } from "../../ffi/nf4.ts";
import type { LoraModel } from "../lora/model.ts";
import type { TrainableModel } from "./trainer.ts";

export interface TrainableOptions {
  /** Recompute each decoder block in backward (less memory, ~25 % more time). */
  recomputeBlocks?: boolean;
  compute?: Compute;
}

export function trainable(lora: LoraModel, opts: TrainableOptions = {}): TrainableModel {
  const params = [...lora.parameters().values()].map((t) => ({ name: t.name!, data: t.data, grad: t.grad! }));
  const forward = { recomputeBlocks: opts.recomputeBlocks ?? false, compute: opts.compute };
  return {
    rng: lora.rng,
    parameters: () => params,
    zeroGrad: () => lora.zeroGrad(),
    lossAndGrad(batch) {
      const lossSum = lora.trainingForward(batch, { ...forward, denominator: 1 });
      lora.backward();
      return { lossSum, lossTokens: batch.lossTokens };
    },
    loss(batch) {
      const r = lora.loss(batch, { compute: opts.compute });
      return { lossSum: r.lossSum, lossTokens: r.count };
    },
  };
}
