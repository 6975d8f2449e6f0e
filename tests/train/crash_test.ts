/**
 * SIGKILL at seeded random moments while a child process trains with a checkpoint every step; each time it
 * is restarted with resume. The run that finally completes must end with the parameters, optimizer state
 * and per-step losses of an uninterrupted run, bit for bit, and leave no partial or invalid files.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../../lib/random.ts";
import {
  checkpointDirs,
  checkpointProblem,
  findLatestCheckpoint,
  loadCheckpoint,
} from "../../lib/train/checkpoint.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";
import { train } from "../../lib/train/trainer.ts";
import { CRASH_ARGS, crashData, crashModel } from "./_crash_setup.ts";
import { bits } from "./_fake.ts";

const CHILD = fileURLToPath(new URL("./_crash_child.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const KILLS = 10;

/** Runs the child once; kills it `delayMs` after it starts training (undefined: let it finish). */
async function runChild(
  outputDir: string,
  delayMs?: number,
): Promise<{ killed: boolean; finished: boolean }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, CHILD, outputDir],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let output = "";
  let killed = false;
  const decoder = new TextDecoder();
  const reader = child.stdout.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    output += decoder.decode(value);
    if (output.includes("started") && delayMs !== undefined && !killed) {
      killed = true;
      setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // it had already exited
        }
      }, delayMs);
    }
  }
  const status = await child.status;
  const finished = output.includes("done");
  if (!status.success && status.signal !== "SIGKILL") {
    throw new Error(`child failed (${status.code}): ${await stderr}`);
  }
  return { killed: status.signal === "SIGKILL", finished: finished && status.success };
}

Deno.test("crash: SIGKILL at random moments + resume = an uninterrupted run, with no corrupt files left", async () => {
  const straightDir = Deno.makeTempDirSync({ prefix: "crash_straight_" });
  const dir = Deno.makeTempDirSync({ prefix: "crash_killed_" });
  try {
    const straightLosses: number[] = [];
    const started = performance.now();
    await train({
      model: crashModel(),
      data: crashData(),
      args: { ...CRASH_ARGS, outputDir: straightDir },
      progress: false,
      callbacks: { onStep: (s) => straightLosses.push(s.loss) },
    });

    const straightMs = performance.now() - started;
    const rng = new Rng(20240611);
    const reached: number[] = [];
    let kills = 0;
    let finished = false;
    for (let attempt = 0; attempt < KILLS && !finished; attempt++) {
      // Kill moments within the first quarter of a whole run's time on this machine: each attempt gets at
      // most about a quarter of the way, so at least three kills land before one finishes (a fixed span in
      // milliseconds let a fast machine finish the run before enough kills landed).
      const run = await runChild(dir, Math.ceil(straightMs * (0.02 + 0.23 * rng.next())));
      reached.push(findLatestCheckpoint(dir)?.step ?? 0);
      if (run.killed) kills++;
      finished = run.finished;
    }
    // Even when the last checkpoint was written, a kill may have cut what follows it (the `latest` pointer,
    // pruning): the run that completes is a resume like any other.
    if (!finished) assert.ok((await runChild(dir)).finished, "the last run completes");
    assert.ok(kills >= 3, `only ${kills} kills landed (checkpoint steps reached: ${reached.join(", ")})`);

    // Same final state as the uninterrupted run.
    const [a, b] = [findLatestCheckpoint(straightDir)!, findLatestCheckpoint(dir)!];
    assert.equal(b.step, CRASH_ARGS.steps);
    const [ca, cb] = [loadCheckpoint(a.dir), loadCheckpoint(b.dir)];
    for (const [name, values] of ca.parameters) {
      assert.deepEqual(bits(cb.parameters.get(name)!), bits(values), name);
    }
    ca.optimizer.moments.forEach((m, i) => {
      assert.deepEqual(bits(cb.optimizer.moments[i].m), bits(m.m));
      assert.deepEqual(bits(cb.optimizer.moments[i].v), bits(m.v));
    });
    assert.deepEqual(cb.trainer.stream, ca.trainer.stream);
    assert.deepEqual(cb.trainer.rng, ca.trainer.rng);
    assert.equal(cb.trainer.bestEvalLoss, ca.trainer.bestEvalLoss);

    // No partial files; every checkpoint left validates; the metrics read as one run.
    const entries = readdirSync(dir);
    assert.deepEqual(entries.filter((e) => e.includes(".tmp") || e.includes(".partial")), []);
    for (const c of checkpointDirs(dir)) {
      assert.equal(checkpointProblem(c.dir), undefined, c.dir);
      assert.deepEqual(readdirSync(c.dir).filter((e) => e.includes(".tmp") || e.includes(".partial")), []);
    }
    // The newest keepCheckpoints, plus the best eval loss's checkpoint, named in `best` as in the straight run.
    const best = readFileSync(join(dir, "best"), "utf8").trim();
    assert.equal(best, readFileSync(join(straightDir, "best"), "utf8").trim());
    const names = (d: string) => checkpointDirs(d).map((c) => basename(c.dir));
    const newest = names(dir).slice(-CRASH_ARGS.keepCheckpoints!);
    assert.deepEqual(names(dir), newest.includes(best) ? newest : [best, ...newest]);
    assert.deepEqual(names(dir), names(straightDir));
    assert.equal(readFileSync(join(dir, "latest"), "utf8"), `checkpoint-${CRASH_ARGS.steps}\n`);
    const trainEvents = readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "train");
    assert.deepEqual(trainEvents.map((e) => e.step), straightLosses.map((_, i) => i + 1));
    assert.deepEqual(trainEvents.map((e) => e.loss), straightLosses);
  } finally {
    rmSync(straightDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
