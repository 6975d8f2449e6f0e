import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ggmlDequantize } from "../../ffi/ggml.ts";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { ggmlType } from "../../ffi/ggml_types.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { assertRejectsFormat, craftGguf, ggufFixture } from "./_gguf.ts";
import { assertFormatError, f32Bits } from "./helpers.ts";

const ALL_TYPES = ggufFixture("all_types.gguf");
const TYPE_NAMES = [
  "F32",
  "F16",
  "BF16",
  "Q4_0",
  "Q4_1",
  "Q5_0",
  "Q5_1",
  "Q8_0",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
];

Deno.test("every ggml type dequantizes exactly as gguf-py's gguf.quants.dequantize", async () => {
  using file = await GgufFile.open(ALL_TYPES);
  using expected = SafetensorsReader.open(ggufFixture("all_types.expected.safetensors"));
  for (const typeName of TYPE_NAMES) {
    const name = typeName.toLowerCase();
    const info = file.info(name);
    assert.equal(info.type.name, typeName);
    const want = expected.readTensorF32(name);
    assert.deepEqual(info.shape, want.shape, name);
    const got = file.readTensorF32(name);
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want.data[i]));
    // Same float operations in the same order as ggml's reference: bit-identical results.
    assert.deepEqual(f32Bits(got), f32Bits(want.data), `${typeName}: largest difference ${worst}`);
  }
});

Deno.test("shapes are HF order (ggml dims reversed); offsets and lengths come from the block sizes", async () => {
  using file = await GgufFile.open(ALL_TYPES);
  assert.equal(file.version, 3);
  assert.equal(file.architecture, "llama");
  assert.equal(file.string("general.name"), "ggml type fixtures");
  assert.equal(file.number("general.alignment", 32), 32);
  assert.deepEqual(file.info("cube").shape, [2, 3, 4]);
  assert.deepEqual(file.readTensorF32("cube"), Float32Array.from({ length: 24 }, (_, i) => i));
  const q4k = file.info("q4_k");
  assert.deepEqual([q4k.shape, q4k.elements, q4k.byteLength], [[3, 512], 1536, 6 * 144]);
  assert.equal(q4k.offset % 32, 0);
  assert.deepEqual(file.readBytes("q4_k").length, 6 * 144);
  assert.ok(!("version" in file.metadata) && !("tensor_count" in file.metadata));
  assertFormatError(() => file.info("nope"), { file: ALL_TYPES, tensor: "nope", words: ["no such tensor"] });
  assertFormatError(() => file.number("general.name"), {
    file: ALL_TYPES,
    words: ["general.name", "expected a number"],
  });
  assertFormatError(() => file.string("missing.key"), { file: ALL_TYPES, words: ["missing.key", "absent"] });
});

Deno.test("a tensor bigger than one read chunk is dequantized chunk by chunk", async () => {
  // 17 MiB of Q8_0 (chunks are 16 MiB): compare with one kernel call over the whole tensor.
  const q8 = ggmlType(8)!;
  const blocks = Math.ceil((17 << 20) / q8.blockBytes);
  const data = new Uint8Array(blocks * q8.blockBytes);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  for (let b = 0; b < blocks; b++) data[b * q8.blockBytes + 1] &= 0x3b; // finite f16 scales
  await withTempDirAsync(async (dir) => {
    const path = join(dir, "big.gguf");
    writeFileSync(path, craftGguf({ tensors: [{ name: "big", ne: [32 * blocks], type: 8, data }] }));
    using file = await GgufFile.open(path);
    const whole = ggmlDequantize(q8, data, new Float32Array(32 * blocks));
    assert.deepEqual(f32Bits(file.readTensorF32("big")), f32Bits(whole));
  });
});

Deno.test("broken files: each problem is a FormatError naming the file, the tensor and the problem", async () => {
  const tensor = { name: "w", ne: [32, 2], type: 8, data: new Uint8Array(68) };
  await withTempDirAsync(async (dir) => {
    const write = (name: string, bytes: Uint8Array) => {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      return path;
    };
    const open = (path: string) => GgufFile.open(path);

    let path = write("magic.gguf", craftGguf({ magic: "GGML", tensors: [tensor] }));
    await assertRejectsFormat(open(path), { file: path, words: ["not a GGUF file", "47 47 4d 4c"] });

    path = write("empty.gguf", new Uint8Array());
    await assertRejectsFormat(open(path), { file: path, words: ["not a GGUF file", "empty"] });

    path = write("v1.gguf", craftGguf({ version: 1 }));
    await assertRejectsFormat(open(path), { file: path, words: ["version 1 is not supported"] });

    path = write("v9.gguf", craftGguf({ version: 9 }));
    await assertRejectsFormat(open(path), { file: path, words: ["unsupported GGUF version 9"] });

    const bigEndian = craftGguf();
    new DataView(bigEndian.buffer).setUint32(4, 3, false);
    path = write("be.gguf", bigEndian);
    await assertRejectsFormat(open(path), { file: path, words: ["big-endian"] });

    path = write("type.gguf", craftGguf({ tensors: [{ ...tensor, type: 31 }] }));
    await assertRejectsFormat(open(path), { file: path, tensor: "w", words: ["unknown ggml type id 31"] });

    path = write("row.gguf", craftGguf({ tensors: [{ ...tensor, ne: [16, 4] }] }));
    await assertRejectsFormat(open(path), {
      file: path,
      tensor: "w",
      words: ["row length 16", "Q8_0 block size 32"],
    });

    path = write("offset.gguf", craftGguf({ tensors: [{ ...tensor, offset: 1n << 40n }] }));
    await assertRejectsFormat(open(path), {
      file: path,
      tensor: "w",
      words: ["runs past the end of the file"],
    });

    path = write("dims.gguf", craftGguf({ tensors: [{ ...tensor, ne: [32, 1, 1, 1, 2] }] }));
    await assertRejectsFormat(open(path), { file: path, tensor: "w", words: ["1 to 4 dimensions, found 5"] });

    // An error of the header parser (@huggingface/gguf) is translated, not passed through.
    path = write("kvtype.gguf", craftGguf({ metadata: { "x": [99, new Uint8Array(4)] } }));
    await assertRejectsFormat(open(path), { file: path, words: ["invalid GGUF header", "99"] });

    const valid = readFileSync(ALL_TYPES);
    path = write("cut_data.gguf", valid.subarray(0, valid.length - 100));
    await assertRejectsFormat(open(path), {
      file: path,
      tensor: "cube",
      words: ["runs past the end", "truncated"],
    });

    path = write("cut_header.gguf", valid.subarray(0, 300));
    await assertRejectsFormat(open(path), { file: path, words: ["truncated"] });

    path = write("cut_preamble.gguf", valid.subarray(0, 12));
    await assertRejectsFormat(open(path), { file: path, words: ["truncated", "shorter than a GGUF header"] });

    // A type ggml defines but we cannot dequantize: the file opens, reading that tensor says why.
    path = write(
      "iq.gguf",
      craftGguf({ tensors: [{ name: "iq", ne: [256], type: 16, data: new Uint8Array(66) }] }),
    );
    using file = await open(path);
    assert.equal(file.info("iq").type.name, "IQ2_XXS");
    assertFormatError(() => file.readTensorF32("iq"), {
      file: path,
      tensor: "iq",
      words: ["IQ2_XXS (16)", "Q4_K"],
    });
    file.close();
    assertFormatError(() => file.readBytes("iq"), { file: path, words: ["after close"] });
  });
});

async function withTempDirAsync(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-gguf-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
