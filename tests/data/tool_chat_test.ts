/**
 * OpenAI tool-calling records through a real chat template (Qwen3's, from its tokenizer_config.json) with
 * the SmolLM2 vocabulary (ChatML, the same special tokens): the render equals what transformers renders
 * (tests/fixtures/data/make_tool_chat_fixture.py) and the loss covers exactly the two assistant turns.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DataError } from "../../lib/data/errors.ts";
import { readRecords } from "../../lib/data/formats.ts";
import { RecordTokenizer } from "../../lib/data/tokenize.ts";
import { ChatTemplate } from "../../lib/text/chat_template.ts";
import { loadTokenizerConfig } from "../../lib/text/tokenizer_config.ts";
import { fixturePath } from "../text/_fixtures.ts";
import { jsonlFile, smollm2Tokenizer } from "./_helpers.ts";

const here = (name: string) => new URL(`../fixtures/data/${name}`, import.meta.url).pathname;
const record = JSON.parse(readFileSync(here("tool_chat.json"), "utf8"));
const expected = JSON.parse(readFileSync(here("tool_chat_expected.json"), "utf8"));
const tokenizer = await smollm2Tokenizer();
const settings = await loadTokenizerConfig(fixturePath("qwen3_tokenizer_config.json"));
const qwen3 = new ChatTemplate(settings.chatTemplate!, {
  eosToken: settings.eosToken,
  padToken: settings.padToken,
});

Deno.test("tool calls: rendered as transformers renders them; loss on both assistant turns only", async () => {
  const path = await jsonlFile("tools.jsonl", [record]);
  const [chat] = (await readRecords(path)).records;
  const { ids, mask } = new RecordTokenizer(tokenizer, { chatTemplate: qwen3 }).tokenize(chat);
  assert.equal(tokenizer.decode(ids), expected.full);
  // The trained spans, each decoded on its own.
  const spans: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (mask[i] === 1 && (i === 0 || mask[i - 1] === 0)) spans.push("");
    if (mask[i] === 1) spans[spans.length - 1] += tokenizer.decode([ids[i]]);
  }
  assert.deepEqual(spans, [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
    "<think>\n\n</think>\n\nIt is 12 degrees in Oslo.<|im_end|>",
  ]);
  // The prompt for evaluation ends where transformers' generation prompt before the last turn ends.
  const prompt = new RecordTokenizer(tokenizer, { chatTemplate: qwen3 }).promptFor(chat);
  assert.equal(tokenizer.decode(prompt.ids), expected.assistant_prompts[1]);
  assert.equal(prompt.reference, "It is 12 degrees in Oslo.");
});

Deno.test("tool calls: a template without tool support is an error naming file:line, not a silent drop", async () => {
  const path = await jsonlFile("tools_smollm2.jsonl", [{
    messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }],
  }, record]);
  const file = await readRecords(path);
  const smollm2 = new RecordTokenizer(tokenizer); // SmolLM2's own template knows role and content only
  smollm2.tokenize(file.records[0]);
  assert.throws(() => smollm2.tokenize(file.records[1]), (error: unknown) => {
    assert.ok(error instanceof DataError);
    assert.match(
      error.message,
      new RegExp(`^${path}:2: the chat template does not render the call to "get_weather" \\(message 3\\)`),
    );
    assert.match(error.message, /it does not support tools/);
    return true;
  });
});

Deno.test("weight 0 leaves an assistant turn untrained; all-zero weights are an error", () => {
  const records = new RecordTokenizer(tokenizer);
  const at = { file: "w.jsonl", line: 3, format: "chat" as const };
  const messages = [
    { role: "user" as const, content: "a" },
    { role: "assistant" as const, content: "first", weight: 0 as const },
    { role: "user" as const, content: "b" },
    { role: "assistant" as const, content: "second" },
  ];
  const { ids, mask } = records.tokenize({ ...at, messages });
  assert.equal(tokenizer.decode(ids.filter((_, i) => mask[i] === 1)), "second<|im_end|>");
  assert.throws(
    () => records.tokenize({ ...at, messages: [messages[0], messages[1]] }),
    /^DataError: w\.jsonl:3: every assistant message has weight 0/,
  );
});
