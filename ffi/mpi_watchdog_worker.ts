/// <reference lib="deno.worker" />
/**
 * The MPI watchdog's thread (see mpi_watchdog.ts): wakes every half second, and when the main thread has
 * been inside one MPI call for longer than allowed, says so on stderr and ends the process — the main thread
 * cannot, being blocked in that call.
 */
self.onmessage = (event: MessageEvent<{ shared: SharedArrayBuffer; rank: number; seconds: number }>) => {
  const { shared, rank, seconds } = event.data;
  const state = new Int32Array(shared, 0, 3); // [generation, armed call id (0 = none), closing]
  const since = new Float64Array(shared, 16, 1); // when the armed call started (ms since epoch)
  // terminate() does not interrupt Atomics.wait, so the loop ends on the closing flag instead.
  while (Atomics.load(state, 2) === 0) {
    Atomics.wait(state, 0, Atomics.load(state, 0), 500);
    const call = Atomics.load(state, 1);
    if (call !== 0 && Date.now() - since[0] > seconds * 1000) {
      const name = CALLS[call] ?? "an MPI call";
      const text = `\nrank ${rank}: no progress for ${seconds} s in ${name} (QLORA_MPI_TIMEOUT): another ` +
        `rank died or hangs; stopping this one. The last checkpoint in the output directory is complete; ` +
        `--resume continues from it.\n`;
      Deno.stderr.writeSync(new TextEncoder().encode(text));
      Deno.kill(Deno.pid, "SIGKILL");
    }
  }
  self.close();
};

const CALLS: Record<number, string> = {
  1: "MPI_Allgather",
  2: "MPI_Alltoall",
  3: "MPI_Bcast",
  4: "MPI_Barrier",
};
