/**
 * Download progress on stderr: bytes, speed and ETA. cli-progress redraws one line on a terminal and,
 * elsewhere (CI logs, pipes), prints a line every few seconds instead of flooding the log.
 */
import cliProgress from "cli-progress";
import process from "node:process";
import type { Writable } from "node:stream";

/** Milliseconds between progress lines when stderr is not a terminal. */
const LOG_EVERY_MS = 5000;
const BAR_WIDTH = 20;

export class DownloadProgress {
  private readonly bar;
  private done = 0;
  private fetched = 0;
  private started = 0;
  private file = "";

  /** `stream`: where to draw (default stderr); `false` draws nothing. */
  constructor(private readonly label: string, private total: number, stream?: Writable | false) {
    const out = stream === false ? undefined : stream ?? process.stderr;
    const tty = Boolean((out as { isTTY?: boolean } | undefined)?.isTTY);
    this.bar = out === undefined ? undefined : new cliProgress.SingleBar({
      stream: out,
      // Cut to the terminal's width rather than turning off line wrap, which a Ctrl-C would leave off.
      format: (_options: unknown, params: { maxWidth: number }) => this.line().slice(0, params.maxWidth - 1),
      linewrap: true,
      noTTYOutput: true,
      notTTYSchedule: LOG_EVERY_MS,
      fps: 5,
      // On a terminal the last line stays (with a newline); in a log the final render is the last line.
      clearOnComplete: !tty,
    });
  }

  /** Names the file being downloaded; the first call shows the bar (so nothing shows when all is cached). */
  setFile(file: string): void {
    this.file = file;
    if (this.started > 0) return;
    this.started = Date.now();
    this.bar?.start(this.total, this.done);
  }

  /** Grows the total when a size is only learnt from the response. */
  addTotal(bytes: number): void {
    this.total += bytes;
    this.bar?.setTotal(this.total);
  }

  /** Bytes received over the network (they count towards the speed). */
  add(bytes: number): void {
    this.fetched += bytes;
    this.advance(bytes);
  }

  /** Bytes that were already on disk (a resumed file): progress, but not speed. */
  skip(bytes: number): void {
    this.advance(bytes);
  }

  stop(): void {
    if (this.started > 0) this.bar?.stop();
  }

  /** `org/name  42% [████░░░░] 57.1 MB/135.0 MB  8.4 MB/s  ETA 0:09  model.safetensors` */
  line(): string {
    const fraction = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = "█".repeat(filled) + "░".repeat(BAR_WIDTH - filled);
    const seconds = Math.max((Date.now() - this.started) / 1000, 1e-3);
    const speed = this.fetched / seconds;
    const eta = speed > 0 ? formatDuration((this.total - this.done) / speed) : "?";
    return `${this.label} ${String(Math.floor(fraction * 100)).padStart(3)}% [${bar}] ` +
      `${formatBytes(this.done)}/${formatBytes(this.total)}  ${
        formatBytes(speed)
      }/s  ETA ${eta}  ${this.file}`;
  }

  private advance(bytes: number): void {
    this.done += bytes;
    this.bar?.update(this.done);
  }
}

/** 1536 → "1.5 kB" (decimal units, as the hub shows sizes). */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
