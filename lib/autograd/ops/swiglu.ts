/**
 * The gate of a gated MLP: `h = act(g) · u` (g = gate_proj(x), u = up_proj(x)), act = SiLU (SwiGLU: Llama,
 * Qwen, Phi) or tanh GELU (GeGLU: Gemma).
 */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import { type GateActivation, gluBackward, gluForward } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

/** `outputUnused`: record for backward only (it reads g and u); h's values are left unspecified. */
export function swiglu(
  tape: Tape | undefined,
  g: Tensor,
  u: Tensor,
  activation: GateActivation = "silu",
  opts: { outputUnused?: boolean } = {},
): Tensor {
  const h = opts.outputUnused ? outputBuffer(g.size) : gluForward("swiglu", activation, g.data, u.data);
  const out = new Tensor(h, g.shape);
  const [gData, uData] = [g.data, u.data];
  tape?.record(activation === "silu" ? "swiglu" : "geglu", [g, u], [out], () => {
    const { dg, du } = gluBackward("swiglu backward", activation, out.grad!, gData, uData);
    if (g.requiresGrad) addGrad(g, dg);
    if (u.requiresGrad) addGrad(u, du);
  });
  return out;
}
