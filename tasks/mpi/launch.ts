/**
 * `--nproc N`: starts N ranks of a task under the project's MPI (`mpiexec -n N deno run -A <script> …`,
 * MPICH installed into .venv-mpi/ on first use) and waits for them. Extra launcher options (a hostfile for
 * several machines) come from `QLORA_MPIEXEC_ARGS`.
 */
import { startedByMpiLauncher } from "../../lib/train/distributed.ts";
import { setupMpi } from "./setup.ts";

/** Runs the ranks; returns the launcher's exit code (non-zero when any rank failed). */
export async function launchRanks(n: number, script: string, args: string[]): Promise<number> {
  const mpi = await setupMpi();
  const extra = (Deno.env.get("QLORA_MPIEXEC_ARGS") ?? "").split(/\s+/).filter(Boolean);
  const argv = ["-n", String(n), ...extra, Deno.execPath(), "run", "-A", script, ...args];
  console.error(`launching ${n} processes: ${mpi.mpiexec} ${argv.join(" ")}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(mpi.mpiexec, {
      args: argv,
      env: mpi.env,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    throw new Error(`cannot start ${mpi.mpiexec}: ${(error as Error).message}`);
  }
  // Ctrl-C reaches mpiexec too (same process group), which passes it to the ranks; wait for them.
  Deno.addSignalListener("SIGINT", () => {});
  const status = await child.status;
  return status.signal ? 128 + signalNumber(status.signal) : status.code;
}

function signalNumber(signal: Deno.Signal): number {
  return ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 1;
}

/**
 * `--nproc <value>` of a task: `script` again under mpiexec with the task's arguments minus that flag.
 * Returns the exit code; a failed rank is reported with where the run's checkpoints are.
 */
export async function runWithNproc(value: string, script: string, outputDir: string): Promise<number> {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--nproc: must be a whole number ≥ 1 (got ${JSON.stringify(value)})`);
    return 2;
  }
  if (startedByMpiLauncher()) {
    console.error("--nproc inside an MPI job: give either mpiexec -n or --nproc, not both");
    return 2;
  }
  const rest: string[] = [];
  for (let i = 0; i < Deno.args.length; i++) {
    if (Deno.args[i] === "--nproc") i++;
    else if (!Deno.args[i].startsWith("--nproc=")) rest.push(Deno.args[i]);
  }
  let code: number;
  try {
    code = await launchRanks(n, script, rest);
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  if (code !== 0 && code !== 130) {
    console.error(
      `the ${n}-process run failed (launcher exit code ${code}); the checkpoints in ${outputDir} are complete ` +
        `ones, and --resume continues from the latest (with any number of processes)`,
    );
  }
  return code;
}
