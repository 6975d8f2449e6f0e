/**
 * Headless execution of a notebook: `execute.py` (next to this file) on the venv of `setupNotebookEnv`,
 * which runs every cell on the Deno kernel, fails on the first cell error, timeout or kernel death, and
 * writes the executed notebook (and, if asked, its HTML rendering).
 */
import { fileURLToPath } from "node:url";
import type { NotebookEnv } from "./setup.ts";
import { run } from "../../lib/process.ts";

/** The variable that notebooks read to shrink their work (fewer steps, shorter generations). */
export const SHORT_MODE_VARIABLE = "QLORA_NOTEBOOK_SHORT";

const EXECUTE_PY = fileURLToPath(new URL("execute.py", import.meta.url));

export interface ExecuteOptions {
  notebook: string;
  /** Where the executed notebook is written (also when a cell failed: the outputs up to the failure). */
  out: string;
  /** Also render the executed notebook to this HTML file (nbconvert, JupyterLab's look). */
  html?: string;
  /** Sets QLORA_NOTEBOOK_SHORT=1 for the kernel. */
  short?: boolean;
  /** Seconds one cell may run (default 600). */
  timeout?: number;
  /** Seconds the kernel may take to start (default 120). */
  startupTimeout?: number;
  /** Seconds iopub is read on after a cell reports idle (default 0.2; extended while messages arrive). */
  grace?: number;
  /** Progress lines of the runner (one per cell start and end, then errors); default stderr. */
  log?: (line: string) => void;
}

export interface ExecuteResult {
  ok: boolean;
  /** "exit code N" or "signal S" of the runner. */
  status: string;
  /** Everything the runner printed; on failure it names the notebook, the cell (`cells[i]`) and the error. */
  output: string;
  seconds: number;
}

export async function executeNotebook(env: NotebookEnv, options: ExecuteOptions): Promise<ExecuteResult> {
  const args = [EXECUTE_PY, options.notebook, "--out", options.out];
  if (options.html !== undefined) args.push("--html", options.html);
  if (options.timeout !== undefined) args.push("--timeout", String(options.timeout));
  if (options.startupTimeout !== undefined) args.push("--startup-timeout", String(options.startupTimeout));
  if (options.grace !== undefined) args.push("--grace", String(options.grace));
  const vars: Record<string, string> = { ...env.env, PYTHONUNBUFFERED: "1" };
  if (options.short) vars[SHORT_MODE_VARIABLE] = "1";
  const started = performance.now();
  const result = await run(env.python, args, "the notebook venv's Python", {
    env: vars,
    log: options.log ?? ((line) => console.error(line)),
  });
  return { ...result, seconds: (performance.now() - started) / 1000 };
}
