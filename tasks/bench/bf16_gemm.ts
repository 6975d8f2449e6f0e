/**
 * bf16 section of `deno task bench`: NF4 GEMMs with bf16 compute on every bf16 unit this CPU has (`avx512`:
 * the f32 GEMM's own bf16 handling; `avx512bf16`: `vdpbf16ps`; `amx`: AMX tiles) at Mistral-7B shapes, and —
 * when QLORA_REF_PYTHON names a Python with torch — PyTorch's bf16 matmul on the same shapes in the same run.
 */
import { fileURLToPath } from "node:url";
import { Nf4Weight } from "../../ffi/nf4.ts";
import {
  availableKernels,
  fmaPeakGflops,
  kernelName,
  type KernelPath,
  setKernel,
} from "../../ffi/runtime.ts";
import type { GemmShape } from "./gemm.ts";
import { printTable, randomF32, timeInterleaved } from "./measure.ts";

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

interface Row {
  label: string;
  gflops: Record<string, number>;
}

function benchShape(shape: GemmShape, m: number, paths: KernelPath[], minSeconds: number): Row {
  const { inDim, outDim } = shape;
  using q = Nf4Weight.quantize(randomF32(outDim * inDim, 1, 0.05), outDim, inDim);
  const x = randomF32(m * inDim, 2);
  const dy = randomF32(m * outDim, 3);
  const y = new Float32Array(m * outDim);
  const dx = new Float32Array(m * inDim);
  const times: Record<string, number> = {};
  for (const path of paths) {
    setKernel(path);
    // Each product in its own run of repeated calls, as PyTorch's are timed (interleaving the paths call
    // by call let the slow ones evict the fast one's operands from L2 before every call).
    times[`fwd ${path}`] = timeRepeated(() => q.matmul(x, m, y, { compute: "bf16" }), minSeconds);
    times[`bwd ${path}`] = timeRepeated(() => q.matmulT(dy, m, dx, { compute: "bf16" }), minSeconds);
  }
  const flops = 2 * m * inDim * outDim;
  return {
    label: `${shape.label} ${m}×${inDim}→${outDim}`,
    gflops: Object.fromEntries(Object.entries(times).map(([k, s]) => [k, flops / s / 1e9])),
  };
}

async function torchGflops(
  m: number,
  threads: number,
  minSeconds: number,
): Promise<Record<string, number> | undefined> {
  const python = Deno.env.get("QLORA_REF_PYTHON");
  if (!python) return undefined;
  const script = fileURLToPath(new URL("./torch_bf16_matmul.py", import.meta.url));
  const shapes = JSON.stringify(BF16_SHAPES.map((s) => [m, s.inDim, s.outDim]));
  const out = await new Deno.Command(python, {
    args: [script, shapes, String(threads), String(minSeconds)],
    stderr: "inherit",
  })
    .output();
  if (!out.success) throw new Error(`${python} ${script} failed with code ${out.code}`);
  const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  console.log(`PyTorch ${result.torch} bf16 matmul (torch.matmul on bf16 tensors, ${threads} threads)`);
  return result.gflops;
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
  const torchBefore = await torchGflops(m, threads, minSeconds);
  const rows = BF16_SHAPES.map((s) => benchShape(s, m, paths, minSeconds));
  const torchAfter = await torchGflops(m, threads, minSeconds);
  const peakAfter = fmaPeakGflops(0.3);
  setKernel(restore as KernelPath);
  const best = (g: Record<string, number>, dir: string) => Math.max(...paths.map((p) => g[`${dir} ${p}`]));
  const header = ["shape (M × in → out)", "dir", ...paths];
  if (torchBefore) header.push("torch bf16", "best/torch");
  const table: string[][] = [];
  for (const row of rows) {
    for (const dir of ["fwd", "bwd"]) {
      const cells = [row.label, dir, ...paths.map((p) => row.gflops[`${dir} ${p}`].toFixed(1))];
      if (torchBefore && torchAfter) {
        const key = `${dir} ${row.label.split(" ").at(-1)}`;
        // PyTorch measured before and after ours: the mean of the two brackets our run.
        const torch = (torchBefore[key] + torchAfter[key]) / 2;
        cells.push(torch.toFixed(1), (best(row.gflops, dir) / torch).toFixed(2) + "x");
      }
      table.push(cells);
    }
  }
  printTable(header, table);
  if (!torchBefore) console.log("(set QLORA_REF_PYTHON to a Python with torch to add PyTorch's bf16 matmul)");
  console.log(`CPU FMA peak before/after: ${peakBefore.toFixed(0)} / ${peakAfter.toFixed(0)} GFLOP/s`);
}
