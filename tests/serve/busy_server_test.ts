/**
 * The server while it generates: a full queue answers 503 at once, waiting requests get their turn, and a
 * client that leaves ends its generation (its place goes to the next request). The model is slowed to a
 * fixed time per token so these tests do not depend on the machine's speed.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer } from "./_server.ts";

function client(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-checked", maxRetries: 0, timeout: 60_000 });
}

const ask = { messages: [{ role: "user" as const, content: "Go on." }], temperature: 0 };

/** Waits until `ok()` holds (checked every few ms), or fails after `ms`. */
async function until(ok: () => boolean, what: string, ms = 20_000) {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("a full queue answers 503 (queue_full) at once; waiting requests are served in turn", async () => {
  await using server = await startServer({ queueSize: 1, msPerToken: 10 });
  const openai = client(server.url);
  const running = await openai.chat.completions.create({
    model: "base",
    ...ask,
    max_tokens: 150,
    stream: true,
  });
  const reader = running[Symbol.asyncIterator]();
  await reader.next(); // the generation has its turn
  const waiting = openai.chat.completions.create({ model: "lora", ...ask, max_tokens: 3 });
  await until(() => server.handler.opts.queue.waiting === 1, "the second request to wait");
  const t0 = performance.now();
  await assert.rejects(
    openai.chat.completions.create({ model: "base", ...ask, max_tokens: 3 }),
    (e: unknown) =>
      e instanceof OpenAI.APIError && e.status === 503 && e.code === "queue_full" &&
      /1 generation running and 1 waiting/.test(e.message),
  );
  assert.ok(performance.now() - t0 < 5_000, "refused without waiting for the running generation");
  let pieces = 0;
  for (let r = await reader.next(); !r.done; r = await reader.next()) pieces++;
  assert.ok(pieces > 10, `${pieces} chunks from the running request`);
  const served = await waiting;
  assert.equal(served.usage?.completion_tokens, 3);
});

Deno.test("a client leaving a stream ends its generation and frees the queue", async () => {
  await using server = await startServer({ queueSize: 0, msPerToken: 10 });
  const openai = client(server.url);
  const stream = await openai.chat.completions.create({
    model: "base",
    ...ask,
    max_tokens: 200,
    stream: true,
  });
  let chunks = 0;
  for await (const _ of stream) {
    if (++chunks === 3) break; // closes the response body
  }
  await until(() => server.log.some((line) => line.includes("client left")), "the server to notice");
  const ended = server.log.find((line) => line.includes("client left"))!;
  const generated = Number(/: (\d+) generated/.exec(ended)![1]);
  assert.ok(generated < 100, `stopped after ${generated} of 200 tokens: ${ended}`);
  assert.equal(server.handler.opts.queue.busy, false);
  const next = await openai.chat.completions.create({ model: "base", ...ask, max_tokens: 2 });
  assert.equal(next.usage?.completion_tokens, 2, "the queue (size 0) took the next request");
});

// A plain fetch: the openai client, asked to abort, gives up on the response without closing the
// connection (its composed signals do not reach Deno's fetch), so the server could not tell.
Deno.test("a client leaving a whole (non-streamed) request ends its generation too", async () => {
  await using server = await startServer({ queueSize: 0, msPerToken: 10 });
  const controller = new AbortController();
  const pending = fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "base", ...ask, max_tokens: 200 }),
    signal: controller.signal,
  });
  await until(() => server.handler.opts.queue.busy, "the generation to start");
  await new Promise((r) => setTimeout(r, 100));
  controller.abort();
  await assert.rejects(pending);
  await until(() => !server.handler.opts.queue.busy, "the generation to end");
  await until(() => server.log.some((line) => line.includes("/v1/chat/completions")), "the log line");
  const line = server.log.find((l) => l.includes("/v1/chat/completions"))!;
  assert.match(line, /generated, abort/);
  const generated = Number(/(\d+) generated/.exec(line)![1]);
  assert.ok(generated < 100, `stopped after ${generated} of 200 tokens: ${line}`);
});

Deno.test("abortAll (a second Ctrl-C) ends the running stream properly and refuses the waiting request", async () => {
  await using server = await startServer({ queueSize: 1, msPerToken: 10 });
  const openai = client(server.url);
  const stream = await openai.chat.completions.create({
    model: "base",
    ...ask,
    max_tokens: 200,
    stream: true,
  });
  const reader = stream[Symbol.asyncIterator]();
  await reader.next();
  const waiting = fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ model: "base", ...ask, max_tokens: 3 }),
  });
  await until(() => server.handler.opts.queue.waiting === 1, "the second request to wait");
  server.handler.abortAll();
  let chunks = 1;
  let finish;
  for (let r = await reader.next(); !r.done; r = await reader.next()) {
    chunks++;
    finish ??= r.value.choices[0]?.finish_reason;
  }
  assert.equal(finish, "stop", "the stream ended with a last chunk (and [DONE], or the client would throw)");
  assert.ok(chunks < 100, `${chunks} chunks of 200 tokens`);
  const refused = await waiting;
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "shutting_down");
});
