/**
 * Runs checks once per CPU path this machine has, each in a child process started with
 * `QLORA_KERNEL=<path>`. The kernel choice is process-wide, and `deno test --parallel` runs test files side
 * by side in one process, so a test that switched it would change the path of whatever else was running.
 *
 * A test file declares its checks with `testOnEveryPath(import.meta, { name: () => … })`. Under `deno test`
 * that registers one test per check; the test re-runs the same file with `deno run` once per path, where
 * `QLORA_PATH_CHECK=<name>` makes it run that one check and print what ran as its last line.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { availableKernels, kernelName, type KernelPath, kernelsUsed } from "../../ffi/runtime.ts";

const CHECK_ENV = "QLORA_PATH_CHECK";
const ALL_PATHS: KernelPath[] = ["scalar", "avx2", "avx512"];

/** What a child reports: the path it ran on and the routes each kernel family ran. */
interface ChildReport {
  kernel: string;
  used: Record<string, string[]>;
}

export function testOnEveryPath(meta: ImportMeta, checks: Record<string, () => void>): void {
  const wanted = Deno.env.get(CHECK_ENV);
  if (wanted !== undefined) {
    if (meta.main) runInChild(checks, wanted);
    return;
  }
  const file = meta.filename;
  if (file === undefined) throw new Error("testOnEveryPath: the test file must be a local file");
  for (const [name, _] of Object.entries(checks)) {
    Deno.test(`${name} (each CPU path in its own process)`, async () => {
      const ran: string[] = [];
      const used = new Map<string, Set<string>>();
      for (const path of availableKernels()) {
        const report = await runChild(file, name, path);
        assert.equal(report.kernel, path, `${name}: the child ran on ${report.kernel}, not ${path}`);
        ran.push(path);
        for (const [family, routes] of Object.entries(report.used)) {
          const seen = used.get(family) ?? new Set<string>();
          routes.forEach((r) => seen.add(r));
          used.set(family, seen);
        }
      }
      console.log(pathLine(basename(file), ran, used));
    });
  }
}

/** `kernel paths exercised (file): scalar, avx2 (this CPU lacks: avx512); families: …`, from what ran. */
export function pathLine(what: string, ran: string[], used: Map<string, Set<string>>): string {
  const lacks = ALL_PATHS.filter((p) => !availableKernels().includes(p));
  const families = [...used].filter(([, r]) => r.size > 0).map(([f, r]) => `${f} ${[...r].join(",")}`);
  return `kernel paths exercised (${what}): ${ran.join(", ")} (this CPU lacks: ${
    lacks.length ? lacks.join(", ") : "none"
  })${families.length ? `; families: ${families.join(" · ")}` : ""}`;
}

async function runChild(file: string, check: string, path: string): Promise<ChildReport> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", file],
    env: { QLORA_KERNEL: path, [CHECK_ENV]: check },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const [stdout, stderr] = [text(output.stdout), text(output.stderr)];
  assert.ok(output.success, `${check} on ${path} failed (exit ${output.code}):\n${stderr}\n${stdout}`);
  const last = stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last) as ChildReport;
  } catch {
    throw new Error(`${check} on ${path}: no report line from the child; its output was:\n${stdout}`);
  }
}

function runInChild(checks: Record<string, () => void>, wanted: string): void {
  const check = checks[wanted];
  if (check === undefined) throw new Error(`${CHECK_ENV}=${wanted}: no such check in this file`);
  check();
  const report: ChildReport = { kernel: kernelName(), used: kernelsUsed() };
  console.log(JSON.stringify(report));
}
