/**
 * Errors from fetching a model from the hub, worded for the person who typed `--model org/name`: what was
 * asked, of which endpoint, and what to do (set HF_TOKEN, fix the name, check the network, go offline).
 */
export class HubError extends Error {
  override name = "HubError";

  constructor(message: string, /** The HTTP status, when the hub answered. */ readonly status?: number) {
    super(message);
  }
}

/** What a request was for, for the message: the repo, the revision, the endpoint, the file if any. */
export interface RequestSubject {
  repo: string;
  revision: string;
  endpoint: string;
  file?: string;
  /** Whether a token was sent (a refused token reads differently from a missing one). */
  withToken: boolean;
}

/** The error for a non-2xx answer; reads (and so releases) the body for the hub's own message. */
export async function errorForResponse(response: Response, subject: RequestSubject): Promise<HubError> {
  const body = await response.text().catch(() => "");
  // The hub names the failure in headers (X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound,
  // GatedRepo, …) and explains it in X-Error-Message or a JSON body {"error": …}.
  const code = response.headers.get("x-error-code") ?? "";
  const said = response.headers.get("x-error-message") ?? jsonError(body) ?? "";
  const hubSaid = said ? ` The hub said: ${said}` : "";
  const { repo, revision, endpoint, file } = subject;
  const where = `${repo}@${revision} on ${endpoint}`;
  const status = response.status;
  if (code === "RepoNotFound") {
    // The hub answers 401 (not 404) for a repo it will not show without a token: it may be private.
    const token = subject.withToken
      ? "If it is private or gated, check that HF_TOKEN can read it."
      : `If it is private or gated, set HF_TOKEN to an access token that can read it (${endpoint}/settings/tokens).`;
    return new HubError(
      `repository ${repo} not found on ${endpoint} (${status}): check the repo id (org/name). ${token}${hubSaid}`,
      status,
    );
  }
  if (status === 401 || status === 403 || code === "GatedRepo") {
    const gated = code === "GatedRepo" || /gated/i.test(said);
    const advice = subject.withToken
      ? `HF_TOKEN was sent but not accepted for ${repo}: check that the token is valid and has read access` +
        (gated ? `, and that you accepted the model's terms at ${endpoint}/${repo}.` : ".")
      : gated
      ? `Accept the model's terms at ${endpoint}/${repo}, then set HF_TOKEN to an access token of that account.`
      : `If the repo is private or gated, set HF_TOKEN to an access token that can read it ` +
        `(${endpoint}/settings/tokens); otherwise check the name, as the hub answers 401 for repos that do not exist.`;
    const kind = gated ? "is gated" : "needs authentication";
    return new HubError(`cannot download ${where}: ${status}, the repo ${kind}. ${advice}${hubSaid}`, status);
  }
  if (status === 404) {
    if (code === "RevisionNotFound") {
      return new HubError(
        `revision "${revision}" not found in ${repo} on ${endpoint} (a branch, tag or commit hash).${hubSaid}`,
        status,
      );
    }
    if (code === "EntryNotFound" && file !== undefined) {
      return new HubError(`file ${file} not found in ${where}.${hubSaid}`, status);
    }
    const what = file === undefined ? `repository ${repo} (revision "${revision}")` : `${file} of ${where}`;
    return new HubError(
      `${what} not found on ${endpoint}: check the repo id (org/name) and revision.${hubSaid}`,
      status,
    );
  }
  const target = file === undefined ? where : `${file} of ${where}`;
  const text = response.statusText ? ` ${response.statusText}` : "";
  return new HubError(`cannot download ${target}: the hub answered ${status}${text}.${hubSaid}`, status);
}

/** The error for a request that got no answer at all (DNS, refused connection, TLS, proxy). */
export function errorForNetwork(cause: unknown, subject: RequestSubject): HubError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const what = subject.file === undefined ? `${subject.repo}@${subject.revision}` : subject.file;
  return new HubError(
    `cannot reach the hub at ${subject.endpoint} to download ${what} (${reason}). Check the network ` +
      `(or HTTPS_PROXY, or HF_ENDPOINT for a mirror); with HF_HUB_OFFLINE=1 only the local cache is used.`,
  );
}

function jsonError(body: string): string | undefined {
  try {
    const error = (JSON.parse(body) as { error?: unknown })?.error;
    return typeof error === "string" ? error : undefined;
  } catch {
    return body.trim().slice(0, 200) || undefined;
  }
}
