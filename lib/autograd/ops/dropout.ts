/**
 * Inverted dropout for the LoRA input: keep each element with probability 1 − p and scale it by 1 / (1 − p).
 * The mask is a pure function of a seed drawn from the run's `Rng` (one draw per call), computed in Rust;
 * the backward pass applies the same mask again from the same seed instead of storing it.
 */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import { check, kernels } from "../../../ffi/load.ts";
import { f32 } from "../../../ffi/validate.ts";
import type { Rng } from "../../random.ts";

/** A 64-bit seed for one dropout mask, as two u32 halves. */
export interface DropoutSeed {
  lo: number;
  hi: number;
}

export function drawDropoutSeed(rng: Rng): DropoutSeed {
  return { lo: rng.nextU32(), hi: rng.nextU32() };
}

/** `x · mask(seed) / (1 − p)` into a new buffer (or `out`, which must not be `x`). */
export function applyDropout(
  x: Float32Array,
  p: number,
  seed: DropoutSeed,
  out?: Float32Array,
): Float32Array {
  const fn = "applyDropout";
  if (!(p >= 0 && p < 1)) throw new RangeError(`${fn}: p must be in [0, 1), got ${p}`);
  f32(fn, "x", x);
  const y = f32(fn, "out", out ?? outputBuffer(x.length), x.length, "like x"); // overwritten whole
  if (y.buffer === x.buffer && y.byteOffset === x.byteOffset) {
    throw new RangeError(`${fn}: out must not be x`);
  }
  check(kernels().qlora_dropout(x, x.length, y, y.length, p, seed.lo >>> 0, seed.hi >>> 0), fn);
  return y;
}
