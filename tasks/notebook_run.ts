/**
 * `deno task notebook:run [notebooks…] [--short] [--html] [--out-dir DIR] [--timeout S]`: runs notebooks top
 * to bottom on the Deno kernel without a browser (all of `notebooks/*.ipynb` by default) and writes each one
 * executed, with its outputs, to `DIR/<name>.ipynb` (and `DIR/<name>.html`). Stops at the first cell error,
 * naming the notebook, the cell (`cells[i]`) and the error. Installs only the runner tier of
 * `.venv-notebook/` (no JupyterLab).
 */
import { Command } from "@commander-js/extra-typings";
import { existsSync, readdirSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { executeNotebook, SHORT_MODE_VARIABLE } from "./notebook/run.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { REPO_ROOT, setupNotebookEnv } from "./notebook/setup.ts";

const program = pairBooleans(
  new Command("deno task notebook:run")
    .description("Execute notebooks headlessly and write them with their outputs (and as HTML).")
    .argument("[notebooks...]", "notebooks to run (default: notebooks/*.ipynb)")
    .option("--out-dir <dir>", "where executed notebooks are written", "out/notebooks/executed")
    .option("--html", "also render each executed notebook to HTML", false)
    .option(
      "--short",
      `short mode: sets ${SHORT_MODE_VARIABLE}=1 (few training steps, short generations)`,
      false,
    )
    .option("--timeout <seconds>", "how long one cell may run", "600")
    .option("--python <python>", "Python that creates the venv (default: $QLORA_PYTHON or python3)"),
)
  .parse(Deno.args, { from: "user" });
const opts = program.opts();

const timeout = Number(opts.timeout);
if (!(timeout > 0)) {
  console.error(`notebook:run: --timeout must be a number of seconds > 0, got "${opts.timeout}"`);
  Deno.exit(2);
}
// `deno task` runs in the repository root; paths given on the command line are relative to where it was typed.
const here = Deno.env.get("INIT_CWD") ?? Deno.cwd();
const notebooks = program.args.length > 0 ? program.args.map((p) => resolve(here, p)) : defaultNotebooks();
if (notebooks.length === 0) {
  console.error("notebook:run: no notebooks given and none in notebooks/");
  Deno.exit(2);
}
const missing = notebooks.filter((p) => !existsSync(p));
if (missing.length > 0) {
  console.error(`notebook:run: no such notebook: ${missing.join(", ")}`);
  Deno.exit(2);
}

try {
  const env = await setupNotebookEnv({ tier: "runner", python: opts.python });
  for (const notebook of notebooks) {
    const name = basename(notebook, ".ipynb");
    const out = resolve(here, opts.outDir, `${name}.ipynb`);
    const html = opts.html ? resolve(here, opts.outDir, `${name}.html`) : undefined;
    const result = await executeNotebook(env, { notebook, out, html, short: opts.short, timeout });
    if (!result.ok) {
      console.error(`notebook:run: ${basename(notebook)} failed (${result.status}); see the error above`);
      Deno.exit(1);
    }
    if (html) console.error(`notebook:run: HTML in ${html}`);
  }
} catch (error) {
  console.error(`notebook:run: ${(error as Error).message}`);
  Deno.exit(1);
}

function defaultNotebooks(): string[] {
  const dir = join(REPO_ROOT, "notebooks");
  return readdirSync(dir).filter((f) => f.endsWith(".ipynb")).sort().map((f) => join(dir, f));
}
