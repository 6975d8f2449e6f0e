import assert from "node:assert/strict";
import { appendFileSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { MetricsLog, readMetrics } from "../../lib/train/metrics_log.ts";

Deno.test("metrics log: one JSON line per event, on disk at once; non-finite numbers as strings", () => {
  const dir = Deno.makeTempDirSync({ prefix: "metrics_test_" });
  const path = join(dir, "metrics.jsonl");
  using log = MetricsLog.truncate(path);
  log.append({ event: "train", step: 1, loss: 2.5 });
  assert.equal(readFileSync(path, "utf8").split("\n").length, 2); // written before close
  log.append({ event: "stop", step: 2, loss: NaN, gradNorm: Infinity });
  const events = readMetrics(path);
  assert.deepEqual(events.map((e) => [e.event, e.step, e.loss]), [["train", 1, 2.5], ["stop", 2, "NaN"]]);
  assert.equal(events[1].gradNorm, "Infinity");
  assert.equal(typeof events[0].time, "number");
  rmSync(dir, { recursive: true });
});

Deno.test("metrics log: resuming at a step drops later and unreadable lines", () => {
  const dir = Deno.makeTempDirSync({ prefix: "metrics_test_" });
  const path = join(dir, "metrics.jsonl");
  {
    using log = MetricsLog.truncate(path);
    for (let step = 1; step <= 5; step++) log.append({ event: "train", step });
  }
  appendFileSync(path, '{"event": "train", "st');
  {
    using log = MetricsLog.resumeAt(path, 3);
    log.append({ event: "train", step: 4 });
  }
  assert.deepEqual(readMetrics(path).map((e) => e.step), [1, 2, 3, 4]);
  rmSync(dir, { recursive: true });
});
