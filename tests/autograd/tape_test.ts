/** The tape's bookkeeping: what gets recorded, which tensors get gradients, ownership, checkpointing. */
import assert from "node:assert/strict";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { recomputed } from "../../lib/autograd/recompute.ts";
import { add } from "../../lib/autograd/ops/add.ts";
import { linear } from "../../lib/autograd/ops/linear.ts";
import { loraLinear } from "../../lib/lora/linear_op.ts";
import { rmsnorm } from "../../lib/autograd/ops/rmsnorm.ts";
import { swiglu } from "../../lib/autograd/ops/swiglu.ts";
import { addGrad, Tape } from "../../lib/autograd/tape.ts";
import { Tensor } from "../../lib/autograd/tensor.ts";
import { Rng } from "../../lib/random.ts";
import { checkGradients, values } from "./_fd.ts";

const norm = values(16, 1, 1.2);

function params() {
  return {
    a: Tensor.parameter(values(4 * 16, 2, 0.25), [4, 16], "A"),
    b: Tensor.parameter(values(16 * 4, 3, 0.25), [16, 4], "B"),
  };
}

Deno.test("nothing is recorded while no input needs a gradient; frozen activations get no grad buffer", () => {
  using w = Nf4Weight.quantize(values(16 * 16, 4), 16, 16);
  const tape = new Tape();
  const x = new Tensor(values(3 * 16, 5), [3, 16]);
  const h = linear(tape, rmsnorm(tape, x, norm, 1e-5), w);
  assert.equal(tape.length, 0);
  assert.equal(h.requiresGrad, false);

  const { a, b } = params();
  const y = loraLinear(tape, h, { base: w, a, b, scale: 2 });
  const z = add(tape, h, linear(tape, y, w));
  assert.deepEqual(tape.ops, ["lora", "linear", "add"]);
  assert.ok(y.requiresGrad && z.requiresGrad);
  tape.backward(z, values(z.size, 6));
  assert.equal(tape.length, 0);
  for (const t of [x, h, y, z]) assert.equal(t.grad, undefined); // frozen, or intermediate and freed
  assert.ok(a.grad!.some((v) => v !== 0) && b.grad!.some((v) => v !== 0));
});

Deno.test("parameter gradients accumulate across backward passes", () => {
  using w = Nf4Weight.quantize(values(16 * 16, 4), 16, 16);
  const { a, b } = params();
  const x = new Tensor(values(3 * 16, 5), [3, 16]);
  const seed = values(48, 6);
  const run = () => {
    const tape = new Tape();
    tape.backward(loraLinear(tape, x, { base: w, a, b, scale: 2 }), seed.slice());
  };
  run();
  const once = a.grad!.slice();
  run();
  for (let i = 0; i < once.length; i++) assert.equal(a.grad![i], 2 * once[i]);
});

Deno.test("a branch that does not reach the root is not run", () => {
  const tape = new Tape();
  const x = new Tensor(values(8, 1), [2, 4], true);
  let ran = false;
  const side = new Tensor(new Float32Array(8), [2, 4]);
  tape.record("side", [x], [side], () => (ran = true));
  const y = swiglu(tape, x, x);
  tape.backward(y, values(8, 2));
  assert.equal(ran, false);
  assert.ok(x.grad);
});

Deno.test("root checks and gradient ownership", () => {
  const tape = new Tape();
  const x = new Tensor(values(8, 1), [2, 4], true);
  assert.throws(() => tape.backward(x), /pass its gradient as seed/);
  assert.throws(() => tape.backward(x, new Float32Array(3)), /seed has 3/);
  const t = new Tensor(new Float32Array(2), [2]);
  const g = Float32Array.of(1, 2);
  addGrad(t, g);
  assert.equal(t.grad, g); // adopted
  addGrad(t, Float32Array.of(1, 1));
  assert.deepEqual([...t.grad!], [2, 3]);
  assert.throws(() => addGrad(t, new Float32Array(3)), /3 elements/);
});

Deno.test("the finite-difference check catches a wrong gradient", () => {
  const wrong = (tape: Tape | undefined, x: Tensor) => {
    const out = new Tensor(x.data.map((v) => v * v), x.shape);
    tape?.record("square", [x], [out], () => addGrad(x, out.grad!.map((g, i) => g * x.data[i]))); // 2x missing
    return out;
  };
  assert.throws(() =>
    checkGradients([{ name: "x", data: values(6, 1), shape: [2, 3] }], (t, [x]) => wrong(t, x))
  );
});

/** rmsnorm → LoRA (with dropout) → swiglu with the input → residual add. */
function segment(w: Nf4Weight, a: Tensor, b: Tensor, rng: Rng) {
  return (tape: Tape | undefined, x: Tensor) => {
    const h = rmsnorm(tape, x, norm, 1e-5);
    const y = loraLinear(tape, h, { base: w, a, b, scale: 2, dropout: 0.2, rng }, { training: true });
    return add(tape, x, swiglu(tape, y, h));
  };
}

Deno.test("checkpointing gives bit-identical gradients and leaves the generator where it was", () => {
  using w = Nf4Weight.quantize(values(16 * 16, 4), 16, 16);
  const results = [false, true].map((useCheckpoint) => {
    const { a, b } = params();
    const rng = new Rng(42);
    const x = new Tensor(values(3 * 16, 5), [3, 16], true);
    const tape = new Tape();
    const f = segment(w, a, b, rng);
    const once = (t: Tensor) => useCheckpoint ? recomputed(tape, t, [a, b], f, rng) : f(tape, t);
    const y = once(once(x)); // two segments in a row: the second's input needs a gradient
    const afterForward = rng.state;
    tape.backward(y, values(y.size, 6));
    assert.deepEqual(rng.state, afterForward);
    assert.equal(tape.ops.length, 0);
    return { y: y.data, dx: x.grad!, da: a.grad!, db: b.grad! };
  });
  const [plain, ckpt] = results;
  assert.deepEqual(ckpt.y, plain.y);
  assert.deepEqual(ckpt.dx, plain.dx);
  assert.deepEqual(ckpt.da, plain.da);
  assert.deepEqual(ckpt.db, plain.db);
});

Deno.test("release: same gradients, intermediate buffers freed, leaves, root and seed untouched", () => {
  using w = Nf4Weight.quantize(values(16 * 16, 4), 16, 16);
  const { a, b } = params();
  const x = new Tensor(values(3 * 16, 5), [3, 16], true);
  const run = (release: boolean) => {
    for (const t of [a, b]) t.grad!.fill(0);
    x.grad = undefined;
    const tape = new Tape();
    const h = rmsnorm(tape, x, norm, 1e-5);
    const gate = loraLinear(tape, h, { base: w, a, b, scale: 2 });
    const up = linear(tape, h, w);
    const y = add(tape, swiglu(tape, gate, up), x);
    const seed = values(48, 6);
    tape.backward(y, seed, { release });
    return { grads: [a.grad!.slice(), b.grad!.slice(), x.grad!.slice()], h, gate, up, y, seed };
  };
  const plain = run(false);
  const freed = run(true);
  assert.deepEqual(freed.grads, plain.grads);
  for (const t of [freed.h, freed.gate, freed.up]) assert.equal(t.data.length, 0);
  for (const t of [plain.h, plain.gate, plain.up]) assert.equal(t.data.length, t.size);
  assert.equal(freed.y.data.length, 48);
  assert.equal(freed.seed.length, 48);
  assert.equal(x.data.length, 48);
  assert.equal(a.data.length, 64);
});
