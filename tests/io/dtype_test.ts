import assert from "node:assert/strict";
import { elementCount, f32ToBf16, f32ToF16, halfToF32, isDType } from "../../lib/io/dtype.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { f32Bits, fixture } from "./helpers.ts";

const ALL_HALF_BITS = Uint16Array.from({ length: 65536 }, (_, i) => i);

Deno.test("halfToF32 F16 matches the runtime's Float16Array for all 65536 bit patterns", () => {
  const ours = halfToF32("F16", ALL_HALF_BITS);
  const oracle = Float32Array.from(new Float16Array(ALL_HALF_BITS.buffer));
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(oracle[i])) {
      // Sign and payload survive, and the NaN becomes quiet (as with F16C and torch).
      assert.equal(f32Bits(ours)[i], (((i & 0x8000) << 16) | 0x7fc00000 | ((i & 0x3ff) << 13)) >>> 0);
    } else {
      assert.equal(f32Bits(ours)[i], f32Bits(oracle)[i], `bits 0x${i.toString(16)}`);
    }
  }
});

Deno.test("halfToF32 BF16 is the top half of the f32", () => {
  const ours = halfToF32("BF16", ALL_HALF_BITS);
  for (let i = 0; i < 65536; i++) assert.equal(f32Bits(ours)[i], i * 65536);
});

Deno.test("halfToF32 writes into a given output and rejects a wrong length", () => {
  const out = new Float32Array(4);
  const bits = new Uint16Array([0x3c00, 0xc000, 0x7c00, 0x0001]);
  assert.equal(halfToF32("F16", bits, out), out);
  assert.deepEqual([...out], [1, -2, Infinity, 2 ** -24]);
  assert.throws(() => halfToF32("BF16", bits, new Float32Array(3)), RangeError);
});

Deno.test("f32ToBf16 and f32ToF16 match torch's .to() on the fixture values", () => {
  using reader = SafetensorsReader.open(fixture("dtypes.safetensors"));
  const values = reader.readTensor("values_f32").data as Float32Array;
  const checks = [
    { ours: f32ToBf16(values), torch: reader.readTensor("values_bf16").data as Uint16Array, name: "bf16" },
    { ours: f32ToF16(values), torch: reader.readTensor("values_f16").data as Uint16Array, name: "f16" },
  ];
  for (const { ours, torch, name } of checks) {
    for (let i = 0; i < values.length; i++) {
      if (Number.isNaN(values[i])) continue; // torch returns one canonical NaN; see the NaN test
      assert.equal(ours[i], torch[i], `${name} of ${values[i]}`);
    }
  }
});

Deno.test("f32ToF16 matches Float16Array rounding on random bit patterns", () => {
  const bits = new Uint32Array(200_000);
  let state = 12345;
  for (let i = 0; i < bits.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    // Bias towards the f16 range (exponents 100..150) where the rounding cases live.
    bits[i] = (state & 0x807fffff) | ((100 + (state % 51)) << 23);
  }
  bits.set([0x33000000, 0x33000001, 0x387fe000, 0x477ff000, 0x477fefff, 0x7f800000, 0xff800000, 0x80000000]);
  const values = new Float32Array(bits.buffer);
  const oracle = new Uint16Array(new Float16Array(values).buffer);
  assert.deepEqual(f32ToF16(values), oracle);
});

Deno.test("f32 → 16-bit conversions keep NaN a NaN (sign kept) and round ties to even", () => {
  const nans = new Float32Array(new Uint32Array([0x7f800001, 0xff800001, 0x7fc00000]).buffer);
  const bf16 = halfToF32("BF16", f32ToBf16(nans));
  const f16 = halfToF32("F16", f32ToF16(nans));
  for (const widened of [bf16, f16]) {
    assert.ok(widened.every(Number.isNaN));
    assert.deepEqual([...f32Bits(widened)].map((bits) => bits >>> 31), [0, 1, 0]);
  }
  // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: the even one (1) wins.
  const ties = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11]);
  assert.deepEqual([...halfToF32("BF16", f32ToBf16(ties))].slice(0, 2), [1, 1 + 2 ** -6]);
  assert.deepEqual([...halfToF32("F16", f32ToF16(ties))].slice(2), [1, 1 + 2 ** -9]);
});

Deno.test("dtype helpers: names and element counts", () => {
  assert.ok(isDType("BF16"));
  assert.ok(!isDType("F8_E4M3"));
  assert.ok(!isDType("toString"));
  assert.equal(elementCount([]), 1);
  assert.equal(elementCount([3, 0, 2]), 0);
  assert.equal(elementCount([2, 3, 4]), 24);
});
