/**
 * An HF directory's byte-level BPE tokenizer as GGUF metadata (lib/pretrained/export/gguf_vocab.ts): the
 * SmolLM2 GGUF's tokenizer, written as tokenizer.json by the merged-HF export and converted back, gives
 * the same tokens, types, merges, pre-tokenizer name, special ids and chat template as the original file.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufFile } from "../../lib/io/gguf/file.ts";
import { configFromGguf } from "../../lib/nn/config.ts";
import { ggufTokenizerFiles } from "../../lib/pretrained/export/tokenizer_files.ts";
import { hfTokenizerMetadata } from "../../lib/pretrained/export/gguf_vocab.ts";
import { smollm2Path } from "../text/_smollm2.ts";

Deno.test("SmolLM2: GGUF tokenizer → tokenizer.json → GGUF metadata is the identity", async () => {
  const path = await smollm2Path();
  using file = await GgufFile.open(path);
  const config = configFromGguf(file.metadata, file.names(), path);
  const dir = mkdtempSync(join(tmpdir(), "qlora-vocab-"));
  try {
    for (const [name, text] of Object.entries(ggufTokenizerFiles(file.metadata, { file: path }))) {
      writeFileSync(join(dir, name), text);
    }
    const { entries, warnings, chatTemplate, stopTokens } = await hfTokenizerMetadata(dir, config);
    assert.deepEqual(warnings, []);
    const got = Object.fromEntries(
      entries.map(([k, v]) => [
        k,
        typeof v === "object"
          ? (v as { values?: unknown; value?: unknown }).values ?? (v as { value: unknown }).value
          : v,
      ]),
    );
    const m = file.metadata;
    for (
      const key of [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.chat_template",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_space_prefix",
      ]
    ) {
      assert.deepEqual(got[key], m[key], key);
    }
    assert.deepEqual(got["tokenizer.ggml.tokens"], m["tokenizer.ggml.tokens"]);
    assert.deepEqual(got["tokenizer.ggml.merges"], m["tokenizer.ggml.merges"]);
    assert.deepEqual(got["tokenizer.ggml.token_type"], m["tokenizer.ggml.token_type"]);
    assert.equal(chatTemplate, m["tokenizer.chat_template"]);
    assert.deepEqual(stopTokens, ["<|im_end|>"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("tokenizers that are not byte-level BPE, or absent, are left out with a warning", async () => {
  const dir = mkdtempSync(join(tmpdir(), "qlora-vocab-"));
  try {
    const config = configFromGguf({
      "general.architecture": "llama",
      "llama.embedding_length": 8,
      "llama.attention.head_count": 2,
      "llama.vocab_size": 3,
      "llama.feed_forward_length": 8,
      "llama.block_count": 1,
      "llama.attention.layer_norm_rms_epsilon": 1e-5,
      "llama.context_length": 16,
    }, []);
    let result = await hfTokenizerMetadata(dir, config);
    assert.deepEqual(result.entries, []);
    assert.match(result.warnings[0], /has no tokenizer\.json/);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ model: { type: "Unigram", vocab: [] } }));
    result = await hfTokenizerMetadata(dir, config);
    assert.match(
      result.warnings[0],
      /only byte-level BPE tokenizers are converted to GGUF metadata \(found Unigram\)/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
