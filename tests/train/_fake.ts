/**
 * A small fake TrainableModel for the trainer tests: each trained position (input x, target y) predicts
 * `a[x] · b[y]` for a fixed value t(x, y) with loss ½(a[x]·b[y] − t)²; its gradient is computed here in TS,
 * position by position in batch order, so accumulating micro-batches adds exactly what one big batch adds.
 * "Dropout" zeroes a position's contribution with probability 0.1, drawn from the model's Rng (so resuming
 * must restore it). An optional `extra` parameter (a bigger vector pulled towards 0.1) makes checkpoints
 * and steps heavier for the crash tests.
 */
import { type Batch, BatchStream, IGNORE_INDEX } from "../../lib/data/batch.ts";
import type { Example } from "../../lib/data/dataset.ts";
import { Rng } from "../../lib/random.ts";
import type { LossSum, Parameter, TrainableModel } from "../../lib/train/trainer.ts";

export const VOCAB = 32;

export interface FakeOptions {
  seed?: number;
  /** Size of the extra parameter (0 = none). */
  extra?: number;
  /** The n-th call of lossAndGrad (1-based) returns NaN. */
  nanAtCall?: number;
  dropout?: number;
}

export class FakeModel implements TrainableModel {
  readonly rng: Rng;
  readonly #params: Parameter[];
  readonly #dropout: number;
  #calls = 0;

  constructor(readonly opts: FakeOptions = {}) {
    const init = new Rng(1000 + (opts.seed ?? 0));
    const vec = (n: number, scale: number) =>
      Float32Array.from({ length: n }, () => (init.next() - 0.5) * scale);
    this.#params = [
      { name: "a", data: vec(VOCAB, 1).map((v) => v + 1), grad: new Float32Array(VOCAB) },
      { name: "b", data: vec(VOCAB, 1).map((v) => v + 1), grad: new Float32Array(VOCAB) },
    ];
    if (opts.extra) {
      this.#params.push({ name: "extra", data: vec(opts.extra, 2), grad: new Float32Array(opts.extra) });
    }
    this.rng = new Rng(opts.seed ?? 0);
    this.#dropout = opts.dropout ?? 0.1;
  }

  parameters(): Parameter[] {
    return this.#params;
  }

  zeroGrad(): void {
    for (const p of this.#params) p.grad.fill(0);
  }

  lossAndGrad(batch: Batch): LossSum {
    this.#calls++;
    const r = this.#run(batch, true);
    if (this.#calls === this.opts.nanAtCall) r.lossSum = NaN;
    return r;
  }

  loss(batch: Batch): LossSum {
    return this.#run(batch, false);
  }

  #run(batch: Batch, training: boolean): LossSum {
    const [a, b] = this.#params;
    let lossSum = 0;
    let lossTokens = 0;
    for (let p = 0; p < batch.inputs.length; p++) {
      const y = batch.targets[p];
      if (y === IGNORE_INDEX) continue;
      const x = batch.inputs[p];
      lossTokens++;
      const keep = training && this.#dropout > 0 ? (this.rng.next() < this.#dropout ? 0 : 1) : 1;
      const residual = a.data[x] * b.data[y] - target(x, y);
      lossSum += 0.5 * residual * residual * keep;
      if (training) {
        a.grad[x] += keep * residual * b.data[y];
        b.grad[y] += keep * residual * a.data[x];
      }
    }
    const extra = this.#params[2];
    if (training && extra) {
      // Σ_i ½(e_i − 0.1)² per trained token: gradient (e − 0.1) · lossTokens.
      for (let i = 0; i < extra.data.length; i++) extra.grad[i] += (extra.data[i] - 0.1) * lossTokens;
    }
    return { lossSum, lossTokens };
  }
}

function target(x: number, y: number): number {
  return ((x * 7 + y * 3) % 11) / 10 - 0.5;
}

/** `n` examples of 3–10 tokens; the first 1–2 tokens are a prompt (no loss). */
export function fakeExamples(n: number, seed = 7): Example[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const len = 3 + (rng.nextU32() % 8);
    const ids = Array.from({ length: len }, () => rng.nextU32() % VOCAB);
    const prompt = 1 + (rng.nextU32() % 2);
    const mask = Uint8Array.from(ids, (_, t) => (t >= prompt ? 1 : 0));
    return { ids, mask, record: { file: "fake.jsonl", line: i + 1, format: "text" as const, text: "" } };
  });
}

export function fakeStream(examples: Example[], batchSize = 4, seed = 0): BatchStream {
  return new BatchStream(examples, { batchSize, padId: 0, seed });
}

/** Bit patterns, for bit-for-bit comparisons with readable failures. */
export function bits(x: Float32Array): number[] {
  return [...new Uint32Array(x.buffer, x.byteOffset, x.length)];
}
