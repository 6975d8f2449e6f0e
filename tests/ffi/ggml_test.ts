/**
 * The ggml dequantization wrapper: argument checks in TS, and the kernel's own checks behind them.
 * (Values are checked against gguf-py in tests/io/gguf_test.ts.)
 */
import assert from "node:assert/strict";
import { check, KernelError } from "../../ffi/errors.ts";
import { ggmlDequantize } from "../../ffi/ggml.ts";
import { kernels } from "../../ffi/load.ts";
import { GGML_TYPES, ggmlType } from "../../ffi/ggml_types.ts";

Deno.test("the TS type table and the kernel agree on which types dequantize and on their sizes", () => {
  const k = kernels();
  for (const t of GGML_TYPES.values()) {
    // One block of zeros: accepted exactly when the table says the kernel supports the type.
    const status = k.qlora_ggml_dequantize(
      t.id,
      new Uint8Array(t.blockBytes),
      t.blockBytes,
      new Float32Array(t.blockElements),
      t.blockElements,
    );
    assert.equal(status, t.dequantize ? 0 : 2, `${t.name}: status ${status}`);
    if (t.dequantize) {
      // One byte short of a block is refused by the kernel's own length check.
      const short = k.qlora_ggml_dequantize(
        t.id,
        new Uint8Array(t.blockBytes - 1),
        t.blockBytes - 1,
        new Float32Array(t.blockElements),
        t.blockElements,
      );
      assert.equal(short, 1, t.name);
    }
  }
});

Deno.test("ggmlDequantize decodes a hand-made Q8_0 block and returns dst", () => {
  const block = new Uint8Array(34);
  block.set([0x00, 0x38]); // d = 0.5 as f16
  for (let i = 0; i < 32; i++) block[2 + i] = (i - 16) & 0xff;
  const out = ggmlDequantize(8, block, new Float32Array(32));
  assert.deepEqual(out, Float32Array.from({ length: 32 }, (_, i) => (i - 16) * 0.5));
  assert.deepEqual(
    ggmlDequantize(ggmlType(12)!, new Uint8Array(0), new Float32Array(0)),
    new Float32Array(0),
  );
});

Deno.test("ggmlDequantize names the argument that is wrong", () => {
  assert.throws(
    () => ggmlDequantize(31, new Uint8Array(0), new Float32Array(0)),
    /type: 31 is not a ggml type id/,
  );
  assert.throws(
    () => ggmlDequantize(16, new Uint8Array(66), new Float32Array(256)),
    /type: IQ2_XXS \(16\) cannot be dequantized/,
  );
  assert.throws(
    () => ggmlDequantize(12, new Uint8Array(144), new Float32Array(255)),
    /dst: 255 values is not a whole number of Q4_K blocks/,
  );
  assert.throws(
    () => ggmlDequantize(12, new Uint8Array(143), new Float32Array(256)),
    /src: expected 144 bytes for 256 Q4_K values, got 143/,
  );
});

Deno.test("the kernel's own checks surface through check() with the library's message", () => {
  const k = kernels();
  const call = (type: number, src: Uint8Array, dst: Float32Array) =>
    check(k.qlora_ggml_dequantize(type, src, src.length, dst, dst.length), "qlora_ggml_dequantize");
  assert.throws(() => call(99, new Uint8Array(4), new Float32Array(1)), (e) => {
    assert.ok(e instanceof KernelError && e.status === 2, String(e));
    return /ggml_type: 99 is not a ggml type/.test(e.message);
  });
  assert.throws(
    () => call(2, new Uint8Array(17), new Float32Array(32)),
    /src: expected 18 bytes \(1 Q4_0 blocks/,
  );
  assert.throws(
    () => call(2, new Uint8Array(18), new Float32Array(31)),
    /dst: 31 values is not a whole number/,
  );
});
