/**
 * GEMM section of `deno task bench`: NF4 dequant-GEMMs (forward `X·Wᵀ`, backward `dY·W`; f32 and bf16
 * compute) against our dense f32 GEMM (`X·Wᵀ`, `dY·W`, `dYᵀ·X`) on the same shapes, and NF4 quantization
 * throughput. Each product is also given as a share of the CPU's FMA peak measured between its calls (the
 * machine's speed drifts; a peak measured minutes apart says little), by wall time and by CPU time (the
 * latter does not count moments the kernel threads were descheduled by other processes).
 */
import { cpuUsage } from "node:process";
import { matmulDyTX, matmulDyW, matmulXWt } from "../../ffi/gemm.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { fmaPeakGflops, gemmHotLoopGflops, kernelName, threads } from "../../ffi/runtime.ts";
import { median, printTable, randomF32, timeInterleaved } from "./measure.ts";

export interface GemmShape {
  label: string;
  inDim: number;
  outDim: number;
}

export const SMOLLM2_SHAPES: GemmShape[] = [
  { label: "SmolLM2 q/o", inDim: 576, outDim: 576 },
  { label: "SmolLM2 k/v", inDim: 576, outDim: 192 },
  { label: "SmolLM2 gate/up", inDim: 576, outDim: 1536 },
  { label: "SmolLM2 down", inDim: 1536, outDim: 576 },
  { label: "SmolLM2 lm_head", inDim: 576, outDim: 49152 },
];

export const MISTRAL_SHAPES: GemmShape[] = [
  { label: "Mistral-7B q/o", inDim: 4096, outDim: 4096 },
  { label: "Mistral-7B k/v", inDim: 4096, outDim: 1024 },
  { label: "Mistral-7B gate/up", inDim: 4096, outDim: 14336 },
  { label: "Mistral-7B down", inDim: 14336, outDim: 4096 },
];

export interface GemmResult {
  shape: GemmShape;
  m: number;
  /** The CPU path the products ran on. */
  path: string;
  gflops: Record<string, number>;
  /** GFLOP/s over the FMA peak measured between the calls (wall time). */
  ofPeak: Record<string, number>;
  /** The same by CPU time: FLOPs per CPU-second of the call over FLOPs per CPU-second of the peak loop. */
  ofPeakCpu: Record<string, number>;
  /** Median FMA peak (GFLOP/s) measured during this shape. */
  peak: number;
  quantizeWeightsPerSecond: number;
}

/** CPU seconds (user + system) of this process so far: the kernel threads' work included. */
function cpuSeconds(): number {
  const u = cpuUsage();
  return (u.user + u.system) / 1e6;
}

export function benchGemmShape(shape: GemmShape, m: number, minSeconds: number): GemmResult {
  const { inDim, outDim } = shape;
  const w = randomF32(outDim * inDim, 1, 0.05);
  const x = randomF32(m * inDim, 2);
  const dy = randomF32(m * outDim, 3);
  const y = new Float32Array(m * outDim);
  const dx = new Float32Array(m * inDim);

  const t0 = performance.now();
  using q = Nf4Weight.quantize(w, outDim, inDim);
  const quantizeSeconds = (performance.now() - t0) / 1000;

  const variants: Record<string, () => void> = {
    "dense fwd": () => matmulXWt(x, w, m, inDim, outDim, y),
    "dense bwd": () => matmulDyW(dy, w, m, inDim, outDim, dx),
    "dense dW": () => matmulDyTX(dy, x, m, inDim, outDim, dw),
    "nf4 fwd": () => q.matmul(x, m, y),
    "nf4 bwd": () => q.matmulT(dy, m, dx),
    "nf4 fwd bf16": () => q.matmul(x, m, y, { compute: "bf16" }),
    "nf4 bwd bf16": () => q.matmulT(dy, m, dx, { compute: "bf16" }),
  };
  const dw = new Float32Array(outDim * inDim);
  // Each variant's call is timed by wall clock and by CPU time; a short FMA peak runs between calls.
  const cpu: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  const peaks: number[] = [];
  const peaksPerCpu: number[] = [];
  const timed = Object.fromEntries(
    Object.entries(variants).map(([name, call]) => [name, () => {
      const c0 = cpuSeconds();
      call();
      cpu[name].push(cpuSeconds() - c0);
    }]),
  );
  timed["FMA peak"] = () => {
    const seconds = 0.02;
    const c0 = cpuSeconds();
    const g = fmaPeakGflops(seconds);
    const used = cpuSeconds() - c0;
    peaks.push(g);
    // Each pool thread ran its chains for about `seconds`; g sums their rates.
    peaksPerCpu.push((g * seconds) / Math.max(used, 1e-9));
  };
  const times = timeInterleaved(timed, { minSeconds });
  const flops = 2 * m * inDim * outDim;
  const peak = median(peaks);
  const peakPerCpu = median(peaksPerCpu);
  const names = Object.keys(variants);
  const gflops = Object.fromEntries(names.map((k) => [k, flops / times[k] / 1e9]));
  const ofPeak = Object.fromEntries(names.map((k) => [k, gflops[k] / peak]));
  const ofPeakCpu = Object.fromEntries(
    names.map((k) => [k, flops / median(cpu[k]) / 1e9 / peakPerCpu]),
  );
  return {
    shape,
    m,
    path: kernelName(),
    gflops,
    ofPeak,
    ofPeakCpu,
    peak,
    quantizeWeightsPerSecond: (inDim * outDim) / quantizeSeconds,
  };
}

export function printGemmResults(results: GemmResult[]): void {
  const f = (v: number) => v.toFixed(1);
  const r = (v: number) => v.toFixed(2) + "x";
  printTable(
    [
      "shape (M × in → out)",
      "path",
      "dense fwd",
      "nf4 fwd",
      "fwd ratio",
      "dense bwd",
      "nf4 bwd",
      "bwd ratio",
      "dense dW",
      "bf16 fwd",
      "bf16/f32 fwd",
      "bf16 bwd",
      "bf16/f32 bwd",
      "quantize Mw/s",
    ],
    results.map(({ shape, m, path, gflops: g, quantizeWeightsPerSecond }) => [
      `${shape.label} ${m}×${shape.inDim}→${shape.outDim}`,
      path,
      f(g["dense fwd"]),
      f(g["nf4 fwd"]),
      r(g["nf4 fwd"] / g["dense fwd"]),
      f(g["dense bwd"]),
      f(g["nf4 bwd"]),
      r(g["nf4 bwd"] / g["dense bwd"]),
      f(g["dense dW"]),
      f(g["nf4 fwd bf16"]),
      r(g["nf4 fwd bf16"] / g["nf4 fwd"]),
      f(g["nf4 bwd bf16"]),
      r(g["nf4 bwd bf16"] / g["nf4 bwd"]),
      (quantizeWeightsPerSecond / 1e6).toFixed(0),
    ]),
  );
  const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
  const cols = ["dense fwd", "dense bwd", "dense dW", "nf4 fwd", "nf4 bwd"];
  console.log(
    `\nThe same products (the whole GEMM) as a share of the FMA peak (f32; ${threads()} threads) measured between their calls:` +
      " wall time / CPU time",
  );
  printTable(
    ["shape (M × in → out)", "path", "FMA peak GFLOP/s", ...cols],
    results.map(({ shape, m, path, peak, ofPeak, ofPeakCpu }) => [
      `${shape.label} ${m}×${shape.inDim}→${shape.outDim}`,
      path,
      peak.toFixed(0),
      ...cols.map((c) => `${pct(ofPeak[c])} / ${pct(ofPeakCpu[c])}`),
    ]),
  );
}

export interface HotLoopResult {
  path: string;
  /** Median share of the FMA peak of each micro-kernel alone, the peak measured between its runs. */
  weightNatural: number;
  blis: number;
}

/**
 * The f32 GEMM micro-kernels alone on cached operands (the active path, all threads), as a share of the FMA
 * peak measured between their runs: the ceiling of the whole GEMMs above, not their speed.
 */
export function benchHotLoops(rounds = 5): HotLoopResult {
  const wn: number[] = [];
  const bl: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const p0 = fmaPeakGflops(0.05);
    wn.push(gemmHotLoopGflops("weight-natural", 0.05) / p0);
    const p1 = fmaPeakGflops(0.05);
    bl.push(gemmHotLoopGflops("blis", 0.05) / p1);
  }
  return { path: kernelName(), weightNatural: median(wn), blis: median(bl) };
}

export function printHotLoops(results: HotLoopResult[]): void {
  const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
  console.log(
    `\nHot loop: each f32 micro-kernel alone on cached operands (${threads()} threads), share of the FMA peak` +
      " — a ceiling, not the GEMM's speed (forward products run the weight-natural tile; dW, and the backward" +
      " on AVX-512, the BLIS tile)",
  );
  for (const r of results) {
    console.log(
      `hot loop ${r.path}: weight-natural tile ${pct(r.weightNatural)}, BLIS tile ${
        pct(r.blis)
      } of the FMA peak`,
    );
  }
}
