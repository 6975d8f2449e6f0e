/** Number formats shared by the display helpers (bytes and durations come from lib/io/hub_progress.ts). */
export { formatBytes, formatDuration } from "../io/hub/progress.ts";

/** 134515008 → "134,515,008". */
export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en");
}

/** 134515008 → "134.5 M", 4_884_480 → "4.88 M", 912 → "912". */
export function formatCount(n: number): string {
  const units: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) {
    if (Math.abs(n) >= size) {
      const v = n / size;
      return `${v >= 100 ? v.toFixed(1) : v.toPrecision(3)} ${unit}`;
    }
  }
  return String(Math.round(n));
}

/** A loss or similar with 4 decimals; "—" when missing or not finite. */
export function formatLoss(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "—" : x.toFixed(4);
}

/** 0.0312 → "3.12 %". */
export function formatPercent(fraction: number): string {
  return `${(100 * fraction).toPrecision(3)} %`;
}
