import assert from "node:assert/strict";
import { DataError } from "../../lib/data/errors.ts";
import { parseJsonl, readJsonl } from "../../lib/data/jsonl.ts";
import { jsonlFile } from "./_helpers.ts";

Deno.test("JSONL: one value per line, blank lines skipped, line numbers kept; CRLF and a BOM are fine", () => {
  const lines = parseJsonl('\uFEFF{"a":1}\r\n\r\n  \n[2]\r\n"x"', "f.jsonl");
  assert.deepEqual(lines, [{ line: 1, value: { a: 1 } }, { line: 4, value: [2] }, { line: 5, value: "x" }]);
  assert.deepEqual(parseJsonl("", "f.jsonl"), []);
});

Deno.test("JSONL: a malformed line throws a DataError naming file:line and the JSON problem", async () => {
  const path = await jsonlFile("bad.jsonl", [{ text: "ok" }, "", '{"text": "unterminated']);
  await assert.rejects(readJsonl(path), (error: unknown) => {
    assert.ok(error instanceof DataError);
    assert.equal(error.line, 3);
    assert.match(error.message, new RegExp(`^${path}:3: not valid JSON \\(.+\\)`));
    return true;
  });
});

Deno.test("JSONL: a missing file is a DataError naming it", async () => {
  await assert.rejects(readJsonl("/nonexistent/train.jsonl"), /\/nonexistent\/train.jsonl: file not found/);
});
