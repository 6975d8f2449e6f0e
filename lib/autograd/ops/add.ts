/** The residual add `y = a + b` (a new buffer: the residual stream is never written in place). */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import { addScaled } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/** `a += b` in a's own buffer, recording nothing: for inference, where nothing else reads `a` again. */
export function addInPlace(a: Tensor, b: Tensor): Tensor {
  if (a.size !== b.size) throw new RangeError(`addInPlace: shapes [${a.shape}] and [${b.shape}] differ`);
  addScaled(a.data, 1, b.data);
  return new Tensor(a.data, a.shape);
}

/** `outputUnused`: record for backward only; y's values are left unspecified (nothing may read them). */
export function add(
  tape: Tape | undefined,
  a: Tensor,
  b: Tensor,
  opts: { outputUnused?: boolean } = {},
): Tensor {
  if (a.size !== b.size) throw new RangeError(`add: shapes [${a.shape}] and [${b.shape}] differ`);
  const y = outputBuffer(a.size);
  if (!opts.outputUnused) {
    y.set(a.data);
    addScaled(y, 1, b.data);
  }
  const out = new Tensor(y, a.shape);
  tape?.record("add", [a, b], [out], () => {
    const g = out.grad!;
    // The incoming buffer can be handed to one input only; the other gets a copy (or an addition).
    const first = a.requiresGrad ? a : b;
    const second = a.requiresGrad && b.requiresGrad ? b : undefined;
    if (second) {
      if (second.grad) addScaled(second.grad, 1, g);
      else (second.grad = outputBuffer(g.length)).set(g);
    }
    addGrad(first, g);
  });
  return out;
}
