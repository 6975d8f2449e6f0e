/**
 * QLORA_MPI_TIMEOUT: a rank stuck in a collective because another rank hangs (without dying, so MPI's launcher
 * has nothing to notice) ends itself with a message once the deadline passes; without the deadline the job
 * would wait forever.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { setupMpi } from "../../tasks/mpi/setup.ts";

const CHILD = fileURLToPath(new URL("./_mpi_hang_child.ts", import.meta.url));

async function runJob(env: Record<string, string>, giveUpMs: number, args: string[] = []) {
  const mpi = await setupMpi();
  const start = performance.now();
  const child = new Deno.Command(mpi.mpiexec, {
    args: ["-n", "2", Deno.execPath(), "run", "-A", CHILD, ...args],
    env: { ...mpi.env, ...env },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGINT"); // Hydra passes it on and stops the ranks
  }, giveUpMs);
  const status = await child.status;
  clearTimeout(timer);
  await reading;
  return { status, stderr, ms: performance.now() - start, timedOut };
}

Deno.test("mpi watchdog: a rank waiting on a hung one stops after QLORA_MPI_TIMEOUT, with a message", async () => {
  const r = await runJob({ QLORA_MPI_TIMEOUT: "2" }, 60_000);
  assert.equal(r.timedOut, false, `the job did not end by itself: ${r.stderr}`);
  assert.notEqual(r.status.code, 0);
  assert.match(r.stderr, /rank 0: no progress for 2 s in MPI_Barrier \(QLORA_MPI_TIMEOUT\)/);
  assert.doesNotMatch(r.stderr, /left the barrier/);
});

Deno.test("mpi watchdog: without a deadline the same job is still waiting (so the deadline is what ended it)", async () => {
  const r = await runJob({ QLORA_MPI_TIMEOUT: "0" }, 5_000);
  assert.equal(r.timedOut, true, `the job ended by itself: ${r.stderr}`);
  assert.match(r.stderr, /rank 0: entering the barrier/);
  assert.doesNotMatch(r.stderr, /no progress/);
});

Deno.test("mpi watchdog: a healthy job with a deadline ends normally (the watchdog thread lets the process exit)", async () => {
  const r = await runJob({ QLORA_MPI_TIMEOUT: "60" }, 30_000, ["healthy"]);
  assert.equal(r.timedOut, false, `the job did not end: ${r.stderr}`);
  assert.equal(r.status.code, 0, r.stderr);
});
