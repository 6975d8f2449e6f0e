import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultTrainingArgs } from "../../lib/train/args.ts";
import { dataFiles } from "../../lib/train/data_files.ts";

const data = (over: Partial<ReturnType<typeof defaultTrainingArgs>["data"]>) => ({
  ...defaultTrainingArgs().data,
  ...over,
});

Deno.test("data files: own --train means no validation unless asked; the shipped set keeps its own", () => {
  assert.deepEqual(dataFiles(data({})), {
    train: "data/dates/train.jsonl",
    valid: "data/dates/valid.jsonl",
    test: undefined,
  });
  assert.deepEqual(dataFiles(data({ train: "/me/mine.jsonl" })), {
    train: "/me/mine.jsonl",
    valid: undefined,
    test: undefined,
  });
  assert.deepEqual(dataFiles(data({ train: "/me/mine.jsonl", valid: "/me/v.jsonl", test: "/me/t.csv" })), {
    train: "/me/mine.jsonl",
    valid: "/me/v.jsonl",
    test: "/me/t.csv",
  });
  assert.equal(
    dataFiles(data({ train: "/me/mine.jsonl", valid: "/me/v.jsonl", validFraction: 0.1 })).valid,
    undefined,
  );
  assert.equal(dataFiles(data({ valid: "" })).valid, undefined);
});

Deno.test("data files: --data DIR takes train/valid/test of any extension; two of one split are refused", () => {
  const dir = Deno.makeTempDirSync({ prefix: "data_files_" });
  try {
    writeFileSync(join(dir, "train.parquet"), "");
    writeFileSync(join(dir, "test.jsonl"), "");
    assert.deepEqual(dataFiles(data({ dir })), {
      train: join(dir, "train.parquet"),
      valid: undefined,
      test: join(dir, "test.jsonl"),
    });
    writeFileSync(join(dir, "valid.csv"), "");
    assert.equal(dataFiles(data({ dir })).valid, join(dir, "valid.csv"));
    assert.equal(dataFiles(data({ dir, valid: "" })).valid, undefined);
    writeFileSync(join(dir, "test.csv"), "");
    assert.throws(() => dataFiles(data({ dir })), /--data-dir .*: several test files/);
    const empty = Deno.makeTempDirSync({ prefix: "data_files_" });
    assert.throws(() => dataFiles(data({ dir: empty })), /no train file \(train\.jsonl, train\.json/);
    rmSync(empty, { recursive: true });
  } finally {
    rmSync(dir, { recursive: true });
  }
});
