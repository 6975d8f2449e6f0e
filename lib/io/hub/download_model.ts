/**
 * Downloads a model from the Hugging Face hub into the local hub cache: only the files a fine-tune needs
 * (config, tokenizer, safetensors weights), all from one commit, each written whole (see hub_download.ts),
 * linked into `snapshots/<commit>/`, and `refs/<revision>` written last, so Python tools find the same
 * snapshot and a half-finished download is never taken for a model.
 */
import { join } from "node:path";
import type { Writable } from "node:stream";
import { CachedRepo, shardFiles } from "./cache.ts";
import { downloadBlob } from "./download_blob.ts";
import { checkShards, planDownload } from "./files.ts";
import { fetchRevisionInfo, fileUrl, type HubClient, type RepoFile } from "./http.ts";
import { DownloadProgress, formatBytes } from "./progress.ts";

export { HubError } from "./error.ts";

export interface DownloadOptions {
  client: HubClient;
  /** The hub cache folder (`hubCacheDir(env)`). */
  cacheDir: string;
  /** Status lines (the progress bar goes to `progress`). */
  log: (line: string) => void;
  /** Where the progress bar is drawn: default stderr; `false` for none. */
  progress?: Writable | false;
}

export interface Snapshot {
  /** `snapshots/<commit>` in the cache: a model directory. */
  dir: string;
  commit: string;
}

/** Downloads what is missing of `repo` at `revision` and returns the snapshot folder. */
export async function downloadSnapshot(
  repo: string,
  revision: string,
  options: DownloadOptions,
): Promise<Snapshot> {
  const { client, log } = options;
  const info = await fetchRevisionInfo(client, repo, revision);
  const cached = new CachedRepo(options.cacheDir, repo);
  const files = new Map(info.files.map((file) => [file.name, file]));
  const names = [...files.keys()];
  const plan = planDownload(`${repo}@${revision}`, names);
  for (const warning of plan.warnings) log(`warning: ${warning}`);
  const first = plan.weights.kind === "single"
    ? [...plan.files, plan.weights.file]
    : [...plan.files, plan.weights.index];
  const missing = (list: string[]) => list.filter((name) => !cached.hasFile(info.commit, name));
  const sizeOf = (list: string[]) => list.reduce((sum, name) => sum + (files.get(name)?.size ?? 0), 0);

  const todo = missing(first);
  log(`downloading ${repo}@${revision} (commit ${info.commit.slice(0, 8)}) from ${client.endpoint}`);
  const progress = new DownloadProgress(repo, sizeOf(todo), options.progress);
  try {
    for (const name of todo) await fetchFile(cached, info.commit, files.get(name)!, options, progress);
    if (plan.weights.kind === "sharded") {
      const shards = shardFiles(join(cached.snapshotDir(info.commit), plan.weights.index));
      checkShards(`${repo}@${revision}`, shards, names);
      const shardsTodo = missing(shards);
      progress.addTotal(sizeOf(shardsTodo));
      for (const name of shardsTodo) {
        await fetchFile(cached, info.commit, files.get(name)!, options, progress);
      }
    }
  } finally {
    progress.stop();
  }
  cached.writeRef(revision, info.commit);
  const dir = cached.snapshotDir(info.commit);
  log(`${repo}@${revision} is in ${dir} (${formatBytes(totalSize(dir, files))})`);
  return { dir, commit: info.commit };
}

/** Downloads one file's blob (unless present) and links it into the snapshot. */
async function fetchFile(
  cached: CachedRepo,
  commit: string,
  file: RepoFile,
  options: DownloadOptions,
  progress: DownloadProgress,
): Promise<void> {
  const { client } = options;
  progress.setFile(file.name);
  const blob = await downloadBlob(client, {
    url: fileUrl(client, cached.repoId, commit, file.name),
    blobsDir: cached.blobsDir,
    locksDir: cached.locksDir,
    // huggingface_hub names LFS blobs by their sha256 and git-stored ones by their git object id.
    blob: file.sha256 ?? file.gitOid,
    size: file.size,
    sha256: file.sha256,
    subject: {
      repo: cached.repoId,
      revision: commit,
      endpoint: client.endpoint,
      file: file.name,
      withToken: client.token !== undefined,
    },
  }, progress);
  cached.link(commit, file.name, blob);
}

/** Bytes of the snapshot's files as listed by the hub (for the closing log line). */
function totalSize(dir: string, files: Map<string, RepoFile>): number {
  let total = 0;
  for (const entry of Deno.readDirSync(dir)) total += files.get(entry.name)?.size ?? 0;
  return total;
}
