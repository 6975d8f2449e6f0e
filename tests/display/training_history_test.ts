import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { orderedBatches } from "../../lib/data/batch.ts";
import { DISPLAY } from "../../lib/display/jupyter.ts";
import { TrainingHistory } from "../../lib/display/training_history.ts";
import { type EvalReport, type StepReport, train, type TrainCallbacks } from "../../lib/train/trainer.ts";
import { fakeExamples, FakeModel, fakeStream } from "../train/_fake.ts";
import { FakeClock, RecordingSink } from "./_sink.ts";

function step(n: number, total: number, loss: number, seconds = 2): StepReport {
  return {
    step: n,
    totalSteps: total,
    epoch: 0,
    loss,
    lr: 1e-4,
    gradNorm: 1,
    lossTokens: 50,
    tokens: 200,
    seconds,
    tokensPerSecond: 200 / seconds,
  };
}

function evalAt(n: number, loss: number): EvalReport {
  return { step: n, loss, perplexity: Math.exp(loss), lossTokens: 30, batches: 2, seconds: 1, best: true };
}

Deno.test("callbacks record into the history and still call the user's callbacks with the same arguments", () => {
  const history = new TrainingHistory();
  const seen: string[] = [];
  const user: TrainCallbacks = {
    onStep: (r) => seen.push(`step ${r.step}`),
    onEval: (r) => seen.push(`eval ${r.step}`),
    onSave: (r) => seen.push(`save ${r.step}`),
  };
  const cb = history.callbacks(user);
  const trainer = {} as never;
  cb.onStep!(step(1, 2, 2.5), trainer);
  cb.onEval!(evalAt(1, 2.4), trainer);
  cb.onSave!({ step: 1, dir: "x" }, trainer);
  assert.deepEqual(seen, ["step 1", "eval 1", "save 1"]);
  assert.equal(history.steps.length, 1);
  assert.equal(history.evals.length, 1);
  assert.equal(history.totalSteps, 2);
  // Without the user's onMessage the trainer keeps its own default for messages.
  assert.equal("onMessage" in cb, false);
  assert.equal("onSave" in history.callbacks(), false);
});

Deno.test("progressLine: step, loss, last eval, tok/s and an ETA from the pace so far", () => {
  const clock = new FakeClock();
  const history = new TrainingHistory({ now: clock.now });
  assert.match(history.progressLine(), /waiting for the first step/);
  clock.ms = 2000; // the first step took 2 s
  history.recordStep(step(1, 10, 2.5));
  clock.ms = 4000;
  history.recordStep(step(2, 10, 2.25));
  history.recordEval(evalAt(2, 2.3));
  // 2 steps in 4 s → 8 left × 2 s.
  assert.equal(history.progressLine(), "step 2/10 · loss 2.2500 · eval 2.3000 · 100 tok/s · ETA 0:16");
  for (let s = 3; s <= 10; s++) history.recordStep(step(s, 10, 2));
  assert.match(history.progressLine(), /^step 10\/10 .* done in 0:20$/);
});

Deno.test("metrics: steps, time, throughput, first → tail train loss, eval loss and perplexity before → after", () => {
  const history = new TrainingHistory({ tailSteps: 2 });
  history.recordEval(evalAt(0, 2));
  for (const [i, loss] of [3, 2, 1.5, 0.5].entries()) history.recordStep(step(i + 1, 4, loss));
  history.recordEval(evalAt(4, 1));
  const table = history.metrics([{ name: "exact match", before: "1/10", after: "<b>9/10</b>" }]);
  const byName = new Map(table.rows.map((r) => [r.name, r]));
  assert.equal(byName.get("steps")?.after, "4 of 4");
  assert.equal(byName.get("training time")?.after, "0:08");
  assert.equal(byName.get("tokens / s")?.after, "100");
  assert.deepEqual(byName.get("train loss (step 1 → mean of last 2)"), {
    name: "train loss (step 1 → mean of last 2)",
    before: 3,
    after: 1,
  });
  assert.deepEqual([byName.get("eval loss")?.before, byName.get("eval loss")?.after], [2, 1]);
  assert.equal(byName.get("eval perplexity")?.after, Math.E);

  const bundle = table[DISPLAY]();
  assert.match(bundle["text/html"], /^<table/);
  assert.match(bundle["text/html"], /&lt;b&gt;9\/10&lt;\/b&gt;/);
  assert.doesNotMatch(bundle["text/html"], /<b>9/);
  const plain = bundle["text/plain"].split("\n");
  assert.deepEqual(plain[0].split(/\s{2,}/), ["metric", "before", "after"]);
  assert.ok(plain.some((l) => /^eval loss\s+2\.0000\s+1\.0000$/.test(l)), bundle["text/plain"]);
});

Deno.test("metrics without evaluations or steps have no eval rows and say 0 steps", () => {
  const rows = new TrainingHistory().metrics().rows;
  assert.deepEqual(rows, [{ name: "steps", after: "0" }]);
});

Deno.test("the history displays as the loss plot (HTML) and a sparkline summary (text)", () => {
  const history = new TrainingHistory();
  for (let s = 1; s <= 6; s++) history.recordStep(step(s, 6, 7 - s));
  const bundle = history[DISPLAY]();
  assert.match(bundle["text/html"], /<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(bundle["text/plain"], /^loss █▇▅▄▂▁ 6\.0000 → 1\.0000\nstep 6\/6/);
  assert.equal(history.sparkline(3), "█▅▁"); // bucket means 5.5, 3.5, 1.5
});

Deno.test("live mode in a notebook: one output created, then updated in place, ending in the final plot", async () => {
  const sink = new RecordingSink();
  const history = new TrainingHistory();
  const live = await history.live({ sink, id: "run", minIntervalMs: 0 });
  assert.equal(sink.sent.length, 1, "shown before training starts");
  const cb = history.callbacks();
  for (let s = 1; s <= 3; s++) {
    cb.onStep!(step(s, 3, 3 - s / 2), {} as never);
    await new Promise((resolve) => setTimeout(resolve, 0)); // the trainer yields like this after each step
  }
  cb.onEval!(evalAt(3, 1.9), {} as never);
  await history.finish();
  assert.equal(live.id, "run");
  assert.equal(sink.sent[0].options.update, undefined);
  assert.ok(sink.sent.slice(1).every((s) => s.options.update === true && s.options.display_id === "run"));
  assert.ok(sink.sent.length >= 4, `${sink.sent.length} sends`);
  const last = sink.sent.at(-1)!.bundle;
  assert.match(last["text/plain"], /^step 3\/3 · loss 1\.5000 · eval 1\.9000 · 100 tok\/s · done in 0:06$/);
  assert.match(last["text/html"], /<svg /);
  assert.equal(last["text/html"].match(/<circle /g)?.length, 4); // 3 steps + 1 evaluation
});

Deno.test("live mode outside a notebook prints the compact progress line only now and then", async () => {
  const lines: string[] = [];
  const clock = new FakeClock();
  const history = new TrainingHistory({ now: clock.now });
  await history.live({ log: (t) => lines.push(t), plainEveryMs: 10_000, now: clock.now });
  for (let s = 1; s <= 5; s++) {
    clock.ms = s * 2000;
    history.recordStep(step(s, 5, 1));
  }
  await history.finish();
  assert.deepEqual(lines, [
    "training: waiting for the first step",
    "step 5/5 · loss 1.0000 · 100 tok/s · done in 0:10",
  ]);
});

Deno.test("a real train() run fills the history through its callbacks", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "history_test_" });
  try {
    const history = new TrainingHistory();
    const steps: number[] = [];
    const valid = [...orderedBatches(fakeExamples(8, 99), { batchSize: 4, padId: 0 })];
    const result = await train({
      model: new FakeModel({ seed: 1 }),
      data: { train: fakeStream(fakeExamples(24), 4, 1), valid },
      args: { steps: 6, lr: 0.05, warmupSteps: 1, evalEvery: 3, saveEvery: 0, outputDir: dir },
      callbacks: history.callbacks({ onStep: (r) => steps.push(r.step) }),
      progress: false,
    });
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(history.steps.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(history.evals.map((r) => r.step), [3, 6]);
    assert.equal(history.steps.at(-1)!.loss, result.loss);
    assert.equal(history.metrics().rows.find((r) => r.name === "eval loss")?.after, result.eval!.loss);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
