/**
 * `deno task notebook [--port N] [--no-browser] [--setup-only] [-- <jupyter lab options>]`: installs what is
 * missing — JupyterLab from PyPI into the project-local venv `.venv-notebook/`, a Deno kernelspec inside it
 * that runs this deno — and starts JupyterLab on `notebooks/`. Nothing is written outside the repository
 * except pip's own download cache.
 */
import { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import { pairBooleans } from "./boolean_flags.ts";
import { REPO_ROOT, setupNotebookEnv } from "./notebook/setup.ts";

const program = pairBooleans(
  new Command("deno task notebook")
    .description("Set up Jupyter with the Deno kernel in .venv-notebook/ and start JupyterLab on notebooks/.")
    .option("--port <n>", "port of the JupyterLab server (default: Jupyter's, 8888 or the next free one)")
    .option("--no-browser", "do not open a browser (print the URL only)")
    .option("--setup-only", "install and write the kernelspec, then exit", false)
    .option("--python <python>", "Python that creates the venv (default: $QLORA_PYTHON or python3)")
    .argument("[jupyterArgs...]", "more options for `jupyter lab`, after --"),
)
  .parse(Deno.args, { from: "user" });
const opts = program.opts();

let env;
try {
  env = await setupNotebookEnv({ tier: "lab", python: opts.python });
} catch (error) {
  console.error(`notebook: ${(error as Error).message}`);
  Deno.exit(1);
}
console.error(`notebook: JupyterLab and the Deno kernel (${Deno.execPath()}) are ready in ${env.venv}`);
if (opts.setupOnly) Deno.exit(0);

const args = ["-m", "jupyterlab", `--ServerApp.root_dir=${join(REPO_ROOT, "notebooks")}`];
if (opts.port !== undefined) args.push(`--port=${opts.port}`);
if (!opts.browser) args.push("--no-browser");
// Jupyter refuses to run as root unless told; in a container root is the usual user.
if (Deno.uid() === 0) args.push("--allow-root");
args.push(...program.args);

// Ctrl-C reaches JupyterLab too (same process group), which asks to confirm or stops on a second one;
// this process waits for it instead of exiting first and leaving it orphaned. SIGTERM is passed on.
const lab = new Deno.Command(env.python, {
  args,
  env: env.env,
  cwd: REPO_ROOT,
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
Deno.addSignalListener("SIGINT", () => {});
if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", () => lab.kill("SIGTERM"));
const status = await lab.status;
Deno.exit(status.code);
