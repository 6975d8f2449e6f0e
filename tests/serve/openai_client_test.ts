/**
 * The server through the official OpenAI client library (npm `openai`) on 127.0.0.1: every answer is
 * compared with the library's own generation from the same prompt, so the HTTP layer must neither lose nor
 * invent anything; errors must reach the client as its usual exception classes with our message and field.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { generate, type GenerateOptions } from "../../lib/generate/generate.ts";
import { readPeftAdapter } from "../../lib/io/peft/read.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import type { CausalLm } from "../../lib/nn/llama.ts";
import { type ChatMessage, ChatTemplate } from "../../lib/text/chat_template.ts";
import { startServer, tinyChat } from "./_server.ts";
import { TINY_ADAPTER } from "./_tiny_chat_model.ts";

function client(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: "not-checked", maxRetries: 0, timeout: 60_000 });
}

/** What the library generates for a chat, as the server should (greedy unless told). */
async function expectedChat(
  model: CausalLm | "base" | "lora",
  messages: ChatMessage[],
  opts: GenerateOptions,
) {
  const { tokenizer, model: base, config } = await tinyChat();
  const lm = model === "base"
    ? base
    : model === "lora"
    ? LoraModel.fromWeights(base, readPeftAdapter(TINY_ADAPTER, config).layers)
    : model;
  const prompt = ChatTemplate.fromTokenizer(tokenizer).render(messages, { addGenerationPrompt: true });
  const ids = tokenizer.encode(prompt, { addSpecialTokens: false });
  return generate(lm, tokenizer, ids, { stopTokens: [257], ...opts });
}

const MESSAGES: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name a prime." },
];

Deno.test("chat completion: the library's greedy answer, OpenAI's object, usage counts", async () => {
  await using server = await startServer();
  const answer = await client(server.url).chat.completions.create({
    model: "base",
    messages: MESSAGES.map((m) => ({ role: m.role as "system" | "user", content: m.content })),
    max_tokens: 12,
    temperature: 0,
  });
  const expected = await expectedChat("base", MESSAGES, { maxNewTokens: 12 });
  assert.equal(expected.ids.length, 12, "the tiny model runs to the limit here (else pick another prompt)");
  assert.equal(answer.object, "chat.completion");
  assert.match(answer.id, /^chatcmpl-/);
  assert.equal(answer.model, "base");
  assert.equal(answer.choices.length, 1);
  assert.equal(answer.choices[0].message.role, "assistant");
  assert.equal(answer.choices[0].message.content, expected.text);
  assert.equal(answer.choices[0].finish_reason, "length");
  assert.deepEqual(answer.usage, {
    prompt_tokens: expected.promptTokens,
    completion_tokens: 12,
    total_tokens: expected.promptTokens + 12,
  });
});

Deno.test("streamed chat: role first, pieces that add up to the whole answer, the reason, then usage", async () => {
  await using server = await startServer();
  const stream = await client(server.url).chat.completions.create({
    model: "base",
    messages: [{ role: "user", content: "Count to five." }],
    max_tokens: 10,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const expected = await expectedChat("base", [{ role: "user", content: "Count to five." }], {
    maxNewTokens: 10,
  });
  assert.ok(chunks.length >= 4, `${chunks.length} chunks`);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, "one id for the whole stream");
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const content = chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? "")).join("");
  assert.equal(content, expected.text);
  const last = chunks.at(-1)!;
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage?.completion_tokens, expected.ids.length);
  assert.equal(last.usage?.prompt_tokens, expected.promptTokens);
  assert.equal(chunks.at(-2)!.choices[0].finish_reason, expected.finishReason);
});

Deno.test("the model field picks the adapter per request; /v1/models lists both", async () => {
  await using server = await startServer();
  const openai = client(server.url);
  const ask = (model: string) =>
    openai.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Name a prime." }],
      max_tokens: 12,
      temperature: 0,
    });
  const [base, lora, baseAgain] = [await ask("base"), await ask("lora"), await ask("base")];
  const messages: ChatMessage[] = [{ role: "user", content: "Name a prime." }];
  assert.equal(
    lora.choices[0].message.content,
    (await expectedChat("lora", messages, { maxNewTokens: 12 })).text,
  );
  assert.equal(
    base.choices[0].message.content,
    (await expectedChat("base", messages, { maxNewTokens: 12 })).text,
  );
  assert.notEqual(
    lora.choices[0].message.content,
    base.choices[0].message.content,
    "the adapter changes the answer",
  );
  assert.equal(
    baseAgain.choices[0].message.content,
    base.choices[0].message.content,
    "the base is left as it was",
  );
  const listed = [];
  for await (const model of openai.models.list()) listed.push(model.id);
  assert.deepEqual(listed, ["base", "lora"]);
  assert.equal((await openai.models.retrieve("lora")).id, "lora");
});

Deno.test("text completions: whole and streamed, with a stop sequence, as the library generates them", async () => {
  await using server = await startServer();
  const { tokenizer, model } = await tinyChat();
  const promptIds = tokenizer.encode("Once upon a time", { addSpecialTokens: true });
  const free = generate(model, tokenizer, promptIds, { maxNewTokens: 20, stopTokens: [257] });
  // A stop sequence from the middle of the free answer: the answer must end right before it.
  const chars = [...free.text];
  const stop = chars.slice(6, 8).join("");
  const expected = generate(model, tokenizer, promptIds, {
    maxNewTokens: 20,
    stopTokens: [257],
    stopSequences: [stop],
  });
  assert.equal(expected.finishReason, "stop");
  assert.ok(expected.text.length < free.text.length);
  const openai = client(server.url);
  const request = { model: "base", prompt: "Once upon a time", max_tokens: 20, temperature: 0, stop: [stop] };
  const whole = await openai.completions.create(request);
  assert.equal(whole.object, "text_completion");
  assert.equal(whole.choices[0].text, expected.text);
  assert.equal(whole.choices[0].finish_reason, "stop");
  assert.equal(whole.usage?.prompt_tokens, promptIds.length);
  const pieces = [];
  let finish;
  for await (const chunk of await openai.completions.create({ ...request, stream: true })) {
    pieces.push(chunk.choices[0].text);
    finish ??= chunk.choices[0].finish_reason;
  }
  assert.equal(pieces.join(""), expected.text);
  assert.equal(finish, "stop");
});

Deno.test("sampling: the same seed gives the same answer, as the library samples it", async () => {
  await using server = await startServer();
  const openai = client(server.url);
  const ask = (seed: number) =>
    openai.chat.completions.create({
      model: "lora",
      messages: [{ role: "user", content: "Tell me something." }],
      max_tokens: 16,
      temperature: 0.8,
      top_p: 0.95,
      seed,
    });
  const [a, b, c] = [await ask(7), await ask(7), await ask(8)];
  const expected = await expectedChat("lora", [{ role: "user", content: "Tell me something." }], {
    maxNewTokens: 16,
    temperature: 0.8,
    topP: 0.95,
    seed: 7,
  });
  assert.equal(a.choices[0].message.content, expected.text);
  assert.equal(b.choices[0].message.content, a.choices[0].message.content);
  assert.notEqual(c.choices[0].message.content, a.choices[0].message.content, "another seed, another answer");
});

Deno.test("bad requests reach the client as its error classes, with OpenAI's error shape", async () => {
  await using server = await startServer();
  const openai = client(server.url);
  const messages = [{ role: "user" as const, content: "hi" }];
  await assert.rejects(
    openai.chat.completions.create({ model: "base", messages, temperature: 3 }),
    (e: unknown) =>
      e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "temperature" &&
      /temperature: must be ≤ 2/.test(e.message),
  );
  await assert.rejects(
    openai.chat.completions.create({ model: "gpt-4o", messages }),
    (e: unknown) =>
      e instanceof OpenAI.NotFoundError && e.code === "model_not_found" &&
      /"gpt-4o" does not exist/.test(e.message),
  );
  await assert.rejects(
    openai.chat.completions.create({ model: "base", messages, max_tokens: 10_000 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === "context_length_exceeded",
  );
  await assert.rejects(
    openai.chat.completions.create({ model: "base", messages, n: 2 }),
    (e: unknown) =>
      e instanceof OpenAI.BadRequestError && e.param === "n" && /only 1 is supported/.test(e.message),
  );
  await assert.rejects(
    openai.chat.completions.create({
      model: "base",
      messages,
      tools: [{ type: "function", function: { name: "f" } }],
    }),
    (e: unknown) =>
      e instanceof OpenAI.BadRequestError && /unsupported request argument\(s\): tools/.test(e.message),
  );
  await assert.rejects(
    openai.chat.completions.create({
      model: "base",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:," } }] }],
    }),
    (e: unknown) =>
      e instanceof OpenAI.BadRequestError && e.param === "messages[0].content" &&
      /text parts/.test(e.message),
  );
  assert.ok(server.log.every((line) => !/ 5\d\d /.test(line)), server.log.join("\n"));
});

Deno.test("raw HTTP: unknown routes 404, wrong methods 405, bodies too large 413, broken JSON 400", async () => {
  await using server = await startServer({ maxBodyBytes: 2048 });
  const post = (path: string, body: string) => fetch(`${server.url}${path}`, { method: "POST", body });
  const check = async (response: Response, status: number, pattern: RegExp) => {
    const json = await response.json();
    assert.equal(response.status, status, JSON.stringify(json));
    assert.deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"]);
    assert.match(json.error.message, pattern);
    return response;
  };
  await check(await fetch(`${server.url}/v1/embeddings`), 404, /no such endpoint: GET \/v1\/embeddings/);
  const wrong = await check(await fetch(`${server.url}/v1/chat/completions`), 405, /takes POST, not GET/);
  assert.equal(wrong.headers.get("allow"), "POST");
  await check(await post("/v1/models", "{}"), 405, /takes GET/);
  const big = JSON.stringify({ model: "base", prompt: "x".repeat(4000) });
  await check(await post("/v1/completions", big), 413, /larger than 2048 bytes/);
  await check(await post("/v1/completions", "{not json"), 400, /not valid JSON/);
  await check(await post("/v1/completions", ""), 400, /body is empty/);
  await check(await post("/v1/completions", "[1]"), 400, /must be a JSON object/);
  await check(
    await post("/v1/completions", JSON.stringify({ model: "base", prompt: [5, 300] })),
    400,
    /token id 300/,
  );
});
