/**
 * Hub downloads against a fake hub on 127.0.0.1 (tests/io/_hub_server.ts): what is fetched, the cache
 * layout huggingface_hub expects, no network on the second call, and every error a user can meet.
 * The real hub is never contacted: HF_ENDPOINT always points at the fake, HF_HOME at a temp dir.
 */
import assert from "node:assert/strict";
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { ShardedSafetensors } from "../../lib/io/safetensors/sharded.ts";
import { HubError } from "../../lib/io/hub/download_model.ts";
import { resolveModel, type ResolveModelOptions } from "../../lib/io/resolve_model.ts";
import {
  blobName,
  FakeHub,
  type FakeRepo,
  sha256,
  shardedRepo,
  startCdn,
  text,
  tinyRepo,
} from "./_hub_server.ts";

const REPO = "tiny-org/tiny-llama";
const WANTED = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "model.safetensors",
];

interface Setup {
  hub: FakeHub;
  home: string;
  /** The hub cache inside `home`. */
  cache: string;
  options: (extra?: Record<string, string>) => ResolveModelOptions;
}

/** Runs `body` with a fake hub serving `repos` and an empty HF_HOME; closes and deletes both. */
async function withHub(
  repos: Record<string, FakeRepo>,
  body: (setup: Setup) => Promise<void>,
): Promise<void> {
  const hub = FakeHub.start(repos);
  const home = mkdtempSync(join(tmpdir(), "qlora-hub-"));
  const options = (extra: Record<string, string> = {}): ResolveModelOptions => ({
    env: { HF_HOME: home, HOME: home, HF_ENDPOINT: hub.url, ...extra },
    log: () => {},
    progress: false,
  });
  try {
    await body({ hub, home, cache: join(home, "hub"), options });
  } finally {
    await hub.close();
    rmSync(home, { recursive: true, force: true });
  }
}

async function rejects(promise: Promise<unknown>, words: string[]): Promise<HubError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof HubError, `expected a HubError, got ${caught}`);
  for (const word of words) assert.ok(caught.message.includes(word), `"${word}" not in: ${caught.message}`);
  return caught;
}

Deno.test("hub: the first resolve downloads exactly the files a fine-tune needs", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ hub, cache, options }) => {
    const model = await resolveModel(REPO, options());
    const commit = "a".repeat(40);
    assert.equal(model.kind, "hf-dir");
    assert.equal(
      model.kind === "hf-dir" && model.dir,
      join(cache, "models--tiny-org--tiny-llama", "snapshots", commit),
    );
    assert.deepEqual(model.kind === "hf-dir" && model.repo, {
      id: REPO,
      revision: "main",
      commit,
      downloaded: true,
    });
    assert.equal(hub.paths[0], `/api/models/${REPO}/revision/main`);
    assert.deepEqual(hub.downloads.toSorted(), WANTED.toSorted());
    assert.equal(
      hub.downloads.at(-1),
      "model.safetensors",
      "weights come last, so complete weights imply the rest",
    );
    assert.ok(hub.requests.every((request) => request.authorization === undefined), "no token, none sent");
    using checkpoint = ShardedSafetensors.open(model.kind === "hf-dir" ? model.dir : "");
    assert.deepEqual([...checkpoint.readTensorF32("model.norm.weight").data], [0.5, 0.25]);
  });
});

Deno.test("hub: the second resolve finds the snapshot in the cache and makes no request", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ hub, options }) => {
    const first = await resolveModel(REPO, options());
    const count = hub.requests.length;
    const failingFetch = () => Promise.reject(new Error("no network expected"));
    const second = await resolveModel(REPO, { ...options(), fetch: failingFetch });
    assert.equal(hub.requests.length, count);
    assert.equal(second.kind === "hf-dir" && second.dir, first.kind === "hf-dir" && first.dir);
    assert.equal(second.kind === "hf-dir" && second.repo?.downloaded, false);
  });
});

Deno.test("hub: the cache has huggingface_hub's layout (refs, snapshot symlinks into blobs)", async () => {
  const repo = tinyRepo();
  await withHub({ [REPO]: repo }, async ({ cache, options }) => {
    await resolveModel(REPO, options());
    const root = join(cache, "models--tiny-org--tiny-llama");
    assert.equal(readFileSync(join(root, "refs", "main"), "utf8"), repo.commit, "refs/main: the bare commit");
    const snapshot = join(root, "snapshots", repo.commit);
    assert.deepEqual(readdirSync(snapshot).toSorted(), WANTED.toSorted());
    for (const name of WANTED) {
      const path = join(snapshot, name);
      assert.ok(lstatSync(path).isSymbolicLink(), `${name} is a symlink`);
      const blob = blobName(name, repo.files[name]);
      assert.equal(
        readlinkSync(path),
        join("..", "..", "blobs", blob),
        `${name} links relatively to its blob`,
      );
      assert.deepEqual(new Uint8Array(readFileSync(path)), repo.files[name]);
    }
    // LFS blobs are named by sha256, git-stored ones by their git object id (40 hex digits).
    assert.ok(readdirSync(join(root, "blobs")).includes(sha256(repo.files["model.safetensors"])));
    assert.ok(readdirSync(join(root, "blobs")).every((name) => /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(name)));
    assert.ok(existsSync(join(cache, ".locks", "models--tiny-org--tiny-llama")));
  });
});

Deno.test("hub: a tag revision writes refs/<tag>; a commit revision needs no ref", async () => {
  const repo = { ...tinyRepo(), refs: { "v1.0": "c".repeat(40) } };
  await withHub({ [REPO]: repo }, async ({ cache, options }) => {
    const tagged = await resolveModel(`${REPO}@v1.0`, options());
    assert.equal(tagged.kind === "hf-dir" && tagged.repo?.commit, "c".repeat(40));
    const root = join(cache, "models--tiny-org--tiny-llama");
    assert.equal(readFileSync(join(root, "refs", "v1.0"), "utf8"), "c".repeat(40));
    const pinned = await resolveModel(`${REPO}@${"a".repeat(40)}`, options());
    assert.equal(pinned.kind === "hf-dir" && pinned.repo?.commit, "a".repeat(40));
    assert.deepEqual(readdirSync(join(root, "refs")), ["v1.0"]);
  });
});

Deno.test("hub: a sharded checkpoint downloads its index and every shard, and nothing pickled", async () => {
  const repo = shardedRepo();
  await withHub({ "org/sharded": repo }, async ({ hub, options }) => {
    const model = await resolveModel("org/sharded", options());
    assert.deepEqual(hub.downloads.toSorted(), [
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
      "tokenizer.json",
    ]);
    using checkpoint = ShardedSafetensors.open(model.kind === "hf-dir" ? model.dir : "");
    assert.deepEqual(checkpoint.names().toSorted(), ["a.weight", "b.weight", "c.weight"]);
    assert.deepEqual([...checkpoint.readTensorF32("c.weight").data], [6]);
  });
});

Deno.test("hub: HF_HUB_OFFLINE with a model not cached is a clear error, and no request is made", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ hub, cache, options }) => {
    await rejects(resolveModel(REPO, options({ HF_HUB_OFFLINE: "1" })), [REPO, "HF_HUB_OFFLINE", cache]);
    assert.equal(hub.requests.length, 0);
    await resolveModel(REPO, options());
    const offline = await resolveModel(REPO, options({ HF_HUB_OFFLINE: "1" }));
    assert.equal(offline.kind, "hf-dir", "a cached model resolves offline");
  });
});

Deno.test("hub: 404 names the missing repo or revision", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ options }) => {
    const repo = await rejects(resolveModel("tiny-org/no-such-model", options()), [
      "tiny-org/no-such-model",
      "not found",
    ]);
    assert.equal(repo.status, 404);
    await rejects(resolveModel(`${REPO}@no-such-branch`, options()), ['revision "no-such-branch"', REPO]);
  });
});

Deno.test("hub: 401 and 403 (private, gated) say to set HF_TOKEN; a good token is sent", async () => {
  const repos = {
    "org/private": { ...tinyRepo(), token: "hf_secret" },
    "org/gated": { ...tinyRepo(), gated: true },
  };
  await withHub(repos, async ({ hub, options }) => {
    const denied = await rejects(resolveModel("org/private", options()), ["org/private", "401", "HF_TOKEN"]);
    assert.equal(denied.status, 401);
    await rejects(resolveModel("org/private", options({ HF_TOKEN: "hf_wrong" })), [
      "HF_TOKEN was sent but not accepted",
    ]);
    await rejects(resolveModel("org/gated", options()), ["org/gated", "gated", "HF_TOKEN", "terms"]);
    const model = await resolveModel("org/private", options({ HF_TOKEN: "hf_secret" }));
    assert.equal(model.kind, "hf-dir");
    assert.ok(hub.requests.some((request) => request.authorization === "Bearer hf_secret"));
  });
});

Deno.test("hub: the token file written by `huggingface-cli login` is used when HF_TOKEN is unset", async () => {
  await withHub({ "org/private": { ...tinyRepo(), token: "hf_from_file" } }, async ({ home, options }) => {
    Deno.writeTextFileSync(join(home, "token"), "hf_from_file\n");
    assert.equal((await resolveModel("org/private", options())).kind, "hf-dir");
  });
});

Deno.test("hub: the token is not sent to the CDN that large files redirect to", async () => {
  await withHub({ "org/private": { ...tinyRepo(), token: "hf_secret" } }, async ({ hub, options }) => {
    const cdn = startCdn(hub);
    try {
      hub.cdnBase = cdn.url;
      await resolveModel("org/private", options({ HF_TOKEN: "hf_secret" }));
      assert.deepEqual(cdn.requests.map((request) => request.path), [`/cdn/org/private/model.safetensors`]);
      assert.equal(cdn.requests[0].authorization, undefined);
    } finally {
      await cdn.close();
    }
  });
});

Deno.test("hub: an unreachable endpoint is a network error naming it", async () => {
  // A port that was just free: nothing listens there any more.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const endpoint = `http://127.0.0.1:${listener.addr.port}`;
  listener.close();
  await withHub({}, async ({ options }) => {
    await rejects(resolveModel(REPO, options({ HF_ENDPOINT: endpoint })), [
      endpoint,
      "cannot reach",
      "HF_HUB_OFFLINE",
    ]);
  });
});

Deno.test("hub: a download that breaks off leaves nothing in snapshots, and the retry resumes it", async () => {
  const repo = tinyRepo();
  await withHub({ [REPO]: repo }, async ({ hub, cache, options }) => {
    hub.breakOnce = { file: "model.safetensors", afterBytes: 50 };
    await rejects(resolveModel(REPO, options()), ["model.safetensors", "broke off", "run again"]);
    const root = join(cache, "models--tiny-org--tiny-llama");
    const snapshot = join(root, "snapshots", repo.commit);
    assert.ok(!existsSync(join(snapshot, "model.safetensors")), "no weights in the snapshot");
    assert.ok(!existsSync(join(root, "refs", "main")), "no ref to a half-downloaded snapshot");
    const blob = sha256(repo.files["model.safetensors"]);
    assert.ok(!existsSync(join(root, "blobs", blob)), "no blob under the final name");
    assert.equal(statSync(join(root, "blobs", `${blob}.incomplete`)).size, 50);

    const before = hub.requests.length;
    const model = await resolveModel(REPO, options());
    const retried = hub.requests.slice(before).filter((request) => request.path.includes("/resolve/"));
    assert.deepEqual(retried.map((request) => request.path), [
      `/${REPO}/resolve/${repo.commit}/model.safetensors`,
    ]);
    const cdnRange = hub.requests.slice(before).find((request) => request.path.startsWith("/cdn/"))?.range;
    assert.equal(cdnRange, "bytes=50-", "resumed where it broke off");
    assert.ok(!existsSync(join(root, "blobs", `${blob}.incomplete`)));
    using checkpoint = ShardedSafetensors.open(model.kind === "hf-dir" ? model.dir : "");
    assert.deepEqual([...checkpoint.readTensorF32("model.embed_tokens.weight").data], [
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
    ]);
  });
});

Deno.test("hub: concurrent resolves of one repo download each file once and agree", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ hub, options }) => {
    const models = await Promise.all([resolveModel(REPO, options()), resolveModel(REPO, options())]);
    const [a, b] = models.map((model) => model.kind === "hf-dir" ? model.dir : "");
    assert.equal(a, b);
    const fetched = hub.paths.filter((path) => path.startsWith("/cdn/"));
    assert.deepEqual(fetched, [`/cdn/${REPO}/model.safetensors`], "the second waits on the blob's lock");
    using checkpoint = ShardedSafetensors.open(models[1].kind === "hf-dir" ? models[1].dir : "");
    assert.equal(checkpoint.names().length, 2);
  });
});

Deno.test("hub: a file whose sha256 does not match is deleted, not linked", async () => {
  const repo = tinyRepo();
  await withHub({ [REPO]: repo }, async ({ hub, cache, options }) => {
    const bytes = repo.files["model.safetensors"].slice();
    bytes[bytes.length - 1] ^= 0xff;
    hub.corrupt = { file: "model.safetensors", bytes };
    await rejects(resolveModel(REPO, options()), ["model.safetensors", "corrupt", "sha256"]);
    const blobs = readdirSync(join(cache, "models--tiny-org--tiny-llama", "blobs"));
    assert.ok(!blobs.some((name) => name.startsWith(sha256(repo.files["model.safetensors"]))));
    hub.corrupt = undefined;
    assert.equal((await resolveModel(REPO, options())).kind, "hf-dir");
  });
});

Deno.test("hub: a repo with only .bin weights is refused before any file is downloaded", async () => {
  const repo: FakeRepo = {
    commit: "d".repeat(40),
    files: {
      "config.json": text({}),
      "tokenizer.json": text({}),
      "pytorch_model.bin": text("pickle"),
    },
  };
  await withHub({ "org/old": repo }, async ({ hub, options }) => {
    await rejects(resolveModel("org/old", options()), [
      "org/old",
      "pytorch_model.bin",
      "does not load",
      "safetensors",
    ]);
    assert.deepEqual(hub.downloads, []);
  });
});

Deno.test("hub: progress shows bytes, speed and ETA", async () => {
  await withHub({ [REPO]: tinyRepo() }, async ({ options }) => {
    let output = "";
    const stream = new Writable({
      write(chunk, _encoding, done) {
        output += String(chunk);
        done();
      },
    });
    const lines: string[] = [];
    await resolveModel(REPO, { ...options(), progress: stream, log: (line) => lines.push(line) });
    assert.match(
      output,
      /tiny-org\/tiny-llama +100% \[█+\] [\d.]+ k?B\/[\d.]+ k?B {2}[\d.]+ [kMG]?B\/s {2}ETA \d+:\d\d/,
    );
    assert.ok(lines.some((line) => line.startsWith(`downloading ${REPO}@main`)), lines.join("\n"));
  });
});
