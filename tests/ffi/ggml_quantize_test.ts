/**
 * ggml quantizers (rust-kernels/src/ggml/quantize/): bytes equal to gguf-py's `gguf.quants.quantize`
 * (bit-exact with ggml's reference) for Q8_0, Q4_0, Q5_0 and F16 on committed fixtures
 * (tests/fixtures/gguf/make_quant_fixtures.py); the K-quants round-trip within their error budgets (their
 * byte-level and error-level tests are in Rust, gguf-py cannot quantize them); the wrapper's checks.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ggmlDequantize, ggmlQuantize, QUANTIZABLE_TYPES } from "../../ffi/ggml.ts";
import { ggmlTypeByName } from "../../ffi/ggml_types.ts";
import { KernelError } from "../../ffi/errors.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/gguf/", import.meta.url));
const input = new Float32Array(readFileSync(`${FIXTURES}quant_input.f32`).buffer.slice(0));

for (const type of ["Q8_0", "Q4_0", "Q5_0", "F16"] as const) {
  Deno.test(`${type}: the same bytes as gguf-py's quantizer`, () => {
    const expected = new Uint8Array(readFileSync(`${FIXTURES}quant_${type.toLowerCase()}.bin`));
    const got = ggmlQuantize(type, input);
    assert.equal(got.length, expected.length);
    const first = got.findIndex((b, i) => b !== expected[i]);
    assert.equal(first, -1, `first differing byte ${first}: ${got[first]} vs ${expected[first]}`);
  });
}

Deno.test("every quantizable type round-trips through the dequantizer within its budget", () => {
  // Relative RMS error budgets, ≈ 1.5× what these formats reach on this input (measured: F16 2.6e-4,
  // Q8_0 0.015, Q6_K 0.029, Q5_0 0.077, Q4_K 0.094, Q4_0 0.150; the 0.9 outlier among values of ~0.02
  // widens its block's step, which dominates the 8-bit error).
  const budget: Record<string, number> = {
    F16: 4e-4,
    Q8_0: 0.023,
    Q6_K: 0.045,
    Q5_0: 0.115,
    Q4_K: 0.14,
    Q4_0: 0.23,
  };
  for (const name of QUANTIZABLE_TYPES) {
    const type = ggmlTypeByName(name);
    const back = ggmlDequantize(type, ggmlQuantize(name, input), new Float32Array(input.length));
    let err = 0, sum = 0;
    for (let i = 0; i < input.length; i++) {
      err += (input[i] - back[i]) ** 2;
      sum += input[i] ** 2;
    }
    const relative = Math.sqrt(err / sum);
    assert.ok(relative < budget[name], `${name}: relative RMS error ${relative} ≥ ${budget[name]}`);
  }
});

Deno.test("ggmlQuantize refuses what it cannot do, naming the argument", () => {
  assert.throws(
    () => ggmlQuantize("Q8_0", new Float32Array(31)),
    /31 values is not a whole number of Q8_0 blocks/,
  );
  assert.throws(() => ggmlQuantize(ggmlTypeByName("Q4_1"), new Float32Array(32)), /cannot quantize to Q4_1/);
  assert.throws(
    () => ggmlQuantize("Q4_0", new Float32Array(32), new Uint8Array(17)),
    /dst: expected 18 bytes/,
  );
  const x = new Float32Array(64);
  x[40] = Infinity;
  assert.throws(() => ggmlQuantize("Q4_K", new Float32Array(256).fill(NaN)), KernelError);
  assert.throws(() => ggmlQuantize("Q8_0", x), /value 40 is inf/);
  assert.throws(() => ggmlTypeByName("Q9_9"), /unknown ggml type "Q9_9"/);
});
