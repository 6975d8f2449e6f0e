/**
 * Finds and opens an MPI library of the MPICH ABI. Only multi-process runs load it: the default build and a
 * single-process run never touch MPI.
 *
 * Order: `QLORA_MPI_LIB` (a system MPICH / Intel MPI / MVAPICH / Cray MPICH libmpi), then the project's
 * `.venv-mpi/lib/libmpi.so.12` (MPICH's PyPI wheel, installed by `deno task mpi:setup` or `--nproc`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mpiSymbols } from "./mpi_symbols.ts";

export const MPI_LIB_ENV = "QLORA_MPI_LIB";

export type MpiFunctions = Deno.DynamicLibrary<typeof mpiSymbols>["symbols"];

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/[\\/]$/, "");

/** Where the project's own MPICH keeps its library. */
export function projectMpiLib(root = REPO_ROOT): string {
  return join(root, ".venv-mpi", "lib", "libmpi.so.12");
}

let opened: MpiFunctions | undefined;

/** The MPI functions, the library opened on first use; one error lists every path tried. */
export function mpiLibrary(): MpiFunctions {
  if (opened) return opened;
  const override = Deno.env.get(MPI_LIB_ENV);
  const candidates = override ? [[override, MPI_LIB_ENV]] : [[projectMpiLib(), "deno task mpi:setup"]];
  const tried: string[] = [];
  for (const [path, origin] of candidates) {
    if (!existsSync(path)) {
      tried.push(`${path} (${origin}): not found`);
      continue;
    }
    try {
      opened = Deno.dlopen(path, mpiSymbols).symbols;
      return opened;
    } catch (error) {
      tried.push(`${path} (${origin}): ${(error as Error).message}`);
    }
  }
  throw new Error(
    `cannot load an MPI library (MPICH ABI); tried:\n  ${tried.join("\n  ")}\n` +
      `Run \`deno task mpi:setup\` (MPICH from PyPI into .venv-mpi/) or set ${MPI_LIB_ENV} to a system libmpi.`,
  );
}
