import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import { FormatError } from "../../lib/errors.ts";
import { ggufTokenizerSpec, loadGgufTokenizer, tokenizerFromGguf } from "../../lib/text/gguf_tokenizer.ts";
import { Tokenizer } from "../../lib/text/tokenizer.ts";
import { type EncodeCase, mismatches, readFixture } from "./_fixtures.ts";
import { smollm2Path } from "./_smollm2.ts";

interface SmolExpected {
  vocab_size: number;
  bos_token: string;
  eos_token: string;
  pad_token: string;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
  special_tokens: string[];
  cases: EncodeCase[];
}

const smolPath = await smollm2Path();
const smolExpected = await readFixture<SmolExpected>("smollm2_gguf_expected.json");
const smol = await loadGgufTokenizer(smolPath);

Deno.test("SmolLM2 GGUF: encodes like the reference on every text (unicode, whitespace, code, specials)", () => {
  const wrong = mismatches(smolExpected.cases, (text, add) => smol.encode(text, { addSpecialTokens: add }));
  assert.deepEqual(wrong, []);
});

Deno.test("SmolLM2 GGUF: decodes like the reference", () => {
  for (const item of smolExpected.cases) {
    assert.equal(smol.decode(item.ids), item.decoded, JSON.stringify(item.text));
    assert.equal(smol.decode(item.ids, { skipSpecialTokens: true }), item.decoded_skipping_special);
  }
});

Deno.test("SmolLM2 GGUF: special tokens, vocab size and chat template", () => {
  assert.equal(smol.vocabSize, smolExpected.vocab_size);
  assert.equal(smol.bosToken, smolExpected.bos_token);
  assert.equal(smol.eosToken, smolExpected.eos_token);
  assert.equal(smol.padToken, smolExpected.pad_token);
  assert.equal(smol.bosTokenId, smolExpected.bos_token_id);
  assert.equal(smol.eosTokenId, smolExpected.eos_token_id);
  assert.equal(smol.padTokenId, smolExpected.pad_token_id);
  assert.deepEqual([...smol.specialTokens], smolExpected.special_tokens);
  assert.match(smol.chatTemplate ?? "", /<\|im_start\|>/);
  assert.equal(smol.source, smolPath);
});

interface SplitRulesExpected {
  [pre: string]: { pattern: string; cases: { text: string; ids: number[] }[] };
}

Deno.test("GGUF split rules (llama-bpe, qwen2) split text as the Python reference does", async () => {
  const expected = await readFixture<SplitRulesExpected>("split_rules_expected.json");
  const { metadata } = await gguf(smolPath, { allowLocalFile: true });
  for (const [pre, { cases }] of Object.entries(expected)) {
    const tok = tokenizerFromGguf({ ...metadata, "tokenizer.ggml.pre": pre }, `smollm2 as ${pre}`);
    const wrong = cases
      .map(({ text, ids }) => ({
        text,
        expected: ids,
        actual: tok.encode(text, { addSpecialTokens: false }),
      }))
      .filter(({ expected, actual }) => JSON.stringify(expected) !== JSON.stringify(actual));
    assert.deepEqual(wrong, [], pre);
  }
});

// A SentencePiece-style GGUF vocabulary, made from the llama2 tokenizer.json the way llama.cpp's converter
// stores one: tokens by id, token kinds, and scores instead of merges. A SentencePiece score ranks the
// token by when BPE training made it, i.e. by its first merge in tokenizer.json.
async function llama2AsGgufMetadata(): Promise<Record<string, unknown>> {
  const json = await readFixture<{ model: { vocab: Record<string, number>; merges: string[] } }>(
    "llama2_tokenizer.json",
  );
  const tokens: string[] = [];
  for (const [token, id] of Object.entries(json.model.vocab)) tokens[id] = token;
  const scores = tokens.map(() => -1e9);
  json.model.merges.forEach((merge, rank) => {
    const id = json.model.vocab[merge.replace(" ", "")];
    scores[id] = Math.max(scores[id], -rank);
  });
  const types = tokens.map((token, id) =>
    id === 0 ? 2 : id <= 2 ? 3 : /^<0x[0-9A-F]{2}>$/.test(token) ? 6 : 1
  );
  return {
    "general.architecture": "llama",
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.scores": scores,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.bos_token_id": 1,
    "tokenizer.ggml.eos_token_id": 2,
    "tokenizer.ggml.unknown_token_id": 0,
  };
}

Deno.test("SentencePiece GGUF (merges rebuilt from scores) tokenizes like the original tokenizer.json", async () => {
  const expected = await readFixture<{ cases: EncodeCase[] }>("llama2_expected.json");
  const tok = tokenizerFromGguf(await llama2AsGgufMetadata(), "llama2.gguf");
  const wrong = mismatches(expected.cases, (text, add) => tok.encode(text, { addSpecialTokens: add }));
  assert.deepEqual(wrong, []);
  for (const item of expected.cases) {
    assert.equal(tok.decode(item.ids), item.decoded);
    assert.equal(tok.decode(item.ids, { skipSpecialTokens: true }), item.decoded_skipping_special);
  }
  assert.equal(tok.bosTokenId, 1);
  assert.equal(tok.unkToken, "<unk>");
});

Deno.test("SentencePiece GGUF: add_bos_token false and add_eos_token true are honoured", async () => {
  const metadata = {
    ...await llama2AsGgufMetadata(),
    "tokenizer.ggml.add_bos_token": false,
    "tokenizer.ggml.add_eos_token": true,
  };
  const tok = tokenizerFromGguf(metadata);
  const plain = tok.encode("Hi there", { addSpecialTokens: false });
  assert.deepEqual(tok.encode("Hi there"), [...plain, 2]);
});

Deno.test("the rebuilt tokenizer.json is complete: it round-trips through JSON", async () => {
  const { metadata } = await gguf(smolPath, { allowLocalFile: true });
  const { tokenizerJson, settings } = ggufTokenizerSpec(metadata);
  const again = tokenizerFromGguf(metadata);
  const viaJson = Tokenizer.fromJson(JSON.parse(JSON.stringify(tokenizerJson)), settings);
  const text = "Round trip: 42 ünïcode <|im_start|>";
  assert.deepEqual(viaJson.encode(text), again.encode(text));
});

Deno.test("bad input: GGUF metadata without a tokenizer, or with one we do not know", () => {
  const file = "weights-only.gguf";
  assert.throws(
    () => tokenizerFromGguf({ "general.architecture": "llama" }, file),
    (error: Error) =>
      error instanceof FormatError &&
      error.message === `${file}: has no tokenizer (missing "tokenizer.ggml.model" in the metadata)`,
  );
  assert.throws(
    () => tokenizerFromGguf({ "tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"] }, file),
    /weights-only.gguf: unsupported "tokenizer.ggml.model" "bert" \(supported: gpt2, llama\)/,
  );
  assert.throws(
    () => tokenizerFromGguf({ "tokenizer.ggml.model": "gpt2" }, file),
    /weights-only.gguf: missing "tokenizer.ggml.tokens"/,
  );
  const gpt2 = { "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"] };
  assert.throws(() => tokenizerFromGguf(gpt2, file), /missing "tokenizer.ggml.merges" \(needed for gpt2\)/);
  assert.throws(
    () =>
      tokenizerFromGguf({ ...gpt2, "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.pre": "martian" }, file),
    /unsupported "tokenizer.ggml.pre" "martian" \(supported: default, /,
  );
  assert.throws(
    () =>
      tokenizerFromGguf(
        { ...gpt2, "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.eos_token_id": 7 },
        file,
      ),
    /"tokenizer.ggml.eos_token_id" is 7, outside the 3 tokens/,
  );
  assert.throws(
    () => tokenizerFromGguf({ "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a"] }, file),
    /missing both "tokenizer.ggml.merges" and "tokenizer.ggml.scores"/,
  );
});

Deno.test("a tiny byte-level GGUF vocabulary works end to end", () => {
  const tok = tokenizerFromGguf({
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "default",
    "tokenizer.ggml.tokens": ["<eos>", "a", "b", "Ġ", "ab", "Ġab"],
    "tokenizer.ggml.token_type": [3, 1, 1, 1, 1, 1],
    "tokenizer.ggml.merges": ["a b", "Ġ ab"],
    "tokenizer.ggml.eos_token_id": 0,
  });
  assert.deepEqual(tok.encode("ab ab<eos>"), [4, 5, 0]);
  assert.equal(tok.decode([4, 5, 0], { skipSpecialTokens: true }), "ab ab");
  assert.equal(tok.eosToken, "<eos>");
});

Deno.test("bad input: a file that is not GGUF, and a missing file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "qlora-gguf-"));
  try {
    const path = join(dir, "fake.gguf");
    await writeFile(path, "this is not a gguf file at all, just text");
    await assert.rejects(
      () => loadGgufTokenizer(path),
      new RegExp(`^FormatError: ${path}: cannot read GGUF metadata`),
    );
    await assert.rejects(
      () => loadGgufTokenizer(join(dir, "missing.gguf")),
      /missing.gguf: cannot read GGUF metadata/,
    );
  } finally {
    await rm(dir, { recursive: true });
  }
});
