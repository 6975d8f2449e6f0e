import assert from "node:assert/strict";
import { learningRate, type ScheduleOptions } from "../../lib/train/schedule.ts";

const base: ScheduleOptions = { lr: 1, kind: "cosine", warmupSteps: 2, totalSteps: 6, minLrRatio: 0 };

function lrs(o: Partial<ScheduleOptions>): number[] {
  const opts = { ...base, ...o };
  return Array.from({ length: opts.totalSteps }, (_, i) => learningRate(i + 1, opts));
}

function close(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) < 1e-12, `step ${i + 1}: ${a} ≠ ${expected[i]}`)
  );
}

Deno.test("schedule: linear warm-up from lr/warmup, then cosine from the peak to just above the floor", () => {
  // Decay over 4 steps: progress 0, 1/4, 2/4, 3/4 → ½(1 + cos πp).
  close(lrs({}), [0.5, 1, 1, 0.5 * (1 + Math.SQRT1_2), 0.5, 0.5 * (1 - Math.SQRT1_2)]);
});

Deno.test("schedule: linear decay, with and without a floor", () => {
  close(lrs({ kind: "linear" }), [0.5, 1, 1, 0.75, 0.5, 0.25]);
  close(lrs({ kind: "linear", minLrRatio: 0.1, lr: 2 }), [1, 2, 2, 1.55, 1.1, 0.65]);
});

Deno.test("schedule: cosine with a floor; constant; no warm-up", () => {
  close(lrs({ minLrRatio: 0.2, warmupSteps: 0, totalSteps: 2 }), [
    1,
    0.2 + 0.8 * 0.5 * (1 + Math.cos(Math.PI / 2)),
  ]);
  close(lrs({ kind: "constant" }), [0.5, 1, 1, 1, 1, 1]);
  close(lrs({ kind: "constant", warmupSteps: 0, totalSteps: 3, lr: 3e-4 }), [3e-4, 3e-4, 3e-4]);
});

Deno.test("schedule: warm-up longer than the run ends at the peak on the last step", () => {
  close(lrs({ warmupSteps: 10, totalSteps: 4 }), [0.25, 0.5, 0.75, 1]);
});

Deno.test("schedule: bad input is refused with the option's name", () => {
  assert.throws(() => learningRate(0, base), /step must be ≥ 1/);
  assert.throws(() => learningRate(1, { ...base, totalSteps: 0 }), /totalSteps/);
  assert.throws(() => learningRate(1, { ...base, minLrRatio: 2 }), /minLrRatio/);
  assert.throws(() => learningRate(1, { ...base, kind: "step" as "linear" }), /unknown schedule "step"/);
  assert.throws(() => learningRate(1, { ...base, warmupSteps: 1.5 }), /warmupSteps/);
});
