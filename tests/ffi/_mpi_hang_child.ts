/**
 * One rank of mpi_watchdog_test.ts: rank 0 waits in a barrier that rank 1 never enters (rank 1 joins MPI, then
 * sleeps: a hung rank, not a dead one, so the launcher has nothing to notice). With `healthy`, both enter the
 * barrier and finalize (the watchdog must then let the process end).
 */
import { MpiWorld } from "../../ffi/mpi.ts";

const world = MpiWorld.init();
if (Deno.args[0] === "healthy") {
  world.barrier();
  world.finalize();
} else if (world.rank === 0) {
  console.error("rank 0: entering the barrier");
  world.barrier();
  console.error("rank 0: left the barrier (unexpected)");
} else {
  await new Promise((resolve) => setTimeout(resolve, 600_000));
}
