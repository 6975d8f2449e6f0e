/**
 * Child process of the bench's `mpi` section: data-parallel QLoRA steps on the default model
 * (SmolLM2-135M-Instruct, NF4, LoRA r=16 on every block linear, AdamW), a global batch of 2 micro-batches of
 * 1 × 256 tokens per step. Alone (`deno run … <threads>`) it runs both micro-batches; under `mpiexec -n 2`
 * each rank runs one and the gradients are exchanged (lib/train/distributed.ts). Rank 0 prints one JSON
 * line: tokens/s of the median step, the milliseconds of it spent in MPI, the bytes each rank sent.
 */
import { setThreads } from "../../ffi/runtime.ts";
import type { MpiBuffer } from "../../ffi/mpi.ts";
import { BatchStream } from "../../lib/data/batch.ts";
import { defaultModelPath } from "../../lib/io/default_model.ts";
import { loadModel } from "../../lib/pretrained/load_model.ts";
import { type Collectives, DistributedGradients, joinMpiJob } from "../../lib/train/distributed.ts";
import { LoraModel } from "../../lib/lora/model.ts";
import { AdamW } from "../../lib/train/optimizer.ts";
import { LocalGradients, type StepGradients } from "../../lib/train/step_gradients.ts";
import { trainable } from "../../lib/train/trainable.ts";
import { median, peakRss } from "./measure.ts";

const T = 256;
const MICRO_BATCHES = 2;
const STEPS = 5;

setThreads(Number(Deno.args[0] ?? "0"));
const world = await joinMpiJob();
const { model } = await loadModel(await defaultModelPath(), { progress: false });
const vocab = model.config.vocabSize;
const examples = Array.from({ length: 16 }, (_, e) => {
  const ids = Array.from({ length: T + 1 }, (_, i) => (i * 7919 + e * 104729) % vocab);
  return {
    ids,
    mask: new Uint8Array(T + 1).fill(1),
    record: { file: "synthetic", line: e + 1, format: "text" as const, text: "" },
  };
});
const stream = new BatchStream(examples, { batchSize: 1, padId: 0, seed: 0 });
const lora = new LoraModel(model, { rank: 16, alpha: 32, dropout: 0.05, seed: 0 });
const net = trainable(lora);
const params = net.parameters();
const optimizer = new AdamW(params);

// The collectives, timed: how much of a step is communication.
let mpiMs = 0;
let sentBytes = 0;
const timed = world
  ? {
    rank: world.rank,
    size: world.size,
    allgather<T extends MpiBuffer>(send: T, recv: T) {
      const t0 = performance.now();
      world.allgather(send, recv);
      mpiMs += performance.now() - t0;
      sentBytes += send.byteLength * (world.size - 1);
    },
    alltoall<T extends MpiBuffer>(send: T, recv: T) {
      const t0 = performance.now();
      world.alltoall(send, recv);
      mpiMs += performance.now() - t0;
      sentBytes += send.byteLength * (world.size - 1) / world.size;
    },
    bcast: (b: MpiBuffer, root?: number) => world.bcast(b, root),
  } satisfies Collectives
  : undefined;
const gradients: StepGradients = timed ? new DistributedGradients(timed) : new LocalGradients();

const step = () => {
  gradients.accumulate({ model: net, params, stream, microBatches: MICRO_BATCHES, stopRequested: false });
  optimizer.step(1e-4);
};
step(); // warm-up: allocations, first-touch of buffers
const times: number[] = [];
const comm: number[] = [];
let sent = 0;
for (let s = 0; s < STEPS; s++) {
  mpiMs = 0;
  sentBytes = 0;
  const t0 = performance.now();
  step();
  times.push(performance.now() - t0);
  comm.push(mpiMs);
  sent = sentBytes;
}
const ms = median(times);
const rss = new Float64Array([peakRss() ?? 0]);
const allRss = new Float64Array(world?.size ?? 1);
if (world) world.allgather(rss, allRss);
else allRss.set(rss);
if (!world || world.rank === 0) {
  console.log(JSON.stringify({
    tokensPerSecond: (MICRO_BATCHES * T) / (ms / 1000),
    msPerStep: ms,
    mpiMsPerStep: median(comm),
    sentBytesPerStep: sent,
    gradientBytes: params.reduce((s, p) => s + p.grad.byteLength, 0),
    peakRssPerRank: [...allRss],
  }));
}
model.close();
world?.finalize();
