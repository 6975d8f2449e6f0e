/** Threads, the active CPU path and what the CPU offers. */
import { check, kernels } from "./load.ts";
import { readText } from "./errors.ts";
import { count } from "./validate.ts";

/**
 * A CPU path: a SIMD family, and for the AVX-512 family the unit that multiplies bf16 compute
 * (`avx512`: the f32 GEMM's own bf16 handling; `avx512bf16`: `vdpbf16ps`; `amx`: AMX tiles).
 */
export type KernelPath = "scalar" | "avx2" | "avx512" | "avx512bf16" | "amx";

const KERNEL_PATHS: readonly string[] = ["scalar", "avx2", "avx512", "avx512bf16", "amx"];

/** Sizes the kernel thread pool; 0 means all cores. */
export function setThreads(n: number): void {
  check(kernels().qlora_set_threads(count("setThreads", "n", n)), "setThreads");
}

export function threads(): number {
  return kernels().qlora_threads();
}

/**
 * Keeps memory the process frees in its heap rather than returning it to the OS (glibc only; returns whether
 * it applied). Training frees and re-allocates the same activation buffers every step: without this, each
 * step faults ~70 MB of pages back in (SmolLM2, 256 tokens). Peak RSS is unchanged; memory freed after
 * training stays with the process until it exits.
 */
export function keepFreedMemory(): boolean {
  return kernels().qlora_keep_freed_memory() === 1;
}

/**
 * GFLOP/s of fused multiply-adds on every kernel thread at once (no memory traffic), measured for about
 * `seconds`: what the CPU gives right now. On a shared machine it drifts; the bench prints it beside timings.
 */
export function fmaPeakGflops(seconds = 0.3): number {
  if (!(seconds > 0 && seconds <= 60)) {
    throw new RangeError(`fmaPeakGflops: seconds must be in (0, 60], got ${seconds}`);
  }
  return kernels().qlora_fma_peak(seconds);
}

/**
 * GFLOP/s of one f32 GEMM micro-kernel alone on cached operands, on every thread with the active path, over
 * about `seconds`: "weight-natural" is the tile of the forward's nest (`gemm/wxt.rs`), "blis" the BLIS nest's.
 * A ceiling for the whole GEMM, not its speed.
 */
export function gemmHotLoopGflops(tile: "weight-natural" | "blis", seconds = 0.1): number {
  if (!(seconds > 0 && seconds <= 60)) {
    throw new RangeError(`gemmHotLoopGflops: seconds must be in (0, 60], got ${seconds}`);
  }
  return kernels().qlora_gemm_hot_loop(tile === "weight-natural" ? 0 : 1, seconds);
}

/** Forces a CPU path ("auto" picks the fastest). Throws if this CPU cannot run it. */
export function setKernel(name: KernelPath | "auto"): void {
  const bytes = new TextEncoder().encode(name);
  check(kernels().qlora_set_kernel(bytes, bytes.length), "setKernel");
}

/** The path kernels run on now. */
export function kernelName(): KernelPath {
  const k = kernels();
  return readText((buf, cap) => k.qlora_kernel_name(buf, cap)) as KernelPath;
}

/** The kernel families that choose a CPU path (rust-kernels/src/report.rs). */
export type KernelFamily = "gemm-f32" | "nf4-decode" | "gemm-bf16" | "ops" | "attention";

function parseFamilies(text: string): Record<KernelFamily, string[]> {
  const out = {} as Record<KernelFamily, string[]>;
  for (const entry of text.split(";").filter((s) => s.length > 0)) {
    const [family, routes = ""] = entry.split("=");
    out[family as KernelFamily] = routes.split(",").filter((s) => s.length > 0);
  }
  return out;
}

/**
 * The path each kernel family runs with the active path, e.g. `{ "gemm-f32": "avx512", "gemm-bf16":
 * "avx512-bf16", ops: "avx512", … }`: a family without a build for the active path names the one it runs.
 */
export function kernelReport(): Record<KernelFamily, string> {
  const k = kernels();
  const routes = parseFamilies(readText((buf, cap) => k.qlora_kernel_report(buf, cap)));
  return Object.fromEntries(Object.entries(routes).map(([f, r]) => [f, r[0]])) as Record<
    KernelFamily,
    string
  >;
}

/** The paths each family has really run in this process so far (recorded where the kernels branch). */
export function kernelsUsed(): Record<KernelFamily, string[]> {
  const k = kernels();
  return parseFamilies(readText((buf, cap) => k.qlora_kernels_used(buf, cap)));
}

/** Paths this CPU can run (and "bf16dot" when it has bf16 dot-product instructions). */
export function cpuFeatures(): string[] {
  const k = kernels();
  return readText((buf, cap) => k.qlora_cpu_features(buf, cap)).split(",").filter((s) => s.length > 0);
}

/** The CPU paths available here, e.g. ["scalar", "avx2"]. */
export function availableKernels(): KernelPath[] {
  return cpuFeatures().filter((f): f is KernelPath => KERNEL_PATHS.includes(f));
}
