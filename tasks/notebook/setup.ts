/**
 * The project-local Jupyter installation behind `deno task notebook`, `deno task notebook:run` and the
 * notebook tests: a venv `.venv-notebook/` at the repository root with pinned pip requirements in two tiers,
 *
 * - `runner` (`requirements-runner.txt`): jupyter_client, nbformat, nbconvert — enough to execute notebooks
 *   headlessly (`execute.py`) and render them to HTML; what tests and CI install;
 * - `lab` (`requirements-lab.txt`, includes the runner tier): JupyterLab, for `deno task notebook` only;
 *
 * and a Deno kernelspec inside the venv (`share/jupyter/kernels/deno/kernel.json`) that starts the deno running
 * this code. Jupyter is pointed at it with JUPYTER_PATH, so nothing is written to ~/.local.
 *
 * Idempotent and quick when done: a stamp file per tier holds the hash of its requirements and the venv's
 * Python version; only a mismatch runs pip. A lock file serialises concurrent setups.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { run, tail } from "../../lib/process.ts";

export type Tier = "runner" | "lab";

export interface SetupOptions {
  /** Which packages: `runner` (headless execution, HTML) or `lab` (runner + JupyterLab). */
  tier: Tier;
  /** Python that creates the venv; default `$QLORA_PYTHON` or `python3`. */
  python?: string;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  /** Repository root; default the one this file is in. */
  root?: string;
}

export interface NotebookEnv {
  root: string;
  /** `<root>/.venv-notebook`. */
  venv: string;
  /** The venv's Python. */
  python: string;
  /** The kernel.json written for the running deno. */
  kernelspec: string;
  /** Variables for every Jupyter process started on this venv (JUPYTER_PATH, JUPYTER_RUNTIME_DIR). */
  env: Record<string, string>;
  /** True when pip ran in this call. */
  installed: boolean;
}

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/[\\/]$/, "");
const REQUIREMENTS_DIR = fileURLToPath(new URL(".", import.meta.url));
const VENV_NAME = ".venv-notebook";

/** The kernelspec of the Deno kernel: the running deno, no colour codes in plain-text results. */
export function denoKernelspec(deno = Deno.execPath()) {
  return {
    argv: [deno, "jupyter", "--kernel", "--conn", "{connection_file}"],
    display_name: "Deno",
    language: "typescript",
    env: { NO_COLOR: "1" },
  };
}

/** Creates or updates `.venv-notebook/` for `tier` and writes the kernelspec; returns how to use it. */
export async function setupNotebookEnv(options: SetupOptions): Promise<NotebookEnv> {
  const root = options.root ?? REPO_ROOT;
  const log = options.log ?? ((line: string) => console.error(`notebook: ${line}`));
  const basePython = options.python ?? (Deno.env.get("QLORA_PYTHON") || "python3");
  const venv = join(root, VENV_NAME);
  const python = Deno.build.os === "windows"
    ? join(venv, "Scripts", "python.exe")
    : join(venv, "bin", "python");
  const kernelspec = join(venv, "share", "jupyter", "kernels", "deno", "kernel.json");
  let installed = false;
  await inLockedVenv(venv, python, basePython, log, async (version) => {
    const file = `requirements-${options.tier}.txt`;
    const stamp = join(venv, `.installed-${options.tier}`);
    const want = `${requirementsHash(options.tier)} python ${version}`;
    if (readText(stamp) !== want) {
      const started = performance.now();
      log(`installing the pinned ${options.tier} tier (${file}) into ${venv} with pip…`);
      await pipInstall(python, join(REQUIREMENTS_DIR, file));
      writeFileSync(stamp, want);
      if (options.tier === "lab") {
        writeFileSync(join(venv, ".installed-runner"), `${requirementsHash("runner")} python ${version}`);
      }
      log(`installed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      installed = true;
    }
    const spec = `${JSON.stringify(denoKernelspec(), null, 2)}\n`;
    if (readText(kernelspec) !== spec) {
      mkdirSync(dirname(kernelspec), { recursive: true });
      writeFileSync(kernelspec, spec);
    }
  });

  const inherited = Deno.env.get("JUPYTER_PATH");
  const jupyterPath = join(venv, "share", "jupyter");
  return {
    root,
    venv,
    python,
    kernelspec,
    env: {
      // First on the path, so this kernelspec wins over a `deno jupyter --install` in ~/.local.
      JUPYTER_PATH: inherited ? `${jupyterPath}${delimiter}${inherited}` : jupyterPath,
      // Connection and server files stay in the venv too.
      JUPYTER_RUNTIME_DIR: join(venv, "runtime"),
    },
    installed,
  };
}

/** Hash of a tier's requirements, including the files it pulls in with `-r`. */
function requirementsHash(tier: Tier): string {
  const hash = createHash("sha256");
  const files = tier === "lab"
    ? ["requirements-lab.txt", "requirements-runner.txt"]
    : ["requirements-runner.txt"];
  for (const file of files) hash.update(readFileSync(join(REQUIREMENTS_DIR, file)));
  return hash.digest("hex");
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The venv Python's version, or undefined when it is missing or broken (e.g. its base Python was removed). */
/**
 * Runs `body` with the venv's Python version while holding the venv's setup lock (concurrent test processes
 * install once), creating the venv with `basePython` first when `python` does not start.
 */
export async function inLockedVenv(
  venv: string,
  python: string,
  basePython: string,
  log: (line: string) => void,
  body: (version: string) => Promise<void>,
): Promise<void> {
  mkdirSync(venv, { recursive: true });
  const lock = await Deno.open(join(venv, ".setup.lock"), { create: true, write: true });
  try {
    await lock.lock(true);
    let version = await pythonVersion(python);
    if (version === undefined) {
      log(`creating a Python venv in ${venv} with ${basePython}…`);
      await createVenv(basePython, venv);
      version = await pythonVersion(python);
      if (version === undefined) throw new Error(`${basePython} -m venv ran but ${python} does not start`);
    }
    await body(version);
  } finally {
    lock.close();
  }
}

export async function pythonVersion(python: string): Promise<string | undefined> {
  if (!existsSync(python)) return undefined;
  try {
    const result = await run(
      python,
      ["-c", "import sys; print(sys.version.split()[0])"],
      "the venv's Python",
    );
    return result.ok ? result.output.trim() : undefined;
  } catch {
    return undefined;
  }
}

export async function createVenv(basePython: string, venv: string): Promise<void> {
  let result;
  try {
    result = await run(basePython, ["-m", "venv", venv], "Python 3");
  } catch (error) {
    throw new Error(
      `${(error as Error).message}. The notebook tools need Python 3 with its venv module: install it, ` +
        `or point QLORA_PYTHON (or --python) at one.`,
    );
  }
  if (!result.ok) {
    const hint = /ensurepip|No module named venv/.test(result.output)
      ? " Python's venv module is incomplete here (on Debian/Ubuntu: apt install python3-venv)."
      : "";
    throw new Error(
      `${basePython} -m venv ${venv} failed (${result.status}).${hint} It said:\n${tail(result.output)}`,
    );
  }
}

export async function pipInstall(python: string, requirements: string): Promise<void> {
  const result = await run(python, [
    "-m",
    "pip",
    "install",
    "--disable-pip-version-check",
    "--no-input",
    "--progress-bar",
    "off",
    "-r",
    requirements,
  ], "the venv's Python");
  if (!result.ok) {
    throw new Error(
      `pip install -r ${requirements} failed (${result.status}). Is PyPI reachable (proxy, PIP_INDEX_URL)? ` +
        `pip said:\n${tail(result.output)}`,
    );
  }
}
