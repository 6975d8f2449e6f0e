import assert from "node:assert/strict";
import { SafetensorsReader } from "../../../lib/io/safetensors/reader.ts";
import { assertFormatError, f32Bits, fixture } from "../helpers.ts";

const DTYPES_FILE = fixture("dtypes.safetensors");

Deno.test("reads every dtype written by the Python safetensors library", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  assert.deepEqual(reader.metadata, { format: "pt" });
  const read = (name: string) => reader.readTensor(name);

  assert.deepEqual(read("f64"), {
    dtype: "F64",
    shape: [2, 2],
    data: new Float64Array([1.5, -2.25, 1e300, -1e-300]),
  });
  assert.deepEqual(read("i64").data, new BigInt64Array([-(2n ** 62n), -1n, 0n, 2n ** 62n]));
  assert.deepEqual(read("u64").data, new BigUint64Array([0n, 1n, 2n ** 63n + 5n]));
  assert.deepEqual(read("i32"), {
    dtype: "I32",
    shape: [3, 4],
    data: Int32Array.from({ length: 12 }, (_, i) => i - 6),
  });
  assert.deepEqual(read("u32").data, new Uint32Array([0, 4_000_000_000]));
  assert.deepEqual(read("i16").data, new Int16Array([-32768, 32767]));
  assert.deepEqual(read("u16").data, new Uint16Array([0, 65535]));
  assert.deepEqual(read("i8").data, new Int8Array([-128, -1, 0, 127]));
  assert.deepEqual(read("u8"), {
    dtype: "U8",
    shape: [6, 6],
    data: Uint8Array.from({ length: 36 }, (_, i) => i * 7),
  });
  assert.deepEqual(read("bool"), { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) });
  assert.deepEqual(read("scalar"), { dtype: "F32", shape: [], data: new Float32Array([3.25]) });
  assert.deepEqual(read("empty"), { dtype: "F32", shape: [0, 3], data: new Float32Array() });
  assert.deepEqual(read("7").data, new Float32Array([7]));
});

Deno.test("readTensorF32 widens BF16/F16 exactly as torch's .float() does", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  for (
    const [half, widened] of [
      ["values_bf16", "values_bf16_widened"],
      ["values_f16", "values_f16_widened"],
      ["f16_special", "f16_special_widened"],
    ]
  ) {
    const ours = reader.readTensorF32(half);
    const torch = reader.readTensor(widened);
    assert.equal(ours.dtype, "F32");
    assert.deepEqual(ours.shape, torch.shape);
    assert.deepEqual(f32Bits(ours.data), f32Bits(torch.data as Float32Array), half);
  }
  assert.deepEqual(reader.readTensorF32("values_f32"), reader.readTensor("values_f32"));
});

Deno.test("readTensor keeps half floats as raw bits; readBytes gives the stored bytes", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  const bf16 = reader.readTensor("values_bf16");
  assert.equal(bf16.dtype, "BF16");
  assert.ok(bf16.data instanceof Uint16Array);
  assert.deepEqual(reader.readBytes("i16"), new Uint8Array([0x00, 0x80, 0xff, 0x7f]));
});

Deno.test("info reports dtype, shape, file and absolute position", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  const info = reader.info("u8");
  assert.equal(info.dtype, "U8");
  assert.deepEqual(info.shape, [6, 6]);
  assert.equal(info.file, DTYPES_FILE);
  assert.equal(info.byteLength, 36);
  const bytes = Deno.readFileSync(DTYPES_FILE).subarray(info.offset, info.offset + 36);
  assert.deepEqual(bytes, reader.readBytes("u8"));
  assert.ok(reader.has("u8") && !reader.has("nope"));
  assert.equal(reader.names().length, 20);
});

Deno.test("readTensorF32 refuses integer tensors, naming file and tensor", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  assertFormatError(() => reader.readTensorF32("i32"), {
    file: DTYPES_FILE,
    tensor: "i32",
    words: ["F32, F16 or BF16", "found I32"],
  });
});

Deno.test("an unknown tensor name is a FormatError naming file and tensor", () => {
  using reader = SafetensorsReader.open(DTYPES_FILE);
  assertFormatError(() => reader.readTensor("missing.weight"), {
    file: DTYPES_FILE,
    tensor: "missing.weight",
    words: ["no such tensor"],
  });
});

Deno.test("reading after close is a FormatError, and close is idempotent", () => {
  const reader = SafetensorsReader.open(DTYPES_FILE);
  reader.close();
  reader.close();
  assertFormatError(() => reader.readTensor("u8"), { file: DTYPES_FILE, words: ["after close"] });
});
