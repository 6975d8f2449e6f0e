/**
 * `deno task nf4-cache [--model spec] [--root dir]`: loads a model through the NF4 cache — quantizing it and
 * writing the cache the first time, reading the cache afterwards — and prints the cache directory and the
 * load time. Useful before a run, and to check a cache with transformers
 * (tests/fixtures/nf4_cache/check_transformers_loads.py).
 */
import { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { cacheRoot } from "../lib/io/default_model.ts";
import { describeModelSpec, resolveModel } from "../lib/io/resolve_model.ts";
import { loadModel } from "../lib/pretrained/load_model.ts";
import { nf4CacheDir } from "../lib/pretrained/nf4_cache.ts";

const opts = new Command("deno task nf4-cache")
  .description("Quantize a model into the NF4 cache (or read it from there) and print where it is.")
  .option("--model <spec>", describeModelSpec(), "default")
  .option("--root <dir>", "the cache folder (default: $QLORA_CACHE/nf4)")
  .parse(Deno.args, { from: "user" })
  .opts();

try {
  const resolved = await resolveModel(opts.model === "default" ? undefined : opts.model);
  const path = resolved.kind === "gguf" ? resolved.path : resolved.dir;
  const root = opts.root ?? join(cacheRoot(), "nf4");
  const { model, loadSeconds, nf4Cache } = await loadModel(path, { nf4Cache: { root } });
  model.close();
  const what = nf4Cache === "read"
    ? "read from the cache"
    : nf4Cache === "written"
    ? "quantized, cache written"
    : "not cached";
  console.log(`${nf4CacheDir(root, path)}\n${path}: ${what} in ${loadSeconds.toFixed(1)} s`);
} catch (error) {
  console.error(`nf4-cache: ${(error as Error).message}`);
  Deno.exit(1);
}
