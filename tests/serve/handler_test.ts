/** The request handler without a socket: what depends on the template and the tokenizer's limits. */
import assert from "node:assert/strict";
import { RequestHandler } from "../../lib/serve/handler.ts";
import { ModelRegistry } from "../../lib/serve/models.ts";
import { GenerationQueue } from "../../lib/serve/queue.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { tinyChat } from "./_server.ts";

/** A template that, like many real ones, insists on user/assistant alternation. */
const STRICT = "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}";

async function handler(template: ChatTemplate | null) {
  const { model, tokenizer, config } = await tinyChat();
  return new RequestHandler({
    models: new ModelRegistry(model, config),
    tokenizer,
    template,
    stopTokens: [257],
    contextLength: config.maxPositionEmbeddings,
    vocabSize: config.vocabSize,
    defaultMaxTokens: 4,
    maxBodyBytes: 1 << 16,
    queue: new GenerationQueue(1),
  });
}

const chat = (messages: { role: string; content: string }[]) =>
  new Request("http://127.0.0.1/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ model: "base", messages, temperature: 0 }),
  });

Deno.test("a chat template that refuses the messages is a 400 with its reason, not a server error", async () => {
  const h = await handler(new ChatTemplate(STRICT));
  const bad = await h.handle(chat([{ role: "user", content: "a" }, { role: "user", content: "b" }]));
  assert.equal(bad.status, 400);
  const { error } = await bad.json();
  assert.equal(error.param, "messages");
  assert.match(error.message, /refuses these messages: .*roles must alternate/);
  const good = await h.handle(chat([{ role: "user", content: "a" }]));
  assert.equal(good.status, 200);
  assert.equal((await good.json()).usage.completion_tokens, 4, "defaultMaxTokens applies");
});

Deno.test("without a chat template, chat completions are refused and text completions still work", async () => {
  const h = await handler(null);
  const refused = await h.handle(chat([{ role: "user", content: "a" }]));
  assert.equal(refused.status, 400);
  assert.match((await refused.json()).error.message, /no chat template: use \/v1\/completions/);
  const text = await h.handle(
    new Request("http://127.0.0.1/v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: "base", prompt: "abc", max_tokens: 3 }),
    }),
  );
  assert.equal(text.status, 200);
  assert.equal((await text.json()).usage.completion_tokens, 3);
});
