/**
 * Learning-rate schedules: a pure function of the optimizer step, so a resumed run needs no schedule state.
 *
 * Steps count from 1 (the first update). The first `warmupSteps` updates ramp linearly up to the peak
 * (`lr · step / warmupSteps`, so the first update is not wasted at 0); the remaining updates decay from the
 * peak towards `lr · minLrRatio`: the first decay step is at the peak and the last one just above the floor
 * (the decay reaches the floor one step after the end, so the last update still moves the weights).
 */

export type ScheduleKind = "constant" | "linear" | "cosine";

export const SCHEDULES: readonly ScheduleKind[] = ["constant", "linear", "cosine"];

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  kind: ScheduleKind;
  /** Updates of linear warm-up (0 for none). */
  warmupSteps: number;
  /** Updates in the whole run (warm-up included). */
  totalSteps: number;
  /** The decay's floor as a share of `lr` (0 ≤ r ≤ 1); ignored by "constant". */
  minLrRatio: number;
}

/** The learning rate of update `step` (1-based). */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (!Number.isInteger(step) || step < 1) {
    throw new RangeError(`learningRate: step must be ≥ 1, got ${step}`);
  }
  checkSchedule(o);
  const warmup = Math.min(o.warmupSteps, o.totalSteps);
  if (step <= warmup) return (o.lr * step) / warmup;
  if (o.kind === "constant") return o.lr;
  const decaySteps = o.totalSteps - warmup;
  // 0 at the first decay step, (n-1)/n at the last; past the end (never in a run) it stays at the floor.
  const progress = Math.min(1, (step - warmup - 1) / decaySteps);
  const shape = o.kind === "linear" ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return o.lr * (o.minLrRatio + (1 - o.minLrRatio) * shape);
}

export function checkSchedule(o: ScheduleOptions): void {
  if (!SCHEDULES.includes(o.kind)) {
    throw new RangeError(`unknown schedule "${o.kind}" (${SCHEDULES.join(", ")})`);
  }
  if (!(Number.isFinite(o.lr) && o.lr >= 0)) {
    throw new RangeError(`lr must be a finite number ≥ 0, got ${o.lr}`);
  }
  if (!Number.isInteger(o.warmupSteps) || o.warmupSteps < 0) {
    throw new RangeError(`warmupSteps must be an integer ≥ 0, got ${o.warmupSteps}`);
  }
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) {
    throw new RangeError(`totalSteps must be an integer ≥ 1, got ${o.totalSteps}`);
  }
  if (!(o.minLrRatio >= 0 && o.minLrRatio <= 1)) {
    throw new RangeError(`minLrRatio must be in [0, 1], got ${o.minLrRatio}`);
  }
}
