import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsReader } from "../../../lib/io/safetensors/reader.ts";
import { type TensorToWrite, writeSafetensors } from "../../../lib/io/safetensors/writer.ts";
import { assertFormatError, fixture, withTempDir } from "../helpers.ts";

/** Every tensor of a file, as writer input. */
function tensorsOf(reader: SafetensorsReader): TensorToWrite[] {
  return reader.names().map((name) => ({ name, ...reader.readTensor(name) }));
}

Deno.test("writer → reader round trip keeps names, dtypes, shapes, values and metadata", () => {
  withTempDir((dir) => {
    const path = join(dir, "round.safetensors");
    const tensors: TensorToWrite[] = [
      { name: "z.f32", dtype: "F32", shape: [2, 3], data: new Float32Array([1, -2, 3.5, NaN, Infinity, -0]) },
      { name: "a.bf16", dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
      { name: "m.u8", dtype: "U8", shape: [5], data: new Uint8Array([0, 1, 2, 254, 255]) },
      { name: "i64", dtype: "I64", shape: [1], data: new BigInt64Array([-5n]) },
      { name: "scalar", dtype: "F64", shape: [], data: new Float64Array([Math.PI]) },
      { name: "empty", dtype: "F16", shape: [0, 4], data: new Uint16Array() },
      { name: "lazy", dtype: "I32", shape: [3], data: () => new Int32Array([7, 8, 9]) },
    ];
    writeSafetensors(path, tensors, { format: "pt", note: "round trip" });
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.metadata, { format: "pt", note: "round trip" });
    assert.deepEqual(new Set(reader.names()), new Set(tensors.map((t) => t.name)));
    for (const { name, dtype, shape, data } of tensors) {
      const expected = typeof data === "function" ? data() : data;
      assert.deepEqual(reader.readTensor(name), { dtype, shape, data: expected }, name);
    }
    assert.deepEqual([...reader.readTensorF32("a.bf16").data], [1, -2]);
  });
});

Deno.test("writer output is byte-identical to the Python safetensors library's", () => {
  withTempDir((dir) => {
    for (const source of [fixture("dtypes.safetensors"), fixture("sharded", "unsharded.safetensors")]) {
      using reader = SafetensorsReader.open(source);
      const path = join(dir, "copy.safetensors");
      // Shuffled input: the writer must impose the reference order itself.
      writeSafetensors(
        path,
        tensorsOf(reader).reverse(),
        Object.keys(reader.metadata).length ? reader.metadata : undefined,
      );
      assert.deepEqual(readFileSync(path), readFileSync(source), source);
    }
  });
});

Deno.test("header is padded with spaces to a multiple of 8 bytes", () => {
  withTempDir((dir) => {
    for (let nameLength = 1; nameLength <= 8; nameLength++) {
      const path = join(dir, `pad${nameLength}.safetensors`);
      writeSafetensors(path, [{
        name: "x".repeat(nameLength),
        dtype: "U8",
        shape: [1],
        data: new Uint8Array([9]),
      }]);
      const bytes = readFileSync(path);
      const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      assert.equal(headerLength % 8, 0);
      const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
      assert.match(header, /^\{.*\} *$/);
      assert.equal(bytes[8 + headerLength], 9);
    }
  });
});

Deno.test("integer-like tensor names keep their sorted place (no JSON object reordering)", () => {
  withTempDir((dir) => {
    const path = join(dir, "names.safetensors");
    const one = (name: string) => ({ name, dtype: "F32" as const, shape: [1], data: new Float32Array([1]) });
    writeSafetensors(path, [one("b"), one("10"), one("2"), one("a")]);
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.names(), ["10", "2", "a", "b"]);
  });
});

Deno.test("writing is atomic: a failed write leaves the old file and no temporary", () => {
  withTempDir((dir) => {
    const path = join(dir, "model.safetensors");
    writeFileSync(path, "previous contents");
    const bad: TensorToWrite = { name: "w", dtype: "F32", shape: [4], data: () => new Float32Array(3) };
    assertFormatError(() => writeSafetensors(path, [bad]), {
      file: path,
      tensor: "w",
      words: ["needs 16 bytes", "found 12"],
    });
    assert.equal(readFileSync(path, "utf8"), "previous contents");
    assert.deepEqual(readdirSync(dir), ["model.safetensors"]);

    writeSafetensors(path, [{ ...bad, data: new Float32Array(4) }]);
    assert.ok(!existsSync(`${path}.tmp`));
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.names(), ["w"]);
  });
});

Deno.test("writer refuses data of the wrong array type, duplicate or reserved names, bad shapes", () => {
  withTempDir((dir) => {
    const path = join(dir, "bad.safetensors");
    const f32 = { name: "w", dtype: "F32" as const, shape: [2], data: new Float32Array(2) };
    assertFormatError(() => writeSafetensors(path, [{ ...f32, dtype: "BF16", shape: [4] }]), {
      file: path,
      tensor: "w",
      words: ["data for BF16 must be a Uint16Array", "found Float32Array"],
    });
    assertFormatError(() => writeSafetensors(path, [f32, f32]), {
      file: path,
      tensor: "w",
      words: ["twice"],
    });
    assertFormatError(() => writeSafetensors(path, [{ ...f32, name: "__metadata__" }]), {
      file: path,
      words: ["reserved"],
    });
    assertFormatError(() => writeSafetensors(path, [{ ...f32, shape: [-2] }]), {
      file: path,
      tensor: "w",
      words: ["not an integer ≥ 0"],
    });
    assert.deepEqual(readdirSync(dir), []);
  });
});

Deno.test("raw bytes are accepted for any dtype", () => {
  withTempDir((dir) => {
    const path = join(dir, "raw.safetensors");
    const bits = new Uint8Array(new Float32Array([1.5, -3]).buffer);
    writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [2], data: bits }]);
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.readTensor("w").data, new Float32Array([1.5, -3]));
  });
});
