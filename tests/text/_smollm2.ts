/**
 * The path of the default model (SmolLM2-135M-Instruct, a GGUF) for tests that need a real tokenizer.
 * The project's default-model fetch provides it, downloading it into its cache on first use.
 */
import { defaultModelPath } from "../../lib/io/default_model.ts";

let cached: Promise<string> | undefined;

export function smollm2Path(): Promise<string> {
  cached ??= defaultModelPath();
  return cached;
}
