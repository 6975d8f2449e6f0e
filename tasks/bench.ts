/**
 * `deno task bench`: performance of the kernels, printed as ratios measured in one run (machines are noisy;
 * absolute numbers drift, ratios hold). Long by design: never part of the test suite.
 */
import { Command } from "@commander-js/extra-typings";
import { cpuFeatures, kernelName, setKernel, setThreads, threads } from "../ffi/runtime.ts";
import {
  benchGemmShape,
  type GemmResult,
  MISTRAL_SHAPES,
  printGemmResults,
  SMOLLM2_SHAPES,
} from "./bench/gemm.ts";
import { peakRss } from "./bench/measure.ts";

const program = new Command()
  .name("deno task bench")
  .description("Benchmarks of qlora-deno's kernels (GFLOP/s and ratios, peak RSS).")
  .option("--threads <n>", "kernel threads (0 = all cores)", "0")
  .option("--kernel <path>", "force a CPU path: auto, scalar, avx2, avx512", "auto")
  .option("--m <rows>", "activation rows M (batch × sequence)", "256")
  .option("--seconds <s>", "minimum measuring time per shape", "0.5")
  .option("--quick", "SmolLM2 shapes only", false)
  .parse(Deno.args, { from: "user" });
const opts = program.opts();

setThreads(Number(opts.threads));
setKernel(opts.kernel as "auto");
const m = Number(opts.m);
console.log(
  `qlora-deno bench — kernel ${kernelName()} (CPU offers ${cpuFeatures().join(", ")}), ${threads()} threads`,
);
console.log(
  `\nGEMM GFLOP/s, M = ${m}; ratios: NF4 vs our dense f32 on the same shape and direction, bf16 vs f32`,
);
const shapes = opts.quick ? SMOLLM2_SHAPES : [...SMOLLM2_SHAPES, ...MISTRAL_SHAPES];
const results: GemmResult[] = [];
for (const shape of shapes) results.push(benchGemmShape(shape, m, Number(opts.seconds)));
printGemmResults(results);
const rss = peakRss();
if (rss !== undefined) console.log(`\npeak RSS: ${(rss / 2 ** 20).toFixed(0)} MiB`);
