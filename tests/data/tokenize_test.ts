import assert from "node:assert/strict";
import { DataError } from "../../lib/data/errors.ts";
import type { DataRecord } from "../../lib/data/formats.ts";
import { RecordTokenizer } from "../../lib/data/tokenize.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { Tokenizer } from "../../lib/text/tokenizer.ts";
import { fixturePath } from "../text/_fixtures.ts";
import { smollm2Tokenizer } from "./_helpers.ts";

const tokenizer = await smollm2Tokenizer();
const records = new RecordTokenizer(tokenizer);
const at = { file: "d.jsonl", line: 4 };

/** The text of the trained tokens, and of the untrained ones. */
function split(ids: number[], mask: Uint8Array): { trained: string; untrained: string } {
  return {
    trained: tokenizer.decode(ids.filter((_, i) => mask[i] === 1)),
    untrained: tokenizer.decode(ids.filter((_, i) => mask[i] === 0)),
  };
}

Deno.test("tokenize text: the text then EOS, trained on all but the first token", () => {
  const { ids, mask } = records.tokenize({ ...at, format: "text", text: "The cat sat." });
  assert.deepEqual(ids, [
    ...tokenizer.encode("The cat sat.", { addSpecialTokens: false }),
    tokenizer.eosTokenId,
  ]);
  assert.equal(mask.length, ids.length);
  assert.deepEqual([...mask], [0, ...ids.slice(1).map(() => 1)]);
});

Deno.test("tokenize completions: the loss is on the completion and EOS only", () => {
  const record: DataRecord = { ...at, format: "completions", prompt: "Q: 2+2?\nA:", completion: " 4" };
  const { ids, mask, splitAtBoundary } = records.tokenize(record);
  assert.equal(splitAtBoundary, false);
  assert.deepEqual(ids, [
    ...tokenizer.encode("Q: 2+2?\nA: 4", { addSpecialTokens: false }),
    tokenizer.eosTokenId,
  ]);
  assert.deepEqual(split(ids, mask), { trained: " 4<|im_end|>", untrained: "Q: 2+2?\nA:" });
});

Deno.test("tokenize completions: BPE merging across the boundary → the parts are tokenized apart", () => {
  // "hello" + "world" is one word to the pre-tokenizer; the mask needs a token boundary between them.
  const { ids, mask, splitAtBoundary } = records.tokenize({
    ...at,
    format: "completions",
    prompt: "hello",
    completion: "world",
  });
  assert.equal(splitAtBoundary, true);
  const enc = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  assert.deepEqual(ids, [...enc("hello"), ...enc("world"), tokenizer.eosTokenId]);
  assert.deepEqual(split(ids, mask), { trained: "world<|im_end|>", untrained: "hello" });
});

Deno.test("tokenize completions: trainOnPrompt trains the prompt too", () => {
  const all = new RecordTokenizer(tokenizer, { trainOnPrompt: true });
  const { mask } = all.tokenize({ ...at, format: "completions", prompt: "Q: 2+2?\nA:", completion: " 4" });
  assert.deepEqual([...mask.subarray(1)], [...mask.subarray(1)].map(() => 1));
  assert.equal(mask[0], 0);
});

Deno.test("tokenize chat: the tokens of the rendered chat, trained on the answer and <|im_end|> only", () => {
  const messages = [
    { role: "system" as const, content: "Answer with the ISO date." },
    { role: "user" as const, content: "March 5th, 2021" },
    { role: "assistant" as const, content: "2021-03-05" },
  ];
  const { ids, mask, splitAtBoundary } = records.tokenize({ ...at, format: "chat", messages });
  const rendered = ChatTemplate.fromTokenizer(tokenizer).render(messages);
  assert.equal(splitAtBoundary, false);
  assert.deepEqual(ids, tokenizer.encode(rendered, { addSpecialTokens: false }));
  const { trained } = split(ids, mask);
  assert.equal(trained, "2021-03-05<|im_end|>");
  // The newline after <|im_end|> is the template's, never generated: not trained.
  assert.equal(tokenizer.decode(ids.slice(-1)), "\n");
  assert.equal(mask.at(-1), 0);
});

Deno.test("tokenize chat: every assistant turn of a multi-turn chat is trained, no user turn", () => {
  const messages = [
    { role: "user" as const, content: "Hi" },
    { role: "assistant" as const, content: "Hello! How can I help?" },
    { role: "user" as const, content: "Say two." },
    { role: "assistant" as const, content: "two" },
    { role: "user" as const, content: "Thanks" },
  ];
  const { ids, mask } = records.tokenize({ ...at, format: "chat", messages });
  // Each trained run decodes to one turn.
  const runs: string[] = [];
  let run: number[] = [];
  for (let i = 0; i <= ids.length; i++) {
    if (i < ids.length && mask[i]) run.push(ids[i]);
    else if (run.length > 0) runs.push(tokenizer.decode(run)), run = [];
  }
  assert.deepEqual(runs, ["Hello! How can I help?<|im_end|>", "two<|im_end|>"]);
  // The default system prompt the template adds is context, not trained.
  assert.match(split(ids, mask).untrained, /You are a helpful AI assistant named SmolLM/);
});

Deno.test("tokenize chat: trainOnPrompt trains the whole conversation", () => {
  const all = new RecordTokenizer(tokenizer, { trainOnPrompt: true });
  const messages = [{ role: "user" as const, content: "Hi" }, { role: "assistant" as const, content: "Yo" }];
  const { mask } = all.tokenize({ ...at, format: "chat", messages });
  assert.equal(mask.reduce((a, b) => a + b, 0), mask.length - 1);
});

Deno.test("tokenize chat: a chat without an assistant turn is an error naming file:line", () => {
  const messages = [{ role: "system" as const, content: "S" }, { role: "user" as const, content: "Hi" }];
  assert.throws(() => records.tokenize({ ...at, format: "chat", messages }), (error: unknown) => {
    assert.ok(error instanceof DataError);
    assert.match(error.message, /^d\.jsonl:4: the chat has no assistant message/);
    return true;
  });
});

Deno.test("tokenize chat: a template whose prefixes disagree with the whole render is an error", () => {
  // Renders the last message differently from the others, as some reasoning templates do.
  const odd = new ChatTemplate(
    "{% for m in messages %}{% if loop.last %}[{{ m.content }}]{% else %}{{ m.content }};{% endif %}{% endfor %}",
  );
  const messages = [{ role: "user" as const, content: "a" }, { role: "assistant" as const, content: "b" }];
  assert.throws(
    () => new RecordTokenizer(tokenizer, { chatTemplate: odd }).tokenize({ ...at, format: "chat", messages }),
    /^DataError: d\.jsonl:4: the chat template renders the conversation up to message 2 differently/,
  );
});

Deno.test("promptFor: the chat up to the last answer with the generation prompt, and that answer", () => {
  const messages = [
    { role: "user" as const, content: "Hi" },
    { role: "assistant" as const, content: "Hello" },
    { role: "user" as const, content: "Date?" },
    { role: "assistant" as const, content: "2021-03-05" },
  ];
  const { ids, reference } = records.promptFor({ ...at, format: "chat", messages });
  assert.equal(reference, "2021-03-05");
  const expected = ChatTemplate.fromTokenizer(tokenizer).render(messages.slice(0, 3), {
    addGenerationPrompt: true,
  });
  assert.equal(tokenizer.decode(ids), expected);
  assert.ok(expected.endsWith("<|im_start|>assistant\n"));

  const completion = records.promptFor({ ...at, format: "completions", prompt: "Q:", completion: " A" });
  assert.deepEqual(completion, { ids: tokenizer.encode("Q:", { addSpecialTokens: false }), reference: " A" });
  assert.throws(() => records.promptFor({ ...at, format: "text", text: "x" }), /no answer to evaluate/);
});

Deno.test("tokenize with a BOS-adding SentencePiece tokenizer (Llama 2): BOS untrained, EOS trained", async () => {
  const llama2 = await Tokenizer.fromFile(fixturePath("llama2_tokenizer.json"), {
    configPath: fixturePath("llama2_tokenizer_config.json"),
  });
  const { ids, mask, splitAtBoundary } = new RecordTokenizer(llama2).tokenize({
    ...at,
    format: "completions",
    prompt: "Question: 2+2?\nAnswer:",
    completion: " 4",
  });
  assert.equal(splitAtBoundary, false);
  assert.equal(ids[0], llama2.bosTokenId);
  assert.equal(ids.at(-1), llama2.eosTokenId);
  assert.deepEqual(ids.slice(0, -1), llama2.encode("Question: 2+2?\nAnswer: 4"));
  const trained = ids.filter((_, i) => mask[i] === 1);
  // " 4" is "▁", "4" in Llama 2's vocabulary; both are trained, then </s>.
  assert.deepEqual(trained, ids.slice(-3));
  assert.equal(llama2.decode(trained), "4</s>");
});
