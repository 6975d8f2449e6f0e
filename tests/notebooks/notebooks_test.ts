/**
 * Notebooks run headlessly, as CI runs them: the runner tier of `.venv-notebook/` is set up (installed from
 * PyPI on a fresh clone), the runner is checked on small fixture notebooks (errors, kernel death, timeouts,
 * display updates, outputs that arrive after the kernel reported idle), then every `notebooks/*.ipynb` runs
 * in short mode and its key outputs — found by cell tags — are checked in the executed notebook and in its
 * HTML rendering.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { executeNotebook, type ExecuteOptions, type ExecuteResult } from "../../tasks/notebook/run.ts";
import { type NotebookEnv, REPO_ROOT, setupNotebookEnv } from "../../tasks/notebook/setup.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/notebooks/", import.meta.url));
const NOTEBOOKS = join(REPO_ROOT, "notebooks");
/** Executed notebooks and their HTML, kept for a look after a failure (out/ is not tracked). */
const OUT = join(REPO_ROOT, "out", "test-notebooks");

let envPromise: Promise<NotebookEnv> | undefined;
/** Set up once per test file; a setup failure fails every test that needs it. */
function notebookEnv(): Promise<NotebookEnv> {
  return envPromise ??= setupNotebookEnv({ tier: "runner" });
}

interface Output {
  output_type: "stream" | "display_data" | "execute_result" | "error";
  name?: string;
  text?: string | string[];
  data?: Record<string, string | string[]>;
}
interface Cell {
  cell_type: string;
  execution_count?: number | null;
  metadata: { tags?: string[] };
  outputs?: Output[];
}
interface Notebook {
  cells: Cell[];
}

const joined = (text: string | string[] | undefined) => Array.isArray(text) ? text.join("") : text ?? "";

/** Runs a notebook into OUT; returns the runner's result and the executed notebook. */
async function execute(
  path: string,
  options: Partial<ExecuteOptions> = {},
): Promise<{ result: ExecuteResult; nb: Notebook; out: string; html: string }> {
  const env = await notebookEnv();
  const name = basename(path, ".ipynb");
  const out = join(OUT, `${name}.ipynb`);
  const html = join(OUT, `${name}.html`);
  for (const stale of [out, html]) rmSync(stale, { force: true });
  const result = await executeNotebook(env, { notebook: path, out, html, log: () => {}, ...options });
  assert.ok(existsSync(out), `the runner wrote no notebook (${result.status}):\n${result.output}`);
  const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
  return { result, nb, out, html };
}

function outputsOf(nb: Notebook, index: number): Output[] {
  return nb.cells[index].outputs ?? [];
}

/** All text of an output: stream text, or every textual MIME type of a display. */
function textOf(output: Output): string {
  if (output.output_type === "stream") return joined(output.text);
  return Object.values(output.data ?? {}).map(joined).join("\n");
}

Deno.test("notebook setup: a missing Python is a clear error", async () => {
  const root = Deno.makeTempDirSync();
  try {
    await assert.rejects(
      setupNotebookEnv({ tier: "runner", root, python: "qlora-no-such-python", log: () => {} }),
      /cannot run qlora-no-such-python: not found .*Python 3 with its venv module/,
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

// --- the runner, on fixtures ----------------------------------------------------------------------------

Deno.test("notebook runner: a failing cell stops the run and is named by notebook, index and error", async () => {
  const { result, nb } = await execute(join(FIXTURES, "error.ipynb"));
  assert.equal(result.ok, false, result.output);
  assert.match(result.output, /error\.ipynb: cells\[2\] failed: RangeError: fixture failure: boom/);
  assert.match(textOf(outputsOf(nb, 0)[0]), /42/);
  assert.equal(outputsOf(nb, 2)[0].output_type, "error");
  assert.deepEqual(outputsOf(nb, 3), [], "the cell after the failure did not run");
  assert.equal(nb.cells[3].execution_count, null);
});

Deno.test("notebook runner: a kernel that dies fails the run, naming the cell", async () => {
  const { result, nb } = await execute(join(FIXTURES, "kernel_exit.ipynb"));
  assert.equal(result.ok, false, result.output);
  assert.match(result.output, /kernel_exit\.ipynb: cells\[1\] stopped: the kernel died \(exit code 3\)/);
  assert.match(textOf(outputsOf(nb, 0)[0]), /still alive/);
});

Deno.test("notebook runner: a cell past its timeout fails the run", async () => {
  const { result } = await execute(join(FIXTURES, "timeout.ipynb"), { timeout: 2 });
  assert.equal(result.ok, false, result.output);
  assert.match(result.output, /timeout\.ipynb: cells\[1\] timed out after 2 s/);
  assert.ok(result.seconds < 60, `took ${result.seconds} s`);
});

Deno.test("notebook runner: display_id updates and clear_output are applied as Jupyter does", async () => {
  const { result, nb } = await execute(join(FIXTURES, "display.ipynb"));
  assert.ok(result.ok, result.output);
  const only = (index: number) => {
    const outputs = outputsOf(nb, index);
    assert.equal(outputs.length, 1, JSON.stringify(outputs));
    return textOf(outputs[0]);
  };
  assert.equal(only(0), "progress done (updated from cells[3])"); // updated in its cell, then by cells[3]
  assert.equal(only(1), "shown after clear");
  assert.equal(only(2), "shown after wait-clear");
  assert.equal(only(3), '"updated"');
});

Deno.test("notebook runner: outputs published after the kernel reports idle are kept", async () => {
  // The Deno kernel reliably sends most of cells[0]'s 300 lines, part of cells[2]'s displays and some of the
  // later cells' results after its idle status; a runner that stops listening at idle loses them.
  const { result, nb, html } = await execute(join(FIXTURES, "late_output.ipynb"));
  assert.ok(result.ok, result.output);
  const lines = Array.from({ length: 300 }, (_, i) => `line ${i}\n`).join("");
  assert.equal(outputsOf(nb, 0).map(textOf).join(""), lines);

  const timer = outputsOf(nb, 1);
  assert.ok(timer.some((o) => o.output_type === "execute_result" && textOf(o) === '"result of cells[1]"'));
  assert.ok(
    timer.some((o) => o.output_type === "stream" && /printed by a timer after the cell/.test(textOf(o))),
  );

  const displays = outputsOf(nb, 2).map(textOf);
  assert.deepEqual(displays, Array.from({ length: 40 }, (_, i) => `display ${i}`));

  const page = readFileSync(html, "utf8");
  for (let i = 3; i < nb.cells.length; i++) {
    const outputs = outputsOf(nb, i);
    assert.ok(
      outputs.some((o) => o.output_type === "stream" && textOf(o) === `stream of cells[${i}]\n`),
      `cells[${i}]`,
    );
    const value = `<b>result of cells[${i}]</b>`;
    assert.ok(
      outputs.some((o) => o.output_type === "execute_result" && textOf(o).includes(value)),
      `cells[${i}]`,
    );
    assert.ok(page.includes(value), `the HTML shows cells[${i}]'s result`);
  }
});

// --- the project's notebooks, in short mode -------------------------------------------------------------

type Check = (outputs: Output[], where: string) => void;

function mime(outputs: Output[], type: string): string[] {
  return outputs.flatMap((o) => (o.data?.[type] !== undefined ? [joined(o.data[type])] : []));
}
const hasTable: Check = (outputs, where) =>
  assert.ok(mime(outputs, "text/html").some((h) => h.includes("<table")), `${where}: an HTML <table>`);
const hasSvg: Check = (outputs, where) =>
  assert.ok(
    [...mime(outputs, "text/html"), ...mime(outputs, "image/svg+xml")].some((s) => s.includes("<svg")),
    `${where}: an <svg> plot`,
  );
const hasText: Check = (outputs, where) =>
  assert.ok(
    outputs.some((o) =>
      (o.output_type === "stream"
        ? joined(o.text)
        : [...mime([o], "text/plain"), ...mime([o], "text/html")].join(""))
        .trim().length > 0
    ),
    `${where}: non-empty text`,
  );
const hasMarkdown: Check = (outputs, where) =>
  assert.ok(
    mime(outputs, "text/markdown").some((m) => m.trim().length > 0),
    `${where}: a text/markdown output`,
  );
const mentionsAdapterDir: Check = (outputs, where) => {
  const dir = adapterDir(outputs.map(textOf).join("\n"));
  assert.ok(dir, `${where}: the output names the adapter's folder under out/notebooks/`);
  const files = readdirSync(dir);
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    assert.ok(files.includes(file), `${where}: ${dir} has ${file} (has ${files.join(", ")})`);
    const written = statSync(join(dir, file)).mtimeMs;
    assert.ok(
      written >= runStarted,
      `${where}: ${file} was written by this run, not left from an earlier one`,
    );
  }
};
/** When the notebook being checked started (ms since the epoch, file-time resolution allowed for). */
let runStarted = 0;

/** The folder under out/notebooks/ that a cell's output mentions (relative to notebooks/ or the root). */
function adapterDir(text: string): string | undefined {
  const plain = text.replace(/<[^>]*>/g, " ");
  for (const match of plain.matchAll(/[^\s"'`<>()]*out\/notebooks\/[^\s"'`<>()]*/g)) {
    const path = match[0].replace(/[.,;:]+$/, "");
    for (const base of [NOTEBOOKS, REPO_ROOT]) {
      const candidate = resolve(base, path);
      if (existsSync(join(candidate, "adapter_config.json"))) return candidate;
    }
  }
  return undefined;
}

/** The tag contract: what each notebook's tagged cells must show. */
const CONTRACT: Record<string, Record<string, Check[]>> = {
  "01-quickstart.ipynb": {
    "model-summary": [hasTable],
    "generation-before": [hasText],
    "score-before": [hasMarkdown],
    "loss-plot": [hasSvg],
    "metrics": [hasTable],
    "generation-after": [hasText],
    "adapter-saved": [mentionsAdapterDir],
  },
  "02-your-data.ipynb": {
    "dataset-preview": [hasTable],
    "loss-plot": [hasSvg],
    "metrics": [hasTable],
    "comparison": [hasTable],
  },
};

/**
 * The HTML rendering shows every plot and table: an SVG that came as text/html is inline (nbconvert
 * re-serialises its markup, so `<svg` and `<table` tags are counted; its template has none of its own), an
 * SVG that came as image/svg+xml is embedded as a base64 image.
 */
function assertHtmlShows(nb: Notebook, page: string, name: string): void {
  const count = (text: string, tag: string) => text.split(tag).length - 1;
  let svgs = 0;
  let tables = 0;
  for (const [index, cell] of nb.cells.entries()) {
    for (const output of cell.outputs ?? []) {
      const html = mime([output], "text/html")[0];
      const svg = mime([output], "image/svg+xml")[0];
      if (html !== undefined) {
        svgs += count(html, "<svg");
        tables += count(html, "<table");
      } else if (svg?.includes("<svg")) {
        const base64 = btoa(String.fromCodePoint(...new TextEncoder().encode(svg)));
        assert.ok(page.includes(base64), `${name} HTML: the SVG of cells[${index}] is embedded`);
      }
    }
  }
  assert.ok(count(page, "<svg") >= svgs, `${name} HTML: ${svgs} inline <svg> plot(s)`);
  assert.ok(count(page, "<table") >= tables, `${name} HTML: ${tables} table(s)`);
}

const present = existsSync(NOTEBOOKS) ? readdirSync(NOTEBOOKS).filter((f) => f.endsWith(".ipynb")) : [];
for (const name of [...new Set([...Object.keys(CONTRACT), ...present])].sort()) {
  Deno.test(`notebooks/${name} runs top to bottom in short mode with its key outputs`, async () => {
    const path = join(NOTEBOOKS, name);
    assert.ok(existsSync(path), `${path} is missing`);
    runStarted = Date.now() - 2000;
    const { result, nb, html } = await execute(path, {
      short: true,
      timeout: 600,
      log: (line) => console.error(line),
    });
    assert.ok(result.ok, `${name} failed:\n${result.output}`);
    for (const [tag, checks] of Object.entries(CONTRACT[name] ?? {})) {
      const cells = nb.cells.filter((c) => c.cell_type === "code" && c.metadata.tags?.includes(tag));
      assert.ok(cells.length > 0, `${name}: a code cell tagged "${tag}"`);
      const outputs = cells.flatMap((c) => c.outputs ?? []);
      for (const check of checks) check(outputs, `${name} [${tag}]`);
    }
    assertHtmlShows(nb, readFileSync(html, "utf8"), name);
  });
}
