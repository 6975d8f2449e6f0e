/**
 * The bench's `mpi` section: the same data-parallel QLoRA steps (a global batch of 2 × 256 tokens) as
 * 2 MPI ranks × 1 thread and as 1 process × 2 threads on this machine, alternated so each ratio is of runs
 * back to back, each bracketed by the CPU's FMA peak.
 */
import { fileURLToPath } from "node:url";
import { fmaPeakGflops } from "../../ffi/runtime.ts";
import { setupMpi } from "../mpi/setup.ts";
import { median, printTable } from "./measure.ts";

interface DistributedProbe {
  tokensPerSecond: number;
  msPerStep: number;
  mpiMsPerStep: number;
  sentBytesPerStep: number;
  gradientBytes: number;
  peakRssPerRank: number[];
  cpuPeak: [number, number];
}

const ROUNDS = 2;

export async function benchDistributed(): Promise<void> {
  const mpi = await setupMpi();
  const probe = fileURLToPath(new URL("./distributed_probe.ts", import.meta.url));
  const run = async (command: string, args: string[], env: Record<string, string> = {}) => {
    const before = fmaPeakGflops();
    const out = await new Deno.Command(command, { args, env, stderr: "inherit" }).output();
    if (!out.success) throw new Error(`${command} ${args.join(" ")} failed with code ${out.code}`);
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
    return { ...JSON.parse(line), cpuPeak: [before, fmaPeakGflops()] } as DistributedProbe;
  };
  const deno = Deno.execPath();
  const pairs: [DistributedProbe, DistributedProbe][] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const ranks = await run(mpi.mpiexec, ["-n", "2", deno, "run", "-A", probe, "1"], mpi.env);
    const threads = await run(deno, ["run", "-A", probe, "2"]);
    pairs.push([ranks, threads]);
  }
  const ratios = pairs.map(([a, b]) => a.tokensPerSecond / b.tokensPerSecond);
  console.log(
    "\nData-parallel QLoRA, SmolLM2-135M-Instruct NF4, LoRA r=16 all linears, global batch 2 × 256 tokens",
  );
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  printTable(
    ["run", "tok/s", "ms/step", "MPI ms/step", "sent MiB/step/rank", "peak RSS MiB/rank", "CPU FMA GF/s"],
    pairs.flatMap(([a, b], i) =>
      [
        [`2 ranks × 1 thread (round ${i + 1})`, a, `${a.peakRssPerRank.map(mib).join(", ")}`],
        [`1 rank × 2 threads (round ${i + 1})`, b, mib(b.peakRssPerRank[0])],
      ] as [string, DistributedProbe, string][]
    ).map(([name, r, rss]) => [
      name,
      r.tokensPerSecond.toFixed(1),
      r.msPerStep.toFixed(0),
      r.mpiMsPerStep.toFixed(1),
      (r.sentBytesPerStep / 2 ** 20).toFixed(1),
      rss,
      `${r.cpuPeak[0].toFixed(0)} → ${r.cpuPeak[1].toFixed(0)}`,
    ]),
  );
  console.log(
    `2 ranks ÷ 1 rank × 2 threads, back-to-back pairs: ${ratios.map((x) => x.toFixed(2)).join(", ")} ` +
      `(median ${median(ratios).toFixed(2)}×); LoRA gradient ${
        (pairs[0][0].gradientBytes / 2 ** 20).toFixed(1)
      } MiB per step`,
  );
}
