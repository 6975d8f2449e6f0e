/**
 * The real `deno task finetune` on a user's own files, as a new user runs it: a CSV in their directory
 * (INIT_CWD, not the repository), renamed columns, a test file, sample generations, a few steps. Checks the
 * wiring the unit tests cannot: no validation set appears, the outputs land in the user's directory, the
 * test split is scored, samples are logged, and a second run refuses to overwrite the first.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readMetrics } from "../../lib/train/metrics_log.ts";

const FINETUNE = fileURLToPath(new URL("../../tasks/finetune.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function finetune(userDir: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, FINETUNE, ...args],
    cwd: ROOT, // as `deno task` runs it; the user's directory arrives in INIT_CWD
    env: { NO_COLOR: "1", INIT_CWD: userDir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("finetune (real model): own CSV data from the user's directory, test split, samples", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "finetune_own_data_" });
  try {
    const pairs = [["France", "Paris"], ["Italy", "Rome"], ["Spain", "Madrid"], ["Japan", "Tokyo"]];
    writeFileSync(
      join(dir, "mine.csv"),
      ["question,answer,source", ...pairs.map(([c, a]) => `Capital of ${c}?,${a},atlas`)].join("\n") + "\n",
    );
    writeFileSync(
      join(dir, "test.jsonl"),
      JSON.stringify({ question: "Capital of Peru?", answer: "Lima" }) + "\n",
    );
    const args = [
      "--train",
      "mine.csv",
      "--test",
      "test.jsonl",
      "--columns",
      "instruction=question,output=answer",
      "--iters", // mlx-lm's name
      "2",
      "--batch-size",
      "2",
      "--max-length",
      "48",
      "--sample-every",
      "1",
      "--sample-prompt",
      "Capital of Norway?",
      "--sample-max-tokens",
      "3",
      "--output-dir",
      "run",
    ];
    const first = await finetune(dir, args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /data: alpaca records/);
    assert.match(first.stderr, /columns not used: source/);
    assert.match(first.stderr, /valid: none \(ask for one with --valid FILE or --valid-fraction F\)/);
    assert.doesNotMatch(first.stderr, /eval loss before training/);
    assert.match(first.stderr, /exact match: scoring/);
    assert.match(first.stdout, /^test loss {2}\d+\.\d{4}/m);
    assert.match(first.stdout, /^test exact match \d\/1/m);
    const run = join(dir, "run");
    assert.ok(existsSync(join(run, "adapter", "adapter_model.safetensors")));
    assert.ok(existsSync(join(run, "adapter.gguf")));
    const events = readMetrics(join(run, "metrics.jsonl"));
    assert.deepEqual(events.filter((e) => e.event === "sample").map((e) => e.step), [1, 2]);
    const sample = events.find((e) => e.event === "sample")!.samples as { label: string; output: string }[];
    assert.equal(sample[0].label, "Capital of Norway?");
    assert.equal(events.filter((e) => e.event === "test").length, 1);
    assert.equal(existsSync(join(ROOT, "run")), false, "nothing written relative to the repository");

    const second = await finetune(dir, args);
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`${run} already holds checkpoints .*pass --resume`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
