import assert from "node:assert/strict";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Batch, orderedBatches } from "../../lib/data/batch.ts";
import type { TrainingArgsInput } from "../../lib/train/args.ts";
import { checkpointDirs, findLatestCheckpoint, loadCheckpoint } from "../../lib/train/checkpoint.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";
import {
  type StepReport,
  stepsForEpochs,
  train,
  Trainer,
  TrainingDivergedError,
} from "../../lib/train/trainer.ts";
import { bits, fakeExamples, FakeModel, fakeStream } from "./_fake.ts";

const EXAMPLES = fakeExamples(40);
const VALID: Batch[] = [...orderedBatches(fakeExamples(12, 99), { batchSize: 4, padId: 0 })];

const ARGS: TrainingArgsInput = {
  steps: 10,
  lr: 0.05,
  warmupSteps: 2,
  weightDecay: 0.01,
  maxGradNorm: 0.5,
  evalEvery: 2,
  saveEvery: 5,
  seed: 3,
  // These tests follow the periodic saves; keep_best_test.ts covers the best checkpoint.
  keepBest: false,
};

const TEMP_DIRS: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of TEMP_DIRS) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = Deno.makeTempDirSync({ prefix: "trainer_test_" });
  TEMP_DIRS.push(dir);
  return dir;
}

interface Run {
  model: FakeModel;
  steps: StepReport[];
  evals: number[];
  saves: number[];
}

async function run(
  args: TrainingArgsInput,
  opts: { model?: FakeModel; batchSize?: number } = {},
): Promise<Run> {
  const model = opts.model ?? new FakeModel({ seed: 3 });
  const out: Run = { model, steps: [], evals: [], saves: [] };
  await train({
    model,
    data: { train: fakeStream(EXAMPLES, opts.batchSize ?? 4, 3), valid: VALID },
    args,
    progress: false,
    callbacks: {
      onStep: (s) => out.steps.push(s),
      onEval: (e) => out.evals.push(e.loss),
      onSave: (s) => out.saves.push(s.step),
      onMessage: () => {},
    },
  });
  return out;
}

function assertSameParams(a: FakeModel, b: FakeModel): void {
  const pb = b.parameters();
  a.parameters().forEach((p, i) => assert.deepEqual(bits(pb[i].data), bits(p.data), `parameter ${p.name}`));
}

Deno.test("trainer: the loss goes down; evaluations and checkpoints happen every N steps and at the end", async () => {
  const dir = tempDir();
  const r = await run({ ...ARGS, steps: 11, outputDir: dir });
  assert.equal(r.steps.length, 11);
  assert.ok(r.steps.at(-1)!.loss < r.steps[0].loss, `${r.steps[0].loss} → ${r.steps.at(-1)!.loss}`);
  assert.equal(r.evals.length, 6); // 2, 4, 6, 8, 10, 11
  assert.deepEqual(r.saves, [5, 10, 11]);
  assert.deepEqual(readdirSync(dir).sort(), ["checkpoint-10", "checkpoint-11", "latest", "metrics.jsonl"]);
  const events = readMetrics(join(dir, "metrics.jsonl"));
  assert.deepEqual(events.filter((e) => e.event === "train").map((e) => e.step), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
  ]);
  assert.deepEqual(events.filter((e) => e.event === "eval").map((e) => e.step), [2, 4, 6, 8, 10, 11]);
  const first = events[0];
  for (const key of ["loss", "lr", "gradNorm", "tokensPerSecond"]) {
    assert.equal(typeof first[key], "number", key);
  }
  const ev = events.find((e) => e.event === "eval")!;
  assert.ok(Math.abs((ev.perplexity as number) - Math.exp(ev.evalLoss as number)) < 1e-9);
  // The learning rate follows the schedule: warm-up 0.025, 0.05, then cosine down.
  assert.deepEqual(r.steps.slice(0, 3).map((s) => s.lr), [0.025, 0.05, 0.05]);
});

Deno.test("trainer: gradient accumulation over 2×4 rows equals one batch of 8 rows (rounding apart)", async () => {
  // Each micro-batch's gradient is computed on its own and the two are summed (step_gradients.ts: the
  // order that several processes reproduce bit for bit), so the big batch, which accumulates position by
  // position, differs from it only by f32 rounding. Without dropout: micro-batch 1 draws from its own stream.
  const args = { ...ARGS, steps: 10 };
  const model = () => new FakeModel({ seed: 3, dropout: 0 });
  const big = await run({ ...args, batchSize: 8, outputDir: tempDir() }, { batchSize: 8, model: model() });
  const accumulated = await run({ ...args, batchSize: 4, gradAccumulation: 2, outputDir: tempDir() }, {
    batchSize: 4,
    model: model(),
  });
  let worst = 0;
  big.model.parameters().forEach((p, k) => {
    const q = accumulated.model.parameters()[k];
    p.data.forEach((v, i) => worst = Math.max(worst, Math.abs(v - q.data[i]) / Math.max(1e-3, Math.abs(v))));
  });
  assert.ok(worst <= 1e-5, `largest relative parameter difference after 10 steps: ${worst}`);
  big.steps.forEach((s, i) => {
    const t = accumulated.steps[i];
    assert.equal(t.lossTokens, s.lossTokens);
    assert.ok(Math.abs(t.loss - s.loss) <= 1e-6 * s.loss, `step ${i + 1}: ${t.loss} vs ${s.loss}`);
    assert.ok(Math.abs(t.gradNorm - s.gradNorm) <= 1e-6 * s.gradNorm, `step ${i + 1}: grad norm`);
  });
  // And it is not trivially so: one batch of 4 differs.
  const small = await run({ ...args, batchSize: 4, outputDir: tempDir() }, { model: model() });
  assert.notDeepEqual(bits(small.model.parameters()[0].data), bits(big.model.parameters()[0].data));
});

Deno.test("trainer: 5 steps + checkpoint + a new trainer resumed for 5 more = 10 steps straight, bit for bit", async () => {
  const straightDir = tempDir();
  const straight = await run({ ...ARGS, outputDir: straightDir });

  const dir = tempDir();
  const model1 = new FakeModel({ seed: 3 });
  const firstHalf: StepReport[] = [];
  await assert.rejects(
    train({
      model: model1,
      data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
      args: { ...ARGS, outputDir: dir },
      progress: false,
      callbacks: {
        onStep: (s) => firstHalf.push(s),
        onSave: (s) => {
          if (s.step === 5) throw new Error("simulated crash after saving step 5");
        },
      },
    }),
    /simulated crash/,
  );
  // A fresh process: new model (its own initialisation and dropout RNG), new stream from the start.
  const resumed = await run({ ...ARGS, outputDir: dir, resume: true }, { model: new FakeModel({ seed: 3 }) });
  assert.deepEqual(resumed.steps.map((s) => s.step), [6, 7, 8, 9, 10]);
  const losses = [...firstHalf, ...resumed.steps].map((s) => s.loss);
  assert.deepEqual(losses, straight.steps.map((s) => s.loss));
  assert.deepEqual(resumed.evals, straight.evals.slice(2));
  assertSameParams(straight.model, resumed.model);
  const [a, b] = [findLatestCheckpoint(straightDir)!, findLatestCheckpoint(dir)!];
  const [oa, ob] = [loadCheckpoint(a.dir).optimizer, loadCheckpoint(b.dir).optimizer];
  oa.moments.forEach((m, i) => assert.deepEqual(bits(ob.moments[i].v), bits(m.v)));
  // metrics.jsonl reads as one run: each step once, the same losses.
  const trainEvents = readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "train");
  assert.deepEqual(trainEvents.map((e) => e.loss), losses);
});

Deno.test("trainer: resuming matters — a restored run with a fresh dropout RNG would differ", async () => {
  const dir = tempDir();
  await run({ ...ARGS, steps: 5, outputDir: dir });
  const model = new FakeModel({ seed: 3 });
  const trainer = new Trainer({
    model,
    data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
    args: { ...ARGS, outputDir: dir, resume: true },
    progress: false,
    callbacks: { onMessage: () => {} },
  });
  trainer.prepareOutput();
  model.rng.state = new FakeModel({ seed: 3 }).rng.state; // forget the restored RNG
  for (let i = 0; i < 5; i++) trainer.step();
  const straight = await run({ ...ARGS, outputDir: tempDir() });
  assert.notDeepEqual(bits(model.parameters()[0].data), bits(straight.model.parameters()[0].data));
});

Deno.test("trainer: a NaN loss stops with a clear message; the last good checkpoint stays, the bad state is not saved", async () => {
  const dir = tempDir();
  const model = new FakeModel({ seed: 3, nanAtCall: 7 });
  const before = model.parameters().map((p) => p.data.slice());
  let seen = 0;
  const error = await train({
    model,
    data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
    args: { ...ARGS, saveEvery: 2, outputDir: dir },
    progress: false,
    callbacks: {
      onStep: () => {
        seen++;
        before.forEach((b, i) => b.set(model.parameters()[i].data));
      },
    },
  }).then(() => undefined, (e) => e);
  assert.ok(error instanceof TrainingDivergedError, String(error));
  assert.match(error.message, /^step 7: the loss is NaN; training stopped before applying this step/);
  assert.match(error.message, /last good checkpoint is .*checkpoint-6 \(step 6\)/);
  assert.equal(error.step, 7);
  assert.equal(seen, 6);
  // The parameters were not updated by the bad step.
  model.parameters().forEach((p, i) => assert.deepEqual(bits(p.data), bits(before[i])));
  assert.deepEqual(findLatestCheckpoint(dir)?.step, 6);
  assert.equal(existsSync(join(dir, "checkpoint-7")), false);
  const stop = readMetrics(join(dir, "metrics.jsonl")).at(-1)!;
  assert.equal(stop.event, "stop");
  assert.equal(stop.step, 7);
  // The checkpoint holds the state after step 6 of a clean run.
  const clean = new Trainer({
    model: new FakeModel({ seed: 3 }),
    data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
    args: { ...ARGS, outputDir: tempDir() },
    progress: false,
  });
  for (let i = 0; i < 6; i++) clean.step();
  const saved = loadCheckpoint(findLatestCheckpoint(dir)!.dir);
  for (const p of clean.params) assert.deepEqual(bits(saved.parameters.get(p.name)!), bits(p.data));
});

Deno.test("trainer: a fresh run refuses a directory with checkpoints; resume reports changed options", async () => {
  const dir = tempDir();
  await run({ ...ARGS, steps: 5, outputDir: dir });
  await assert.rejects(
    run({ ...ARGS, steps: 5, outputDir: dir }),
    /already holds checkpoints .* pass --resume/,
  );
  const messages: string[] = [];
  const trainer = new Trainer({
    model: new FakeModel({ seed: 3 }),
    data: { train: fakeStream(EXAMPLES, 4, 3) },
    args: { ...ARGS, steps: 8, lr: 0.01, outputDir: dir, resume: true },
    progress: false,
    callbacks: { onMessage: (m) => messages.push(m) },
  });
  assert.equal(trainer.prepareOutput()?.step, 5);
  assert.equal(trainer.state.step, 5);
  assert.match(messages.join("\n"), /changed options .*steps 5 → 8; lr 0.05 → 0.01/);
});

Deno.test("trainer: requestStop ends the run after the current step, with a checkpoint of it", async () => {
  const dir = tempDir();
  const result = await train({
    model: new FakeModel({ seed: 3 }),
    data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
    args: { ...ARGS, outputDir: dir },
    progress: false,
    callbacks: { onStep: (s, trainer) => s.step === 3 && trainer.requestStop(), onMessage: () => {} },
  });
  assert.equal(result.stopped, true);
  assert.equal(result.step, 3);
  assert.deepEqual(findLatestCheckpoint(dir), { dir: join(dir, "checkpoint-3"), step: 3 });
});

Deno.test("trainer: resuming prunes the extra checkpoint a crash between save and prune leaves", async () => {
  const dir = tempDir();
  const run = (keepCheckpoints: number, resume: boolean) =>
    train({
      model: new FakeModel({ seed: 3 }),
      data: { train: fakeStream(EXAMPLES, 4, 3), valid: VALID },
      args: { ...ARGS, steps: 4, saveEvery: 1, keepCheckpoints, resume, outputDir: dir },
      progress: false,
      callbacks: { onMessage: () => {} },
    });
  await run(3, false); // stands in for a run killed after writing checkpoint-4, before pruning
  assert.deepEqual(checkpointDirs(dir).map((c) => c.step), [2, 3, 4]);
  const result = await run(2, true);
  assert.equal(result.step, 4);
  assert.deepEqual(checkpointDirs(dir).map((c) => c.step), [3, 4]);
});

Deno.test("trainer: steps from epochs, fractional epochs rounding up", () => {
  const stream = fakeStream(EXAMPLES, 4, 3); // 10 batches per epoch
  assert.equal(stepsForEpochs(stream, 1, 1), 10);
  assert.equal(stepsForEpochs(stream, 1.5, 3), 5);
  assert.equal(stepsForEpochs(stream, 0.01, 1), 1);
  const t = new Trainer({
    model: new FakeModel(),
    data: { train: stream },
    args: { epochs: 2, gradAccumulation: 4 },
    progress: false,
  });
  assert.equal(t.totalSteps, 5);
});
