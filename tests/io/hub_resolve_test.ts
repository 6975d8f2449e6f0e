/**
 * `--model` resolution without a server: the default model (injected, so no PyPI), local .gguf files and
 * model directories with their errors, a cache made by Python tools (plain files), and spec parsing.
 * Every hub-shaped call gets a fetch that fails, so any network use would show.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FormatError } from "../../lib/errors.ts";
import { hfHome, hubCacheDir } from "../../lib/io/hub/cache.ts";
import {
  describeModelSpec,
  parseModelSpec,
  parseRepoId,
  resolveModel,
  type ResolveModelOptions,
} from "../../lib/io/resolve_model.ts";

const noNetwork = () => Promise.reject(new Error("no network expected"));

async function withTemp(body: (dir: string, options: ResolveModelOptions) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-resolve-"));
  const options: ResolveModelOptions = {
    env: { HF_HOME: join(dir, "hf"), HOME: dir },
    cwd: dir,
    fetch: noNetwork,
    log: () => {},
    progress: false,
    defaultModelPath: () => Promise.reject(new Error("the default model was not asked for")),
  };
  try {
    await body(dir, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function formatError(promise: Promise<unknown>, words: string[]): Promise<FormatError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${caught}`);
  for (const word of words) assert.ok(caught.message.includes(word), `"${word}" not in: ${caught.message}`);
  return caught;
}

/** A model directory with `files` (names → contents). */
function modelDir(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

Deno.test('resolve: no spec, an empty one and "default" give the default GGUF', async () => {
  await withTemp(async (_dir, options) => {
    const injected = { ...options, defaultModelPath: () => Promise.resolve("/models/default.gguf") };
    for (const spec of [undefined, "", "default", " default "]) {
      assert.deepEqual(await resolveModel(spec, injected), { kind: "gguf", path: "/models/default.gguf" });
    }
  });
});

Deno.test("resolve: a .gguf file, or a file with the GGUF magic, is a gguf model", async () => {
  await withTemp(async (dir, options) => {
    writeFileSync(join(dir, "m.gguf"), "whatever");
    writeFileSync(join(dir, "renamed"), "GGUF\x03\x00\x00\x00");
    assert.deepEqual(await resolveModel("m.gguf", options), { kind: "gguf", path: join(dir, "m.gguf") });
    assert.deepEqual(await resolveModel(join(dir, "renamed"), options), {
      kind: "gguf",
      path: join(dir, "renamed"),
    });
  });
});

Deno.test("resolve: another kind of file is refused, naming it", async () => {
  await withTemp(async (dir, options) => {
    writeFileSync(join(dir, "model.safetensors"), "not gguf");
    await formatError(resolveModel("model.safetensors", options), [
      join(dir, "model.safetensors"),
      ".gguf",
      "pass the directory",
    ]);
  });
});

Deno.test("resolve: a model directory (single file or sharded) is an hf-dir", async () => {
  await withTemp(async (dir, options) => {
    const single = modelDir(join(dir, "single"), { "config.json": "{}", "model.safetensors": "x" });
    assert.deepEqual(await resolveModel("single", options), { kind: "hf-dir", dir: single });
    const sharded = modelDir(join(dir, "sharded"), {
      "config.json": "{}",
      "model.safetensors.index.json": JSON.stringify({
        weight_map: { a: "s1.safetensors", b: "s2.safetensors" },
      }),
      "s1.safetensors": "x",
      "s2.safetensors": "x",
    });
    assert.deepEqual(await resolveModel(`${sharded}/`, options), { kind: "hf-dir", dir: sharded });
  });
});

Deno.test("resolve: a directory says which file it lacks", async () => {
  await withTemp(async (dir, options) => {
    modelDir(join(dir, "no-config"), { "model.safetensors": "x" });
    await formatError(resolveModel("no-config", options), ["missing config.json", "no-config"]);
    modelDir(join(dir, "pickled"), { "config.json": "{}", "pytorch_model.bin": "x" });
    await formatError(resolveModel("pickled", options), ["missing model.safetensors", "pytorch_model.bin"]);
    modelDir(join(dir, "shard-gone"), {
      "config.json": "{}",
      "model.safetensors.index.json": JSON.stringify({
        weight_map: { a: "s1.safetensors", b: "s2.safetensors" },
      }),
      "s1.safetensors": "x",
    });
    await formatError(resolveModel("shard-gone", options), ["missing s2.safetensors", "index"]);
    modelDir(join(dir, "gguf-inside"), { "tiny.gguf": "GGUF" });
    await formatError(resolveModel("gguf-inside", options), ["config.json", "tiny.gguf"]);
  });
});

Deno.test("resolve: a path that does not exist and is no repo id is a clear error", async () => {
  await withTemp(async (dir, options) => {
    await formatError(resolveModel("./nowhere/model", options), [
      join(dir, "nowhere/model"),
      "no such file",
      "org/name",
    ]);
    await formatError(resolveModel("missing.gguf", options), ["no such file"]);
  });
});

Deno.test("resolve: a snapshot written by Python tools (plain files, refs/main) is used without network", async () => {
  await withTemp(async (dir, options) => {
    const root = join(dir, "hf", "hub", "models--HuggingFaceTB--SmolLM2-135M-Instruct");
    const commit = "12fd25f77366fa6b3b4b768ec3050bf629380bac";
    mkdirSync(join(root, "refs"), { recursive: true });
    writeFileSync(join(root, "refs", "main"), commit);
    const snapshot = modelDir(join(root, "snapshots", commit), {
      "config.json": "{}",
      "model.safetensors": "x",
    });
    const model = await resolveModel("HuggingFaceTB/SmolLM2-135M-Instruct", options);
    assert.deepEqual(model, {
      kind: "hf-dir",
      dir: snapshot,
      repo: { id: "HuggingFaceTB/SmolLM2-135M-Instruct", revision: "main", commit, downloaded: false },
    });
  });
});

Deno.test("resolve: an incomplete snapshot is not taken for a model (offline: the error says what lacks)", async () => {
  await withTemp(async (dir, options) => {
    const root = join(dir, "hf", "hub", "models--org--partial");
    const commit = "e".repeat(40);
    mkdirSync(join(root, "refs"), { recursive: true });
    writeFileSync(join(root, "refs", "main"), commit);
    modelDir(join(root, "snapshots", commit), { "config.json": "{}" });
    const env = { ...(options.env as Record<string, string>), HF_HUB_OFFLINE: "true" };
    await assert.rejects(
      resolveModel("org/partial", { ...options, env }),
      /lacks model\.safetensors.*HF_HUB_OFFLINE/s,
    );
    // Online, it goes to the hub (here: a fetch that fails, reported as a network error).
    await assert.rejects(
      resolveModel("org/partial", options),
      /cannot reach the hub at https:\/\/huggingface\.co/,
    );
  });
});

Deno.test("resolve: an existing directory wins over a repo id of the same spelling", async () => {
  await withTemp(async (dir, options) => {
    const local = modelDir(join(dir, "org", "name"), { "config.json": "{}", "model.safetensors": "x" });
    assert.deepEqual(await resolveModel("org/name", options), { kind: "hf-dir", dir: local });
  });
});

Deno.test("resolve: repo ids and revisions are parsed like huggingface_hub's", () => {
  assert.deepEqual(parseRepoId("org/name"), { repo: "org/name", revision: "main" });
  assert.deepEqual(parseRepoId("meta-llama/Llama-3.2-1B@v1.0"), {
    repo: "meta-llama/Llama-3.2-1B",
    revision: "v1.0",
  });
  assert.deepEqual(parseRepoId("org/name@refs/pr/3"), { repo: "org/name", revision: "refs/pr/3" });
  for (
    const bad of [
      "name",
      "a/b/c",
      "org/na--me",
      "org/..",
      "-org/name",
      "org/name.",
      "org/name@",
      "org/x.gguf",
      "/abs",
    ]
  ) {
    assert.equal(parseRepoId(bad), undefined, bad);
  }
  assert.deepEqual(parseModelSpec("org/name@dev", { env: () => undefined, cwd: "/" }), {
    kind: "hub",
    repo: "org/name",
    revision: "dev",
  });
});

Deno.test("resolve: the cache folder follows HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(hubCacheDir(env({ HF_HUB_CACHE: "/c", HF_HOME: "/h" })), "/c");
  assert.equal(hubCacheDir(env({ HF_HOME: "/h", XDG_CACHE_HOME: "/x" })), "/h/hub");
  assert.equal(hubCacheDir(env({ XDG_CACHE_HOME: "/x", HOME: "/home/u" })), "/x/huggingface/hub");
  assert.equal(hubCacheDir(env({ HOME: "/home/u" })), "/home/u/.cache/huggingface/hub");
  assert.equal(hfHome(env({ HF_HOME: "~/hf", HOME: "/home/u" })), "/home/u/hf");
});

Deno.test("resolve: describeModelSpec names every form", () => {
  const short = describeModelSpec();
  for (const word of [".gguf", "org/name[@revision]", "default", "safetensors"]) {
    assert.ok(short.includes(word));
  }
  const long = describeModelSpec(true);
  for (const word of ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HOME"]) assert.ok(long.includes(word));
});
