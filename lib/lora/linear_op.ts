/**
 * A LoRA linear on a frozen base: `y = x · Wᵀ + s · (drop(x) · Aᵀ) · Bᵀ`, A `[r, in]` and B `[out, r]` trainable
 * f32, W frozen (NF4 or dense), s the scale (alpha / r, or alpha / √r with rsLoRA). The base adds the low-rank
 * term in its own pass over y (and over dx in backward), so no second pass over those activations.
 *
 * Backward, with xa = xd · Aᵀ `[rows, r]` kept from the forward and xd = drop(x) redrawn from the mask's seed:
 *   dB  += s · dYᵀ · xa                     (matmulDyTX)
 *   dxa  = s · dY · B                       `[rows, r]`
 *   dA  += dxaᵀ · xd                        (matmulDyTX)
 *   dx  += dY · W  +  drop'(dxa · A)        (one base.matmulT with the low-rank term; drop' = same mask,
 *                                           applied on a separate product when dropout is on)
 */
import { outputBuffer } from "../../ffi/buffer_pool.ts";
import { matmulDyTX, matmulDyW, matmulXWt } from "../../ffi/gemm.ts";
import { addScaled } from "../../ffi/ops.ts";
import { freeNow } from "../autograd/free.ts";
import { applyDropout, drawDropoutSeed, type DropoutSeed } from "../autograd/ops/dropout.ts";
import { gradSink, type Tape } from "../autograd/tape.ts";
import { Tensor } from "../autograd/tensor.ts";
import type { AdapterForwardOptions } from "../nn/llama.ts";
import type { Linear } from "../nn/linear.ts";
import type { Rng } from "../random.ts";

/** The op's operands: a frozen base and an adapter's matrices (a `LoraLinear` is one). */
export interface LoraOperands {
  base: Pick<Linear, "rows" | "cols" | "matmul" | "matmulT">;
  /** `[r, in]` */
  a: Tensor;
  /** `[out, r]` */
  b: Tensor;
  scale: number;
  /** Dropout probability on the input (default 0), applied only in training mode. */
  dropout?: number;
  /** Draws the dropout masks; required when dropout applies. */
  rng?: Rng;
}

export function loraLinear(
  tape: Tape | undefined,
  x: Tensor,
  w: LoraOperands,
  opts: AdapterForwardOptions = {},
): Tensor {
  const { base, a, b, scale } = w;
  const [rows, inDim, outDim, r] = [x.rows, base.cols, base.rows, a.rows];
  if (x.cols !== inDim || a.cols !== inDim || b.rows !== outDim || b.cols !== r) {
    throw new RangeError(
      `loraLinear: x [${x.shape}], A [${a.shape}], B [${b.shape}] do not fit the base [${outDim}, ${inDim}]`,
    );
  }
  const p = w.dropout ?? 0;
  let seed: DropoutSeed | undefined;
  if (opts.training && p > 0) {
    if (!w.rng) throw new TypeError("loraLinear: dropout in training mode needs an rng");
    seed = drawDropoutSeed(w.rng); // drawn even when xa is reused: the generator advances alike
  }
  // Handed over once: the first forward leaves xa in the memo, the recomputation takes it out (the same
  // bits: same input, same mask).
  const kept = opts.lowRankMemo?.xa;
  const xa = kept ?? matmulXWtDropped(x.data, a.data, rows, r, p, seed);
  if (opts.lowRankMemo) opts.lowRankMemo.xa = kept ? undefined : xa;
  // y = x·Wᵀ + s·xa·Bᵀ in one pass over y (the base adds the low-rank term tile by tile).
  const lowRank = { left: xa, right: b.data, rank: r, scale };
  // xa is kept for dB either way; y only when something reads it.
  const y = opts.outputUnused
    ? outputBuffer(rows * outDim)
    : base.matmul(x.data, rows, undefined, { compute: opts.compute, lowRank });
  const out = new Tensor(y, [rows, outDim]);

  tape?.record("lora", [x, a, b], [out], () => {
    const dy = out.grad!;
    if (b.requiresGrad) {
      const db = gradSink(b);
      matmulDyTX(dy, xa, rows, r, outDim, db.buffer, { alpha: scale, beta: db.accumulate ? 1 : 0 });
    }
    const dxa = matmulDyW(dy, b.data, rows, r, outDim, undefined, { alpha: scale });
    if (a.requiresGrad) {
      const da = gradSink(a);
      const input = opts.recomputeInput ? opts.recomputeInput() : x.data;
      const dropped = seed ? applyDropout(input, p, seed) : input;
      matmulDyTX(dxa, dropped, rows, inDim, r, da.buffer, { beta: da.accumulate ? 1 : 0 });
      if (seed) freeNow(dropped);
      if (opts.recomputeInput) freeNow(input);
    }
    if (!x.requiresGrad) return;
    const dx = gradSink(x);
    if (seed) {
      // The mask applies to the low-rank product itself, so it cannot ride in the base's pass.
      base.matmulT(dy, rows, dx.buffer, { accumulate: dx.accumulate, compute: opts.compute });
      const low = matmulDyW(dxa, a.data, rows, inDim, r);
      const dropped = applyDropout(low, p, seed);
      addScaled(dx.buffer, 1, dropped);
      freeNow(low, dropped);
    } else {
      const lowRank = { left: dxa, right: a.data, rank: r, scale: 1 };
      base.matmulT(dy, rows, dx.buffer, { accumulate: dx.accumulate, compute: opts.compute, lowRank });
    }
  });
  return out;
}

/** `drop(x) · Aᵀ`. The dropped copy of x is not kept for backward (that would be one more activation per
 * adapter): the counter-based mask is redrawn from its seed there. */
function matmulXWtDropped(
  x: Float32Array,
  a: Float32Array,
  rows: number,
  r: number,
  p: number,
  seed: DropoutSeed | undefined,
): Float32Array {
  const xd = seed ? applyDropout(x, p, seed) : x;
  const xa = matmulXWt(xd, a, rows, a.length / r, r);
  if (seed) freeNow(xd);
  return xa;
}
