/**
 * A model directory that chat code can load: the tiny random Llama of tests/fixtures/model (vocab 300) with a
 * byte-level tokenizer that fits its vocabulary (ids 0–255 are the bytes, 256–258 ChatML's special tokens)
 * and a ChatML template. Its answers are random bytes, but every layer a real chat goes through is real.
 */
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BYTE_SPELLING } from "../../lib/text/byte_alphabet.ts";

export const TINY_LLAMA = fileURLToPath(new URL("../fixtures/model/tiny_llama/", import.meta.url));
/** A PEFT adapter (all linears, r=4) made for tiny_llama by tests/fixtures/peft/make_peft_fixtures.py. */
export const TINY_ADAPTER = fileURLToPath(new URL("../fixtures/peft/all_linear/", import.meta.url));

const SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

function tokenizerJson() {
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, i) => ({
      id: 256 + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(BYTE_SPELLING.map((spelling, byte) => [spelling, byte])),
      merges: [],
    },
  };
}

/** Writes the directory into a fresh temporary folder (removed when the test process ends) and returns it. */
export async function tinyChatModelDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "qlora-tiny-chat-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  await copyFile(join(TINY_LLAMA, "model.safetensors"), join(dir, "model.safetensors"));
  // The fixture's eos id (2) is a byte here, and greedy decoding picks it first: end on <|im_end|> instead.
  const config = JSON.parse(await readFile(join(TINY_LLAMA, "config.json"), "utf8"));
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ ...config, bos_token_id: null, eos_token_id: 257 }),
  );
  await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson()));
  const settings = { eos_token: "<|im_end|>", pad_token: "<|endoftext|>", chat_template: CHATML };
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(settings));
  return dir;
}
