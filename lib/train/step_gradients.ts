/**
 * How the micro-batches of one optimizer step become its gradient — defined once, so that one process and
 * N processes (lib/train/distributed.ts) compute the same bits:
 *
 * - the step takes `microBatches` batches from the stream, in order (a global batch, whatever N is);
 * - each micro-batch's gradient is computed on its own (gradients zeroed first), and the step's gradient is
 *   their sum in micro-batch order, `((g0 + g1) + g2) + …`, element by element in f32; loss sums and token
 *   counts are added in the same order in f64;
 * - micro-batch 0 draws dropout from the generator's state at the start of the step; micro-batch i > 0 from
 *   a state derived from (that state, i), so a process can run micro-batch i without running the others;
 *   the step ends with the state micro-batch `microBatches − 1` left.
 *
 * With one micro-batch per step this is exactly a plain forward and backward.
 */
import { addScaled } from "../../ffi/ops.ts";
import type { Batch, BatchStream } from "../data/batch.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";
import type { Parameter } from "./optimizer.ts";

/** Summed token losses and how many tokens had a target (as `TrainableModel` returns them). */
interface LossSum {
  lossSum: number;
  lossTokens: number;
}

/** What the step needs from the model (a subset of trainer.ts's `TrainableModel`). */
export interface StepModel {
  lossAndGrad(batch: Batch): LossSum;
  zeroGrad(): void;
  readonly rng?: { state: [number, number, number, number] };
}

export interface StepInput {
  model: StepModel;
  params: readonly Parameter[];
  stream: BatchStream;
  microBatches: number;
  /** This process wants the run to stop after this step (Ctrl-C). */
  stopRequested: boolean;
}

/** The step's totals, identical on every process. */
export interface StepSums {
  lossSum: number;
  lossTokens: number;
  /** Real (non-padding) tokens of the whole step. */
  tokens: number;
  /** The epoch of the step's last micro-batch. */
  epoch: number;
  /** Some process asked to stop: every process stops after this step. */
  stop: boolean;
}

/** The trainer's way of computing a step's gradient: alone, or together with other processes. */
export interface StepGradients {
  /** This process's rank and the number of processes (0 and 1 when alone). Rank 0 logs, evaluates, saves. */
  readonly rank: number;
  readonly size: number;
  /** Leaves the step's gradient (see above) in every `param.grad`; returns the step's totals. */
  accumulate(input: StepInput): StepSums;
  /** After rank 0 has readied the output directory (and maybe resumed): every rank takes rank 0's state. */
  shareState?(target: SharedStateTarget): void;
}

/** What `shareState` reads from rank 0's trainer and writes into the others' (Trainer implements it). */
export interface SharedStateTarget {
  readonly params: readonly Parameter[];
  /** The state to share (rank 0). */
  exportState(): LoadedCheckpoint;
  /** Takes rank 0's state (the other ranks). */
  importState(state: LoadedCheckpoint): void;
}

/** The generator state micro-batch `index` of a step starts from (`start`: the step's initial state). */
export function microBatchRngState(
  start: readonly [number, number, number, number],
  index: number,
): [number, number, number, number] {
  if (index === 0) return [...start];
  // SplitMix32 over (state, index): four fresh words; the last kept odd so the state is never all zero.
  let x = (start[0] ^ Math.imul(start[1], 0x85ebca6b) ^ Math.imul(start[2], 0xc2b2ae35) ^ start[3]) >>> 0;
  x = (x + Math.imul(index, 0x9e3779b9)) >>> 0;
  const words: number[] = [];
  for (let w = 0; w < 4; w++) {
    x = (x + 0x9e3779b9) >>> 0;
    let z = (x ^ start[w]) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    words.push((z ^ (z >>> 16)) >>> 0);
  }
  words[3] = (words[3] | 1) >>> 0;
  return words as [number, number, number, number];
}

/** One process: every micro-batch here, summed into a running total in micro-batch order. */
export class LocalGradients implements StepGradients {
  readonly rank = 0;
  readonly size = 1;
  /** The running sum when a step has several micro-batches (a micro-batch's own gradient is in `grad`). */
  #sum: Float32Array[] | undefined;

  accumulate({ model, params, stream, microBatches, stopRequested }: StepInput): StepSums {
    const start = model.rng?.state;
    const sums = { lossSum: 0, lossTokens: 0, tokens: 0, epoch: 0, stop: stopRequested };
    if (microBatches > 1) this.#sum ??= params.map((p) => new Float32Array(p.grad.length));
    for (let i = 0; i < microBatches; i++) {
      model.zeroGrad();
      if (model.rng && start) model.rng.state = microBatchRngState(start, i);
      const batch = stream.next();
      const r = model.lossAndGrad(batch);
      sums.lossSum += r.lossSum;
      sums.lossTokens += r.lossTokens;
      sums.tokens += batch.tokens;
      sums.epoch = batch.epoch;
      if (microBatches === 1) break;
      params.forEach((p, k) => i === 0 ? this.#sum![k].set(p.grad) : addScaled(this.#sum![k], 1, p.grad));
    }
    if (microBatches > 1) params.forEach((p, k) => p.grad.set(this.#sum![k]));
    return sums;
  }
}
