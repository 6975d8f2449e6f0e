/**
 * A deadline on blocking MPI calls (`QLORA_MPI_TIMEOUT` seconds; off by default): for launchers that do not
 * stop the other ranks when one dies, or a rank that hangs without dying. A worker thread watches a shared
 * word the main thread sets around each collective (two atomic stores per call) and ends the process when a
 * call outlives the deadline. Choose it longer than the longest wait of a healthy run: the other ranks wait
 * in a collective while rank 0 evaluates and saves.
 */

/** Which call is armed, as the worker names it. */
export const WATCHED_CALLS = { allgather: 1, alltoall: 2, bcast: 3, barrier: 4 } as const;

export class MpiWatchdog {
  readonly #state: Int32Array;
  readonly #since: Float64Array;
  readonly #worker: Worker;

  constructor(rank: number, readonly seconds: number) {
    const shared = new SharedArrayBuffer(24);
    this.#state = new Int32Array(shared, 0, 3);
    this.#since = new Float64Array(shared, 16, 1);
    this.#worker = new Worker(new URL("./mpi_watchdog_worker.ts", import.meta.url), { type: "module" });
    this.#worker.postMessage({ shared, rank, seconds });
  }

  /** Runs `call` (a blocking MPI call) under the deadline. */
  watch<T>(id: number, call: () => T): T {
    this.#since[0] = Date.now();
    Atomics.store(this.#state, 1, id);
    try {
      return call();
    } finally {
      Atomics.store(this.#state, 1, 0);
      Atomics.add(this.#state, 0, 1);
    }
  }

  close(): void {
    Atomics.store(this.#state, 2, 1);
    Atomics.notify(this.#state, 0);
    this.#worker.terminate();
  }
}

/** The deadline from `QLORA_MPI_TIMEOUT` (seconds), or undefined when unset or 0. */
export function watchdogSeconds(): number | undefined {
  const raw = Deno.env.get("QLORA_MPI_TIMEOUT");
  if (raw === undefined || raw.trim() === "") return undefined;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new RangeError(`QLORA_MPI_TIMEOUT=${raw}: must be a number of seconds ≥ 0 (0 = no deadline)`);
  }
  return seconds > 0 ? seconds : undefined;
}
