/**
 * A fake Hugging Face hub for the hub tests: a Deno.serve server on 127.0.0.1 (ephemeral port) that answers
 * the two calls we make in the hub's URL layout, with the hub's error headers, LFS redirects, Range
 * requests, and switches for private/gated repos and broken downloads. It logs every request.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TensorToWrite, writeSafetensors } from "../../lib/io/safetensors/writer.ts";

export interface FakeRepo {
  /** Files by path; names ending in .safetensors/.bin/.gguf/.onnx are served as LFS files. */
  files: Record<string, Uint8Array<ArrayBuffer>>;
  /** The commit `main` and any other branch or tag point to. */
  commit: string;
  refs?: Record<string, string>;
  /** Answer 401 unless this token is sent. */
  token?: string;
  /** Answer 403 GatedRepo even with the token. */
  gated?: boolean;
}

export interface LoggedRequest {
  path: string;
  range?: string;
  authorization?: string;
}

const LFS = /\.(safetensors|bin|gguf|onnx|pth)$/;
const encoder = new TextEncoder();

export class FakeHub {
  readonly requests: LoggedRequest[] = [];
  /** Break the body of this file once, after this many bytes (the connection closes mid-body). */
  breakOnce?: { file: string; afterBytes: number };
  /** Serve these bytes instead of a file's content (a corrupt mirror). */
  corrupt?: { file: string; bytes: Uint8Array<ArrayBuffer> };
  /** Send LFS redirects to this base URL (another origin) instead of our own /cdn/. */
  cdnBase?: string;

  private constructor(
    private readonly server: Deno.HttpServer<Deno.NetAddr>,
    readonly repos: Record<string, FakeRepo>,
  ) {}

  static start(repos: Record<string, FakeRepo>): FakeHub {
    const self: { hub?: FakeHub } = {}; // the handler needs the hub, the hub needs the server
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => self.hub!.handle(request),
    );
    return self.hub = new FakeHub(server, repos);
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.addr.port}`;
  }

  /** Paths requested, in order (API calls and file downloads). */
  get paths(): string[] {
    return this.requests.map((request) => request.path);
  }

  /** The files downloaded through /resolve/, in order. */
  get downloads(): string[] {
    return this.paths.filter((path) => path.includes("/resolve/")).map((path) =>
      path.replace(/^.*?\/resolve\/[^/]+\//, "")
    );
  }

  async close(): Promise<void> {
    await this.server.shutdown();
  }

  private handle(request: Request): Response {
    const url = new URL(request.url);
    const path = decodeURIComponent(url.pathname);
    this.requests.push({
      path,
      range: request.headers.get("range") ?? undefined,
      authorization: request.headers.get("authorization") ?? undefined,
    });
    const cdn = path.match(/^\/cdn\/([^/]+\/[^/]+)\/(.+)$/);
    if (cdn) return this.serveFile(this.repos[cdn[1]]?.files[cdn[2]], cdn[2], request);
    const api = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/);
    const resolve = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId === undefined ? undefined : this.repos[repoId];
    if (repo === undefined) return error(404, "RepoNotFound", `Repository ${repoId} not found`);
    const auth = request.headers.get("authorization");
    if (repo.token !== undefined && auth !== `Bearer ${repo.token}`) {
      return error(401, "", "Invalid credentials in Authorization header");
    }
    if (repo.gated) return error(403, "GatedRepo", `Access to model ${repoId} is restricted.`);
    const revision = (api?.[2] ?? resolve?.[2])!;
    const refs: Record<string, string> = { main: repo.commit, ...repo.refs };
    const commit = Object.values(refs).includes(revision) ? revision : refs[revision];
    if (commit === undefined) return error(404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    if (api) return Response.json({ id: repoId, sha: commit, siblings: siblings(repo) });
    const file = resolve![3];
    const bytes = repo.files[file];
    if (bytes === undefined) return error(404, "EntryNotFound", `${file} does not exist`);
    const headers = { "x-repo-commit": commit, etag: `"${blobName(file, bytes)}"` };
    if (LFS.test(file)) {
      // Like the hub: large files redirect to a CDN, which must not get the token.
      const location = `${this.cdnBase ?? ""}/cdn/${repoId}/${encodeURIComponent(file)}`;
      return new Response(null, { status: 302, headers: { ...headers, location } });
    }
    return this.serveFile(bytes, file, request, headers);
  }

  private serveFile(
    content: Uint8Array<ArrayBuffer> | undefined,
    file: string,
    request: Request,
    extra: Record<string, string> = {},
  ): Response {
    if (content === undefined) return error(404, "EntryNotFound", `${file} does not exist`);
    const bytes = this.corrupt?.file === file ? this.corrupt.bytes : content;
    const range = request.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const start = range ? Number(range[1]) : 0;
    if (start >= bytes.length && range) {
      return new Response(null, { status: 416, headers: { "content-range": `bytes */${bytes.length}` } });
    }
    const body = bytes.subarray(start);
    const headers: Record<string, string> = { ...extra, "content-length": String(body.length) };
    if (range) headers["content-range"] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
    const status = range ? 206 : 200;
    const broken = this.breakOnce?.file === file ? this.breakOnce : undefined;
    if (broken === undefined) return new Response(body, { status, headers });
    this.breakOnce = undefined;
    // Send part of the body, then fail the stream: the server drops the connection mid-body.
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(body.slice(0, broken.afterBytes));
      },
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        controller.close(); // short of Content-Length: the connection ends mid-body
      },
    });
    return new Response(stream, { status, headers });
  }
}

/** A second server that only serves /cdn/ for `hub` (another origin, for the token test). */
export function startCdn(hub: FakeHub): { url: string; requests: LoggedRequest[]; close(): Promise<void> } {
  const requests: LoggedRequest[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    requests.push({ path, authorization: request.headers.get("authorization") ?? undefined });
    const match = path.match(/^\/cdn\/([^/]+\/[^/]+)\/(.+)$/);
    const bytes = match ? hub.repos[match[1]]?.files[match[2]] : undefined;
    return bytes ? new Response(bytes) : error(404, "EntryNotFound", path);
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, requests, close: () => server.shutdown() };
}

function error(status: number, code: string, message: string): Response {
  const headers: Record<string, string> = { "x-error-message": message };
  if (code) headers["x-error-code"] = code;
  return Response.json({ error: message }, { status, headers });
}

function siblings(repo: FakeRepo) {
  return Object.entries(repo.files).map(([name, bytes]) => ({
    rfilename: name,
    size: bytes.length,
    blobId: gitOid(bytes),
    ...(LFS.test(name) ? { lfs: { sha256: sha256(bytes), size: bytes.length, pointerSize: 134 } } : {}),
  }));
}

/** The cache's blob name: sha256 for LFS files, the git object id otherwise. */
export function blobName(file: string, bytes: Uint8Array): string {
  return LFS.test(file) ? sha256(bytes) : gitOid(bytes);
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function gitOid(bytes: Uint8Array): string {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

export function text(value: string | object): Uint8Array<ArrayBuffer> {
  return encoder.encode(typeof value === "string" ? value : JSON.stringify(value));
}

/** A safetensors file's bytes, written by our writer. */
export function safetensorsBytes(tensors: TensorToWrite[]): Uint8Array<ArrayBuffer> {
  const dir = mkdtempSync(join(tmpdir(), "qlora-hub-st-"));
  try {
    writeSafetensors(join(dir, "x.safetensors"), tensors);
    return new Uint8Array(readFileSync(join(dir, "x.safetensors")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A tiny Llama-ish repo: config, tokenizer files, one weights file, and files we must not fetch. */
export function tinyRepo(commit = "a".repeat(40)): FakeRepo {
  const weights = safetensorsBytes([
    {
      name: "model.embed_tokens.weight",
      dtype: "F32",
      shape: [4, 2],
      data: new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]),
    },
    { name: "model.norm.weight", dtype: "F32", shape: [2], data: new Float32Array([0.5, 0.25]) },
  ]);
  return {
    commit,
    files: {
      ".gitattributes": text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n"),
      "README.md": text("# tiny\n"),
      "config.json": text({ architectures: ["LlamaForCausalLM"], hidden_size: 2, vocab_size: 4 }),
      "generation_config.json": text({ bos_token_id: 1 }),
      "tokenizer.json": text({ version: "1.0", model: { type: "BPE", vocab: {}, merges: [] } }),
      "tokenizer_config.json": text({ bos_token: "<s>" }),
      "special_tokens_map.json": text({ bos_token: "<s>", eos_token: "</s>" }),
      "model.safetensors": weights,
      "pytorch_model.bin": text("pickled duplicate: never download"),
      "model.gguf": text("GGUF duplicate: never download"),
      "onnx/model.onnx": text("onnx duplicate: never download"),
    },
  };
}

/** A repo whose weights are split into two shards by model.safetensors.index.json. */
export function shardedRepo(commit = "b".repeat(40)): FakeRepo {
  const first = safetensorsBytes([
    { name: "a.weight", dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) },
  ]);
  const second = safetensorsBytes([
    { name: "b.weight", dtype: "F32", shape: [2], data: new Float32Array([4, 5]) },
    { name: "c.weight", dtype: "F32", shape: [1], data: new Float32Array([6]) },
  ]);
  const names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
  return {
    commit,
    files: {
      "config.json": text({ architectures: ["LlamaForCausalLM"] }),
      "tokenizer.json": text({ version: "1.0" }),
      "model.safetensors.index.json": text({
        metadata: { total_size: 24 },
        weight_map: { "a.weight": names[0], "b.weight": names[1], "c.weight": names[1] },
      }),
      [names[0]]: first,
      [names[1]]: second,
      "pytorch_model-00001-of-00002.bin": text("never"),
      "pytorch_model-00002-of-00002.bin": text("never"),
      "pytorch_model.bin.index.json": text({ weight_map: {} }),
    },
  };
}
