/**
 * The MPI installation behind `--nproc`, `deno task mpi:setup` and the distributed tests: MPICH from its pinned
 * PyPI wheel (`requirements.txt`, hashes checked by pip) in a project-local venv `.venv-mpi/`. No root, no
 * compiler: the wheel ships `libmpi.so.12` (the MPICH ABI) and the Hydra launcher `mpiexec`.
 *
 * A system MPI of the MPICH ABI (MPICH, Intel MPI, MVAPICH, Cray MPICH) is used instead when
 * `QLORA_MPI_LIB` (its libmpi) is set; `QLORA_MPIEXEC` names its launcher.
 *
 * Idempotent and quick when done: a stamp holds the hash of the requirements and the venv's Python version;
 * only a mismatch runs pip. A lock file serialises concurrent setups (parallel tests).
 */
import { createHash } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inLockedVenv, pipInstall } from "../notebook/setup.ts";
import { MPI_LIB_ENV, projectMpiLib } from "../../ffi/mpi_load.ts";

export interface MpiSetupOptions {
  /** Python that creates the venv; default `$QLORA_PYTHON` or `python3`. */
  python?: string;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  /** Repository root; default the one this file is in. */
  root?: string;
}

export interface MpiEnv {
  /** The launcher (`mpiexec`). */
  mpiexec: string;
  /** The MPI library the ranks load. */
  lib: string;
  /** Variables for the launched ranks (QLORA_MPI_LIB). */
  env: Record<string, string>;
  /** True when pip ran in this call. */
  installed: boolean;
}

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url)).replace(/[\\/]$/, "");
const REQUIREMENTS = fileURLToPath(new URL("requirements.txt", import.meta.url));
export const MPI_VENV = ".venv-mpi";

/** The MPI to launch ranks with: a system one named by the environment, else `.venv-mpi/` (installed now). */
export async function setupMpi(options: MpiSetupOptions = {}): Promise<MpiEnv> {
  const systemLib = Deno.env.get(MPI_LIB_ENV);
  if (systemLib) {
    if (!existsSync(systemLib)) throw new Error(`${MPI_LIB_ENV}=${systemLib}: no such file`);
    const mpiexec = Deno.env.get("QLORA_MPIEXEC") || "mpiexec";
    return { mpiexec, lib: systemLib, env: { [MPI_LIB_ENV]: systemLib }, installed: false };
  }
  const root = options.root ?? REPO_ROOT;
  const log = options.log ?? ((line: string) => console.error(`mpi: ${line}`));
  const basePython = options.python ?? (Deno.env.get("QLORA_PYTHON") || "python3");
  const venv = join(root, MPI_VENV);
  const python = join(venv, "bin", "python");
  let installed = false;
  await inLockedVenv(venv, python, basePython, log, async (version) => {
    const stamp = join(venv, ".installed-mpich");
    const want = `${createHash("sha256").update(readFileSync(REQUIREMENTS)).digest("hex")} python ${version}`;
    if (readText(stamp) !== want) {
      const started = performance.now();
      log(`installing MPICH (pinned wheel, ${REQUIREMENTS}) into ${venv} with pip…`);
      await pipInstall(python, REQUIREMENTS);
      writeFileSync(stamp, want);
      log(`installed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      installed = true;
    }
  });
  const lib = projectMpiLib(root);
  const mpiexec = join(venv, "bin", "mpiexec");
  for (const file of [lib, mpiexec]) {
    if (!existsSync(file)) throw new Error(`MPICH is installed in ${venv} but ${file} is missing`);
  }
  // The wheel's data files may arrive without their execute bits; Hydra starts its proxy from the same bin/.
  for (const tool of ["mpiexec", "mpiexec.hydra", "hydra_pmi_proxy"]) {
    const path = join(venv, "bin", tool);
    if (existsSync(path) && (statSync(path).mode & 0o111) === 0) chmodSync(path, 0o755);
  }
  return { mpiexec, lib, env: { [MPI_LIB_ENV]: lib }, installed };
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

if (import.meta.main) {
  try {
    const mpi = await setupMpi();
    console.log(`MPI ready: ${mpi.mpiexec} (library ${mpi.lib})`);
  } catch (error) {
    console.error(`mpi:setup: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
