import assert from "node:assert/strict";
import { DataError } from "../../lib/data/errors.ts";
import { parseRecords } from "../../lib/data/formats.ts";
import { parseJsonl } from "../../lib/data/jsonl.ts";

const parse = (records: unknown[], columns?: Record<string, string>) =>
  parseRecords(parseJsonl(records.map((r) => JSON.stringify(r)).join("\n"), "d.jsonl"), "d.jsonl", {
    columns,
  });

function rejects(records: unknown[], pattern: RegExp, columns?: Record<string, string>) {
  assert.throws(() => parse(records, columns), (error: unknown) => {
    assert.ok(error instanceof DataError, `expected a DataError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("alpaca records become a one-turn chat (input after a blank line, optional system)", () => {
  const file = parse([
    { instruction: "Add the numbers.", input: "2 3", output: "5" },
    { instruction: "Say hi.", output: "hi", system: "Be brief." },
    { instruction: "Say yo.", input: "", output: "yo" },
  ]);
  assert.equal(file.sourceFormat, "alpaca");
  assert.equal(file.format, "chat");
  assert.deepEqual(file.records.map((r) => r.format === "chat" && r.messages), [
    [{ role: "user", content: "Add the numbers.\n\n2 3" }, { role: "assistant", content: "5" }],
    [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Say hi." },
      { role: "assistant", content: "hi" },
    ],
    [{ role: "user", content: "Say yo." }, { role: "assistant", content: "yo" }],
  ]);
  rejects([{ instruction: "x", output: "" }], /^d\.jsonl:1: output: must not be empty/);
  rejects(
    [{ instruction: "x", output: "y", label: 2 }],
    /^d\.jsonl:1: unknown key "label"; a "alpaca" record/,
  );
});

Deno.test("sharegpt conversations map their role spellings; function_call turns are refused", () => {
  const file = parse([{
    system: "S",
    conversations: [
      { from: "human", value: "q" },
      { from: "gpt", value: "a" },
      { from: "user", value: "q2" },
      { from: "assistant", value: "a2", weight: 0 },
    ],
  }]);
  assert.equal(file.sourceFormat, "sharegpt");
  assert.deepEqual(file.records[0].format === "chat" && file.records[0].messages, [
    { role: "system", content: "S" },
    { role: "user", content: "q" },
    { role: "assistant", content: "a" },
    { role: "user", content: "q2" },
    { role: "assistant", content: "a2", weight: 0 },
  ]);
  rejects(
    [{ conversations: [{ from: "function_call", value: "{}" }] }],
    /^d\.jsonl:1: conversations\[0\]\.from: "function_call" turns are not supported/,
  );
  rejects(
    [{ conversations: [{ from: "bot", value: "x" }] }],
    /conversations\[0\]\.from: expected one of human/,
  );
});

Deno.test("openai messages: multi-part text content is joined; other parts name message and part", () => {
  const file = parse([{
    messages: [
      { role: "developer", content: "D" },
      { role: "user", content: [{ type: "text", text: "Hello, " }, { type: "text", text: "world" }] },
      { role: "assistant", content: [{ type: "text", text: "Hi" }] },
    ],
  }]);
  assert.deepEqual(file.records[0].format === "chat" && file.records[0].messages, [
    { role: "system", content: "D" },
    { role: "user", content: "Hello, world" },
    { role: "assistant", content: "Hi" },
  ]);
  rejects(
    [{ messages: [{ role: "user", content: "a" }] }, {
      messages: [{
        role: "user",
        content: [{ type: "text", text: "look" }, { type: "image_url", image_url: { url: "x" } }],
      }],
    }],
    /^d\.jsonl:2: messages\[0\]\.content\[1\]: only text parts can be trained on, found a "image_url" part/,
  );
});

Deno.test("openai messages: tool calls, tool messages and tools are kept for the template", () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
  const call = {
    id: "c1",
    type: "function",
    function: { name: "get_weather", arguments: '{"city":"Oslo"}' },
  };
  const file = parse([{
    tools,
    messages: [
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: "c1", content: "12 C" },
      { role: "assistant", content: "12 degrees." },
    ],
  }]);
  const record = file.records[0];
  assert.ok(record.format === "chat");
  assert.deepEqual(record.tools, tools);
  assert.deepEqual(record.messages[1], { role: "assistant", content: "", tool_calls: [call] });
  assert.deepEqual(record.messages[2], { role: "tool", tool_call_id: "c1", content: "12 C" });
  rejects(
    [{ messages: [{ role: "user", content: null }] }],
    /messages\[0\]\.content: expected a string \(only an assistant message with tool_calls may omit it\)/,
  );
  rejects(
    [{ messages: [{ role: "user", content: "x", tool_calls: [call] }] }],
    /messages\[0\]\.tool_calls: only assistant messages make tool calls/,
  );
  rejects(
    [{
      messages: [{ role: "assistant", tool_calls: [{ type: "function", function: { arguments: "{}" } }] }],
    }],
    /messages\[0\]\.tool_calls\[0\]\.function\.name: expected the function's name/,
  );
});

Deno.test("columns: keys are renamed before the format is recognised; a missing one names the line", () => {
  const file = parse(
    [{ question: "2+2?", answer: "4" }, { question: "3+3?", answer: "6" }],
    { prompt: "question", completion: "answer" },
  );
  assert.equal(file.format, "completions");
  assert.deepEqual(file.records[1], {
    file: "d.jsonl",
    line: 2,
    format: "completions",
    prompt: "3+3?",
    completion: "6",
  });
  rejects(
    [{ question: "a", answer: "b" }, { question: "a" }],
    /^d\.jsonl:2: no key "answer" \(--columns completion=answer\)/,
    { prompt: "question", completion: "answer" },
  );
  rejects([{ q: "a" }], /^d\.jsonl: --columns promt=q: "promt" is not a record key/, { promt: "q" });
});

Deno.test("tools stored as JSON text (as some ShareGPT sets do) are parsed; bad JSON names the line", () => {
  const tools = [{ type: "function", function: { name: "f" } }];
  const file = parse([{
    conversations: [{ from: "human", value: "q" }, { from: "gpt", value: "a" }],
    tools: JSON.stringify(tools),
  }]);
  assert.deepEqual(file.records[0].format === "chat" && file.records[0].tools, tools);
  rejects(
    [{ messages: [{ role: "user", content: "q" }], tools: "[{oops" }],
    /^d\.jsonl:1: tools: not valid JSON/,
  );
});
