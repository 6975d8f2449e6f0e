/**
 * The LM head (frozen bf16) fused with cross-entropy, so that at most `chunkRows × vocab` logits exist at a
 * time (a full `[tokens, vocab]` logit matrix is the largest activation of a small model: 256 tokens ×
 * 49152 words = 50 MB).
 *
 * Only rows with a target take part: they are gathered into chunks; per chunk `logits = chunk · Headᵀ`,
 * `crossEntropy` turns the logits into their gradient in place (scaled by 1 / denominator, so it is the
 * gradient of the mean loss), and `dX_chunk = dlogits · Head` is scattered back to those rows.
 *
 * The gradient is thus computed in the FORWARD pass and the logits are dropped: the backward only scales
 * the kept dX by the loss's incoming gradient (1 for a plain `backward()`). This is why the loss must be
 * the root of the graph (nothing may use it but a scale). Without a tape, or when x needs no gradient
 * (evaluation), the dX products are skipped.
 */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import type { Bf16Matrix } from "../../../ffi/bf16.ts";
import type { Compute } from "../../../ffi/nf4.ts";
import { crossEntropy, IGNORE_INDEX, scaleInPlace } from "../../../ffi/ops.ts";
import { freeNow } from "../free.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export interface LmHeadLossOptions {
  /**
   * Rows per logits chunk (default 128). Each chunk converts and packs the whole bf16 head twice (forward and
   * dX), so fewer, taller chunks save that cost: on SmolLM2 (vocab 49152) 128 rows take ~20 % less time than
   * 64, for 25 MB of logits instead of 12.5 MB; 256 gains little more for twice the memory.
   */
  chunkRows?: number;
  /** The loss is `Σ token losses / denominator`; default the number of rows with a target (the mean). */
  denominator?: number;
  /** Multiply in f32 (default) or bf16 (the head already is bf16; rows and logit gradients get rounded). */
  compute?: Compute;
}

export interface LmHeadLoss {
  /** `[1]`: the loss, a root for `Tape.backward`. */
  loss: Tensor;
  /** Σ of the per-token losses (f64) and how many tokens had a target. */
  lossSum: number;
  count: number;
}

export function lmHeadCrossEntropy(
  tape: Tape | undefined,
  x: Tensor,
  head: Bf16Matrix,
  targets: Int32Array,
  opts: LmHeadLossOptions = {},
): LmHeadLoss {
  const [rows, dim, vocab] = [x.rows, x.cols, head.rows];
  if (dim !== head.cols) {
    throw new RangeError(`lmHeadCrossEntropy: x has ${dim} columns, the head ${head.cols}`);
  }
  if (targets.length !== rows) {
    throw new RangeError(`lmHeadCrossEntropy: ${targets.length} targets for ${rows} rows`);
  }
  const chunkRows = opts.chunkRows ?? 128;
  if (!Number.isInteger(chunkRows) || chunkRows < 1) {
    throw new RangeError(`lmHeadCrossEntropy: chunkRows must be a positive integer, got ${chunkRows}`);
  }
  const lossRows: number[] = [];
  for (let i = 0; i < rows; i++) if (targets[i] !== IGNORE_INDEX) lossRows.push(i);
  const denominator = opts.denominator ?? lossRows.length;
  if (!(denominator > 0) && lossRows.length > 0) {
    throw new RangeError(`lmHeadCrossEntropy: denominator must be > 0, got ${denominator}`);
  }
  const wantGrad = tape !== undefined && x.requiresGrad && lossRows.length > 0;
  const dx = wantGrad ? new Float32Array(rows * dim) : undefined;

  const size = Math.min(chunkRows, lossRows.length);
  // Chunk buffers: each chunk writes the part it reads.
  const xc = outputBuffer(size * dim);
  const tc = new Int32Array(size);
  const logits = outputBuffer(size * vocab);
  const dxc = wantGrad ? outputBuffer(size * dim) : undefined;
  let lossSum = 0;
  for (let c0 = 0; c0 < lossRows.length; c0 += chunkRows) {
    const n = Math.min(chunkRows, lossRows.length - c0);
    for (let j = 0; j < n; j++) {
      const i = lossRows[c0 + j];
      xc.set(x.data.subarray(i * dim, (i + 1) * dim), j * dim);
      tc[j] = targets[i];
    }
    const lg = logits.subarray(0, n * vocab);
    head.matmul(xc.subarray(0, n * dim), n, lg, { compute: opts.compute });
    lossSum += crossEntropy(lg, tc.subarray(0, n), n, vocab, denominator > 0 ? 1 / denominator : 0).lossSum;
    if (!dx || !dxc) continue;
    head.matmulT(lg, n, dxc.subarray(0, n * dim), { compute: opts.compute });
    for (let j = 0; j < n; j++) {
      const i = lossRows[c0 + j];
      dx.set(dxc.subarray(j * dim, (j + 1) * dim), i * dim);
    }
  }
  // The chunk buffers (25 MB of logits on SmolLM2) are dead now: free them at once rather than whenever the
  // garbage collector gets to them — the backward pass that follows is where training's memory peaks.
  freeNow(logits, xc, dxc);
  const loss = new Tensor(Float32Array.of(lossRows.length > 0 ? lossSum / denominator : 0), [1]);
  if (dx) {
    tape!.record("lm_head_cross_entropy", [x], [loss], () => {
      const g = loss.grad![0];
      if (g !== 1) scaleInPlace(dx, g);
      addGrad(x, dx);
    });
  }
  return { loss, lossSum, count: lossRows.length };
}
