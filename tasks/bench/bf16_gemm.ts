/**
 * bf16 section of `deno task bench`: NF4 GEMMs with bf16 compute on every bf16 unit this CPU has (`avx512`:
 * the f32 GEMM's own bf16 handling; `avx512bf16`: `vdpbf16ps`; `amx`: AMX tiles) at Mistral-7B shapes, and —
 * when QLORA_REF_PYTHON names a Python with torch — PyTorch's bf16 matmul on the same shapes in the same run.
 */
import { Nf4Weight } from "../../ffi/nf4.ts";
import {
  availableKernels,
  fmaPeakGflops,
  kernelName,
  type KernelPath,
  setKernel,
} from "../../ffi/runtime.ts";
import type { GemmShape } from "./gemm.ts";
import { TorchMatmul } from "./torch_matmul.ts";
import { median, printTable, randomF32, timeInterleaved } from "./measure.ts";

/** Median seconds of one call repeated (after a warm-up call), as `torch_bf16_matmul.py` times PyTorch. */
function timeRepeated(call: () => void, minSeconds: number): number {
  return timeInterleaved({ call }, { minSeconds }).call;
}

/**
 * The 7B projections the targets name: square (q/o), narrow (k/v: 4096 → 1024, grouped-query
 * attention), up (4096 → 14336), down (14336 → 4096).
 */
export const BF16_SHAPES: GemmShape[] = [
  { label: "7B q/o", inDim: 4096, outDim: 4096 },
  { label: "7B k/v", inDim: 4096, outDim: 1024 },
  { label: "7B gate/up", inDim: 4096, outDim: 14336 },
  { label: "7B down", inDim: 14336, outDim: 4096 },
];

/** Paths whose bf16 compute differs: the rounding fallback and the two native units. */
const BF16_PATHS: KernelPath[] = ["avx512", "avx512bf16", "amx"];

/** Rounds of the alternation: ours and PyTorch's take turns this many times on each shape and direction. */
const ROUNDS = 3;

interface Row {
  label: string;
  /** GFLOP/s per `${dir} ${path}`, the median over the rounds. */
  gflops: Record<string, number>;
  /** PyTorch's GFLOP/s per direction (median over rounds), and our best path ÷ PyTorch's in each round. */
  torch?: Record<string, { gflops: number; ratios: number[] }>;
}

async function benchShape(
  shape: GemmShape,
  m: number,
  paths: KernelPath[],
  minSeconds: number,
  torch: TorchMatmul | undefined,
): Promise<Row> {
  const { inDim, outDim } = shape;
  using q = Nf4Weight.quantize(randomF32(outDim * inDim, 1, 0.05), outDim, inDim);
  const x = randomF32(m * inDim, 2);
  const dy = randomF32(m * outDim, 3);
  const y = new Float32Array(m * outDim);
  const dx = new Float32Array(m * inDim);
  const flops = 2 * m * inDim * outDim;
  const ours: Record<string, number[]> = {};
  const theirs: Record<string, number[]> = { fwd: [], bwd: [] };
  const ratios: Record<string, number[]> = { fwd: [], bwd: [] };
  const call: Record<string, () => void> = {
    fwd: () => q.matmul(x, m, y, { compute: "bf16" }),
    bwd: () => q.matmulT(dy, m, dx, { compute: "bf16" }),
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const dir of ["fwd", "bwd"]) {
      // PyTorch, then each of our paths, each in its own run of repeated calls (as PyTorch's are timed:
      // interleaving the paths call by call let the slow ones evict the fast one's operands from L2).
      const reference = torch ? await torch.time(m, shape, dir, minSeconds) : undefined;
      let best = 0;
      for (const path of paths) {
        setKernel(path);
        const gflops = flops / timeRepeated(call[dir], minSeconds) / 1e9;
        (ours[`${dir} ${path}`] ??= []).push(gflops);
        best = Math.max(best, gflops);
      }
      if (reference !== undefined) {
        theirs[dir].push(reference);
        ratios[dir].push(best / reference);
      }
    }
  }
  return {
    label: `${shape.label} ${m}×${inDim}→${outDim}`,
    gflops: Object.fromEntries(Object.entries(ours).map(([k, v]) => [k, median(v)])),
    torch: torch
      ? Object.fromEntries(["fwd", "bwd"].map((d) => [d, { gflops: median(theirs[d]), ratios: ratios[d] }]))
      : undefined,
  };
}

export async function benchBf16Gemm(m: number, threads: number, minSeconds: number): Promise<void> {
  const restore = kernelName();
  const have = new Set<string>(availableKernels());
  const paths = BF16_PATHS.filter((p) => have.has(p));
  console.log(
    `\nNF4 GEMM with bf16 compute, GFLOP/s at M = ${m} on paths: ${paths.join(", ")}` +
      ` (not on this CPU: ${BF16_PATHS.filter((p) => !have.has(p)).join(", ") || "none"})`,
  );
  const peakBefore = fmaPeakGflops(0.3);
  const torch = await TorchMatmul.start(threads);
  if (torch) {
    console.log(
      `PyTorch ${torch.version} bf16 matmul (torch.matmul on bf16 tensors, ${threads} threads), taking turns` +
        ` with ours ${ROUNDS} times per shape and direction`,
    );
  }
  const rows: Row[] = [];
  try {
    for (const shape of BF16_SHAPES) rows.push(await benchShape(shape, m, paths, minSeconds, torch));
  } finally {
    await torch?.close();
    setKernel(restore as KernelPath);
  }
  const peakAfter = fmaPeakGflops(0.3);
  const header = ["shape (M × in → out)", "dir", ...paths];
  if (torch) header.push("torch bf16", "best/torch (each round)", "median");
  const table: string[][] = [];
  for (const row of rows) {
    for (const dir of ["fwd", "bwd"]) {
      const cells = [row.label, dir, ...paths.map((p) => row.gflops[`${dir} ${p}`].toFixed(1))];
      const t = row.torch?.[dir];
      if (t) {
        cells.push(
          t.gflops.toFixed(1),
          t.ratios.map((r) => r.toFixed(2)).join(", "),
          median(t.ratios).toFixed(2) + "x",
        );
      }
      table.push(cells);
    }
  }
  printTable(header, table);
  if (!torch) console.log("(set QLORA_REF_PYTHON to a Python with torch to add PyTorch's bf16 matmul)");
  console.log(`CPU FMA peak before/after: ${peakBefore.toFixed(0)} / ${peakAfter.toFixed(0)} GFLOP/s`);
}
