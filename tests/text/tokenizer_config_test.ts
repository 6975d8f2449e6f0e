import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokenizerConfig, parseTokenizerConfig } from "../../lib/text/tokenizer_config.ts";
import { fixturePath } from "./_fixtures.ts";

Deno.test("a real tokenizer_config.json: Qwen3 (no BOS, template string)", async () => {
  const settings = await loadTokenizerConfig(fixturePath("qwen3_tokenizer_config.json"));
  assert.equal(settings.bosToken, null);
  assert.equal(settings.eosToken, "<|im_end|>");
  assert.equal(settings.padToken, "<|endoftext|>");
  assert.equal(settings.addBosToken, false);
  assert.equal(settings.addEosToken, null);
  assert.match(settings.chatTemplate ?? "", /^\{%- if tools %\}/);
});

Deno.test("special tokens may be strings or {content} objects", () => {
  const settings = parseTokenizerConfig({
    bos_token: { __type: "AddedToken", content: "<s>", lstrip: false },
    eos_token: "</s>",
    unk_token: null,
  });
  assert.equal(settings.bosToken, "<s>");
  assert.equal(settings.eosToken, "</s>");
  assert.equal(settings.unkToken, null);
  assert.equal(settings.padToken, null);
});

Deno.test("chat_template may be a list of named templates; 'default' is the default", () => {
  const settings = parseTokenizerConfig({
    chat_template: [{ name: "default", template: "D" }, { name: "tool_use", template: "T" }],
  });
  assert.equal(settings.chatTemplate, "D");
  assert.deepEqual(settings.namedChatTemplates, { default: "D", tool_use: "T" });
  assert.equal(parseTokenizerConfig({ chat_template: [{ name: "rag", template: "R" }] }).chatTemplate, null);
});

Deno.test("extra keys are ignored", () => {
  const settings = parseTokenizerConfig({
    model_max_length: 1e30,
    tokenizer_class: "X",
    add_bos_token: true,
  });
  assert.equal(settings.addBosToken, true);
});

Deno.test("bad input: wrong types, not an object, bad JSON, missing file", async () => {
  assert.throws(
    () => parseTokenizerConfig({ eos_token: 5 }, "cfg.json"),
    /^FormatError: cfg.json: "eos_token" must be a string or an object with a "content" string, found 5$/,
  );
  assert.throws(
    () => parseTokenizerConfig({ chat_template: { default: "x" } }, "cfg.json"),
    /cfg.json: "chat_template" must be a string or a list of \{"name", "template"\} objects/,
  );
  assert.throws(
    () => parseTokenizerConfig({ add_bos_token: "yes" }, "cfg.json"),
    /"add_bos_token" must be true or false/,
  );
  assert.throws(() => parseTokenizerConfig([], "cfg.json"), /cfg.json: expected a JSON object/);
  const dir = await mkdtemp(join(tmpdir(), "qlora-tokcfg-"));
  try {
    const path = join(dir, "tokenizer_config.json");
    await writeFile(path, "{not json");
    await assert.rejects(() => loadTokenizerConfig(path), new RegExp(`${path}: not valid JSON`));
    await assert.rejects(
      () => loadTokenizerConfig(join(dir, "nope.json")),
      /nope.json: cannot read the tokenizer config/,
    );
  } finally {
    await rm(dir, { recursive: true });
  }
});
