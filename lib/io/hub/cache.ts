/**
 * The local Hugging Face hub cache, laid out exactly as huggingface_hub lays it out, so that a model
 * downloaded by Python tools is found here and ours is found by them:
 *
 *   <cache>/models--<org>--<name>/refs/<revision>             the commit the revision pointed to (no newline)
 *   <cache>/models--<org>--<name>/blobs/<sha256 | git oid>     file contents, named by their hash
 *   <cache>/models--<org>--<name>/snapshots/<commit>/<file>    symlink to ../../blobs/<hash> (or a plain file)
 *   <cache>/.locks/models--<org>--<name>/<hash>.lock           flock held while a blob is written
 *
 * Only the filesystem is touched here; no network.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { FormatError } from "../../errors.ts";

/** Reads one environment variable (injected by tests, `Deno.env.get` otherwise). */
export type Env = (name: string) => string | undefined;

export const CONFIG_FILE = "config.json";
export const SINGLE_WEIGHTS_FILE = "model.safetensors";
export const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

/** A full commit hash: such a revision needs no refs/ file. */
const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (huggingface_hub's rule). */
export function hfHome(env: Env): string {
  const explicit = env("HF_HOME");
  if (explicit) return expandHome(explicit, env);
  const xdg = env("XDG_CACHE_HOME");
  return join(xdg ? expandHome(xdg, env) : join(home(env), ".cache"), "huggingface");
}

/** `$HF_HUB_CACHE` (or its old name `$HUGGINGFACE_HUB_CACHE`), else `<hfHome>/hub`. */
export function hubCacheDir(env: Env): string {
  const explicit = env("HF_HUB_CACHE") || env("HUGGINGFACE_HUB_CACHE");
  return explicit ? expandHome(explicit, env) : join(hfHome(env), "hub");
}

/** `org/name` → `models--org--name`. */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.replaceAll("/", "--")}`;
}

/** One repository's folder in a cache, with the paths of its parts. */
export class CachedRepo {
  readonly dir: string;

  constructor(readonly cacheDir: string, readonly repoId: string) {
    this.dir = join(cacheDir, repoFolderName(repoId));
  }

  /** File contents, named by hash. */
  get blobsDir(): string {
    return join(this.dir, "blobs");
  }

  /** `<blob>.lock` files, flocked while a blob is written. */
  get locksDir(): string {
    return join(this.cacheDir, ".locks", repoFolderName(this.repoId));
  }

  blobPath(blob: string): string {
    return join(this.blobsDir, blob);
  }

  snapshotDir(commit: string): string {
    return join(this.dir, "snapshots", commit);
  }

  /** The commit a revision points to, from refs/ (a commit hash stands for itself); no network. */
  commitOf(revision: string): string | undefined {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      const commit = readFileSync(join(this.dir, "refs", revision), "utf8").trim();
      return commit || undefined;
    } catch {
      return undefined;
    }
  }

  /** The snapshot of `revision` if it holds a loadable model (config + every weights file). */
  completeSnapshot(revision: string): { dir: string; commit: string } | undefined {
    const commit = this.commitOf(revision);
    if (commit === undefined) return undefined;
    const dir = this.snapshotDir(commit);
    try {
      return missingModelFile(dir) === undefined ? { dir, commit } : undefined;
    } catch {
      return undefined; // e.g. an unreadable index: download again rather than fail
    }
  }

  /** Records that `revision` points to `commit` (written whole, then renamed into place). */
  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const path = join(this.dir, "refs", revision);
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    writeFileSync(temporary, commit);
    renameSync(temporary, path);
  }

  /**
   * Makes `snapshots/<commit>/<file>` point at a blob: a relative symlink like huggingface_hub's, or a
   * copy where symlinks are not allowed (Windows without developer mode). Replaces any older link.
   */
  link(commit: string, file: string, blob: string): string {
    const path = join(this.snapshotDir(commit), file);
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    rmSync(temporary, { force: true });
    try {
      symlinkSync(relative(dirname(path), this.blobPath(blob)), temporary);
    } catch {
      copyFileSync(this.blobPath(blob), temporary);
    }
    renameSync(temporary, path);
    return path;
  }

  /** Whether `snapshots/<commit>/<file>` exists and leads to a file (a dangling link does not count). */
  hasFile(commit: string, file: string): boolean {
    return existsSync(join(this.snapshotDir(commit), file));
  }
}

/** A file a model directory lacks: the config, the weights, or one shard the index names. */
export interface MissingFile {
  file: string;
  role: "config" | "weights" | "shard";
}

/**
 * The first file a model directory lacks to be loaded (config.json, then the weights: model.safetensors,
 * or the index and every shard it names), or undefined when nothing is missing.
 * Throws a FormatError for an index that is not an index.
 */
export function missingModelFile(dir: string): MissingFile | undefined {
  if (!existsSync(join(dir, CONFIG_FILE))) return { file: CONFIG_FILE, role: "config" };
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (existsSync(indexPath)) {
    const shard = shardFiles(indexPath).find((name) => !existsSync(join(dir, name)));
    return shard === undefined ? undefined : { file: shard, role: "shard" };
  }
  if (existsSync(join(dir, SINGLE_WEIGHTS_FILE))) return undefined;
  return { file: `${SINGLE_WEIGHTS_FILE} (or ${WEIGHTS_INDEX_FILE} with its shards)`, role: "weights" };
}

/** The distinct shard files an index's weight_map names, in first-named order. */
export function shardFiles(indexPath: string): string[] {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (error) {
    throw new FormatError(indexPath, `index is not valid JSON (${(error as Error).message})`);
  }
  const weightMap = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(indexPath, `expected an object with a "weight_map" object`);
  }
  const files = new Set<string>();
  for (const [tensor, file] of Object.entries(weightMap)) {
    // A shard is a plain file name beside the index: anything else could write outside the snapshot.
    if (
      typeof file !== "string" || file === "" || file.includes("/") || file.includes("\\") || file === ".."
    ) {
      throw new FormatError(
        indexPath,
        `weight_map must give a file name, found ${JSON.stringify(file)}`,
        tensor,
      );
    }
    files.add(file);
  }
  return [...files];
}

function home(env: Env): string {
  return env("HOME") || env("USERPROFILE") || homedir();
}

/** `~/x` → `<home>/x`, as Python's expanduser does for these variables. */
function expandHome(path: string, env: Env): string {
  return path === "~" || path.startsWith("~/") ? join(home(env), path.slice(1)) : path;
}
