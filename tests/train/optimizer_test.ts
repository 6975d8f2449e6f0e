import assert from "node:assert/strict";
import { AdamW, type Parameter } from "../../lib/train/optimizer.ts";
import { Rng } from "../../lib/random.ts";
import { bits } from "./_fake.ts";

function randomParams(seed: number): Parameter[] {
  const rng = new Rng(seed);
  const vec = (n: number) => Float32Array.from({ length: n }, () => rng.next() - 0.5);
  return [
    { name: "x", data: vec(5), grad: vec(5) },
    { name: "y", data: vec(70000), grad: vec(70000) },
  ];
}

function clone(ps: Parameter[]): Parameter[] {
  return ps.map((p) => ({ name: p.name, data: p.data.slice(), grad: p.grad.slice() }));
}

Deno.test("AdamW: matches torch's AdamW formula (f64 reference) over three steps", () => {
  const hp = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };
  const [p] = randomParams(1);
  const params = [{ ...p, data: p.data.slice() }];
  const opt = new AdamW(params, hp);
  const ref = Float64Array.from(p.data);
  const m = new Float64Array(5);
  const v = new Float64Array(5);
  for (let t = 1; t <= 3; t++) {
    const lr = 0.01 * t;
    opt.step(lr);
    for (let i = 0; i < 5; i++) {
      const g = p.grad[i];
      ref[i] *= 1 - lr * hp.weightDecay;
      m[i] = hp.beta1 * m[i] + (1 - hp.beta1) * g;
      v[i] = hp.beta2 * v[i] + (1 - hp.beta2) * g * g;
      const mhat = m[i] / (1 - hp.beta1 ** t);
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - hp.beta2 ** t) + hp.eps;
      ref[i] -= lr * mhat / denom;
    }
    for (let i = 0; i < 5; i++) assert.ok(Math.abs(params[0].data[i] - ref[i]) < 1e-6, `t=${t} i=${i}`);
  }
  assert.equal(opt.stepCount, 3);
});

Deno.test("AdamW: exported state restores exactly; continuing gives bit-identical parameters", () => {
  const a = randomParams(2);
  const optA = new AdamW(a, { weightDecay: 0.01 });
  for (let t = 0; t < 3; t++) optA.step(1e-3);
  const b = clone(a);
  const optB = new AdamW(b, { weightDecay: 0.01 });
  const state = optA.state();
  optB.loadState(state);
  assert.equal(optB.stepCount, 3);
  // The export is a copy: stepping A does not change it.
  const before = bits(state.moments[1].m);
  for (let t = 0; t < 2; t++) {
    optA.step(5e-4);
    optB.step(5e-4);
  }
  assert.deepEqual(bits(state.moments[1].m), before);
  for (let i = 0; i < a.length; i++) assert.deepEqual(bits(b[i].data), bits(a[i].data));
  assert.deepEqual(bits(optB.state().moments[1].v), bits(optA.state().moments[1].v));
});

Deno.test("AdamW: a state view is the live moments, equal to the copy, without copying", () => {
  const opt = new AdamW(randomParams(2));
  opt.step(1e-3);
  const [view, copy] = [opt.state({ view: true }), opt.state()];
  assert.deepEqual(bits(view.moments[0].v), bits(copy.moments[0].v));
  assert.notEqual(view.moments[0].v.buffer, copy.moments[0].v.buffer);
  assert.equal(opt.state({ view: true }).moments[0].v, view.moments[0].v, "the same array each time");
  const before = bits(view.moments[0].m);
  opt.step(1e-3);
  assert.notDeepEqual(bits(view.moments[0].m), before, "the view follows the next step");
});

Deno.test("AdamW: a state for other parameters is refused by name", () => {
  const opt = new AdamW(randomParams(3));
  const state = opt.state();
  assert.throws(
    () => new AdamW([{ name: "z", data: new Float32Array(5), grad: new Float32Array(5) }]).loadState(state),
    /missing "z"; unknown "x", "y"/,
  );
  const short = { step: 1, moments: state.moments.map((s) => ({ ...s, m: s.m.subarray(1) })) };
  assert.throws(() => opt.loadState(short), /"x" has 5 values, the state 4 \(m\)/);
  assert.throws(
    () => new AdamW([{ name: "x", data: new Float32Array(2), grad: new Float32Array(3) }]),
    /gradient of 3/,
  );
});
