import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Bnb4bitLinear,
  findBnb4bitLinears,
  plainTensorNames,
  readBnb4bitLinear,
} from "../../lib/io/bnb4bit.ts";
import { ShardedSafetensors } from "../../lib/io/safetensors/sharded.ts";
import { SafetensorsReader } from "../../lib/io/safetensors/reader.ts";
import { type TensorToWrite, writeSafetensors } from "../../lib/io/safetensors/writer.ts";
import { assertFormatError, fixture, withTempDir } from "./helpers.ts";

const LLAMA = fixture("bnb4bit-llama");
const RAGGED = fixture("bnb4bit-ragged.safetensors");

interface Expected {
  quantized: Record<
    string,
    { shape: [number, number]; blocksize: number; nested_offset: number; blocks: number }
  >;
  plain: string[];
}

/** Test oracle: the block scales in f32, per nf4.md (the kernels have their own implementation). */
function blockScales(linear: Bnb4bitLinear): Float32Array {
  if (!linear.doubleQuant) return linear.absmax;
  return Float32Array.from(
    linear.absmax,
    (code, block) =>
      Math.fround(
        Math.fround(linear.nestedQuantMap[code] * linear.nestedAbsmax[Math.floor(block / 256)]) +
          linear.offset,
      ),
  );
}

/** Test oracle: the weight in f32, first element of each byte in the high nibble. */
function dequantize(linear: Bnb4bitLinear): Float32Array {
  const scales = blockScales(linear);
  const [rows, columns] = linear.shape;
  return Float32Array.from({ length: rows * columns }, (_, i) => {
    const byte = linear.packed[i >> 1];
    const code = i % 2 === 0 ? byte >> 4 : byte & 0x0f;
    return linear.quantMap[code] * scales[Math.floor(i / 64)];
  });
}

/** Exact f32 equality, reporting the largest difference (both sides compute in f32, in the same order). */
function assertSameF32(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.equal(worst, 0, `${what}: largest difference ${worst}`);
}

Deno.test("finds every quantized linear of the transformers-saved tiny Llama, with its parts", () => {
  const expected: Expected = JSON.parse(readFileSync(join(LLAMA, "expected.json"), "utf8"));
  using checkpoint = ShardedSafetensors.open(LLAMA);
  const linears = findBnb4bitLinears(checkpoint);
  assert.deepEqual(new Set(linears), new Set(Object.keys(expected.quantized)));
  assert.equal(linears.length, 7);
  for (const name of linears) {
    const linear = readBnb4bitLinear(checkpoint, name);
    const { shape, blocks, nested_offset } = expected.quantized[name];
    assert.equal(linear.name, name);
    assert.deepEqual(linear.shape, shape);
    assert.equal(linear.blocksize, 64);
    assert.equal(linear.dtype, "bfloat16");
    assert.equal(linear.packed.length, (shape[0] * shape[1]) / 2);
    assert.equal(linear.quantMap.length, 16);
    assert.equal(linear.quantMap[0], -1);
    assert.equal(linear.quantMap[7], 0);
    assert.equal(linear.quantMap[15], 1);
    assert.ok(linear.doubleQuant);
    assert.equal(linear.absmax.length, blocks);
    assert.equal(linear.nestedAbsmax.length, 1);
    assert.equal(linear.nestedQuantMap.length, 256);
    assert.equal(linear.nestedQuantMap[127], 0);
    assert.equal(linear.nestedBlocksize, 256);
    assert.equal(linear.nestedDtype, "float32");
    assert.equal(linear.offset, nested_offset);
  }
  assert.deepEqual(plainTensorNames(checkpoint).sort(), expected.plain);
  assert.equal(checkpoint.readTensorF32("model.embed_tokens.weight").data.length, 128 * 64);
  assert.equal(checkpoint.info("model.norm.weight").dtype, "BF16");
});

Deno.test("q_proj's parts dequantize to what bitsandbytes dequantizes them to", () => {
  using checkpoint = ShardedSafetensors.open(LLAMA);
  using expected = SafetensorsReader.open(join(LLAMA, "expected.safetensors"));
  const qProj = readBnb4bitLinear(checkpoint, "model.layers.0.self_attn.q_proj");
  assertSameF32(blockScales(qProj), expected.readTensorF32("q_proj.absmax").data, "absmax");
  assertSameF32(dequantize(qProj), expected.readTensorF32("q_proj.weight").data, "weight");
});

Deno.test("ragged shapes: several nested blocks, odd counts and plain f32 scales", () => {
  using checkpoint = ShardedSafetensors.open(RAGGED);
  using expected = SafetensorsReader.open(fixture("bnb4bit-ragged.expected.safetensors"));
  assert.deepEqual(findBnb4bitLinears(checkpoint).sort(), ["ragged.big", "ragged.odd", "single.proj"]);
  assert.deepEqual(plainTensorNames(checkpoint), ["ragged.big.bias"]);

  const big = readBnb4bitLinear(checkpoint, "ragged.big");
  assert.deepEqual(big.shape, [96, 200]);
  assert.ok(big.doubleQuant && big.nestedAbsmax.length === 2 && big.absmax.length === 300);
  assertSameF32(blockScales(big), expected.readTensorF32("ragged.big.absmax").data, "big absmax");

  const odd = readBnb4bitLinear(checkpoint, "ragged.odd");
  assert.equal(odd.packed.length, 32);
  assertSameF32(dequantize(odd), expected.readTensorF32("ragged.odd.weight").data, "odd weight");

  const single = readBnb4bitLinear(checkpoint, "single.proj");
  assert.equal(single.doubleQuant, false);
  assert.ok(single.absmax instanceof Float32Array);
  assert.equal("offset" in single, false);
  assertSameF32(dequantize(single), expected.readTensorF32("single.proj.weight").data, "single weight");
});

Deno.test("a checkpoint without quantized linears has none and all tensors are plain", () => {
  using checkpoint = ShardedSafetensors.open(fixture("sharded"));
  assert.deepEqual(findBnb4bitLinears(checkpoint), []);
  assert.deepEqual(plainTensorNames(checkpoint), checkpoint.names());
});

// ---------------------------------------------------------------------------------------------
// Malformed quantized linears: copies of the ragged fixture with one thing changed.

const STATE = "ragged.odd.weight.quant_state.bitsandbytes__nf4";

/** Writes the ragged fixture with `edit` applied to a temporary file and opens it. */
function withEditedRagged(
  edit: (tensors: Map<string, TensorToWrite>) => void,
  check: (checkpoint: ShardedSafetensors, path: string) => void,
): void {
  withTempDir((dir) => {
    const path = join(dir, "edited.safetensors");
    const tensors = new Map<string, TensorToWrite>();
    {
      using reader = SafetensorsReader.open(RAGGED);
      for (const name of reader.names()) tensors.set(name, { name, ...reader.readTensor(name) });
    }
    edit(tensors);
    writeSafetensors(path, [...tensors.values()]);
    using checkpoint = ShardedSafetensors.open(path);
    check(checkpoint, path);
  });
}

/** Replaces fields of the odd linear's JSON quant state. */
function editState(tensors: Map<string, TensorToWrite>, changes: Record<string, unknown>, key = STATE): void {
  const old = tensors.get(STATE)!;
  const state = { ...JSON.parse(new TextDecoder().decode(old.data as Uint8Array)), ...changes };
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  tensors.delete(STATE);
  tensors.set(key, { name: key, dtype: "U8", shape: [bytes.length], data: bytes });
}

function replaceTensor(
  tensors: Map<string, TensorToWrite>,
  name: string,
  tensor: Omit<TensorToWrite, "name">,
) {
  tensors.set(name, { name, ...tensor });
}

Deno.test("fp4 linears are refused as unsupported", () => {
  const fp4 = "ragged.odd.weight.quant_state.bitsandbytes__fp4";
  withEditedRagged((tensors) => editState(tensors, { quant_type: "fp4" }, fp4), (checkpoint, path) => {
    assertFormatError(() => findBnb4bitLinears(checkpoint), {
      file: path,
      tensor: fp4,
      words: ["unsupported: fp4"],
    });
  });
});

Deno.test("blocksize other than 64 is refused", () => {
  withEditedRagged((tensors) => editState(tensors, { blocksize: 128 }), (checkpoint, path) => {
    assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
      file: path,
      tensor: STATE,
      words: ["unsupported blocksize", "expected 64, found 128"],
    });
  });
});

Deno.test("nested blocksize other than 256 is refused", () => {
  withEditedRagged((tensors) => editState(tensors, { nested_blocksize: 128 }), (checkpoint, path) => {
    assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
      file: path,
      tensor: STATE,
      words: ["nested_blocksize", "expected 256, found 128"],
    });
  });
});

Deno.test("quant state with a bad shape, quant type or offset is refused", () => {
  const cases: [Record<string, unknown>, string[]][] = [
    [{ shape: [63] }, ["shape [out, in]", "found [63]"]],
    [{ shape: [3, 0] }, ["shape [out, in]", "found [3,0]"]],
    [{ quant_type: "int4" }, ['expected quant_type "nf4"', '"int4"']],
    [{ nested_offset: "0.5" }, ["nested_offset", "finite number"]],
    [{ dtype: 32 }, ["dtype to be a string"]],
  ];
  for (const [changes, words] of cases) {
    withEditedRagged((tensors) => editState(tensors, changes), (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
        file: path,
        tensor: STATE,
        words,
      });
    });
  }
});

Deno.test("quant state that is not JSON is refused", () => {
  withEditedRagged(
    (tensors) =>
      replaceTensor(tensors, STATE, { dtype: "U8", shape: [3], data: new Uint8Array([0x7b, 0x7b, 0x22]) }),
    (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
        file: path,
        tensor: STATE,
        words: ["not valid UTF-8 JSON"],
      });
    },
  );
});

Deno.test("packed weight of the wrong size for the shape is refused", () => {
  withEditedRagged(
    (tensors) =>
      replaceTensor(tensors, "ragged.odd.weight", { dtype: "U8", shape: [31, 1], data: new Uint8Array(31) }),
    (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
        file: path,
        tensor: "ragged.odd.weight",
        words: ["expected 32 bytes", "found 31"],
      });
    },
  );
});

Deno.test("block scale count that does not match the shape is refused", () => {
  withEditedRagged(
    (tensors) =>
      replaceTensor(tensors, "ragged.big.weight.absmax", {
        dtype: "U8",
        shape: [299],
        data: new Uint8Array(299),
      }),
    (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.big"), {
        file: path,
        tensor: "ragged.big.weight.absmax",
        words: ["expected 300 block scale codes (U8)", "found 299"],
      });
    },
  );
});

Deno.test("nested scale count that does not match the block count is refused", () => {
  const name = "ragged.big.weight.nested_absmax";
  withEditedRagged(
    (tensors) => replaceTensor(tensors, name, { dtype: "F32", shape: [1], data: new Float32Array(1) }),
    (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.big"), {
        file: path,
        tensor: name,
        words: ["expected 2 nested scales", "found 1"],
      });
    },
  );
});

Deno.test("parts of the wrong dtype, or missing, are refused", () => {
  const quantMap = "ragged.odd.weight.quant_map";
  withEditedRagged(
    (tensors) => replaceTensor(tensors, quantMap, { dtype: "F64", shape: [16], data: new Float64Array(16) }),
    (checkpoint, path) => {
      assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
        file: path,
        tensor: quantMap,
        words: ["expected dtype F32, found F64"],
      });
    },
  );
  const nestedMap = "ragged.odd.weight.nested_quant_map";
  withEditedRagged((tensors) => tensors.delete(nestedMap), (checkpoint, path) => {
    assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
      file: path,
      tensor: nestedMap,
      words: ["missing", "256 values"],
    });
  });
  withEditedRagged((tensors) => tensors.delete(STATE), (checkpoint, path) => {
    assertFormatError(() => readBnb4bitLinear(checkpoint, "ragged.odd"), {
      file: path,
      tensor: STATE,
      words: ["missing", "quant state"],
    });
  });
});
