/**
 * MPI_COMM_WORLD through the MPICH ABI: the few collectives data-parallel training needs, on TypedArrays.
 * Every call is checked: errors return to us (MPI_ERRORS_RETURN) and become an MpiError with MPI's own
 * message, so a lost peer ends the run with an error instead of a crash.
 *
 * Calls block the calling thread until the collective completes on every rank (MPI semantics); they are
 * coarse (a few per optimizer step, megabytes each), so the FFI cost is nothing beside the transfer.
 * `QLORA_MPI_TIMEOUT` puts a deadline on them (mpi_watchdog.ts).
 */
import { type MpiFunctions, mpiLibrary } from "./mpi_load.ts";
import { MpiWatchdog, watchdogSeconds, WATCHED_CALLS } from "./mpi_watchdog.ts";

/** Handle and constant values of the MPICH ABI (from MPICH 5.0.2's mpi.h). */
export const MPICH_ABI = {
  COMM_WORLD: 0x44000000,
  BYTE: 0x4c00010d,
  FLOAT: 0x4c00040a,
  DOUBLE: 0x4c00080b,
  ERRORS_RETURN: 0x54000001,
  THREAD_SERIALIZED: 2,
  MAX_ERROR_STRING: 512,
  MAX_LIBRARY_VERSION_STRING: 8192,
} as const;

/** The element types that cross: bytes, f32 (gradients), f64 (losses, counters). */
export type MpiBuffer = Uint8Array | Float32Array | Float64Array;

/** A failed MPI call: the function, MPI's error code and its message. */
export class MpiError extends Error {
  override name = "MpiError";

  constructor(readonly fn: string, readonly code: number, detail: string) {
    super(`${fn} failed: ${detail} (MPI error ${code})`);
  }
}

const MAX_COUNT = 2 ** 31 - 1;

export class MpiWorld {
  static #world: MpiWorld | undefined;
  #watchdog: MpiWatchdog | undefined;

  private constructor(
    readonly rank: number,
    readonly size: number,
    readonly library: string,
    readonly fns: MpiFunctions,
  ) {}

  /** Initialises MPI once per process (later calls return the same world). */
  static init(): MpiWorld {
    if (MpiWorld.#world) return MpiWorld.#world;
    const fns = mpiLibrary();
    const flag = new Int32Array(1);
    fns.MPI_Initialized(flag);
    if (flag[0] === 0) {
      const provided = new Int32Array(1);
      const code = fns.MPI_Init_thread(null, null, MPICH_ABI.THREAD_SERIALIZED, provided);
      if (code !== 0) throw new MpiError("MPI_Init_thread", code, errorString(fns, code));
    }
    check(
      fns,
      fns.MPI_Comm_set_errhandler(MPICH_ABI.COMM_WORLD, MPICH_ABI.ERRORS_RETURN),
      "MPI_Comm_set_errhandler",
    );
    const out = new Int32Array(1);
    check(fns, fns.MPI_Comm_rank(MPICH_ABI.COMM_WORLD, out), "MPI_Comm_rank");
    const rank = out[0];
    check(fns, fns.MPI_Comm_size(MPICH_ABI.COMM_WORLD, out), "MPI_Comm_size");
    const world = new MpiWorld(rank, out[0], libraryVersion(fns), fns);
    const seconds = watchdogSeconds();
    if (seconds !== undefined) world.#watchdog = new MpiWatchdog(rank, seconds);
    MpiWorld.#world = world;
    return world;
  }

  /** `recv[r·n … (r+1)·n)` = rank r's `send` (n = send.length), on every rank. */
  allgather<T extends MpiBuffer>(send: T, recv: T): void {
    sameType(send, recv, "allgather");
    if (recv.length !== send.length * this.size) {
      throw new RangeError(
        `MpiWorld.allgather: recv has ${recv.length} elements, expected ${send.length} × ${this.size} ranks`,
      );
    }
    const [type, n] = [datatype(send), countOf(send.length, "allgather")];
    this.#check(
      this.#watched(
        "allgather",
        () => this.fns.MPI_Allgather(send, n, type, recv, n, type, MPICH_ABI.COMM_WORLD),
      ),
      "MPI_Allgather",
    );
  }

  /** Rank r's `send` is `size` equal blocks; block j goes to rank j, which stores it as block r of `recv`. */
  alltoall<T extends MpiBuffer>(send: T, recv: T): void {
    sameType(send, recv, "alltoall");
    if (send.length % this.size !== 0 || recv.length !== send.length) {
      throw new RangeError(
        `MpiWorld.alltoall: send (${send.length}) and recv (${recv.length}) must be the same length, ` +
          `a multiple of the ${this.size} ranks`,
      );
    }
    const [type, n] = [datatype(send), countOf(send.length / this.size, "alltoall")];
    this.#check(
      this.#watched(
        "alltoall",
        () => this.fns.MPI_Alltoall(send, n, type, recv, n, type, MPICH_ABI.COMM_WORLD),
      ),
      "MPI_Alltoall",
    );
  }

  /** Every rank's `buffer` becomes `root`'s. */
  bcast(buffer: MpiBuffer, root = 0): void {
    const n = countOf(buffer.length, "bcast");
    this.#check(
      this.#watched(
        "bcast",
        () => this.fns.MPI_Bcast(buffer, n, datatype(buffer), root, MPICH_ABI.COMM_WORLD),
      ),
      "MPI_Bcast",
    );
  }

  barrier(): void {
    this.#check(this.#watched("barrier", () => this.fns.MPI_Barrier(MPICH_ABI.COMM_WORLD)), "MPI_Barrier");
  }

  /** Ends every rank of the job now (a rank that cannot go on while the others wait for it). */
  abort(code: number): never {
    this.fns.MPI_Abort(MPICH_ABI.COMM_WORLD, code);
    Deno.exit(code);
  }

  /** Ends MPI here (not watched: the other ranks may still be busy, e.g. rank 0 scoring and saving). */
  finalize(): void {
    this.#watchdog?.close();
    this.#check(this.fns.MPI_Finalize(), "MPI_Finalize");
    MpiWorld.#world = undefined;
  }

  #watched(call: keyof typeof WATCHED_CALLS, fn: () => number): number {
    return this.#watchdog ? this.#watchdog.watch(WATCHED_CALLS[call], fn) : fn();
  }

  #check(code: number, fn: string): void {
    check(this.fns, code, fn);
  }
}

function check(fns: MpiFunctions, code: number, fn: string): void {
  if (code !== 0) throw new MpiError(fn, code, errorString(fns, code));
}

function errorString(fns: MpiFunctions, code: number): string {
  const buf = new Uint8Array(MPICH_ABI.MAX_ERROR_STRING);
  const len = new Int32Array(1);
  if (fns.MPI_Error_string(code, buf, len) !== 0) return "no message";
  return new TextDecoder().decode(buf.subarray(0, len[0])).trim();
}

function libraryVersion(fns: MpiFunctions): string {
  const buf = new Uint8Array(MPICH_ABI.MAX_LIBRARY_VERSION_STRING);
  const len = new Int32Array(1);
  if (fns.MPI_Get_library_version(buf, len) !== 0) return "unknown MPI";
  return new TextDecoder().decode(buf.subarray(0, len[0])).split("\n")[0].trim();
}

function datatype(buffer: MpiBuffer): number {
  if (buffer instanceof Float32Array) return MPICH_ABI.FLOAT;
  if (buffer instanceof Float64Array) return MPICH_ABI.DOUBLE;
  return MPICH_ABI.BYTE;
}

function sameType(a: MpiBuffer, b: MpiBuffer, fn: string): void {
  if (a.constructor !== b.constructor) {
    throw new TypeError(`MpiWorld.${fn}: send is a ${a.constructor.name}, recv a ${b.constructor.name}`);
  }
}

function countOf(n: number, fn: string): number {
  if (n > MAX_COUNT) throw new RangeError(`MpiWorld.${fn}: ${n} elements exceed MPI's int count`);
  return n;
}
