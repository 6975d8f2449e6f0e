/**
 * Keep-best and early stopping, on the fake model with scripted eval losses (one validation batch, so one
 * `loss` call per evaluation): the checkpoint of the best eval loss survives pruning and is pointed to; early
 * stopping ends the run after `patience` evaluations without improvement, saved, and a resume does not
 * train past it.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Batch, orderedBatches } from "../../lib/data/batch.ts";
import type { TrainingArgsInput } from "../../lib/train/args.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";
import { earlyStoppingVerdict } from "../../lib/train/early_stopping.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";
import { train, type TrainResult } from "../../lib/train/trainer.ts";
import { bits, fakeExamples, FakeModel, fakeStream } from "./_fake.ts";

const EXAMPLES = fakeExamples(40);
const VALID: Batch[] = [...orderedBatches(fakeExamples(4, 99), { batchSize: 4, padId: 0 })];

/** The fake model, its eval losses taken from a script (one per evaluation). */
class ScriptedEval extends FakeModel {
  #i = 0;
  constructor(readonly script: number[]) {
    super({ seed: 3 });
  }
  override loss(_batch: Batch) {
    return { lossSum: this.script[this.#i++], lossTokens: 1 };
  }
}

const dirs: string[] = [];
globalThis.addEventListener("unload", () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function run(script: number[], args: TrainingArgsInput, outputDir?: string) {
  const dir = outputDir ?? Deno.makeTempDirSync({ prefix: "keep_best_" });
  dirs.push(dir);
  const model = new ScriptedEval(script);
  const paramsAt = new Map<number, number[][]>();
  const result: TrainResult = await train({
    model,
    data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
    args: { lr: 0.05, evalEvery: 1, saveEvery: 0, keepCheckpoints: 1, seed: 3, outputDir: dir, ...args },
    progress: false,
    callbacks: {
      onStep: (s) => paramsAt.set(s.step, model.parameters().map((p) => bits(p.data))),
      onMessage: () => {},
    },
  });
  return { dir, result, paramsAt };
}

Deno.test("keep best: the best eval loss's checkpoint is kept past keepCheckpoints and named in `best`", async () => {
  const { dir, result, paramsAt } = await run([5, 3, 4, 4.5, 3.5, 3.2], { steps: 6 });
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith("checkpoint-")).sort(), [
    "checkpoint-2",
    "checkpoint-6",
  ]);
  assert.equal(readFileSync(join(dir, "best"), "utf8"), "checkpoint-2\n");
  assert.equal(result.bestCheckpoint?.step, 2);
  assert.equal(result.bestEvalStep, 2);
  const best = loadCheckpoint(join(dir, "checkpoint-2"));
  for (const [i, name] of ["a", "b"].entries()) {
    assert.deepEqual(bits(best.parameters.get(name)!), paramsAt.get(2)![i], `parameter ${name}`);
  }
  const saves = readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "save");
  assert.deepEqual(saves.map((e) => [e.step, e.best ?? false]), [[1, true], [2, true], [6, false]]);
});

Deno.test("keep best off: no best pointer, only the newest checkpoints", async () => {
  const { dir, result } = await run([5, 3, 4], { steps: 3, keepBest: false });
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith("checkpoint-") || n === "best"), [
    "checkpoint-3",
  ]);
  assert.equal(result.bestCheckpoint, undefined);
});

Deno.test("early stopping: stops after `patience` evals without improvement, saved; a resume does not go on", async () => {
  const { dir, result } = await run([5, 3, 4, 4.5, 1, 1], { steps: 6, earlyStoppingPatience: 2 });
  assert.equal(result.step, 4);
  assert.equal(result.earlyStopped, true);
  assert.equal(result.stopped, false);
  assert.equal(result.checkpoint?.step, 4);
  assert.equal(result.bestCheckpoint?.step, 2);
  const stop = readMetrics(join(dir, "metrics.jsonl")).find((e) => e.event === "stop")!;
  assert.equal(stop.step, 4);
  assert.match(
    String(stop.reason),
    /early stopping: no eval-loss improvement in 2 evaluations \(best 3\.0000 at step 2\)/,
  );
  const again = await run([9, 9, 9], { steps: 6, earlyStoppingPatience: 2, resume: true }, dir);
  assert.equal(again.result.step, 4);
  assert.equal(again.result.earlyStopped, true);
  assert.equal(again.paramsAt.size, 0); // no step ran
});

Deno.test("early stopping: the threshold decides what counts as an improvement", () => {
  const opts = { patience: 2, threshold: 0.05 };
  let v = earlyStoppingVerdict(4.99, 5, 0, opts);
  assert.deepEqual(v, { evalsWithoutImprovement: 1, stop: false });
  v = earlyStoppingVerdict(4.98, 5, v.evalsWithoutImprovement, opts);
  assert.deepEqual(v, { evalsWithoutImprovement: 2, stop: true });
  assert.deepEqual(earlyStoppingVerdict(4.9, 5, 1, opts), { evalsWithoutImprovement: 0, stop: false });
  assert.deepEqual(earlyStoppingVerdict(NaN, null, 0, opts), { evalsWithoutImprovement: 1, stop: false });
  assert.equal(earlyStoppingVerdict(9, 1, 50, { patience: 0, threshold: 0 }).stop, false);
});

Deno.test("keep best: a best that is also among the newest counts as one of them (nothing extra kept)", async () => {
  const { dir } = await run([5, 3, 4, 2], { steps: 4 });
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith("checkpoint-")), ["checkpoint-4"]);
  assert.equal(readFileSync(join(dir, "best"), "utf8"), "checkpoint-4\n");
});

Deno.test("early stopping without validation data is refused up front", async () => {
  await assert.rejects(
    train({
      model: new FakeModel(),
      data: { train: fakeStream(EXAMPLES, 4, 3) },
      args: { steps: 2, earlyStoppingPatience: 2, outputDir: Deno.makeTempDirSync() },
      progress: false,
    }),
    /early stopping needs validation data to watch \(--valid FILE or --valid-fraction F\)/,
  );
});

Deno.test("keep best: a resume repairs a `best` pointer left behind by a kill after the checkpoint's rename", async () => {
  const { dir } = await run([5, 3, 4, 2], { steps: 4, keepCheckpoints: 4 });
  // As if killed between checkpoint-4's rename and the pointer's update: the pointer still names step 2.
  Deno.writeTextFileSync(join(dir, "best"), "checkpoint-2\n");
  const again = await run([9], { steps: 4, keepCheckpoints: 1, resume: true }, dir);
  assert.equal(readFileSync(join(dir, "best"), "utf8"), "checkpoint-4\n");
  assert.equal(again.result.bestCheckpoint?.step, 4);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith("checkpoint-")), ["checkpoint-4"]);
});
