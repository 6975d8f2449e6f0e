/**
 * Downloads one file into the cache's blobs/ folder the way huggingface_hub does: streamed to
 * `<blob>.incomplete`, checked (size, and sha256 for LFS files), then renamed, so a blob that exists is
 * whole. A killed or failed download leaves only the `.incomplete` file, which the next attempt resumes
 * with an HTTP Range request. An flock on `.locks/.../<blob>.lock` (the lock huggingface_hub takes too)
 * keeps two processes from writing the same blob.
 */
import { createHash, type Hash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { HubError, type RequestSubject } from "./error.ts";
import { type HubClient, hubGet } from "./http.ts";
import type { DownloadProgress } from "./progress.ts";

export interface BlobDownload {
  url: string;
  /** The blobs/ folder. */
  blobsDir: string;
  /** The .locks/ folder of this repo. */
  locksDir: string;
  /** The blob name when the hub told it (LFS sha256 or git oid); else the file's sha256 is used. */
  blob?: string;
  /** Expected size and sha256, checked when known. */
  size?: number;
  sha256?: string;
  subject: RequestSubject & { file: string };
}

/** Downloads (or finds) the blob and returns its name. */
export async function downloadBlob(
  client: HubClient,
  job: BlobDownload,
  progress: DownloadProgress,
): Promise<string> {
  if (job.blob !== undefined && existsSync(join(job.blobsDir, job.blob))) return present(job, progress);
  // Without a known name the file is staged under a name of its own and named by its hash at the end.
  const stage = job.blob ?? `unnamed-${createHash("sha256").update(job.url).digest("hex").slice(0, 16)}`;
  mkdirSync(job.blobsDir, { recursive: true });
  mkdirSync(job.locksDir, { recursive: true });
  const lock = await Deno.open(join(job.locksDir, `${stage}.lock`), { create: true, write: true });
  try {
    await lock.lock(true);
    // Another process may have finished this blob while we waited for the lock.
    if (job.blob !== undefined && existsSync(join(job.blobsDir, job.blob))) return present(job, progress);
    const partial = join(job.blobsDir, `${stage}.incomplete`);
    const sha256 = await fetchInto(client, job, partial, progress);
    const blob = job.blob ?? sha256;
    renameSync(partial, join(job.blobsDir, blob));
    return blob;
  } finally {
    lock.close(); // releases the flock; the lock file stays, as huggingface_hub leaves it
  }
}

/** A blob already in the cache (another file with the same content, or another process's download). */
function present(job: BlobDownload, progress: DownloadProgress): string {
  progress.skip(job.size ?? 0);
  return job.blob!;
}

/** Streams the file into `partial` (resuming what is there) and checks it; returns its sha256. */
async function fetchInto(
  client: HubClient,
  job: BlobDownload,
  partial: string,
  progress: DownloadProgress,
): Promise<string> {
  let offset = existsSync(partial) ? statSync(partial).size : 0;
  if (job.size !== undefined && offset >= job.size) offset = 0; // nothing to resume: start over
  let response: Response;
  try {
    response = await get(client, job, offset);
  } catch (error) {
    // 416: the partial file does not fit the file on the server (it changed): start over.
    if (!(error instanceof HubError && error.status === 416 && offset > 0)) throw error;
    offset = 0;
    response = await get(client, job, offset);
  }
  if (offset > 0 && response.status !== 206) offset = 0; // the server ignored the range
  const expectedSize = job.size ?? sizeFromHeaders(response, offset);
  if (job.size === undefined && expectedSize !== undefined) progress.addTotal(expectedSize);
  const hash = createHash("sha256");
  if (offset > 0) {
    await hashFile(partial, hash);
    progress.skip(offset);
  }
  const written = await writeBody(response, partial, offset, hash, progress, job.subject);
  if (expectedSize !== undefined && written < expectedSize) {
    throw new HubError(
      `the download of ${job.subject.file} from ${job.subject.endpoint} ended after ${written} of ` +
        `${expectedSize} bytes; run again to resume it.`,
    );
  }
  const digest = hash.digest("hex");
  const wrongSize = expectedSize !== undefined && written !== expectedSize;
  if (wrongSize || (job.sha256 !== undefined && digest !== job.sha256)) {
    rmSync(partial, { force: true });
    throw new HubError(
      `${job.subject.file} from ${job.subject.endpoint} is corrupt (expected ` +
        `${expectedSize ?? "?"} bytes${job.sha256 ? `, sha256 ${job.sha256}` : ""}; got ${written} bytes, ` +
        `sha256 ${digest}); it was deleted, run again to download it afresh.`,
    );
  }
  return digest;
}

function get(client: HubClient, job: BlobDownload, offset: number): Promise<Response> {
  // identity: sizes are checked against Content-Length, which a compressed answer would not match.
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  return hubGet(client, job.url, job.subject, headers);
}

/** The full size from Content-Range (a resumed download) or Content-Length; unknown if compressed. */
function sizeFromHeaders(response: Response, offset: number): number | undefined {
  const range = response.headers.get("content-range")?.match(/\/(\d+)$/);
  if (range) return Number(range[1]);
  const length = response.headers.get("content-length");
  if (length === null || response.headers.has("content-encoding")) return undefined;
  return offset + Number(length);
}

/** Appends the body to `partial` (from `offset`), hashing and counting it; returns the file's new size. */
async function writeBody(
  response: Response,
  partial: string,
  offset: number,
  hash: Hash,
  progress: DownloadProgress,
  subject: BlobDownload["subject"],
): Promise<number> {
  const file = await Deno.open(partial, {
    write: true,
    create: true,
    truncate: offset === 0,
    append: offset > 0,
  });
  const reader = response.body?.getReader();
  let written = offset;
  try {
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array> | undefined;
      try {
        next = await reader?.read();
      } catch (error) {
        // Whatever arrived stays in `partial`: the next run resumes from there.
        throw new HubError(
          `the download of ${subject.file} from ${subject.endpoint} broke off after ${written} bytes ` +
            `(${(error as Error).message}); run again to resume it.`,
        );
      }
      if (next === undefined || next.done) return written;
      await writeAll(file, next.value);
      hash.update(next.value);
      written += next.value.length;
      progress.add(next.value.length);
    }
  } finally {
    file.close();
    await reader?.cancel().catch(() => {});
  }
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  const file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk); // the stream closes the file at its end
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}
