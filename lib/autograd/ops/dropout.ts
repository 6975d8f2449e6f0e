/**
 * Inverted dropout for the LoRA input: keep each element with probability 1 − p and scale it by 1 / (1 − p).
 * The mask comes from the run's seeded `Rng`, one draw per element in row-major order, so a seed fixes it.
 *
 * These two loops are the only per-element work in TS on the training path (the generator lives in TS, so
 * the mask is drawn here); they run only when dropout > 0 in training mode. A Rust kernel with a
 * counter-based generator would remove them.
 */
import type { Rng } from "../../random.ts";

/** 1 = kept. */
export function dropoutMask(rng: Rng, n: number, p: number): Uint8Array {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout: p must be in [0, 1), got ${p}`);
  const mask = new Uint8Array(n);
  const threshold = p * 4294967296; // u32 ≥ p·2³² ⟺ u32 / 2³² ≥ p (Rng.next), without the division
  for (let i = 0; i < n; i++) mask[i] = rng.nextU32() >= threshold ? 1 : 0;
  return mask;
}

/** `x · mask · scale` elementwise into a new buffer (or in place when `out` is `x`). */
export function applyMask(
  x: Float32Array,
  mask: Uint8Array,
  scale: number,
  out?: Float32Array,
): Float32Array {
  if (mask.length !== x.length) {
    throw new RangeError(`dropout: mask has ${mask.length} elements, x ${x.length}`);
  }
  const y = out ?? new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = mask[i] ? x[i] * scale : 0;
  return y;
}
