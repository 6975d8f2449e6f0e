/**
 * Finite-difference gradient checks through the tape. The analytic side: the op's output gets a fixed
 * random "upstream" gradient w, `Tape.backward(y, w)` fills the inputs' grads. The numeric side: the scalar
 * L = Σ w·y (summed in f64) is re-evaluated with one input coordinate moved by ±eps (central differences;
 * the step is the f32-representable one actually taken). The forward is rebuilt from fresh copies each
 * time, so in-place ops are evaluated like the first time.
 */
import assert from "node:assert/strict";
import { Tape } from "../../lib/autograd/tape.ts";
import { Tensor } from "../../lib/autograd/tensor.ts";

/** Deterministic values in [-scale, scale). */
export function values(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return ((s / 4294967296) * 2 - 1) * scale;
  });
}

export interface Input {
  name: string;
  data: Float32Array;
  shape: number[];
  /** Checked (and given requiresGrad) unless false. */
  grad?: boolean;
}

export interface FdOptions {
  eps?: number;
  /** Budget on max|analytic − numeric| / max(|numeric|) per input. */
  tol?: number;
  /** Check at most this many coordinates per input (evenly spread); default all. */
  coords?: number;
}

/** Checks every input's gradient; returns the worst relative error seen per input. */
export function checkGradients(
  inputs: Input[],
  forward: (tape: Tape | undefined, xs: Tensor[]) => Tensor,
  opts: FdOptions = {},
): Record<string, number> {
  const { eps = 1e-2, tol = 1e-3 } = opts;
  const make = () => inputs.map((i) => new Tensor(i.data.slice(), i.shape, i.grad !== false, i.name));
  const tape = new Tape();
  const xs = make();
  const y = forward(tape, xs);
  const w = values(y.size, 777);
  tape.backward(y, w.slice());
  const objective = () => {
    const out = forward(undefined, make()).data;
    let s = 0;
    for (let i = 0; i < out.length; i++) s += out[i] * w[i];
    return s;
  };
  const report: Record<string, number> = {};
  for (const [k, input] of inputs.entries()) {
    if (input.grad === false) {
      assert.equal(xs[k].grad, undefined, `${input.name}: a frozen input got a gradient`);
      continue;
    }
    const analytic = xs[k].grad;
    assert.ok(analytic, `${input.name}: no gradient reached it`);
    const n = input.data.length;
    const stride = opts.coords ? Math.max(1, Math.floor(n / opts.coords)) : 1;
    let worst = 0;
    let scale = 1e-6;
    const pairs: [number, number][] = [];
    for (let i = 0; i < n; i += stride) {
      const v = input.data[i];
      const up = Math.fround(v + eps);
      const down = Math.fround(v - eps);
      input.data[i] = up;
      const fu = objective();
      input.data[i] = down;
      const fd = objective();
      input.data[i] = v;
      const numeric = (fu - fd) / (up - down);
      pairs.push([analytic[i], numeric]);
      scale = Math.max(scale, Math.abs(numeric));
    }
    for (const [a, num] of pairs) worst = Math.max(worst, Math.abs(a - num) / scale);
    report[input.name] = worst;
    assert.ok(
      worst <= tol,
      `${input.name}: max |analytic − numeric| / max|numeric| = ${worst.toExponential(2)} > ${tol}`,
    );
  }
  return report;
}
