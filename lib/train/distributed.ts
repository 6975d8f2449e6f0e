/**
 * Data-parallel training over MPI: every process (rank) holds the whole model and the same data, takes the
 * same global batches from its own stream, and runs only its share of each step's micro-batches — micro-batch
 * i goes to rank i mod N. Only LoRA gradients (and per-micro-batch loss sums and token counts) cross the
 * network; every rank then applies the same AdamW update to the same gradient, so the replicas never drift.
 *
 * The sum is the one step_gradients.ts defines for a single process — ((g0 + g1) + g2) + … in micro-batch
 * order — so N processes give the same bits as one: a reduce-scatter whose order we fix, then an all-gather.
 * The flat gradient is cut into N chunks; an all-to-all sends chunk j of every local micro-batch gradient to
 * rank j, which adds the M copies of its chunk in micro-batch order; an all-gather gives every rank every
 * summed chunk. Per rank that is (k + 1)·(N − 1)/N gradient sizes on the wire for k = M/N micro-batches per
 * rank — with k = 1 exactly what a ring all-reduce moves, 2·(N − 1)/N (ARCHITECTURE.md has the model).
 *
 * The global batch (batchSize × gradAccumulation rows) and the data order do not depend on N, so a run can
 * be resumed with another number of processes.
 */
import { createHash } from "node:crypto";
import { readlinkSync } from "node:fs";
import { addScaled } from "../../ffi/ops.ts";
import type { MpiBuffer, MpiWorld } from "../../ffi/mpi.ts";
import type { Example } from "../data/dataset.ts";
import type { LoadedCheckpoint } from "./checkpoint.ts";
import type { Parameter } from "./optimizer.ts";
import {
  microBatchRngState,
  type SharedStateTarget,
  type StepGradients,
  type StepInput,
  type StepSums,
} from "./step_gradients.ts";

/** The collectives the ranks use (ffi/mpi.ts's MpiWorld provides them). */
export interface Collectives {
  readonly rank: number;
  readonly size: number;
  allgather<T extends MpiBuffer>(send: T, recv: T): void;
  alltoall<T extends MpiBuffer>(send: T, recv: T): void;
  bcast(buffer: MpiBuffer, root?: number): void;
}

/** The ranks cannot train together (different options or data, a batch that does not split); every rank
 * throws it alike, rank 0 reports it. */
export class DistributedRunError extends Error {
  override name = "DistributedRunError";
}

/** `gradAccumulation` micro-batches per step must split evenly over the ranks. */
export function checkMicroBatches(gradAccumulation: number, ranks: number): void {
  if (gradAccumulation % ranks !== 0) {
    throw new DistributedRunError(
      `--grad-accumulation ${gradAccumulation} is not a multiple of the ${ranks} processes: each step's ` +
        `${gradAccumulation} micro-batches (the global batch) are shared out whole, the same number per ` +
        `process; use --grad-accumulation ${Math.max(ranks, Math.round(gradAccumulation / ranks) * ranks)}`,
    );
  }
}

/** Fingerprint of the examples (token ids and loss masks, in order): every rank must train on the same data. */
export function examplesDigest(examples: readonly Example[]): string {
  const hash = createHash("sha256");
  for (const ex of examples) {
    hash.update(Uint32Array.from(ex.ids));
    hash.update(ex.mask);
    hash.update("|");
  }
  return hash.digest("hex").slice(0, 16);
}

/**
 * Compares every rank's `identity` (options, data fingerprints…; plain JSON values) with rank 0's and throws
 * a DistributedRunError naming each rank and field that differs — on every rank, so all of them stop.
 */
export function checkSameRun(comm: Collectives, identity: Record<string, unknown>): void {
  const mine = new TextEncoder().encode(JSON.stringify(identity));
  const lengths = new Float64Array(comm.size);
  comm.allgather(Float64Array.of(mine.length), lengths);
  const width = Math.max(...lengths);
  const send = new Uint8Array(width);
  send.set(mine);
  const all = new Uint8Array(width * comm.size);
  comm.allgather(send, all);
  const decode = (r: number) =>
    JSON.parse(new TextDecoder().decode(all.subarray(r * width, r * width + lengths[r]))) as Record<
      string,
      unknown
    >;
  const root = decode(0);
  const problems: string[] = [];
  for (let r = 1; r < comm.size; r++) {
    const other = decode(r);
    for (const key of new Set([...Object.keys(root), ...Object.keys(other)])) {
      const [a, b] = [JSON.stringify(root[key]), JSON.stringify(other[key])];
      if (a !== b) problems.push(`rank ${r} has ${key} ${b}, rank 0 ${a}`);
    }
  }
  if (problems.length > 0) {
    throw new DistributedRunError(
      `the ${comm.size} processes were not started alike, so they cannot train one model: ` +
        `${problems.join("; ")}. Start every rank with the same options and data.`,
    );
  }
}

/** Per local micro-batch: lossSum, lossTokens; then the stop flag, then (has-state, 4 words) of the RNG. */
const META_PER_MICRO = 2;
const META_TAIL = 6;

export class DistributedGradients implements StepGradients {
  readonly rank: number;
  readonly size: number;
  #layout?: { total: number; chunk: number; perRank: number };
  #flat = new Float32Array(0);
  #send = new Float32Array(0);
  #recv = new Float32Array(0);
  #own = new Float32Array(0);
  #full = new Float32Array(0);

  constructor(readonly comm: Collectives) {
    this.rank = comm.rank;
    this.size = comm.size;
  }

  accumulate({ model, params, stream, microBatches, stopRequested }: StepInput): StepSums {
    const { rank, size: n } = this;
    checkMicroBatches(microBatches, n);
    const k = microBatches / n;
    const { chunk } = this.#buffers(params, k);
    const start = model.rng?.state;
    const metaLength = k * META_PER_MICRO + META_TAIL;
    const meta = new Float64Array(metaLength);
    let tokens = 0;
    let epoch = 0;
    for (let i = 0; i < microBatches; i++) {
      // Every rank walks the whole global batch, so the streams stay in step; it computes only its share.
      const batch = stream.next();
      tokens += batch.tokens;
      epoch = batch.epoch;
      if (i % n !== rank) continue;
      const m = (i - rank) / n;
      model.zeroGrad();
      if (model.rng && start) model.rng.state = microBatchRngState(start, i);
      const r = model.lossAndGrad(batch);
      meta[m * META_PER_MICRO] = r.lossSum;
      meta[m * META_PER_MICRO + 1] = r.lossTokens;
      flatten(params, this.#flat);
      for (let j = 0; j < n; j++) {
        this.#send.set(this.#flat.subarray(j * chunk, (j + 1) * chunk), (j * k + m) * chunk);
      }
      if (i === microBatches - 1 && model.rng) {
        meta[k * META_PER_MICRO + 1] = 1;
        meta.set(model.rng.state, k * META_PER_MICRO + 2);
      }
    }
    meta[k * META_PER_MICRO] = stopRequested ? 1 : 0;

    // Reduce-scatter in a fixed order: this rank sums its chunk of every micro-batch's gradient, 0, 1, 2, …
    this.comm.alltoall(this.#send, this.#recv);
    for (let i = 0; i < microBatches; i++) {
      const [s, m] = [i % n, Math.floor(i / n)];
      const block = this.#recv.subarray((s * k + m) * chunk, (s * k + m + 1) * chunk);
      if (i === 0) this.#own.set(block);
      else addScaled(this.#own, 1, block);
    }
    this.comm.allgather(this.#own, this.#full);
    unflatten(this.#full, params);

    const all = new Float64Array(metaLength * n);
    this.comm.allgather(meta, all);
    const sums: StepSums = { lossSum: 0, lossTokens: 0, tokens, epoch, stop: false };
    for (let i = 0; i < microBatches; i++) {
      const at = (i % n) * metaLength + Math.floor(i / n) * META_PER_MICRO;
      sums.lossSum += all[at];
      sums.lossTokens += all[at + 1];
    }
    for (let s = 0; s < n; s++) sums.stop ||= all[s * metaLength + k * META_PER_MICRO] === 1;
    const last = ((microBatches - 1) % n) * metaLength + k * META_PER_MICRO + 1;
    if (model.rng && all[last] === 1) {
      model.rng.state = [...all.subarray(last + 1, last + 5)] as [number, number, number, number];
    }
    return sums;
  }

  /** Rank 0's parameters, AdamW moments and trainer state (step, data position, RNG…) go to every rank. */
  shareState(target: SharedStateTarget): void {
    const { comm } = this;
    const root = comm.rank === 0;
    const total = target.params.reduce((s, p) => s + p.data.length, 0);
    const state = root ? target.exportState() : undefined;
    const header = root
      ? new TextEncoder().encode(JSON.stringify({
        dir: state!.dir,
        trainer: state!.trainer,
        optimizerStep: state!.optimizer.step,
        names: target.params.map((p) => p.name),
        total,
      }))
      : new Uint8Array(0);
    const length = Float64Array.of(header.length);
    comm.bcast(length);
    const bytes = root ? header : new Uint8Array(length[0]);
    comm.bcast(bytes);
    const h = JSON.parse(new TextDecoder().decode(bytes)) as {
      dir: string;
      trainer: LoadedCheckpoint["trainer"];
      optimizerStep: number;
      names: string[];
      total: number;
    };
    if (h.total !== total) {
      throw new DistributedRunError(
        `rank ${comm.rank} has ${total} trainable values, rank 0 ${h.total}; check --lora-rank and --lora-targets`,
      );
    }
    const flat = new Float32Array(total);
    const moments = root ? state!.optimizer.moments : [];
    const send = (pick: (i: number) => Float32Array) => {
      if (root) {
        let at = 0;
        target.params.forEach((_, i) => {
          flat.set(pick(i), at);
          at += pick(i).length;
        });
      }
      comm.bcast(flat);
      return split(flat, target.params);
    };
    const values = send((i) => target.params[i].data);
    const m = send((i) => moments[i].m);
    const v = send((i) => moments[i].v);
    if (root) return;
    target.importState({
      dir: h.dir,
      step: h.trainer.step,
      trainer: h.trainer,
      parameters: new Map(h.names.map((name, i) => [name, values[i]])),
      optimizer: { step: h.optimizerStep, moments: h.names.map((name, i) => ({ name, m: m[i], v: v[i] })) },
    });
  }

  /** Scratch sized for `params` and k micro-batches per rank: the flat vector is N chunks, the last padded. */
  #buffers(params: readonly Parameter[], k: number): { chunk: number } {
    const total = params.reduce((s, p) => s + p.grad.length, 0);
    const l = this.#layout;
    if (l && l.total === total && l.perRank === k) return l;
    const chunk = Math.ceil(total / this.size);
    this.#layout = { total, chunk, perRank: k };
    this.#flat = new Float32Array(chunk * this.size);
    this.#send = new Float32Array(chunk * this.size * k);
    this.#recv = new Float32Array(chunk * this.size * k);
    this.#own = new Float32Array(chunk);
    this.#full = new Float32Array(chunk * this.size);
    return this.#layout;
  }
}

/** The gradients one after another into `flat` (whose padding stays zero). */
function flatten(params: readonly Parameter[], flat: Float32Array): void {
  let at = 0;
  for (const p of params) {
    flat.set(p.grad, at);
    at += p.grad.length;
  }
}

function unflatten(flat: Float32Array, params: readonly Parameter[]): void {
  let at = 0;
  for (const p of params) {
    p.grad.set(flat.subarray(at, at + p.grad.length));
    at += p.grad.length;
  }
}

/** Copies of consecutive pieces of `flat`, one per parameter. */
function split(flat: Float32Array, params: readonly Parameter[]): Float32Array[] {
  let at = 0;
  return params.map((p) => flat.slice(at, at += p.data.length));
}

/** Variables an MPI launcher sets for its ranks: Hydra's PMI (file descriptor or port), PMIx (Slurm, PRRTE). */
const LAUNCHER_VARIABLES = ["PMI_RANK", "PMI_SIZE", "PMI_FD", "PMI_PORT", "PMI_ID", "PMIX_RANK"];

/** True in a process an MPI launcher started. */
export function startedByMpiLauncher(): boolean {
  return LAUNCHER_VARIABLES.some((v) => Deno.env.get(v) !== undefined);
}

/**
 * This process's rank in an MPI job: when an MPI launcher started it (`mpiexec`, `srun`), MPI is initialised
 * and the world returned if it has more than one rank; otherwise undefined, and MPI is never loaded.
 */
export async function joinMpiJob(): Promise<MpiWorld | undefined> {
  if (!startedByMpiLauncher()) return undefined;
  const fd = Deno.env.get("PMI_FD");
  if (fd !== undefined && Deno.build.os === "linux" && !isSocket(`/proc/self/fd/${fd}`)) {
    // A wrapper between mpiexec and us (npx: node passes only stdio on) dropped Hydra's socket, and the number
    // now names one of deno's own files: MPICH would talk to that file, then abort on an assertion.
    throw new Error(
      `the MPI launcher's connection (PMI_FD=${fd}) did not reach this process: something between mpiexec ` +
        `and deno closed it (npx does); start the ranks with \`mpiexec -pmi-port …\`, or use --nproc`,
    );
  }
  const { MpiWorld } = await import("../../ffi/mpi.ts");
  const world = MpiWorld.init();
  if (world.size > 1) return world;
  world.finalize();
  return undefined;
}

function isSocket(fdPath: string): boolean {
  try {
    return readlinkSync(fdPath).startsWith("socket:");
  } catch {
    return false;
  }
}

/** Ranks of this job on this machine (Hydra says so), for a default thread count that does not oversubscribe. */
export function ranksOnThisHost(): number {
  const n = Number(Deno.env.get("MPI_LOCALNRANKS"));
  return Number.isInteger(n) && n > 0 ? n : 1;
}
