/** The generation queue: one at a time, in order, a bounded line, places given up by clients who leave. */
import assert from "node:assert/strict";
import { GenerationQueue, QueueFullError } from "../../lib/serve/queue.ts";

Deno.test("turns come one at a time in arrival order; a full line is refused at once", async () => {
  const queue = new GenerationQueue(2);
  const order: string[] = [];
  const releaseA = await queue.join();
  const b = queue.join().then((release) => (order.push("b"), release));
  const c = queue.join().then((release) => (order.push("c"), release));
  assert.equal(queue.waiting, 2);
  assert.throws(() => queue.join(), QueueFullError);
  assert.throws(() => queue.join(), /1 generation running and 2 waiting \(queue size 2\)/);
  releaseA();
  releaseA(); // a second release changes nothing
  const releaseB = await b;
  assert.deepEqual(order, ["b"]);
  assert.equal(queue.waiting, 1);
  releaseB();
  (await c)();
  assert.deepEqual(order, ["b", "c"]);
  assert.equal(queue.busy, false);
});

Deno.test("a waiting caller whose signal aborts leaves the line; size 0 allows only the running one", async () => {
  const queue = new GenerationQueue(1);
  const release = await queue.join();
  const controller = new AbortController();
  const waiting = queue.join(controller.signal);
  controller.abort(new Error("client left"));
  await assert.rejects(waiting, /client left/);
  assert.equal(queue.waiting, 0);
  release();
  assert.equal(queue.busy, false);

  const none = new GenerationQueue(0);
  const only = await none.join();
  assert.throws(() => none.join(), QueueFullError);
  only();
  (await none.join())();
});

Deno.test("a closed queue refuses newcomers but serves those already waiting", async () => {
  const queue = new GenerationQueue(1);
  const release = await queue.join();
  const waiting = queue.join();
  queue.close();
  assert.throws(() => queue.join(), /shutting down/);
  release();
  (await waiting)();
});
