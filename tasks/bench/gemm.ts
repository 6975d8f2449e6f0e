/**
 * GEMM section of `deno task bench`: NF4 dequant-GEMMs (forward `X·Wᵀ`, backward `dY·W`; f32 and bf16
 * compute) against our dense f32 GEMM on the same shapes, and NF4 quantization throughput.
 */
import { matmulDyW, matmulXWt } from "../../ffi/gemm.ts";
import { Nf4Weight } from "../../ffi/nf4.ts";
import { printTable, randomF32, timeInterleaved } from "./measure.ts";

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
  gflops: Record<string, number>;
  quantizeWeightsPerSecond: number;
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

  const times = timeInterleaved({
    "dense fwd": () => matmulXWt(x, w, m, inDim, outDim, y),
    "dense bwd": () => matmulDyW(dy, w, m, inDim, outDim, dx),
    "nf4 fwd": () => q.matmul(x, m, y),
    "nf4 bwd": () => q.matmulT(dy, m, dx),
    "nf4 fwd bf16": () => q.matmul(x, m, y, { compute: "bf16" }),
    "nf4 bwd bf16": () => q.matmulT(dy, m, dx, { compute: "bf16" }),
  }, { minSeconds });
  const flops = 2 * m * inDim * outDim;
  const gflops = Object.fromEntries(Object.entries(times).map(([k, s]) => [k, flops / s / 1e9]));
  return { shape, m, gflops, quantizeWeightsPerSecond: (inDim * outDim) / quantizeSeconds };
}

export function printGemmResults(results: GemmResult[]): void {
  const f = (v: number) => v.toFixed(1);
  const r = (v: number) => v.toFixed(2) + "x";
  printTable(
    [
      "shape (M × in → out)",
      "dense fwd",
      "nf4 fwd",
      "fwd ratio",
      "dense bwd",
      "nf4 bwd",
      "bwd ratio",
      "bf16 fwd",
      "bf16/f32 fwd",
      "bf16 bwd",
      "bf16/f32 bwd",
      "quantize Mw/s",
    ],
    results.map(({ shape, m, gflops: g, quantizeWeightsPerSecond }) => [
      `${shape.label} ${m}×${shape.inDim}→${shape.outDim}`,
      f(g["dense fwd"]),
      f(g["nf4 fwd"]),
      r(g["nf4 fwd"] / g["dense fwd"]),
      f(g["dense bwd"]),
      f(g["nf4 bwd"]),
      r(g["nf4 bwd"] / g["dense bwd"]),
      f(g["nf4 fwd bf16"]),
      r(g["nf4 fwd bf16"] / g["nf4 fwd"]),
      f(g["nf4 bwd bf16"]),
      r(g["nf4 bwd bf16"] / g["nf4 bwd"]),
      (quantizeWeightsPerSecond / 1e6).toFixed(0),
    ]),
  );
}
