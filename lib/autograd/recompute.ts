/**
 * A segment of the graph (a decoder block) recomputed in the backward pass instead of kept — what HF calls
 * gradient checkpointing. The forward runs without recording, so none of the segment's activations outlive
 * it; only its input is kept. The backward recomputes the segment on a sub-tape from that input and
 * backpropagates through it right away.
 *
 * The recomputation must equal the first forward bit for bit: the kernels are deterministic, and the random
 * state the segment draws from (dropout masks) is rewound to where it was and restored afterwards, so the
 * gradients are identical to those of the graph that kept everything (same ops, same order).
 *
 * The recomputation's output values are never read (its gradient comes from the tape), so `fn` is told
 * (`again`) and may leave out work whose only reader is that output — a decoder block skips its last
 * projection (`down_proj`, a seventh of its GEMM work) and the residual add after it.
 */
import type { Rng } from "../random.ts";
import { addGrad, Tape } from "./tape.ts";
import { Tensor } from "./tensor.ts";

/**
 * `fn(tape, x, again)` computes the segment (`again`: the backward's recomputation, whose output values
 * nobody reads); `params` lists the trainable tensors it uses.
 */
export function recomputed(
  tape: Tape | undefined,
  x: Tensor,
  params: readonly Tensor[],
  fn: (tape: Tape | undefined, x: Tensor, again: boolean) => Tensor,
  rng?: Rng,
): Tensor {
  if (!tape || ![x, ...params].some((t) => t.requiresGrad)) return fn(tape, x, false);
  const start = rng?.state;
  const first = fn(undefined, x, false);
  const out = new Tensor(first.data, first.shape);
  const xData = x.data;
  tape.record("recomputed", [x, ...params], [out], () => {
    const after = rng?.state;
    if (rng && start) rng.state = start;
    const sub = new Tape();
    const input = new Tensor(xData, x.shape, x.requiresGrad);
    const again = fn(sub, input, true);
    if (rng && after) rng.state = after;
    // The sub-tape is private: free each recomputed activation and gradient after its last reader, not
    // whenever the collector gets to them (a 7B block's are ~200 MB; peak RSS varied by ~100 MB with GC timing).
    sub.backward(again, out.grad!, { release: true });
    if (x.requiresGrad && input.grad) addGrad(x, input.grad);
  });
  return out;
}
