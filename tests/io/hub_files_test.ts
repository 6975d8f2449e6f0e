/** Which files of a hub repo are downloaded, and the reasons given when a repo cannot be used. */
import assert from "node:assert/strict";
import { HubError } from "../../lib/io/hub/error.ts";
import { checkShards, planDownload } from "../../lib/io/hub/files.ts";
import { formatBytes, formatDuration } from "../../lib/io/hub/progress.ts";

function refused(names: string[], words: string[]): void {
  assert.throws(() => planDownload("org/name", names), (error) => {
    assert.ok(error instanceof HubError);
    for (const word of words) assert.ok(error.message.includes(word), `"${word}" not in: ${error.message}`);
    return true;
  });
}

Deno.test("hub files: config, tokenizer files and model.safetensors; never duplicates in other formats", () => {
  const plan = planDownload("org/name", [
    ".gitattributes",
    "README.md",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "model.safetensors",
    "pytorch_model.bin",
    "tf_model.h5",
    "onnx/model.onnx",
    "original/consolidated.00.pth",
    "model-q4.gguf",
  ]);
  assert.deepEqual(plan.files, [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
  ]);
  assert.deepEqual(plan.weights, { kind: "single", file: "model.safetensors" });
  assert.deepEqual(plan.warnings, []);
});

Deno.test("hub files: the index is preferred over a single file, and a missing tokenizer.json warns", () => {
  const plan = planDownload("org/name", ["config.json", "model.safetensors", "model.safetensors.index.json"]);
  assert.deepEqual(plan.weights, { kind: "sharded", index: "model.safetensors.index.json" });
  assert.match(plan.warnings[0], /no tokenizer\.json/);
});

Deno.test("hub files: repos without usable weights are refused with the reason", () => {
  refused(["config.json", "pytorch_model.bin"], ["pickle", "pytorch_model.bin", "does not load"]);
  refused(["README.md", "smol.Q4_K_M.gguf"], ["no config.json", "GGUF", "smol.Q4_K_M.gguf", "its path"]);
  refused(["adapter_config.json", "adapter_model.safetensors"], ["PEFT adapter", "base model"]);
  refused(["config.json", "consolidated.safetensors"], ["consolidated.safetensors", "not a transformers"]);
  refused([], ["no config.json", "no files"]);
});

Deno.test("hub files: every shard the index names must be in the repo", () => {
  checkShards("org/name", ["a.safetensors"], ["a.safetensors", "config.json"]);
  assert.throws(
    () => checkShards("org/name", ["a.safetensors", "b.safetensors"], ["a.safetensors"]),
    /b\.safetensors/,
  );
});

Deno.test("hub progress: sizes and durations read like the hub's", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 kB");
  assert.equal(formatBytes(98_362_432), "98.4 MB");
  assert.equal(formatBytes(16e9), "16.0 GB");
  assert.equal(formatDuration(9.2), "0:10");
  assert.equal(formatDuration(75), "1:15");
  assert.equal(formatDuration(3725), "1:02:05");
});
