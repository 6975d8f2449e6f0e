/**
 * `deno task finetune` with the NF4 cache on (the default): the first run quantizes the model and writes the
 * cache, the second reads it, and both train the same adapter — per-step losses and adapter bytes equal — as
 * a run with `--no-nf4-cache` does.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";

const FINETUNE = fileURLToPath(new URL("../../tasks/finetune.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function finetune(cacheRoot: string, outputDir: string, extra: string[] = []): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      CONFIG,
      FINETUNE,
      ...["--steps", "2", "--batch-size", "2", "--max-length", "64", "--valid", "", "--metric", "none"],
      ...["--seed", "3", "--output-dir", outputDir, ...extra],
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1", QLORA_CACHE: cacheRoot },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `finetune failed:\n${stderr}`);
  return stderr;
}

function losses(dir: string): [number, unknown][] {
  return readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "train").map((
    e,
  ) => [e.step, e.loss]);
}

function adapterBytes(dir: string): Uint8Array {
  return readFileSync(join(dir, "adapter", "adapter_model.safetensors"));
}

Deno.test("finetune writes the NF4 cache, reuses it, and trains the same adapter as without it", async () => {
  const model = await defaultModelPath(); // fetched once into the real cache; the test's cache links to it
  const base = mkdtempSync(join(tmpdir(), "qlora-ft-nf4cache-"));
  try {
    const cacheRoot = join(base, "cache");
    mkdirSync(cacheRoot);
    symlinkSync(dirname(model), join(cacheRoot, "models"));

    const first = await finetune(cacheRoot, join(base, "first"));
    assert.match(first, /NF4 cache written: /);
    assert.equal(readdirSync(join(cacheRoot, "nf4")).length, 1);
    const second = await finetune(cacheRoot, join(base, "second"));
    assert.match(second, /loaded in [\d.]+ s \(from the NF4 cache\)/);
    const off = await finetune(cacheRoot, join(base, "off"), ["--no-nf4-cache"]);
    assert.doesNotMatch(off, /NF4 cache/);

    const expected = losses(join(base, "off"));
    assert.equal(expected.length, 2);
    assert.deepEqual(losses(join(base, "first")), expected);
    assert.deepEqual(losses(join(base, "second")), expected);
    assert.deepEqual(adapterBytes(join(base, "second")), adapterBytes(join(base, "off")));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
