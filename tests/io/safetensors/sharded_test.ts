import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { INDEX_FILE_NAME, ShardedSafetensors } from "../../../lib/io/safetensors/sharded.ts";
import { SafetensorsReader } from "../../../lib/io/safetensors/reader.ts";
import { assertFormatError, fixture, withTempDir } from "../helpers.ts";

const SHARDED = fixture("sharded");
const SHARD_1 = "model-00001-of-00002.safetensors";
const SHARD_2 = "model-00002-of-00002.safetensors";

/** A copy of the sharded fixture in `dir`, with its index rewritten by `edit`. */
function shardedCopy(dir: string, edit: (weightMap: Record<string, string>) => void): string {
  const copy = join(dir, "model");
  mkdirSync(copy);
  for (const file of [SHARD_1, SHARD_2]) copyFileSync(join(SHARDED, file), join(copy, file));
  const index = JSON.parse(readFileSync(join(SHARDED, INDEX_FILE_NAME), "utf8"));
  edit(index.weight_map);
  writeFileSync(join(copy, INDEX_FILE_NAME), JSON.stringify(index));
  return copy;
}

Deno.test("a sharded directory reads the same tensors as the unsharded file", () => {
  using sharded = ShardedSafetensors.open(SHARDED);
  using single = SafetensorsReader.open(join(SHARDED, "unsharded.safetensors"));
  assert.deepEqual(sharded.names().sort(), single.names().sort());
  assert.deepEqual(sharded.files, [join(SHARDED, SHARD_1), join(SHARDED, SHARD_2)]);
  assert.deepEqual(sharded.metadata, { format: "pt" });
  for (const name of single.names()) {
    assert.deepEqual(sharded.readTensor(name), single.readTensor(name), name);
    assert.deepEqual(sharded.readTensorF32(name), single.readTensorF32(name), name);
  }
  assert.equal(sharded.info("embed.weight").file, join(SHARDED, SHARD_1));
  assert.equal(sharded.info("norm.weight").file, join(SHARDED, SHARD_2));
  assert.equal(sharded.info("layers.0.weight").dtype, "BF16");
});

Deno.test("a directory with model.safetensors, and a file path, open as one-file checkpoints", () => {
  using fromDir = ShardedSafetensors.open(fixture("bnb4bit-llama"));
  assert.deepEqual(fromDir.files, [fixture("bnb4bit-llama", "model.safetensors")]);
  assert.ok(fromDir.has("model.embed_tokens.weight"));
  using fromFile = ShardedSafetensors.open(fixture("dtypes.safetensors"));
  assert.deepEqual(fromFile.readTensor("i8").data, new Int8Array([-128, -1, 0, 127]));
  assert.equal(fromFile.path, fixture("dtypes.safetensors"));
});

Deno.test("index naming a shard that does not exist", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, (map) => (map["norm.weight"] = "model-00003-of-00003.safetensors"));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: join(copy, INDEX_FILE_NAME),
      tensor: "norm.weight",
      words: ['names shard "model-00003-of-00003.safetensors"', "not a file"],
    });
  });
});

Deno.test("index naming a shard outside the model directory", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, (map) => (map["norm.weight"] = `../model/${SHARD_2}`));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: join(copy, INDEX_FILE_NAME),
      tensor: "norm.weight",
      words: ["not a file in"],
    });
  });
});

Deno.test("index placing a tensor in a shard that does not hold it", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, (map) => (map["norm.weight"] = SHARD_1));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: join(copy, INDEX_FILE_NAME),
      tensor: "norm.weight",
      words: [`places it in "${SHARD_1}"`, "does not hold it", `found in "${SHARD_2}"`],
    });
  });
});

Deno.test("index listing a tensor no shard holds", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, (map) => (map["lm_head.weight"] = SHARD_2));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: join(copy, INDEX_FILE_NAME),
      tensor: "lm_head.weight",
      words: ["does not hold it", "no shard does"],
    });
  });
});

Deno.test("index that is not JSON, or has no weight_map object", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, () => {});
    const indexPath = join(copy, INDEX_FILE_NAME);
    writeFileSync(indexPath, "{ not json");
    assertFormatError(() => ShardedSafetensors.open(copy), { file: indexPath, words: ["not valid JSON"] });
    writeFileSync(indexPath, JSON.stringify({ metadata: {} }));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: indexPath,
      words: ['"weight_map" object'],
    });
    writeFileSync(indexPath, JSON.stringify({ weight_map: { "norm.weight": 2 } }));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: indexPath,
      tensor: "norm.weight",
      words: ["file name", "found 2"],
    });
  });
});

Deno.test("a broken shard is reported with the shard's own path", () => {
  withTempDir((dir) => {
    const copy = shardedCopy(dir, () => {});
    writeFileSync(join(copy, SHARD_2), new Uint8Array(3));
    assertFormatError(() => ShardedSafetensors.open(copy), {
      file: join(copy, SHARD_2),
      words: ["truncated"],
    });
  });
});

Deno.test("a directory without safetensors files, and a missing path", () => {
  withTempDir((dir) => {
    writeFileSync(join(dir, "config.json"), "{}");
    assertFormatError(() => ShardedSafetensors.open(dir), {
      file: dir,
      words: ["model.safetensors or model.safetensors.index.json", "config.json"],
    });
    rmSync(join(dir, "config.json"));
    assertFormatError(() => ShardedSafetensors.open(join(dir, "nope")), {
      file: join(dir, "nope"),
      words: ["no such file"],
    });
  });
});

Deno.test("an unknown tensor name names the checkpoint", () => {
  using checkpoint = ShardedSafetensors.open(SHARDED);
  assertFormatError(() => checkpoint.readTensor("lm_head.weight"), {
    file: SHARDED,
    tensor: "lm_head.weight",
    words: ["no such tensor"],
  });
});
