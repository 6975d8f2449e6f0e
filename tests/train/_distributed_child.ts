/**
 * One rank of distributed_fake_test.ts, under `mpiexec -n N`: trains the fake model through the real Trainer
 * with DistributedGradients. Rank 0 prints one JSON line: the step losses, its parameters' bits and a digest
 * of every rank's parameters (the replicas must agree).
 *
 *   mpiexec -n N deno run -A tests/train/_distributed_child.ts <outputDir> <gradAccumulation>
 */
import { createHash } from "node:crypto";
import { DistributedGradients, joinMpiJob } from "../../lib/train/distributed.ts";
import { train } from "../../lib/train/trainer.ts";
import { fakeRun } from "./_distributed_fake.ts";

const world = await joinMpiJob();
if (!world) throw new Error("start me with mpiexec -n N (N ≥ 2)");
const [dir, accumulation] = Deno.args;
const run = fakeRun(dir, Number(accumulation));
const losses: number[] = [];
await train({
  ...run.options,
  gradients: new DistributedGradients(world),
  callbacks: { onStep: (s) => losses.push(s.loss), onMessage: () => {} },
});
const hash = createHash("sha256");
for (const p of run.model.parameters()) hash.update(new Uint8Array(p.data.buffer));
const digest = new Uint8Array(hash.digest());
const digests = new Uint8Array(digest.length * world.size);
world.allgather(digest, digests);
if (world.rank === 0) {
  const hex = (r: number) =>
    [...digests.subarray(r * digest.length, (r + 1) * digest.length)].map((b) => b.toString(16)).join("");
  console.log(JSON.stringify({
    losses,
    params: run.model.parameters().map((p) => [...new Uint32Array(p.data.buffer)]),
    digests: Array.from({ length: world.size }, (_, r) => hex(r)),
  }));
}
world.finalize();
