import assert from "node:assert/strict";
import { DataError } from "../../lib/data/errors.ts";
import { parseRecords, readRecords } from "../../lib/data/formats.ts";
import { parseJsonl } from "../../lib/data/jsonl.ts";
import { jsonlFile } from "./_helpers.ts";

const parse = (...records: unknown[]) =>
  parseRecords(parseJsonl(records.map((r) => JSON.stringify(r)).join("\n"), "d.jsonl"), "d.jsonl");

function rejects(records: unknown[], pattern: RegExp) {
  assert.throws(() => parse(...records), (error: unknown) => {
    assert.ok(error instanceof DataError, `expected a DataError, got ${error}`);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("formats are recognised from the first record's keys", () => {
  assert.equal(parse({ text: "a" }).format, "text");
  assert.equal(parse({ prompt: "a", completion: "b" }).format, "completions");
  const chat = parse({ messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] });
  assert.equal(chat.format, "chat");
  assert.deepEqual(chat.records[0], {
    file: "d.jsonl",
    line: 1,
    format: "chat",
    messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }],
  });
});

Deno.test("formats: extra id and meta keys are tolerated and dropped", () => {
  const { records } = parse({ id: 7, meta: { source: "x" }, prompt: "p", completion: "c" });
  assert.deepEqual(records[0], {
    file: "d.jsonl",
    line: 1,
    format: "completions",
    prompt: "p",
    completion: "c",
  });
});

Deno.test("formats: unknown keys name file:line, the keys, and what is expected", () => {
  rejects(
    [{ text: "a" }, { text: "b", label: 1 }],
    /^d\.jsonl:2: unknown key "label"; a "text" record has "text"/,
  );
  rejects([{ prompt: "a", completions: "b" }], /^d\.jsonl:1: unknown key "completions"/);
  rejects(
    [{ question: "a", answer: "b" }],
    /^d\.jsonl:1: unknown format: keys "question", "answer"; expected/,
  );
  rejects([{ input: "a", output: "b" }], /^d\.jsonl:1: instruction: .*expected string/);
});

Deno.test("formats: mixed formats are an error naming both", () => {
  rejects(
    [{ text: "a" }, { text: "b" }, { prompt: "p", completion: "c" }],
    /^d\.jsonl:3: mixed formats: the file's first record is "text" \("text"\), this one is "completions"/,
  );
});

Deno.test("formats: wrong types and values say where in the record", () => {
  rejects([{ text: 3 }], /^d\.jsonl:1: text: .*expected string/);
  rejects([{ text: "" }], /^d\.jsonl:1: text: must not be empty/);
  rejects([{ prompt: "p" }], /^d\.jsonl:1: completion: .*expected string/);
  rejects([{ messages: [] }], /^d\.jsonl:1: messages: must hold at least one message/);
  rejects(
    [{ messages: [{ role: "user", content: [{ type: "text" }] }] }],
    /messages\[0\]\.content\[0\]: a text part needs a string "text"/,
  );
  rejects(
    [{ messages: [{ role: "user", content: 3 }] }],
    /messages\[0\]\.content: expected a string or a list/,
  );
  rejects(
    [{ messages: [{ role: "bot", content: "x" }] }],
    /messages\[0\]\.role: expected one of system, developer, user, assistant, tool, found "bot"/,
  );
  rejects([{ messages: [{ role: "user", content: "x", nmae: "n" }] }], /messages\[0\]: .*"nmae"/);
  rejects([[1, 2]], /^d\.jsonl:1: expected a JSON object, found an array/);
});

Deno.test("formats: an empty file (or one of blank lines) is an error", async () => {
  const path = await jsonlFile("empty.jsonl", ["", "  "]);
  await assert.rejects(
    readRecords(path),
    new RegExp(`^DataError: ${path}: no records \\(the file is empty\\)`),
  );
});
