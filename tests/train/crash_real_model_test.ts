/**
 * SIGKILL of the real `deno task finetune` (SmolLM2-135M-Instruct, NF4, LoRA on every linear, dropout on)
 * at seeded random moments — while it loads, trains, or writes one of its ~60 MB checkpoints — each time
 * restarted with `--resume`. The run that finally completes must log the same per-step losses as an
 * uninterrupted run, bit for bit, write the same adapter bytes, and leave no partial or invalid file.
 * (crash_test.ts does the same many more times on a fake model; this one covers the real command.)
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../../lib/random.ts";
import { checkpointDirs, checkpointProblem, findLatestCheckpoint } from "../../lib/train/checkpoint.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";

const FINETUNE = fileURLToPath(new URL("../../tasks/finetune.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STEPS = 8;
const KILLS = 8;

function finetuneArgs(outputDir: string, resume: boolean): string[] {
  return [
    "run",
    "-A",
    "--config",
    CONFIG,
    FINETUNE,
    "--steps",
    String(STEPS),
    "--batch-size",
    "2",
    "--max-length",
    "64",
    "--save-every",
    "1",
    "--keep-checkpoints",
    "2",
    "--eval-every",
    "3",
    "--eval-batches",
    "1",
    "--metric",
    "none",
    "--max-eval-examples",
    "2",
    "--seed",
    "5",
    "--output-dir",
    outputDir,
    ...(resume ? ["--resume"] : []),
  ];
}

/** Printed on stderr once the model, data and adapters are ready, just before evaluation and training. */
const READY = / steps of \d+ × \d+ rows/;

interface Kill {
  /** Count the delay from the READY line instead of from the start. */
  afterReady: boolean;
  ms: number;
}

/**
 * Runs finetune once, SIGKILLed as `kill` says if given. Returns whether it was killed, when it printed
 * READY and when it ended (ms from the start).
 */
async function runFinetune(
  outputDir: string,
  opts: { resume: boolean; kill?: Kill },
): Promise<{ killed: boolean; readyMs: number; endMs: number }> {
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: finetuneArgs(outputDir, opts.resume),
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const killLater = (ms: number) =>
    setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // it had already exited
      }
    }, ms);
  let timer = opts.kill && !opts.kill.afterReady ? killLater(opts.kill.ms) : undefined;
  let readyMs = NaN;
  let stderr = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    stderr += chunk;
    if (Number.isNaN(readyMs) && READY.test(stderr)) {
      readyMs = performance.now() - start;
      if (opts.kill?.afterReady) timer = killLater(opts.kill.ms);
    }
  }
  const { success, signal } = await child.status;
  clearTimeout(timer);
  if (!success && signal !== "SIGKILL") throw new Error(`finetune failed: ${stderr}`);
  return { killed: signal === "SIGKILL", readyMs, endMs: performance.now() - start };
}

const trainLosses = (dir: string) =>
  readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "train").map((e) => [e.step, e.loss]);

Deno.test("crash (real model): SIGKILL of deno task finetune at random moments + --resume = an uninterrupted run", async () => {
  const straightDir = Deno.makeTempDirSync({ prefix: "crash_real_straight_" });
  const dir = Deno.makeTempDirSync({ prefix: "crash_real_killed_" });
  try {
    const straight = await runFinetune(straightDir, { resume: false });
    const expected = trainLosses(straightDir);
    assert.equal(expected.length, STEPS);
    assert.ok(straight.readyMs > 0, "finetune printed its READY line");

    // Kill moments: mostly within the next few steps after READY (a step, its checkpoint write, the
    // evaluation), sometimes while the process starts and loads the model.
    const stepMs = (straight.endMs - straight.readyMs) / STEPS;
    const rng = new Rng(20261128);
    const reached: number[] = [];
    let kills = 0;
    let savesCut = 0; // kills that left a half-written checkpoint behind
    let finished = false;
    for (let attempt = 0; attempt < KILLS && !finished; attempt++) {
      const kill = rng.next() < 0.2
        ? { afterReady: false, ms: straight.readyMs * rng.next() }
        : { afterReady: true, ms: 3 * stepMs * rng.next() };
      const { killed } = await runFinetune(dir, { resume: true, kill });
      if (killed) kills++;
      else finished = true;
      if (killed && readdirSync(dir).some((e) => e.endsWith(".tmp"))) savesCut++;
      reached.push(findLatestCheckpoint(dir)?.step ?? 0);
    }
    if (!finished) await runFinetune(dir, { resume: true });
    const label = `checkpoint steps after each attempt: ${reached.join(", ")}; ${savesCut} cut a save`;
    if (Deno.env.get("QLORA_TEST_VERBOSE")) console.log(label);
    assert.ok(kills >= 3, `only ${kills} kills landed (${label})`);
    assert.ok(reached.some((s) => s > 0 && s < STEPS), `no kill landed mid-training (${label})`);

    // The completed run logged the uninterrupted run's losses and wrote its adapter, byte for byte.
    assert.deepEqual(trainLosses(dir), expected);
    for (const file of ["adapter_model.safetensors", "adapter_config.json"]) {
      assert.deepEqual(
        readFileSync(join(dir, "adapter", file)),
        readFileSync(join(straightDir, "adapter", file)),
        file,
      );
    }
    assert.deepEqual(
      readFileSync(join(dir, "adapter.gguf")),
      readFileSync(join(straightDir, "adapter.gguf")),
    );

    // No partial files; every checkpoint left validates.
    const partial = (names: string[]) => names.filter((e) => e.includes(".tmp") || e.includes(".partial"));
    assert.deepEqual(partial(readdirSync(dir)), []);
    assert.deepEqual(partial(readdirSync(join(dir, "adapter"))), []);
    for (const c of checkpointDirs(dir)) {
      assert.equal(checkpointProblem(c.dir), undefined, c.dir);
      assert.deepEqual(partial(readdirSync(c.dir)), []);
    }
    assert.equal(findLatestCheckpoint(dir)?.step, STEPS);
  } finally {
    rmSync(straightDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
