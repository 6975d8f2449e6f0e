/** A chat session on the tiny chat model: each turn must be exactly generate() on the rendered history. */
import assert from "node:assert/strict";
import { ChatSession } from "../../lib/generate/chat_session.ts";
import { generate } from "../../lib/generate/generate.ts";
import type { ChatMessage } from "../../lib/text/chat_template.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { tinyChat } from "../serve/_server.ts";

const IM_END = 257;

async function setup(contextLength?: number, system?: string) {
  const { model, tokenizer, config } = await tinyChat();
  const template = ChatTemplate.fromTokenizer(tokenizer);
  const session = new ChatSession(model, tokenizer, {
    template,
    stopTokens: [IM_END],
    contextLength: contextLength ?? config.maxPositionEmbeddings,
    system,
  });
  /** What the library generates for these messages, independently of the session. */
  const expected = (messages: ChatMessage[], maxNewTokens: number) => {
    const prompt = template.render(messages, { addGenerationPrompt: true });
    const ids = tokenizer.encode(prompt, { addSpecialTokens: false });
    return generate(model, tokenizer, ids, { maxNewTokens, stopTokens: [IM_END] });
  };
  return { session, expected };
}

Deno.test("each turn answers the whole rendered history, and the answer joins it", async () => {
  const { session, expected } = await setup(undefined, "Be brief.");
  const first = await session.say("Hello!", { maxNewTokens: 8 });
  const one = expected([{ role: "system", content: "Be brief." }, { role: "user", content: "Hello!" }], 8);
  assert.equal(first.text, one.text);
  assert.ok(first.text.length > 0);
  const second = await session.say("And then?", { maxNewTokens: 8 });
  const history: ChatMessage[] = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello!" },
    { role: "assistant", content: first.text },
    { role: "user", content: "And then?" },
  ];
  assert.equal(second.text, expected(history, 8).text);
  assert.notEqual(second.promptTokens, first.promptTokens);
  assert.deepEqual(session.history, [...history.slice(1), { role: "assistant", content: second.text }]);

  session.reset();
  session.system = undefined;
  const fresh = await session.say("Hello!", { maxNewTokens: 8 });
  assert.equal(fresh.text, expected([{ role: "user", content: "Hello!" }], 8).text);
  assert.equal(session.history.length, 2);
});

Deno.test("the oldest exchanges are dropped when prompt + answer would not fit the context", async () => {
  const { session, expected } = await setup(170);
  const answers: string[] = [];
  let dropped = 0;
  for (const user of ["first question here", "second question here", "third question here", "fourth one"]) {
    const reply = await session.say(user, { maxNewTokens: 20 });
    dropped += reply.droppedTurns;
    answers.push(reply.text);
    assert.ok(reply.promptTokens + 20 <= 170, `prompt ${reply.promptTokens} + 20 fits in 170`);
  }
  assert.ok(dropped > 0, "a small context forces drops");
  // The last answer came from the history that was left, rendered as the session shows it.
  const kept = session.history.slice(0, -2);
  assert.ok(kept.length >= 2, "an earlier exchange is still there");
  assert.equal(kept[0].role, "user", "drops remove whole exchanges");
  assert.equal(answers.at(-1), expected([...kept, { role: "user", content: "fourth one" }], 20).text);
});

Deno.test("a message longer than the context is refused, with both numbers", async () => {
  const { session } = await setup(40);
  await assert.rejects(session.say("x".repeat(100)), /needs \d+ tokens .* context is 40/);
  assert.equal(session.history.length, 0, "nothing was added");
});
