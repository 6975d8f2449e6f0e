import assert from "node:assert/strict";
import {
  bundleOf,
  DISPLAY,
  display,
  displayable,
  inJupyter,
  jupyterSink,
  LiveDisplay,
} from "../../lib/display/jupyter.ts";
import { FakeClock, RecordingSink } from "./_sink.ts";

const bundle = (n: number) => ({ "text/plain": `plain ${n}`, "text/html": `<b>${n}</b>` });

Deno.test("outside a kernel there is no notebook (reading Deno.jupyter throws, and that is caught)", () => {
  assert.throws(() => (Deno as unknown as { jupyter: unknown }).jupyter);
  assert.equal(inJupyter(), false);
  assert.equal(jupyterSink(), undefined);
});

Deno.test("DISPLAY is the key the Deno kernel looks for", () => {
  assert.equal(DISPLAY, Symbol.for("Jupyter.display"));
  assert.deepEqual(bundleOf(displayable(bundle(1))), bundle(1));
});

Deno.test("bundleOf refuses a bundle without text/plain", () => {
  assert.throws(() => bundleOf({ "text/html": "<b>x</b>" } as never), /text\/plain/);
});

Deno.test("display prints the plain text outside a notebook and sends the raw bundle in one", async () => {
  const lines: string[] = [];
  await display(displayable(bundle(1)), { log: (t) => lines.push(t) });
  assert.deepEqual(lines, ["plain 1"]);

  const sink = new RecordingSink();
  await display(bundle(2), { sink, log: (t) => lines.push(t) });
  assert.deepEqual(sink.sent, [{ bundle: bundle(2), options: { raw: true } }]);
  assert.equal(lines.length, 1);
});

Deno.test("LiveDisplay: show creates the output, updates replace it under the same display_id", async () => {
  const sink = new RecordingSink();
  const clock = new FakeClock();
  const live = new LiveDisplay({ sink, id: "loss", minIntervalMs: 100, now: clock.now });
  assert.equal(live.notebook, true);
  live.show(bundle(0));
  clock.ms = 200;
  live.update(bundle(1));
  await live.flush();
  assert.deepEqual(sink.sent.map((s) => s.options), [
    { raw: true, display_id: "loss" },
    { raw: true, display_id: "loss", update: true },
  ]);
  assert.deepEqual(sink.sent.map((s) => s.bundle["text/plain"]), ["plain 0", "plain 1"]);
});

Deno.test("LiveDisplay merges updates closer than minIntervalMs; final and flush send the latest", async () => {
  const sink = new RecordingSink();
  const clock = new FakeClock();
  const live = new LiveDisplay({ sink, id: "x", minIntervalMs: 1000, now: clock.now });
  live.show(bundle(0));
  let rendered = 0;
  const lazy = (n: number) => ({
    [DISPLAY]: () => {
      rendered++;
      return bundle(n);
    },
  });
  for (let i = 1; i <= 5; i++) {
    clock.ms = i * 10;
    live.update(lazy(i));
  }
  await Promise.resolve();
  assert.equal(rendered, 0, "merged updates are not rendered");
  live.update(lazy(6), { final: true });
  await live.flush();
  assert.equal(rendered, 1);
  assert.deepEqual(sink.sent.map((s) => s.bundle["text/plain"]), ["plain 0", "plain 6"]);
  live.update(lazy(7)); // within the interval again: pending until flush
  await live.flush();
  assert.deepEqual(sink.sent.map((s) => s.bundle["text/plain"]), ["plain 0", "plain 6", "plain 7"]);
});

Deno.test("LiveDisplay sends a merged update by itself once the interval has passed", async () => {
  const sink = new RecordingSink();
  const live = new LiveDisplay({ sink, minIntervalMs: 20 });
  live.show(bundle(0));
  live.update(bundle(1));
  live.update(bundle(2));
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.deepEqual(sink.sent.map((s) => s.bundle["text/plain"]), ["plain 0", "plain 2"]);
  await live.flush();
  assert.equal(sink.sent.length, 2);
});

Deno.test("LiveDisplay keeps a failed send for flush instead of an unhandled rejection", async () => {
  const sink = new RecordingSink();
  sink.failNext = new Error("kernel gone");
  const live = new LiveDisplay({ sink, minIntervalMs: 0 });
  live.show(bundle(0));
  live.update(bundle(1));
  await assert.rejects(() => live.flush(), /kernel gone/);
  assert.deepEqual(sink.sent.map((s) => s.bundle["text/plain"]), ["plain 1"]);
  await live.flush(); // reported once
});

Deno.test("LiveDisplay outside a notebook prints now and then, and always the final update", async () => {
  const lines: string[] = [];
  const clock = new FakeClock();
  const live = new LiveDisplay({ log: (t) => lines.push(t), plainEveryMs: 1000, now: clock.now });
  assert.equal(live.notebook, false);
  live.show(bundle(0));
  clock.ms = 500;
  live.update(bundle(1));
  clock.ms = 1200;
  live.update(bundle(2));
  clock.ms = 1300;
  live.update(bundle(3), { final: true });
  await live.flush();
  assert.deepEqual(lines, ["plain 0", "plain 2", "plain 3"]);
  assert.equal(live.sent, 3);
});
