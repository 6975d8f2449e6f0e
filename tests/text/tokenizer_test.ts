import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FormatError } from "../../lib/errors.ts";
import { Tokenizer } from "../../lib/text/tokenizer.ts";
import { type EncodeCase, fixturePath, mismatches, readFixture } from "./_fixtures.ts";

interface Llama2Expected {
  vocab_size: number;
  cases: EncodeCase[];
}

const expected = await readFixture<Llama2Expected>("llama2_expected.json");
const llama2 = await Tokenizer.fromFile(fixturePath("llama2_tokenizer.json"), {
  configPath: fixturePath("llama2_tokenizer_config.json"),
});

Deno.test("llama2 tokenizer.json: encodes like Python tokenizers, with and without BOS", () => {
  const wrong = mismatches(expected.cases, (text, add) => llama2.encode(text, { addSpecialTokens: add }));
  assert.deepEqual(wrong, []);
});

Deno.test("llama2 tokenizer.json: decodes like Python tokenizers, keeping or skipping special tokens", () => {
  for (const item of expected.cases) {
    assert.equal(llama2.decode(item.ids), item.decoded, JSON.stringify(item.text));
    assert.equal(llama2.decode(item.ids, { skipSpecialTokens: true }), item.decoded_skipping_special);
  }
});

Deno.test("llama2 tokenizer: special tokens and vocabulary", () => {
  assert.equal(llama2.vocabSize, expected.vocab_size);
  assert.equal(llama2.bosToken, "<s>");
  assert.equal(llama2.bosTokenId, 1);
  assert.equal(llama2.eosTokenId, 2);
  assert.equal(llama2.padTokenId, null);
  assert.equal(llama2.unkToken, "<unk>");
  assert.deepEqual([...llama2.specialTokens].sort(), ["</s>", "<s>", "<unk>"]);
  assert.ok(llama2.isSpecial(2) && !llama2.isSpecial(3));
  assert.equal(llama2.tokenToId("</s>"), 2);
  assert.equal(llama2.idToToken(1), "<s>");
  assert.equal(llama2.tokenToId("no such token"), undefined);
});

Deno.test("decode: an empty list gives an empty string; ids with no token are skipped", () => {
  assert.equal(llama2.decode([]), "");
  const hello = llama2.encode("Hello", { addSpecialTokens: false });
  assert.equal(llama2.decode([...hello, 999_999]), "Hello");
  assert.equal(llama2.decode([999_999]), "");
});

Deno.test("without tokenizer_config.json the tokenizer.json's own post-processor decides BOS", async () => {
  const bare = await Tokenizer.fromFile(fixturePath("llama2_tokenizer.json"));
  const hello = expected.cases.find((c) => c.text === "Hello world")!;
  assert.deepEqual(bare.encode(hello.text), hello.ids);
  assert.equal(hello.ids[0], 1);
  assert.equal(bare.bosTokenId, null); // nothing says which token is BOS
  assert.equal(bare.chatTemplate, null);
});

Deno.test("an explicit add_bos_token / add_eos_token in the config rebuilds the post-processor", async () => {
  const dir = await mkdtemp(join(tmpdir(), "qlora-tok-"));
  try {
    const configPath = join(dir, "tokenizer_config.json");
    await writeFile(
      configPath,
      JSON.stringify({
        bos_token: "<s>",
        eos_token: { content: "</s>" },
        add_bos_token: false,
        add_eos_token: true,
      }),
    );
    const tok = await Tokenizer.fromFile(fixturePath("llama2_tokenizer.json"), { configPath });
    const plain = tok.encode("Hi", { addSpecialTokens: false });
    assert.deepEqual(tok.encode("Hi"), [...plain, 2]);
  } finally {
    await rm(dir, { recursive: true });
  }
});

Deno.test("fromDir reads tokenizer.json, tokenizer_config.json and chat_template.jinja", async () => {
  const dir = await mkdtemp(join(tmpdir(), "qlora-tok-"));
  try {
    await writeFile(join(dir, "tokenizer.json"), await Deno.readFile(fixturePath("llama2_tokenizer.json")));
    await writeFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }),
    );
    await writeFile(join(dir, "chat_template.jinja"), "{{ bos_token }}{{ messages[0].content }}");
    const tok = await Tokenizer.fromDir(dir);
    assert.equal(tok.eosTokenId, 2);
    assert.equal(tok.chatTemplate, "{{ bos_token }}{{ messages[0].content }}");
  } finally {
    await rm(dir, { recursive: true });
  }
});

Deno.test("bad input: missing tokenizer.json names the file", async () => {
  await assert.rejects(
    () => Tokenizer.fromFile("/nonexistent/dir/tokenizer.json"),
    (error: Error) =>
      error instanceof FormatError &&
      error.message === "/nonexistent/dir/tokenizer.json: tokenizer file not found",
  );
  await assert.rejects(
    () => Tokenizer.fromDir("/nonexistent/dir"),
    /\/nonexistent\/dir\/tokenizer.json: .*not found/,
  );
});

Deno.test("bad input: invalid JSON and JSON that is no tokenizer", async () => {
  const dir = await mkdtemp(join(tmpdir(), "qlora-tok-"));
  try {
    const path = join(dir, "tokenizer.json");
    await writeFile(path, '{"model": {"type": "BPE", ');
    await assert.rejects(() => Tokenizer.fromFile(path), new RegExp(`^FormatError: ${path}: not valid JSON`));
    await writeFile(path, "[1, 2]");
    await assert.rejects(() => Tokenizer.fromFile(path), /tokenizer.json: expected a JSON object/);
    await writeFile(path, '{"version": "1.0"}');
    await assert.rejects(() => Tokenizer.fromFile(path), /tokenizer.json: missing "model"/);
    await writeFile(path, JSON.stringify({ model: { type: "Mystery" }, added_tokens: [] }));
    await assert.rejects(() => Tokenizer.fromFile(path), /tokenizer.json: cannot build a tokenizer from it/);
  } finally {
    await rm(dir, { recursive: true });
  }
});
