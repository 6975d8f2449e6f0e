/**
 * A training run as it happens: `TrainingHistory` collects the trainer's step and evaluation reports through
 * `train()` callbacks, draws the loss curve (loss_plot.ts), sums the run up in a metrics table, and in a
 * notebook keeps one live output — plot plus a progress line — updated in place while training runs.
 *
 * ```ts
 * const history = new TrainingHistory();
 * await history.live();                             // the live output (a notebook; elsewhere a line now and then)
 * const result = await train({ ..., callbacks: history.callbacks({ onStep: mine }), progress: false });
 * await history.finish();                           // final redraw, and wait until it is shown
 * history.metrics();                                // a table: steps, losses before/after, tok/s
 * ```
 */
import type { EvalReport, StepReport, TrainCallbacks } from "../train/trainer.ts";
import { formatDuration, formatInt, formatLoss } from "./format.ts";
import { type Cell, escapeHtml, htmlTable, textTable } from "./html.ts";
import {
  DISPLAY,
  type Displayable,
  LiveDisplay,
  type LiveDisplayOptions,
  type MimeBundle,
} from "./jupyter.ts";
import { type LossPlotOptions, lossPlotSvg } from "./loss_plot.ts";

export interface TrainingHistoryOptions {
  /** Size and smoothing of the plot. */
  plot?: LossPlotOptions;
  /** Steps averaged for the "after" training loss of the metrics table (default 10). */
  tailSteps?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

/** A row of the metrics table; numbers are shown with 4 decimals. */
export interface MetricRow {
  name: string;
  before?: string | number;
  after: string | number;
}

const SPARK = "▁▂▃▄▅▆▇█";

export class TrainingHistory implements Displayable {
  readonly steps: StepReport[] = [];
  readonly evals: EvalReport[] = [];
  /** From the step reports (0 before the first one). */
  totalSteps = 0;
  readonly #opts: TrainingHistoryOptions;
  readonly #now: () => number;
  #live?: LiveDisplay;
  /** Wall-clock start of the first recorded step, for the ETA (evaluations included in the pace). */
  #startedAt?: number;

  constructor(opts: TrainingHistoryOptions = {}) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  recordStep(report: StepReport): void {
    this.#startedAt ??= this.#now() - 1000 * report.seconds;
    this.steps.push(report);
    this.totalSteps = report.totalSteps;
    this.#live?.update(this.#liveView());
  }

  /** Records an evaluation; one taken before training (e.g. `trainer.evaluate()`) has step 0. */
  recordEval(report: EvalReport): void {
    this.evals.push(report);
    this.#live?.update(this.#liveView());
  }

  /**
   * Callbacks for `train()` / `new Trainer()` that record into this history (and update the live output),
   * then call `user`'s own callbacks with the same arguments.
   */
  callbacks(user: TrainCallbacks = {}): TrainCallbacks {
    return {
      onStep: (report, trainer) => {
        this.recordStep(report);
        user.onStep?.(report, trainer);
      },
      onEval: (report, trainer) => {
        this.recordEval(report);
        user.onEval?.(report, trainer);
      },
      ...(user.onSave ? { onSave: user.onSave } : {}),
      ...(user.onMessage ? { onMessage: user.onMessage } : {}),
    };
  }

  /**
   * Starts the live output: in a notebook the plot and a progress line, redrawn in place as reports arrive
   * (at most every `minIntervalMs`); elsewhere the progress line, printed every `plainEveryMs`. Resolves once
   * the output is shown (await it before training: the first step would otherwise hold it back).
   */
  async live(opts: LiveDisplayOptions = {}): Promise<LiveDisplay> {
    this.#live = new LiveDisplay(opts);
    this.#live.show(this.#liveView());
    await this.#live.flush();
    return this.#live;
  }

  /** The last redraw of the live output (sent at once), then waits until every update has been delivered. */
  async finish(): Promise<void> {
    if (!this.#live) return;
    this.#live.update(this.#liveView(), { final: true });
    await this.#live.flush();
  }

  /** `step 12/40 · loss 1.2345 · eval 1.3000 · 850 tok/s · ETA 0:42`. */
  progressLine(): string {
    const last = this.steps.at(-1);
    if (!last) {
      return `training: waiting for the first step${this.totalSteps ? ` of ${this.totalSteps}` : ""}`;
    }
    const parts = [`step ${last.step}/${last.totalSteps}`, `loss ${formatLoss(last.loss)}`];
    const ev = this.evals.at(-1);
    if (ev) parts.push(`eval ${formatLoss(ev.loss)}`);
    parts.push(`${Math.round(last.tokensPerSecond)} tok/s`);
    const done = this.steps.length;
    const remaining = last.totalSteps - last.step;
    if (remaining > 0 && this.#startedAt !== undefined) {
      const perStep = (this.#now() - this.#startedAt) / 1000 / done;
      parts.push(`ETA ${formatDuration(perStep * remaining)}`);
    } else if (remaining === 0) {
      parts.push(`done in ${formatDuration(this.trainingSeconds)}`);
    }
    return parts.join(" · ");
  }

  /** Seconds spent in training steps (evaluations excluded). */
  get trainingSeconds(): number {
    return this.steps.reduce((s, r) => s + r.seconds, 0);
  }

  /** The loss curve as an `<svg>` string. */
  plotSvg(): string {
    return lossPlotSvg(
      this.steps.map((r) => ({ step: r.step, loss: r.loss })),
      this.evals.map((r) => ({ step: r.step, loss: r.loss })),
      { totalSteps: this.totalSteps, ...this.#opts.plot },
    );
  }

  /** A one-line text picture of the training loss (`▇▆▄▃▂▁`), at most `width` characters. */
  sparkline(width = 40): string {
    const losses = this.steps.map((r) => r.loss).filter(Number.isFinite);
    if (losses.length === 0) return "";
    const buckets = Math.min(width, losses.length);
    const means = Array.from({ length: buckets }, (_, b) => {
      const part = losses.slice(
        Math.floor((b * losses.length) / buckets),
        Math.floor(((b + 1) * losses.length) / buckets),
      );
      return part.reduce((s, x) => s + x, 0) / part.length;
    });
    const [lo, hi] = [Math.min(...means), Math.max(...means)];
    return means.map((m) => SPARK[hi > lo ? Math.round(((m - lo) / (hi - lo)) * (SPARK.length - 1)) : 0])
      .join("");
  }

  /**
   * Steps, time, throughput, training loss (first step → mean of the last `tailSteps`), evaluation loss and
   * perplexity (step-0 evaluation → last), and `extra` rows (e.g. exact match before/after).
   */
  metrics(extra: readonly MetricRow[] = []): MetricsTable {
    const rows: MetricRow[] = [];
    const steps = this.steps;
    const last = steps.at(-1);
    rows.push({ name: "steps", after: last ? `${last.step} of ${last.totalSteps}` : "0" });
    if (last) {
      const seconds = this.trainingSeconds;
      const tokens = steps.reduce((s, r) => s + r.tokens, 0);
      rows.push({ name: "training time", after: formatDuration(seconds) });
      rows.push({ name: "tokens trained on", after: formatInt(tokens) });
      rows.push({ name: "tokens / s", after: formatInt(seconds > 0 ? tokens / seconds : 0) });
      const k = Math.min(this.#opts.tailSteps ?? 10, steps.length);
      const tail = steps.slice(-k).reduce((s, r) => s + r.loss, 0) / k;
      rows.push({
        name: k > 1
          ? `train loss (step ${steps[0].step} → mean of last ${k})`
          : "train loss (first → last step)",
        before: steps[0].loss,
        after: tail,
      });
    }
    const before = this.evals.find((e) => e.step === 0);
    const after = [...this.evals].reverse().find((e) => e.step > 0);
    if (before || after) {
      rows.push({ name: "eval loss", before: before?.loss ?? "—", after: after?.loss ?? "—" });
      rows.push({
        name: "eval perplexity",
        before: before?.perplexity ?? "—",
        after: after?.perplexity ?? "—",
      });
    }
    return new MetricsTable([...rows, ...extra]);
  }

  /** Plot plus a summary line (the HTML), or the summary and a sparkline (the text). */
  [DISPLAY](): MimeBundle {
    return {
      "text/plain": this.#summaryText(),
      "text/html": `<div>${this.plotSvg()}<div style="font-family:monospace;font-size:12px">${
        escapeHtml(this.progressLine())
      }</div></div>`,
    };
  }

  #summaryText(): string {
    const first = this.steps[0];
    const last = this.steps.at(-1);
    if (!first || !last) return "training history: no steps yet";
    return `loss ${this.sparkline()} ${formatLoss(first.loss)} → ${
      formatLoss(last.loss)
    }\n${this.progressLine()}`;
  }

  #liveView(): Displayable {
    return {
      [DISPLAY]: () => ({
        "text/plain": this.progressLine(),
        "text/html": `<div><div style="font-family:monospace;font-size:12px">${
          escapeHtml(this.progressLine())
        }</div>${this.plotSvg()}</div>`,
      }),
    };
  }
}

/** The metrics of a run: metric, before, after. */
export class MetricsTable implements Displayable {
  constructor(readonly rows: readonly MetricRow[]) {}

  [DISPLAY](): MimeBundle {
    const cells = this.rows.map((r) => [r.name, show(r.before ?? ""), show(r.after)]);
    const header = ["metric", "before", "after"];
    return {
      "text/plain": textTable(header, cells, { numeric: [1, 2] }),
      "text/html": htmlTable(header, cells as Cell[][], { numeric: [1, 2] }),
    };
  }
}

function show(value: string | number): string {
  return typeof value === "number" ? formatLoss(value) : value;
}
