/**
 * Our NF4 quantization against bitsandbytes itself: the fixtures in tests/fixtures/nf4 were written by
 * make_nf4_fixtures.py with pip-installed bitsandbytes. Packed codes, scale codes, nested scales, offset
 * and dequantized values must be identical, bit for bit.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { nf4Tables, Nf4Weight } from "../../ffi/nf4.ts";
import { kernelName } from "../../ffi/runtime.ts";
import { testOnEveryPath } from "./per_path.ts";

const DIR = new URL("../fixtures/nf4/", import.meta.url).pathname;

interface Case {
  name: string;
  shape: [number, number];
  input: string;
  packed: string;
  dq: { absmax_codes: string; nested_absmax: string; offset_f32_bits: string; dequantized: string };
  plain: { absmax: string; packed: string; dequantized: string };
}
const manifest = JSON.parse(readFileSync(join(DIR, "cases.json"), "utf8")) as {
  code: number[];
  dynamic_map_file: string;
  cases: Case[];
};

const bytes = (file: string) => new Uint8Array(readFileSync(join(DIR, file)));
const floats = (file: string) => new Float32Array(bytes(file).buffer);
const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);

function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>): string {
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return `index ${i}: got ${got[i]}, want ${want[i]}`;
  }
  return got.length === want.length ? "none" : `length ${got.length} vs ${want.length}`;
}

Deno.test("NF4 code values and dynamic map equal bitsandbytes'", () => {
  const { code, dynamicMap } = nf4Tables();
  assert.deepEqual(Array.from(code), manifest.code);
  assert.deepEqual(bits(dynamicMap), bits(floats(manifest.dynamic_map_file)));
});

for (const c of manifest.cases) {
  Deno.test(`NF4 ${c.name} ${c.shape.join("x")}: double-quantized parts byte-identical to bitsandbytes`, () => {
    const input = floats(c.input);
    using q = Nf4Weight.quantize(input, c.shape[0], c.shape[1]);
    const parts = q.toParts();
    assert.equal(firstMismatch(parts.packed, bytes(c.packed)), "none", "packed codes");
    assert.equal(firstMismatch(parts.absmaxCodes!, bytes(c.dq.absmax_codes)), "none", "absmax codes");
    assert.equal(
      firstMismatch(bits(parts.nestedAbsmax!), bits(floats(c.dq.nested_absmax))),
      "none",
      "nested absmax",
    );
    const offsetBits = new Uint32Array(new Float32Array([parts.offset!]).buffer)[0];
    assert.equal(`0x${offsetBits.toString(16).padStart(8, "0")}`, c.dq.offset_f32_bits, "offset");
    assert.equal(firstMismatch(bits(q.dequantize()), bits(floats(c.dq.dequantized))), "none", "dequantized");
  });

  Deno.test(`NF4 ${c.name}: plain f32 scales byte-identical to bitsandbytes`, () => {
    using q = Nf4Weight.quantize(floats(c.input), c.shape[0], c.shape[1], { doubleQuant: false });
    const parts = q.toParts();
    assert.equal(firstMismatch(parts.packed, bytes(c.plain.packed)), "none", "packed codes");
    assert.equal(firstMismatch(bits(parts.absmax!), bits(floats(c.plain.absmax))), "none", "absmax");
    assert.equal(
      firstMismatch(bits(q.dequantize()), bits(floats(c.plain.dequantized))),
      "none",
      "dequantized",
    );
  });
}

// bitsandbytes' parts imported as they are dequantize identically on every path (one child process per path).
testOnEveryPath(import.meta, {
  "NF4 bitsandbytes parts imported as they are dequantize identically": () => {
    for (const c of manifest.cases) {
      using q = Nf4Weight.fromParts({
        shape: c.shape,
        packed: bytes(c.packed),
        absmaxCodes: bytes(c.dq.absmax_codes),
        nestedAbsmax: floats(c.dq.nested_absmax),
        offset: new Float32Array(new Uint32Array([parseInt(c.dq.offset_f32_bits, 16)]).buffer)[0],
      });
      const what = `${c.name} on ${kernelName()}`;
      assert.equal(firstMismatch(bits(q.dequantize()), bits(floats(c.dq.dequantized))), "none", what);
    }
  },
});
