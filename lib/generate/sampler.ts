/**
 * Picking the next token from logits: greedy, or sampling with temperature, top-k and top-p (nucleus).
 * Runs once per generated token over the vocabulary; the model's forward pass dominates the cost.
 */
import type { Rng } from "../random.ts";

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP?: number;
}

export function validateSampling(opts: SamplingOptions): Required<SamplingOptions> {
  const { temperature = 0, topK = 0, topP = 1 } = opts;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) {
    throw new RangeError(`temperature must be a finite number ≥ 0, got ${temperature}`);
  }
  if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`topK must be an integer ≥ 0, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${topP}`);
  return { temperature, topK, topP };
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Samples one token id. */
export function sample(logits: Float32Array, opts: Required<SamplingOptions>, rng: Rng): number {
  if (opts.temperature === 0) return argmax(logits);
  const n = logits.length;
  let candidates: Int32Array;
  if (opts.topK > 0 || opts.topP < 1) {
    // Sort only what can survive top-k (a full sort of a 50k vocabulary costs a few ms per token).
    candidates = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
    if (opts.topK > 0) candidates = candidates.subarray(0, Math.min(opts.topK, n));
  } else {
    candidates = Int32Array.from({ length: n }, (_, i) => i);
  }
  const maxLogit =
    logits[candidates.reduce((best, i) => (logits[i] > logits[best] ? i : best), candidates[0])];
  const weights = new Float64Array(candidates.length);
  let total = 0;
  for (let c = 0; c < candidates.length; c++) {
    weights[c] = Math.exp((logits[candidates[c]] - maxLogit) / opts.temperature);
    total += weights[c];
  }
  let count = candidates.length;
  if (opts.topP < 1) {
    // candidates are sorted by logit here, so cumulative mass is a prefix.
    let mass = 0;
    for (let c = 0; c < candidates.length; c++) {
      mass += weights[c] / total;
      if (mass >= opts.topP) {
        count = c + 1;
        break;
      }
    }
    total = weights.subarray(0, count).reduce((a, b) => a + b, 0);
  }
  let r = rng.next() * total;
  for (let c = 0; c < count; c++) {
    r -= weights[c];
    if (r < 0) return candidates[c];
  }
  return candidates[count - 1];
}
