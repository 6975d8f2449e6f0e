/** Every malformed input the header check must refuse, each with a FormatError naming file (and tensor). */
import assert from "node:assert/strict";
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsReader } from "../../../lib/io/safetensors/reader.ts";
import { assertFormatError, withTempDir, writeRawSafetensors } from "../helpers.ts";

const F32_PAIR = { dtype: "F32", shape: [2], data_offsets: [0, 8] };

/** Writes a file with `header` and `dataBytes` zero bytes of data, then expects open() to fail. */
function expectOpenError(
  header: string | object,
  expected: { tensor?: string; words: string[] },
  dataBytes = 8,
): void {
  withTempDir((dir) => {
    const path = join(dir, "bad.safetensors");
    writeRawSafetensors(path, header, new Uint8Array(dataBytes));
    assertFormatError(() => SafetensorsReader.open(path), { file: path, ...expected });
  });
}

Deno.test("a valid hand-made file opens (the baseline the bad cases change)", () => {
  withTempDir((dir) => {
    const path = join(dir, "ok.safetensors");
    writeRawSafetensors(path, { w: F32_PAIR }, new Uint8Array(new Float32Array([1, 2]).buffer));
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.readTensor("w").data, new Float32Array([1, 2]));
  });
});

Deno.test("file shorter than the 8-byte length prefix", () => {
  withTempDir((dir) => {
    for (const size of [0, 5]) {
      const path = join(dir, `short${size}.safetensors`);
      writeFileSync(path, new Uint8Array(size));
      assertFormatError(() => SafetensorsReader.open(path), {
        file: path,
        words: ["truncated", "at least 8 bytes", `found ${size}`],
      });
    }
  });
});

Deno.test("header length beyond the end of the file", () => {
  withTempDir((dir) => {
    const path = join(dir, "cut.safetensors");
    const bytes = new Uint8Array(8 + 10);
    new DataView(bytes.buffer).setBigUint64(0, 1000n, true);
    writeFileSync(path, bytes);
    assertFormatError(() => SafetensorsReader.open(path), {
      file: path,
      words: ["header length 1000", "beyond the end", "only 10 bytes"],
    });
  });
});

Deno.test("absurd header length (2^63) is refused without allocating", () => {
  withTempDir((dir) => {
    const path = join(dir, "huge.safetensors");
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, 2n ** 63n, true);
    writeFileSync(path, bytes);
    assertFormatError(() => SafetensorsReader.open(path), { file: path, words: ["beyond the end"] });
  });
});

Deno.test("header that is not JSON", () => {
  expectOpenError('{"w": {"dtype": "F32",', { words: ["not valid JSON"] });
});

Deno.test("header that is not UTF-8", () => {
  withTempDir((dir) => {
    const path = join(dir, "latin1.safetensors");
    const bytes = new Uint8Array(8 + 4);
    new DataView(bytes.buffer).setBigUint64(0, 4n, true);
    bytes.set([0x7b, 0xff, 0xfe, 0x7d], 8);
    writeFileSync(path, bytes);
    assertFormatError(() => SafetensorsReader.open(path), { file: path, words: ["not valid UTF-8"] });
  });
});

Deno.test("header that is JSON but not an object", () => {
  expectOpenError("[1, 2]", { words: ["must be a JSON object", "found an array"] });
  expectOpenError("42", { words: ["must be a JSON object", "found number 42"] });
  expectOpenError("null", { words: ["must be a JSON object", "found null"] });
});

Deno.test("tensor entry that is not an object", () => {
  expectOpenError({ w: [1, 2] }, { tensor: "w", words: ["expected an object", "found an array"] });
});

Deno.test("unknown dtype", () => {
  expectOpenError({ w: { ...F32_PAIR, dtype: "F8_E4M3" } }, {
    tensor: "w",
    words: ['unknown dtype "F8_E4M3"', "supported: F64, F32, F16, BF16"],
  });
  expectOpenError({ w: { ...F32_PAIR, dtype: 4 } }, { tensor: "w", words: ["unknown dtype 4"] });
});

Deno.test("shape × dtype size differs from the byte range", () => {
  expectOpenError({ w: { ...F32_PAIR, shape: [3] } }, {
    tensor: "w",
    words: ["shape [3] of F32 needs 12 bytes", "data_offsets [0, 8] hold 8"],
  });
  expectOpenError({ w: { ...F32_PAIR, dtype: "BF16" } }, { tensor: "w", words: ["needs 4 bytes", "hold 8"] });
});

Deno.test("data offsets out of bounds of the data section", () => {
  expectOpenError({ w: { ...F32_PAIR, data_offsets: [4, 12] } }, {
    tensor: "w",
    words: ["data_offsets [4, 12] are out of bounds", "data section has 8 bytes"],
  });
});

Deno.test("data offsets that are not two ordered integers", () => {
  expectOpenError({ w: { ...F32_PAIR, data_offsets: [0] } }, {
    tensor: "w",
    words: ["two integers ≥ 0", "[0]"],
  });
  expectOpenError({ w: { ...F32_PAIR, data_offsets: [-8, 0] } }, {
    tensor: "w",
    words: ["two integers ≥ 0"],
  });
  expectOpenError({ w: { ...F32_PAIR, data_offsets: [8, 0] } }, {
    tensor: "w",
    words: ["end before they begin"],
  });
});

Deno.test("overlapping tensor ranges", () => {
  expectOpenError(
    {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    },
    { tensor: "b", words: ['overlap those of tensor "a"', "begin at 8 or later, found 4"] },
    12,
  );
});

Deno.test("ranges that touch, and empty tensors, are not overlaps", () => {
  withTempDir((dir) => {
    const path = join(dir, "touching.safetensors");
    writeRawSafetensors(path, {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      empty: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
      b: { dtype: "U8", shape: [4], data_offsets: [8, 12] },
    }, new Uint8Array(12));
    using reader = SafetensorsReader.open(path);
    assert.deepEqual(reader.names(), ["a", "empty", "b"]);
  });
});

Deno.test("negative shape dimension", () => {
  expectOpenError({ w: { ...F32_PAIR, shape: [-2] } }, {
    tensor: "w",
    words: ["shape [-2]", "not an integer ≥ 0"],
  });
});

Deno.test("non-integer shape dimension", () => {
  expectOpenError({ w: { ...F32_PAIR, shape: [1.5] } }, {
    tensor: "w",
    words: ["shape [1.5]", "not an integer"],
  });
  expectOpenError({ w: { ...F32_PAIR, shape: ["2"] } }, {
    tensor: "w",
    words: ['shape ["2"]', "not an integer"],
  });
  expectOpenError({ w: { ...F32_PAIR, shape: 2 } }, { tensor: "w", words: ["shape must be an array"] });
});

Deno.test("metadata that is not an object of strings", () => {
  expectOpenError({ __metadata__: { format: 1 }, w: F32_PAIR }, {
    words: ['"__metadata__.format" must be a string', "found number 1"],
  });
  expectOpenError({ __metadata__: "pt", w: F32_PAIR }, { words: ['"__metadata__" must be an object'] });
});

Deno.test("a file truncated after opening fails the read with a FormatError", () => {
  withTempDir((dir) => {
    const path = join(dir, "shrinks.safetensors");
    writeRawSafetensors(path, { w: F32_PAIR }, new Uint8Array(8));
    using reader = SafetensorsReader.open(path);
    truncateSync(path, reader.info("w").offset + 3);
    assertFormatError(() => reader.readTensor("w"), {
      file: path,
      words: ["truncated", "expected 8 bytes", "only 3"],
    });
  });
});
