import assert from "node:assert/strict";
import { readRecords } from "../../lib/data/formats.ts";
import { jsonlFile } from "./_helpers.ts";

/** A CSV cell: quoted, inner quotes doubled. */
const csvCell = (text: string) => `"${text.replaceAll('"', '""')}"`;

const fixture = (name: string) => new URL(`../fixtures/data/${name}`, import.meta.url).pathname;

Deno.test("csv: a header row, quoted fields spanning lines, each record named by the line it starts on", async () => {
  const path = await jsonlFile("qa.csv", [
    "prompt,completion,notes",
    '"Say ""hi""","hi",x',
    '"Two',
    'lines?",yes,',
    "Last?,no,z",
  ]);
  const file = await readRecords(path);
  assert.equal(file.format, "completions");
  assert.deepEqual(file.ignoredColumns, ["notes"]);
  assert.deepEqual(file.records.map((r) => [r.line, r.format === "completions" && r.prompt]), [
    [2, 'Say "hi"'],
    [3, "Two\nlines?"],
    [5, "Last?"],
  ]);
});

Deno.test("csv: a row with the wrong number of cells names its line; a bad cell names line and key", async () => {
  const short = await jsonlFile("short.csv", ["prompt,completion", "a,b", "c"]);
  await assert.rejects(readRecords(short), new RegExp(`^DataError: ${short}:3: not valid CSV`));
  const empty = await jsonlFile("empty_answer.csv", ["prompt,completion", "a,b", "c,"]);
  await assert.rejects(
    readRecords(empty),
    new RegExp(`^DataError: ${empty}:3: completion: must not be empty`),
  );
  const badJson = await jsonlFile("chat.csv", ["messages", '"[{""role"": ""user""}"']);
  await assert.rejects(
    readRecords(badJson),
    new RegExp(`^DataError: ${badJson}:2: messages: not valid JSON`),
  );
});

Deno.test("csv and tsv: column renaming and chats stored as JSON text", async () => {
  const tsv = await jsonlFile("qa.tsv", ["q\ta", "2+2?\t4"]);
  const file = await readRecords(tsv, { columns: { prompt: "q", completion: "a" } });
  assert.deepEqual(file.records[0], {
    file: tsv,
    line: 2,
    format: "completions",
    prompt: "2+2?",
    completion: "4",
  });
  const chats = await jsonlFile("chats.csv", [
    "messages",
    csvCell(JSON.stringify([{ role: "user", content: "x" }, { role: "assistant", content: "y" }])),
  ]);
  const chat = (await readRecords(chats)).records[0];
  assert.deepEqual(chat.format === "chat" && chat.messages, [
    { role: "user", content: "x" },
    { role: "assistant", content: "y" },
  ]);
});

Deno.test("json: an array of records, each named by the line its object starts on", async () => {
  const path = await jsonlFile("data.json", [
    "[",
    '  {"text": "a [b] {c}"},',
    '  {"text":',
    '    "d"},',
    '  {"text": 3}',
    "]",
  ]);
  await assert.rejects(readRecords(path), new RegExp(`^DataError: ${path}:5: text: .*expected string`));
});

Deno.test("parquet (pyarrow: snappy, gzip): columns renamed, unused ones reported, rows numbered", async () => {
  for (const name of ["qa_snappy.parquet", "qa_gzip.parquet"]) {
    const file = await readRecords(fixture(name), { columns: { prompt: "question", completion: "answer" } });
    assert.equal(file.format, "completions");
    assert.deepEqual(file.ignoredColumns, ["category"]);
    assert.deepEqual(
      file.records.map((r) => r.format === "completions" && [r.line, r.prompt, r.completion]),
      [[1, "What is 2+2?", "4"], [2, "Capital of France?", "Paris"], [3, "Opposite of hot?", "cold"]],
    );
  }
});

Deno.test("parquet: a list-of-struct messages column is a chat; an unsupported codec names the file", async () => {
  const file = await readRecords(fixture("chat.parquet"));
  assert.equal(file.sourceFormat, "messages");
  assert.deepEqual(file.records[1].format === "chat" && file.records[1].messages, [
    { role: "system", content: "Be brief." },
    { role: "user", content: "2+3?" },
    { role: "assistant", content: "5" },
  ]);
  const zstd = fixture("qa_zstd.parquet");
  await assert.rejects(
    readRecords(zstd),
    new RegExp(`^DataError: ${zstd}: cannot read the Parquet data \\(.*ZSTD`),
  );
  const notParquet = await jsonlFile("fake.parquet", ["hello"]);
  await assert.rejects(readRecords(notParquet), new RegExp(`^DataError: ${notParquet}: not a Parquet file`));
  const odd = await jsonlFile("data.xlsx", ["x"]);
  await assert.rejects(readRecords(odd), /unknown file type "\.xlsx"; expected \.jsonl, \.json, \.csv/);
});
