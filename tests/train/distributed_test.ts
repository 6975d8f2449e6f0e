/**
 * Data-parallel training with 2 MPI ranks on this machine (MPICH from its PyPI wheel, installed into
 * .venv-mpi/ by the project's own setup on first use), on the real `deno task finetune` (SmolLM2-135M-Instruct,
 * NF4, LoRA on every linear, dropout on):
 *
 * - `--nproc 2` logs the same losses and writes the same adapter bytes as one process with the same global
 *   batch (2 micro-batches per step), and rank 0 alone writes;
 * - SIGKILL of rank 1 mid-run ends the job within seconds with a clear error, leaves only valid checkpoints,
 *   and `--resume` with one process finishes the run as if it had never stopped;
 * - ranks started with different options are refused before training, naming the option.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkpointDirs, checkpointProblem, findLatestCheckpoint } from "../../lib/train/checkpoint.ts";
import { readMetrics } from "../../lib/train/metrics_log.ts";
import { setupMpi } from "../../tasks/mpi/setup.ts";

const FINETUNE = fileURLToPath(new URL("../../tasks/finetune.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const STEPS = 6;
/** A killed rank must end the job within this (MPI's launcher notices and stops the others). */
const EXIT_AFTER_KILL_MS = 10_000;

function options(outputDir: string, extra: string[] = []): string[] {
  return [
    "--steps",
    String(STEPS),
    "--batch-size",
    "2",
    "--grad-accumulation",
    "2",
    "--max-length",
    "64",
    "--save-every",
    "1",
    "--eval-every",
    "0",
    "--eval-batches",
    "1",
    "--metric",
    "none",
    "--seed",
    "7",
    "--output-dir",
    outputDir,
    ...extra,
  ];
}

const denoRun = ["run", "-A", "--config", CONFIG, FINETUNE];

interface Finished {
  code: number;
  stdout: string;
  stderr: string;
  /** When the process ended, ms since its start. */
  endMs: number;
}

/** Runs a command to its end, keeping its output. */
async function runCommand(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Finished> {
  const start = performance.now();
  const child = new Deno.Command(command, {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let text = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
    return text;
  };
  const [stdout, stderr] = await Promise.all([read(child.stdout), read(child.stderr)]);
  const status = await child.status;
  return { code: status.code, stdout, stderr, endMs: performance.now() - start };
}

const trainEvents = (dir: string) =>
  readMetrics(join(dir, "metrics.jsonl")).filter((e) => e.event === "train").map((e) => ({
    step: e.step,
    loss: e.loss,
    gradNorm: e.gradNorm,
    lr: e.lr,
    tokens: e.tokens,
  }));

function assertSameAdapter(dir: string, reference: string): void {
  for (const file of ["adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter.gguf"]) {
    assert.ok(
      readFileSync(join(dir, file)).equals(readFileSync(join(reference, file))),
      `${file} differs from the single-process run's`,
    );
  }
}

/** Pids of processes whose environment holds `marker` and PMI_RANK=`rank` (a rank of our job). */
function ranksWith(marker: string, rank: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, "latin1");
    } catch {
      continue;
    }
    const vars = environ.split("\0");
    if (vars.includes(marker) && vars.includes(`PMI_RANK=${rank}`)) out.push(Number(entry));
  }
  return out;
}

const dirs: string[] = [];
const tempDir = (prefix: string) => {
  const dir = Deno.makeTempDirSync({ prefix });
  dirs.push(dir);
  return dir;
};
globalThis.addEventListener("unload", () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

let single: Promise<string> | undefined;
/** The single-process reference run (computed once, shared by the tests). */
function singleProcessRun(): Promise<string> {
  single ??= (async () => {
    const dir = tempDir("distributed_single_");
    const r = await runCommand(Deno.execPath(), [...denoRun, ...options(dir)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(trainEvents(dir).length, STEPS);
    return dir;
  })();
  return single;
}

Deno.test("distributed: 2 ranks train the same losses and adapter bytes as 1 process with the same global batch", async () => {
  await setupMpi();
  const reference = await singleProcessRun();
  const dir = tempDir("distributed_two_");
  const r = await runCommand(Deno.execPath(), [...denoRun, "--nproc", "2", ...options(dir)]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /2 processes \(MPI: MPICH Version:\s+5\.0\.2/);
  // Bit for bit: the JSON numbers are the f64 values themselves.
  assert.deepEqual(trainEvents(dir), trainEvents(reference));
  assertSameAdapter(dir, reference);
  // Rank 0 alone logged (one line per step, one evaluation before and one after) and saved.
  const events = readMetrics(join(dir, "metrics.jsonl"));
  assert.equal(events.filter((e) => e.event === "eval").length, 2);
  assert.equal(events.filter((e) => e.event === "save").length, STEPS);
  assert.equal((r.stdout.match(/adapter saved/g) ?? []).length, 1, r.stdout);
});

Deno.test("distributed: a killed rank ends the job within seconds; checkpoints stay valid; --resume with 1 process finishes it exactly", async () => {
  await setupMpi();
  const reference = await singleProcessRun();
  const dir = tempDir("distributed_killed_");
  const marker = `QLORA_TEST_JOB=${crypto.randomUUID()}`;
  const job = runCommand(Deno.execPath(), [...denoRun, "--nproc", "2", ...options(dir)], {
    QLORA_TEST_JOB: marker.split("=")[1],
  });
  // Once step 2's checkpoint is written, SIGKILL rank 1.
  let killedAt = NaN;
  let killedStep = 0;
  const start = performance.now();
  while (Number.isNaN(killedAt) && performance.now() - start < 120_000) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    const latest = findLatestCheckpoint(dir);
    if (!latest || latest.step < 2) continue;
    const pids = ranksWith(marker, 1);
    assert.equal(pids.length, 1, "one process is rank 1 of the job");
    Deno.kill(pids[0], "SIGKILL");
    killedAt = performance.now() - start;
    killedStep = latest.step;
  }
  const r = await job;
  assert.ok(killedAt > 0, `rank 1 was never killed: ${r.stderr}`);
  assert.ok(killedStep < STEPS, "the kill landed before the run ended");
  assert.notEqual(r.code, 0, "the job fails");
  const exitMs = r.endMs - killedAt;
  assert.ok(exitMs < EXIT_AFTER_KILL_MS, `the job took ${exitMs.toFixed(0)} ms to end after the kill`);
  assert.match(r.stderr, /the 2-process run failed .*--resume continues/);
  assert.deepEqual(ranksWith(marker, 0), [], "rank 0 is gone too");
  for (const c of checkpointDirs(dir)) assert.equal(checkpointProblem(c.dir), undefined, c.dir);

  // Resume with one process (another N): the same trajectory as the uninterrupted reference.
  const resumed = await runCommand(Deno.execPath(), [...denoRun, ...options(dir, ["--resume"])]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*checkpoint-\d+/);
  assert.deepEqual(trainEvents(dir), trainEvents(reference));
  assertSameAdapter(dir, reference);
  if (Deno.env.get("QLORA_TEST_VERBOSE")) {
    console.log(`killed after step ${killedStep}; the job ended ${exitMs.toFixed(0)} ms later`);
  }
});

Deno.test("distributed: ranks started with different options, or a batch that does not split, are refused", async () => {
  const mpi = await setupMpi();
  const dir = tempDir("distributed_mismatch_");
  // MPMD launch: rank 0 and rank 1 get different learning rates.
  const rank = (lr: string) => ["-n", "1", Deno.execPath(), ...denoRun, ...options(dir, ["--lr", lr])];
  const r = await runCommand(mpi.mpiexec, [...rank("1e-4"), ":", ...rank("3e-4")], mpi.env);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /not started alike.*rank 1 has lr 0\.0003, rank 0 0\.0001/);
  assert.equal(findLatestCheckpoint(dir), undefined, "nothing was trained");

  const odd = await runCommand(Deno.execPath(), [
    ...denoRun,
    "--nproc",
    "2",
    ...options(tempDir("distributed_odd_"), ["--grad-accumulation", "3"]),
  ]);
  assert.notEqual(odd.code, 0);
  assert.match(odd.stderr, /--grad-accumulation 3 is not a multiple of the 2 processes/);
});
