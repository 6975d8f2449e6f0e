/** The fake-model run shared by distributed_fake_test.ts (one process) and _distributed_child.ts (N ranks). */
import type { TrainOptions } from "../../lib/train/trainer.ts";
import { fakeExamples, FakeModel, fakeStream } from "./_fake.ts";

export function fakeRun(
  outputDir: string,
  gradAccumulation: number,
): { model: FakeModel; options: TrainOptions } {
  // An extra parameter of odd length, so the flat gradient does not split evenly into 3 or 4 chunks.
  const model = new FakeModel({ seed: 3, extra: 1001, dropout: 0.2 });
  return {
    model,
    options: {
      model,
      data: { train: fakeStream(fakeExamples(60), 3, 3) },
      args: {
        steps: 6,
        gradAccumulation,
        lr: 0.05,
        warmupSteps: 1,
        maxGradNorm: 0.5,
        saveEvery: 0,
        seed: 3,
        outputDir,
      },
      progress: false,
    },
  };
}
