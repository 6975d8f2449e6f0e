/**
 * The hub's HTTP API, the two calls we need, in the URL layout huggingface_hub uses (so `HF_ENDPOINT` may
 * point at a mirror or a test server):
 *
 *   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true  → {sha, siblings: [{rfilename, size,
 *                                                                        blobId, lfs?: {sha256, size}}]}
 *   GET {endpoint}/{repo}/resolve/{commit}/{file}                     → the file (large ones redirect to a CDN)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { type Env, hfHome } from "./cache.ts";
import { errorForNetwork, errorForResponse, HubError, type RequestSubject } from "./error.ts";

export const DEFAULT_ENDPOINT = "https://huggingface.co";
const MAX_REDIRECTS = 10;

export interface HubClient {
  /** Base URL without a trailing slash. */
  endpoint: string;
  /** Bearer token, sent to the endpoint's origin only. */
  token?: string;
  fetch: typeof fetch;
}

/** The endpoint from `$HF_ENDPOINT`; the token from `$HF_TOKEN`, else the file `huggingface-cli login` writes. */
export function hubClient(env: Env, fetchImpl: typeof fetch = fetch): HubClient {
  const endpoint = (env("HF_ENDPOINT") || DEFAULT_ENDPOINT).replace(/\/+$/, "");
  return { endpoint, token: hubToken(env), fetch: fetchImpl };
}

function hubToken(env: Env): string | undefined {
  const explicit = env("HF_TOKEN") || env("HUGGING_FACE_HUB_TOKEN");
  if (explicit) return explicit.trim();
  try {
    return readFileSync(env("HF_TOKEN_PATH") || join(hfHome(env), "token"), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * GET with the token, following redirects by hand so that the token never leaves the endpoint's origin
 * (large files redirect to a CDN with a signed URL). Any failure becomes a HubError naming `subject`.
 */
export async function hubGet(
  client: HubClient,
  url: string,
  subject: RequestSubject,
  headers: Record<string, string> = {},
): Promise<Response> {
  const origin = new URL(client.endpoint).origin;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const sent: Record<string, string> = { ...headers };
    if (client.token && new URL(current).origin === origin) sent.authorization = `Bearer ${client.token}`;
    let response: Response;
    try {
      response = await client.fetch(current, { headers: sent, redirect: "manual" });
    } catch (error) {
      throw errorForNetwork(error, subject);
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      current = new URL(location, current).href;
      continue;
    }
    if (!response.ok) throw await errorForResponse(response, subject);
    return response;
  }
  throw new HubError(`too many redirects while downloading ${url}`);
}

/** One file of a repo revision as the API lists it. */
export interface RepoFile {
  /** Path in the repo (`rfilename`). */
  name: string;
  size?: number;
  /** sha256 of an LFS file: its content hash, and its blob name in the cache. */
  sha256?: string;
  /** Git object id: the blob name in the cache of a file kept in git. */
  gitOid?: string;
}

export interface RevisionInfo {
  /** The commit hash the revision points to now. */
  commit: string;
  files: RepoFile[];
}

const RevisionJson = z.object({
  sha: z.string().regex(/^[0-9a-f]{40}$/, "a 40-digit commit hash"),
  siblings: z.array(z.object({
    rfilename: z.string(),
    size: z.number().nullish(),
    blobId: z.string().nullish(),
    lfs: z.object({ sha256: z.string(), size: z.number().nullish() }).nullish(),
  })),
});

/** What `revision` of `repo` holds: its commit and its files. */
export async function fetchRevisionInfo(
  client: HubClient,
  repo: string,
  revision: string,
): Promise<RevisionInfo> {
  const subject = { repo, revision, endpoint: client.endpoint, withToken: client.token !== undefined };
  const url = `${client.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const response = await hubGet(client, url, subject);
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new HubError(`${url} did not answer JSON (is HF_ENDPOINT a hub?): ${text.slice(0, 200)}`);
  }
  const parsed = RevisionJson.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HubError(`${url} answered an unexpected shape: ${issue.path.join(".")}: ${issue.message}`);
  }
  return {
    commit: parsed.data.sha,
    files: parsed.data.siblings.map((s) => ({
      name: s.rfilename,
      size: s.lfs?.size ?? s.size ?? undefined,
      sha256: s.lfs?.sha256,
      gitOid: s.blobId ?? undefined,
    })),
  };
}

/** The download URL of `file` at a fixed commit (so every file comes from the same snapshot). */
export function fileUrl(client: HubClient, repo: string, commit: string, file: string): string {
  const path = file.split("/").map(encodeURIComponent).join("/");
  return `${client.endpoint}/${repo}/resolve/${commit}/${path}`;
}
