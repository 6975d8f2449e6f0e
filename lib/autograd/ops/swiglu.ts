/** SwiGLU's gating: `h = silu(g) · u` (g = gate_proj(x), u = up_proj(x)). */
import { swigluBackward, swigluForward } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export function swiglu(tape: Tape | undefined, g: Tensor, u: Tensor): Tensor {
  const out = new Tensor(swigluForward(g.data, u.data), g.shape);
  const [gData, uData] = [g.data, u.data];
  tape?.record("swiglu", [g, u], [out], () => {
    const { dg, du } = swigluBackward(out.grad!, gData, uData);
    if (g.requiresGrad) addGrad(g, dg);
    if (u.requiresGrad) addGrad(u, du);
  });
  return out;
}
