/**
 * Wall time per kernel, for `deno task bench`: after `startKernelProfile()`, every FFI call is timed and
 * added to its symbol's total. Costs ~0.2 µs a call, which is noise next to the kernels it times.
 */
import { wrapKernels } from "./load.ts";

export interface KernelTime {
  calls: number;
  ms: number;
}

const profile = new Map<string, KernelTime>();
let started = false;

export function startKernelProfile(): void {
  if (started) return;
  started = true;
  wrapKernels((name, fn) => (...args: never[]) => {
    const t0 = performance.now();
    const result = fn(...args);
    const entry = profile.get(name) ?? { calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += performance.now() - t0;
    profile.set(name, entry);
    return result;
  });
}

/** Totals since the last reset, by symbol name without the `qlora_` prefix. */
export function kernelProfile(): Record<string, KernelTime> {
  return Object.fromEntries([...profile].map(([name, t]) => [name.replace(/^qlora_/, ""), { ...t }]));
}

export function resetKernelProfile(): void {
  profile.clear();
}
