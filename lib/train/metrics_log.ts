/**
 * `metrics.jsonl`: one JSON object per line and per event (a training step, an evaluation, a task metric, a
 * checkpoint), written with one `write` call each so every line is on disk as soon as it happens and a
 * killed run never leaves half a line. A resumed run first drops the lines after the step it resumes from,
 * so the file reads as one uninterrupted run.
 */
import { closeSync, existsSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";

export const METRICS_FILE = "metrics.jsonl";

/** One line. `event` says what it records; `step` is the optimizer step it belongs to. */
export type MetricsEvent =
  & { event: "train" | "eval" | "metric" | "save" | "stop" | string; step: number }
  & Record<string, unknown>;

export class MetricsLog implements Disposable {
  #fd: number | undefined;

  /** Opens `path` for appending (created when missing). */
  constructor(readonly path: string) {
    this.#fd = openSync(path, "a");
  }

  /**
   * Keeps only the lines of steps ≤ `step` (and drops unreadable ones), then reopens for appending; done
   * when resuming from the checkpoint of `step`. The file is replaced atomically.
   */
  static resumeAt(path: string, step: number): MetricsLog {
    if (existsSync(path)) {
      const kept = readFileSync(path, "utf8").split("\n").filter((line) => {
        if (line.trim() === "") return false;
        try {
          const event = JSON.parse(line);
          return typeof event?.step === "number" && event.step <= step;
        } catch {
          return false;
        }
      });
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, kept.map((line) => line + "\n").join(""));
      renameSync(tmp, path);
    }
    return new MetricsLog(path);
  }

  /** Starts the file afresh (a new run). */
  static truncate(path: string): MetricsLog {
    writeFileSync(path, "");
    return new MetricsLog(path);
  }

  /** Appends one line; `time` (ms since the epoch) is added. Non-finite numbers are written as strings. */
  append(event: MetricsEvent): void {
    if (this.#fd === undefined) throw new Error(`MetricsLog: ${this.path} is closed`);
    const line = JSON.stringify(
      { ...event, time: Date.now() },
      (_key, value) => typeof value === "number" && !Number.isFinite(value) ? String(value) : value,
    ) + "\n";
    writeSync(this.#fd, line);
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads a metrics file back (e.g. to plot it in a notebook). */
export function readMetrics(path: string): MetricsEvent[] {
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
}
