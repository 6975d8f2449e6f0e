/**
 * DistributedGradients on the fake model with 3 and 4 MPI ranks (uneven chunks, 2 micro-batches per rank,
 * dropout drawn per micro-batch) through the real Trainer: the same losses and parameter bits as one
 * process, and every rank's replica identical. Fast: no model to load (distributed_test.ts runs the real one).
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { train } from "../../lib/train/trainer.ts";
import { setupMpi } from "../../tasks/mpi/setup.ts";
import { fakeRun } from "./_distributed_fake.ts";

const CHILD = fileURLToPath(new URL("./_distributed_child.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));

async function singleProcess(gradAccumulation: number): Promise<{ losses: number[]; params: number[][] }> {
  const dir = Deno.makeTempDirSync({ prefix: "distributed_fake_single_" });
  try {
    const run = fakeRun(dir, gradAccumulation);
    const losses: number[] = [];
    await train({ ...run.options, callbacks: { onStep: (s) => losses.push(s.loss), onMessage: () => {} } });
    return { losses, params: run.model.parameters().map((p) => [...new Uint32Array(p.data.buffer)]) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Hydra's two ways of reaching its ranks: an inherited file descriptor (default) and a port (`-pmi-port`, what
// ranks started through wrappers such as npx need).
const CASES: [number, number, string[]][] = [[3, 6, []], [4, 4, ["-pmi-port"]]];

for (const [ranks, accumulation, launcher] of CASES) {
  Deno.test(`distributed (fake model): ${ranks} ranks × ${accumulation / ranks} micro-batches = 1 process, bit for bit ${launcher.join(" ")}`, async () => {
    const mpi = await setupMpi();
    const dir = Deno.makeTempDirSync({ prefix: "distributed_fake_" });
    try {
      const out = await new Deno.Command(mpi.mpiexec, {
        args: [
          "-n",
          String(ranks),
          Deno.execPath(),
          "run",
          "-A",
          "--config",
          CONFIG,
          CHILD,
          dir,
          String(accumulation),
        ],
        env: mpi.env,
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const got = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
      const want = await singleProcess(accumulation);
      assert.equal(got.losses.length, 6);
      assert.deepEqual(got.losses, want.losses);
      got.params.forEach((p: number[], i: number) => assert.deepEqual(p, want.params[i], `parameter ${i}`));
      assert.equal(new Set(got.digests).size, 1, `replicas differ: ${got.digests.join(", ")}`);
      // Not trivially: the run trained (the losses moved).
      assert.notEqual(got.losses[0], got.losses[5]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
