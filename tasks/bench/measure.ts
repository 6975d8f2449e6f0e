/** Timing helpers for `deno task bench`: interleaved repetitions so machine noise hits every variant alike. */

export interface Timing {
  name: string;
  /** Median seconds per call. */
  seconds: number;
}

/**
 * Runs each variant once to warm up, then round-robin until every variant has `minReps` timings and the
 * whole loop took at least `minSeconds`. Returns the median per variant.
 */
export function timeInterleaved(
  variants: Record<string, () => void>,
  { minReps = 3, minSeconds = 0.5, maxReps = 50 } = {},
): Record<string, number> {
  const names = Object.keys(variants);
  for (const name of names) variants[name]();
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const start = performance.now();
  let reps = 0;
  while (reps < maxReps && (reps < minReps || (performance.now() - start) / 1000 < minSeconds)) {
    for (const name of names) {
      const t0 = performance.now();
      variants[name]();
      samples[name].push((performance.now() - t0) / 1000);
    }
    reps++;
  }
  return Object.fromEntries(names.map((n) => [n, median(samples[n])]));
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Peak resident set size of this process so far, in bytes (Linux: VmHWM), or undefined elsewhere. */
export function peakRss(): number | undefined {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const match = status.match(/^VmHWM:\s+(\d+) kB/m);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Uniform random values in [-scale, scale) from a seeded generator (xorshift32). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 * 2 - 1) * scale;
  }
  return out;
}

/** Prints rows as an aligned text table. */
export function printTable(header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  for (const [i, row] of cells.entries()) {
    console.log(
      row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}
