import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { TrainProgress } from "../../lib/train/progress.ts";

function sink(): { stream: Writable; text: () => string } {
  let out = "";
  const stream = new Writable({
    write(chunk, _encoding, done) {
      out += String(chunk);
      done();
    },
  });
  return { stream, text: () => out };
}

Deno.test("progress: without a terminal, plain lines at most every interval, and always the last step", () => {
  const { stream, text } = sink();
  const p = new TrainProgress(4, 0, { stream, tty: false, plainEveryMs: 60_000 });
  for (let step = 1; step <= 4; step++) p.update({ step, loss: 1 / step, lr: 2e-4, tokensPerSecond: 1234.4 });
  p.log("step 4: eval loss 0.1");
  p.stop();
  const lines = text().trimEnd().split("\n");
  assert.equal(lines.length, 3, text());
  assert.match(
    lines[0],
    /^step 1\/4 \[█{5}░{15}\] loss 1\.0000 \| lr 2\.0e-4 \| 1234 tok\/s \| ETA \d+:\d\d$/,
  );
  assert.match(lines[1], /^step 4\/4 \[█{20}\] loss 0\.2500 .* ETA 0:00$/);
  assert.equal(lines[2], "step 4: eval loss 0.1");
});

Deno.test("progress: a resumed run starts its bar at the resumed step", () => {
  const { stream } = sink();
  const p = new TrainProgress(10, 6, { stream, tty: false });
  assert.match(p.line(6), /^step 6\/10 \[█{12}░{8}\] ETA \?$/);
});
