/** Every op's backward against central finite differences of its forward, through the tape. */
import assert from "node:assert/strict";
import { Bf16Matrix } from "../../ffi/bf16.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { IGNORE_INDEX, ropeTable } from "../../ffi/ops.ts";
import { add } from "../../lib/autograd/ops/add.ts";
import { attention } from "../../lib/autograd/ops/attention.ts";
import { biasInPlace } from "../../lib/autograd/ops/bias.ts";
import { linear } from "../../lib/autograd/ops/linear.ts";
import { lmHeadCrossEntropy } from "../../lib/autograd/ops/lm_head_loss.ts";
import { loraLinear } from "../../lib/lora/linear_op.ts";
import { rmsnorm } from "../../lib/autograd/ops/rmsnorm.ts";
import { ropeInPlace } from "../../lib/autograd/ops/rope.ts";
import { swiglu } from "../../lib/autograd/ops/swiglu.ts";
import { Tape } from "../../lib/autograd/tape.ts";
import { Tensor } from "../../lib/autograd/tensor.ts";
import { f32ToBf16, halfToF32 } from "../../lib/io/dtype.ts";
import { DenseLinear } from "../../lib/nn/linear.ts";
import { Rng } from "../../lib/random.ts";
import { checkGradients, values } from "./_fd.ts";

Deno.test("rmsnorm: dx by finite differences (weight frozen)", () => {
  const w = values(8, 3, 1.5);
  checkGradients([{ name: "x", data: values(24, 1), shape: [3, 8] }], (t, [x]) => rmsnorm(t, x, w, 1e-5));
});

Deno.test("rope (in place): the inverse rotation is the gradient", () => {
  const table = ropeTable(Uint32Array.from([0, 5, 17]), Float32Array.from([1, 0.1, 0.01]));
  checkGradients(
    [{ name: "x", data: values(3 * 2 * 6, 2), shape: [3, 12] }],
    (t, [x]) => ropeInPlace(t, x, 2, table),
  );
});

Deno.test("attention: q, k, v gradients, two sequences of one batch, GQA", () => {
  const layout = { heads: 4, kvHeads: 2, headDim: 4, sequences: [[0, 3], [3, 4]] as [number, number][] };
  checkGradients(
    [
      { name: "q", data: values(7 * 16, 4), shape: [7, 16] },
      { name: "k", data: values(7 * 8, 5), shape: [7, 8] },
      { name: "v", data: values(7 * 8, 6), shape: [7, 8] },
    ],
    (t, [q, k, v]) => attention(t, q, k, v, layout),
  );
});

Deno.test("attention: sequences do not see each other", () => {
  const layout = { heads: 2, kvHeads: 1, headDim: 4, sequences: [[0, 2], [2, 3]] as [number, number][] };
  const [q, k, v] = [values(5 * 8, 1), values(5 * 4, 2), values(5 * 4, 3)];
  const whole = attention(
    undefined,
    new Tensor(q, [5, 8]),
    new Tensor(k, [5, 4]),
    new Tensor(v, [5, 4]),
    layout,
  );
  const k2 = k.slice();
  const v2 = v.slice();
  k2.fill(9, 0, 8); // change the first sequence's keys and values
  v2.fill(9, 0, 8);
  const other = attention(
    undefined,
    new Tensor(q, [5, 8]),
    new Tensor(k2, [5, 4]),
    new Tensor(v2, [5, 4]),
    layout,
  );
  assert.deepEqual(other.data.subarray(16), whole.data.subarray(16));
});

Deno.test("swiglu: gate and up gradients", () => {
  checkGradients(
    [{ name: "g", data: values(24, 7, 3), shape: [4, 6] }, { name: "u", data: values(24, 8), shape: [4, 6] }],
    (t, [g, u]) => swiglu(t, g, u),
  );
});

Deno.test("add: both inputs, one input, and the same tensor twice", () => {
  const a = { name: "a", data: values(12, 9), shape: [3, 4] };
  const b = { name: "b", data: values(12, 10), shape: [3, 4] };
  checkGradients([a, b], (t, [x, y]) => add(t, x, y));
  checkGradients([{ ...a, grad: false }, b], (t, [x, y]) => add(t, x, y));
  checkGradients([a], (t, [x]) => add(t, x, x));
});

Deno.test("bias (frozen, in place): the gradient passes through", () => {
  const bias = values(5, 11);
  checkGradients([{ name: "x", data: values(15, 12), shape: [3, 5] }], (t, [x]) => biasInPlace(t, x, bias));
});

Deno.test("frozen linear (dense and NF4): gradient to the input only", () => {
  const dense = new DenseLinear(values(6 * 70, 13), 6, 70);
  using nf4 = Nf4Weight.quantize(values(6 * 70, 13), 6, 70);
  for (const w of [dense, nf4]) {
    checkGradients([{ name: "x", data: values(3 * 70, 14), shape: [3, 70] }], (t, [x]) => linear(t, x, w));
  }
});

Deno.test("LoRA linear: x, A, B gradients (NF4 base), without and with dropout", () => {
  using base = Nf4Weight.quantize(values(10 * 12, 15), 10, 12);
  const inputs = [
    { name: "x", data: values(5 * 12, 16), shape: [5, 12] },
    { name: "A", data: values(3 * 12, 17, 0.3), shape: [3, 12] },
    { name: "B", data: values(10 * 3, 18, 0.3), shape: [10, 3] },
  ];
  checkGradients(
    inputs,
    (t, [x, a, b]) => loraLinear(t, x, { base, a, b, scale: 2, dropout: 0, rng: new Rng(0) }),
  );
  // The same mask every evaluation: a fresh generator with the same seed.
  checkGradients(
    inputs,
    (t, [x, a, b]) =>
      loraLinear(t, x, { base, a, b, scale: 0.5, dropout: 0.3, rng: new Rng(5) }, { training: true }),
  );
  // A frozen input gets nothing, the others are still right.
  checkGradients(
    [{ ...inputs[0], grad: false }, inputs[1], inputs[2]],
    (t, [x, a, b]) => loraLinear(t, x, { base, a, b, scale: 2, dropout: 0, rng: new Rng(0) }),
  );
});

Deno.test("LoRA dropout is off outside training and changes the output in training", () => {
  using base = Nf4Weight.quantize(values(10 * 12, 15), 10, 12);
  const x = new Tensor(values(60, 1), [5, 12]);
  const w = { base, a: new Tensor(values(36, 2), [3, 12]), b: new Tensor(values(30, 3), [10, 3]), scale: 1 };
  const plain = loraLinear(undefined, x, w).data;
  assert.deepEqual(loraLinear(undefined, x, { ...w, dropout: 0.5, rng: new Rng(1) }).data, plain);
  assert.notDeepEqual(
    loraLinear(undefined, x, { ...w, dropout: 0.5, rng: new Rng(1) }, { training: true }).data,
    plain,
  );
});

Deno.test("LM head + cross-entropy (chunked): dx, ignored rows, loss value and seed scaling", () => {
  const [rows, dim, vocab] = [9, 8, 11];
  const head = new Bf16Matrix(f32ToBf16(values(vocab * dim, 19, 2)), vocab, dim);
  const targets = Int32Array.from([3, IGNORE_INDEX, 0, 10, 5, IGNORE_INDEX, 7, 7, 1]);
  const x = { name: "x", data: values(rows * dim, 20), shape: [rows, dim] };
  for (const chunkRows of [1, 3, 64]) {
    checkGradients([x], (t, [h]) => lmHeadCrossEntropy(t, h, head, targets, { chunkRows }).loss);
  }
  // The loss equals a plain full-logits reference; chunks do not change it beyond rounding.
  const logits = head.matmul(x.data, rows);
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    if (targets[r] === IGNORE_INDEX) continue;
    const row = logits.subarray(r * vocab, (r + 1) * vocab);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    sum += lse - row[targets[r]];
  }
  const got = lmHeadCrossEntropy(undefined, new Tensor(x.data, [rows, dim]), head, targets, { chunkRows: 4 });
  assert.equal(got.count, 7);
  assert.ok(Math.abs(got.loss.data[0] - sum / 7) < 1e-5, `${got.loss.data[0]} vs ${sum / 7}`);
  // Rows without a target get a zero gradient; a seed of 2.5 scales the rest.
  const tape = new Tape();
  const h = new Tensor(x.data.slice(), [rows, dim], true);
  const { loss } = lmHeadCrossEntropy(tape, h, head, targets);
  tape.backward(loss, Float32Array.of(2.5));
  assert.ok(h.grad!.subarray(dim, 2 * dim).every((v) => v === 0));
  const tape1 = new Tape();
  const h1 = new Tensor(x.data.slice(), [rows, dim], true);
  tape1.backward(lmHeadCrossEntropy(tape1, h1, head, targets).loss);
  for (let i = 0; i < h1.grad!.length; i++) assert.ok(Math.abs(h.grad![i] - 2.5 * h1.grad![i]) < 1e-7);
});

Deno.test("LM head + cross-entropy with bf16 compute: the rows rounded to bf16, the same loss as f32 on them", () => {
  const [rows, dim, vocab] = [6, 40, 70];
  const head = new Bf16Matrix(f32ToBf16(values(vocab * dim, 31, 2)), vocab, dim);
  const targets = Int32Array.from([3, IGNORE_INDEX, 0, 69, 5, 12]);
  const x = values(rows * dim, 32);
  const roundedX = halfToF32("BF16", f32ToBf16(x));
  assert.ok(roundedX.some((v, i) => v !== x[i]), "the test input must not already be bf16");
  const lossOf = (data: Float32Array, compute: "f32" | "bf16") => {
    const tape = new Tape();
    const h = new Tensor(data.slice(), [rows, dim], true);
    const { loss } = lmHeadCrossEntropy(tape, h, head, targets, { compute });
    tape.backward(loss);
    return { loss: loss.data[0], grad: h.grad! };
  };
  // bf16 products of bf16 operands are exact: X rounded once gives the f32 run on the rounded rows, up to the
  // order of the f32 sums (and dlogits rounded to bf16 for dX).
  const bf16 = lossOf(x, "bf16");
  const onRounded = lossOf(roundedX, "f32");
  const exact = lossOf(x, "f32");
  assert.ok(Math.abs(bf16.loss - onRounded.loss) < 1e-5, `${bf16.loss} vs ${onRounded.loss}`);
  assert.ok(bf16.loss !== exact.loss, "bf16 compute must round the rows (else the option is not passed)");
  // dX sums dlogits (each rounded: relative 2⁻⁹) that cancel (a row of them sums to 0), so the error is
  // bounded against the gradient's scale, not each element.
  const scale = Math.max(...onRounded.grad.map(Math.abs));
  for (let i = 0; i < bf16.grad.length; i++) {
    const err = Math.abs(bf16.grad[i] - onRounded.grad[i]);
    assert.ok(err < 1e-2 * scale, `dx[${i}]: ${bf16.grad[i]} vs ${onRounded.grad[i]} (scale ${scale})`);
  }
});

Deno.test("a small graph: rmsnorm → LoRA → rope → attention → add, all at once", () => {
  using base = Nf4Weight.quantize(values(16 * 16, 21), 16, 16);
  const norm = values(16, 22, 1.2);
  const table = ropeTable(Uint32Array.from([0, 1, 2, 0, 1]), Float32Array.from([1, 0.1]));
  const layout = { heads: 4, kvHeads: 4, headDim: 4, sequences: [[0, 3], [3, 2]] as [number, number][] };
  checkGradients(
    [
      { name: "x", data: values(5 * 16, 23), shape: [5, 16] },
      { name: "A", data: values(2 * 16, 24, 0.3), shape: [2, 16] },
      { name: "B", data: values(16 * 2, 25, 0.3), shape: [16, 2] },
    ],
    (t, [x, a, b]) => {
      const h = rmsnorm(t, x, norm, 1e-5);
      const q = ropeInPlace(t, loraLinear(t, h, { base, a, b, scale: 2 }), 4, table);
      const k = ropeInPlace(t, linear(t, h, base), 4, table);
      return add(t, x, attention(t, q, k, h, layout));
    },
  );
});
