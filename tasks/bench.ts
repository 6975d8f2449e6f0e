/**
 * `deno task bench`: performance of the kernels, printed as ratios measured in one run (machines are noisy;
 * absolute numbers drift, ratios hold). Long by design: never part of the test suite.
 */
import { Command } from "@commander-js/extra-typings";
import {
  availableKernels,
  cpuFeatures,
  fmaPeakGflops,
  kernelName,
  kernelReport,
  setKernel,
  setThreads,
  threads,
} from "../ffi/runtime.ts";
import { benchBf16Gemm } from "./bench/bf16_gemm.ts";
import { ATTENTION_CASES, benchAttention, printAttentionResults } from "./bench/attention.ts";
import {
  benchGemmShape,
  benchHotLoops,
  type GemmResult,
  type HotLoopResult,
  MISTRAL_SHAPES,
  printGemmResults,
  printHotLoops,
  SMOLLM2_SHAPES,
} from "./bench/gemm.ts";
import { benchDistributed } from "./bench/distributed.ts";
import { peakRss } from "./bench/measure.ts";
import { pairBooleans } from "./boolean_flags.ts";
import { bench7bLoad, benchDefaultModel, benchTraining, benchTraining7b } from "./bench/model.ts";

const program = pairBooleans(
  new Command()
    .name("deno task bench")
    .description("Benchmarks of qlora-deno's kernels (GFLOP/s and ratios, peak RSS).")
    .option("--threads <n>", "kernel threads (0 = all cores)", "0")
    .option("--kernel <path>", "force a CPU path: auto, scalar, avx2, avx512, avx512bf16, amx", "auto")
    .option(
      "--gemm-paths <list>",
      "GEMM section: comma-separated CPU paths to measure, or all (default: the active one)",
      "",
    )
    .option("--m <rows>", "activation rows M (batch × sequence)", "256")
    .option("--seconds <s>", "minimum measuring time per shape", "0.5")
    .option(
      "--quick",
      "SmolLM2 GEMM shapes and the default model only (skips Mistral-7B shapes and load)",
      false,
    )
    .option(
      "--sections <list>",
      "comma-separated: gemm, bf16gemm, attention, model, train, mpi, load7b, train7b (7B QLoRA vs PyTorch bf16: long)",
      "gemm,bf16gemm,attention,model,train,mpi,load7b",
    ),
)
  .parse(Deno.args, { from: "user" });
const opts = program.opts();

setThreads(Number(opts.threads));
setKernel(opts.kernel as "auto");
const m = Number(opts.m);
console.log(
  `qlora-deno bench — kernel ${kernelName()} (CPU offers ${cpuFeatures().join(", ")}), ${threads()} threads`,
);
// What each kernel family runs on this path (a family without a build for it names the one it uses).
console.log(
  `kernel families: ${Object.entries(kernelReport()).map(([f, p]) => `${f} ${p}`).join(", ")}`,
);
// On a shared machine the CPU's speed drifts: this is what it gives now (fused multiply-adds, no memory).
console.log(`CPU FMA peak now: ${fmaPeakGflops(0.5).toFixed(0)} GFLOP/s on ${threads()} threads`);
const sections = new Set(opts.sections.split(",").map((s) => s.trim()));
if (sections.has("gemm")) {
  console.log(
    `\nGEMM GFLOP/s, M = ${m}; ratios: NF4 vs our dense f32 on the same shape and direction, bf16 vs f32`,
  );
  const shapes = opts.quick ? SMOLLM2_SHAPES : [...SMOLLM2_SHAPES, ...MISTRAL_SHAPES];
  const paths = opts.gemmPaths === ""
    ? [kernelName()]
    : opts.gemmPaths === "all"
    ? availableKernels().filter((p) => p !== "scalar")
    : opts.gemmPaths.split(",").map((p) => p.trim());
  const active = kernelName();
  const results: GemmResult[] = [];
  for (const shape of shapes) {
    for (const path of paths) {
      setKernel(path as "auto");
      results.push(benchGemmShape(shape, m, Number(opts.seconds)));
    }
  }
  const hot: HotLoopResult[] = [];
  for (const path of paths) {
    setKernel(path as "auto");
    hot.push(benchHotLoops());
  }
  setKernel(active);
  printGemmResults(results);
  printHotLoops(hot);
}
if (sections.has("bf16gemm") && !opts.quick) await benchBf16Gemm(m, threads(), Number(opts.seconds));
if (sections.has("attention")) {
  console.log("\nCausal GQA attention GFLOP/s (useful FLOPs) vs a dense f32 GEMM of about as many FLOPs");
  const cases = opts.quick ? ATTENTION_CASES.slice(0, 1) : ATTENTION_CASES;
  printAttentionResults(cases.map((c) => benchAttention(c, Number(opts.seconds))));
}
if (sections.has("model")) await benchDefaultModel();
if (sections.has("train")) await benchTraining(threads(), kernelName());
if (sections.has("mpi") && !opts.quick) await benchDistributed();
if (sections.has("load7b") && !opts.quick) await bench7bLoad();
if (sections.has("train7b") && !opts.quick) await benchTraining7b(threads());
const rss = peakRss();
if (rss !== undefined) console.log(`\npeak RSS of this process: ${(rss / 2 ** 20).toFixed(0)} MiB`);
