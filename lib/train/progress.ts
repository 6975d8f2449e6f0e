/**
 * Training progress on stderr: `step 120/400 [█████░░░░░] loss 0.8123 | lr 1.9e-04 | 2140 tok/s | ETA 3:05`.
 * On a terminal cli-progress redraws one line (other messages print above it); elsewhere (logs, pipes,
 * notebooks) a plain line is printed every few seconds and at the last step, so logs stay short.
 */
import cliProgress from "cli-progress";
import process from "node:process";
import type { Writable } from "node:stream";
import { formatDuration } from "../io/hub/progress.ts";

/** Milliseconds between plain progress lines when stderr is not a terminal. */
const PLAIN_EVERY_MS = 10_000;
const BAR_WIDTH = 20;

export interface ProgressUpdate {
  step: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
}

export interface ProgressOptions {
  /** Where to write (default stderr). */
  stream?: Writable;
  /** Force the terminal or the plain style (default: terminal when the stream is a TTY). */
  tty?: boolean;
  /** Milliseconds between plain lines (default 10 s). */
  plainEveryMs?: number;
}

export class TrainProgress {
  readonly #out: Writable;
  readonly #plainEveryMs: number;
  readonly #multi?: cliProgress.MultiBar;
  #bar?: cliProgress.SingleBar;
  #last?: ProgressUpdate;
  #lastPlain = -Infinity;
  /** Step and time when this process started counting (a resumed run's ETA uses only its own pace). */
  #startStep: number;
  #startTime = performance.now();

  constructor(readonly total: number, initialStep = 0, opts: ProgressOptions = {}) {
    this.#out = opts.stream ?? process.stderr;
    this.#plainEveryMs = opts.plainEveryMs ?? PLAIN_EVERY_MS;
    this.#startStep = initialStep;
    const tty = opts.tty ?? Boolean((this.#out as { isTTY?: boolean }).isTTY);
    if (tty) {
      this.#multi = new cliProgress.MultiBar({
        stream: this.#out,
        format: (_options: unknown, params: { value: number; maxWidth: number }) =>
          this.line(params.value).slice(0, params.maxWidth - 1),
        linewrap: true,
        fps: 5,
        clearOnComplete: false,
        hideCursor: false,
      });
      this.#bar = this.#multi.create(total, initialStep);
    }
  }

  update(u: ProgressUpdate): void {
    this.#last = u;
    if (this.#bar) {
      this.#bar.update(u.step);
      return;
    }
    const now = performance.now();
    if (u.step >= this.total || now - this.#lastPlain >= this.#plainEveryMs) {
      this.#lastPlain = now;
      this.#write(this.line(u.step) + "\n");
    }
  }

  /** A message on its own line (above the bar on a terminal). */
  log(message: string): void {
    if (this.#multi) this.#multi.log(message.endsWith("\n") ? message : message + "\n");
    else this.#write(message.endsWith("\n") ? message : message + "\n");
  }

  stop(): void {
    this.#multi?.stop();
  }

  /** The progress line for `step`. */
  line(step: number): string {
    const fraction = this.total > 0 ? Math.min(1, step / this.total) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = "█".repeat(filled) + "░".repeat(BAR_WIDTH - filled);
    const done = step - this.#startStep;
    const seconds = (performance.now() - this.#startTime) / 1000;
    const eta = done > 0 ? formatDuration((seconds / done) * (this.total - step)) : "?";
    const u = this.#last;
    const stats = u
      ? ` loss ${u.loss.toFixed(4)} | lr ${u.lr.toExponential(1)} | ${Math.round(u.tokensPerSecond)} tok/s |`
      : "";
    return `step ${step}/${this.total} [${bar}]${stats} ETA ${eta}`;
  }

  #write(text: string): void {
    this.#out.write(text);
  }
}
