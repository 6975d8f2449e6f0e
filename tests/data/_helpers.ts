/** Shared bits of the data tests: JSONL files in a temporary directory and the real SmolLM2 tokenizer. */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadGgufTokenizer } from "../../lib/text/gguf_tokenizer.ts";
import type { Tokenizer } from "../../lib/text/tokenizer.ts";
import { smollm2Path } from "../text/_smollm2.ts";

let tokenizer: Promise<Tokenizer> | undefined;

/** SmolLM2-135M-Instruct's tokenizer (from the cached default model). */
export function smollm2Tokenizer(): Promise<Tokenizer> {
  tokenizer ??= smollm2Path().then(loadGgufTokenizer);
  return tokenizer;
}

let dir: string | undefined;

/** Writes `lines` (objects are JSON-encoded, strings written as they are) to a fresh .jsonl file. */
export async function jsonlFile(name: string, lines: readonly unknown[]): Promise<string> {
  if (dir === undefined) {
    dir = await Deno.makeTempDir({ prefix: "qlora-data-test-" });
    const made = dir;
    globalThis.addEventListener("unload", () => Deno.removeSync(made, { recursive: true }));
  }
  const path = join(dir, name);
  const text = lines.map((line) => typeof line === "string" ? line : JSON.stringify(line)).join("\n");
  await writeFile(path, text + (lines.length > 0 ? "\n" : ""));
  return path;
}

/** A one-turn chat record. */
export function chat(user: string, assistant: string, system?: string) {
  return {
    messages: [
      ...(system === undefined ? [] : [{ role: "system", content: system }]),
      { role: "user", content: user },
      { role: "assistant", content: assistant },
    ],
  };
}
