/** The one training setup the SIGKILL test runs in a child process and in-process (see crash_test.ts). */
import { orderedBatches } from "../../lib/data/batch.ts";
import type { TrainingArgsInput } from "../../lib/train/args.ts";
import type { TrainData } from "../../lib/train/trainer.ts";
import { fakeExamples, FakeModel, fakeStream } from "./_fake.ts";

export const CRASH_ARGS: TrainingArgsInput = {
  steps: 40,
  lr: 0.05,
  warmupSteps: 3,
  weightDecay: 0.01,
  maxGradNorm: 1,
  saveEvery: 1,
  evalEvery: 3,
  keepCheckpoints: 3,
  seed: 11,
};

export function crashModel(): FakeModel {
  // The extra parameter makes each step and checkpoint take a few milliseconds (≈ 3 MB per checkpoint).
  return new FakeModel({ seed: 11, extra: 1 << 18 });
}

export function crashData(): TrainData {
  return {
    train: fakeStream(fakeExamples(36, 5), 4, 11),
    valid: [...orderedBatches(fakeExamples(8, 6), { batchSize: 4, padId: 0 })],
  };
}
