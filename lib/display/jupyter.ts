/**
 * Showing things in a Deno Jupyter notebook, with a plain-text fallback everywhere else.
 *
 * A *displayable* has a `[Symbol.for("Jupyter.display")]()` method returning a MIME bundle
 * (`{"text/plain": …, "text/html": …}`): the Deno kernel renders it when it is a cell's last expression, and
 * `display(x)` sends it at any point of a cell. Outside a kernel `display(x)` prints its `text/plain`.
 *
 * `LiveDisplay` is one output updated in place (Jupyter's `display_id` + `update_display_data`), e.g. a loss
 * plot redrawn after every training step. Its updates are sent from synchronous callbacks, so each one is
 * queued and goes out when the code yields to the event loop (the trainer does after every step); updates
 * closer together than `minIntervalMs` are merged into the latest, and `flush()` waits until all are sent.
 */

/** The key of the display method, shared with the Deno kernel. */
export const DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** MIME type → content. `text/plain` is always there: it is the fallback of every front end. */
export type MimeBundle = { "text/plain": string } & Record<string, string>;

export interface Displayable {
  [DISPLAY](): MimeBundle;
}

/** Options of `Deno.jupyter.display` that the helpers use. */
export interface SinkOptions {
  raw: true;
  display_id?: string;
  update?: boolean;
}

/** Where bundles go in a notebook: `Deno.jupyter` in the kernel (tests pass a recorder). */
export interface DisplaySink {
  display(bundle: MimeBundle, options: SinkOptions): Promise<void>;
}

export interface DisplayOptions {
  /** Where to send bundles; default `Deno.jupyter` inside a kernel, none elsewhere (plain text). */
  sink?: DisplaySink;
  /** Where plain text goes outside a notebook; default `console.log`. */
  log?: (text: string) => void;
}

/** `Deno.jupyter` when running inside the Deno kernel, else undefined (reading it elsewhere throws). */
export function jupyterSink(): DisplaySink | undefined {
  try {
    const jupyter = (Deno as unknown as { jupyter?: Partial<DisplaySink> }).jupyter;
    return typeof jupyter?.display === "function" ? jupyter as DisplaySink : undefined;
  } catch {
    return undefined;
  }
}

/** True inside a Deno Jupyter kernel. */
export function inJupyter(): boolean {
  return jupyterSink() !== undefined;
}

export function isDisplayable(value: unknown): value is Displayable {
  return typeof value === "object" && value !== null &&
    typeof (value as Partial<Displayable>)[DISPLAY] === "function";
}

/** The bundle of a displayable (or the bundle itself). */
export function bundleOf(value: Displayable | MimeBundle): MimeBundle {
  const bundle = isDisplayable(value) ? value[DISPLAY]() : value;
  if (typeof bundle?.["text/plain"] !== "string") {
    throw new TypeError("display: a MIME bundle needs a text/plain entry");
  }
  return bundle;
}

/** A displayable made of a fixed bundle. */
export function displayable(bundle: MimeBundle): Displayable {
  return { [DISPLAY]: () => bundle };
}

/** Shows `value` now: as rich output in a notebook, as its plain text elsewhere. */
export async function display(value: Displayable | MimeBundle, opts: DisplayOptions = {}): Promise<void> {
  const bundle = bundleOf(value);
  const sink = opts.sink ?? jupyterSink();
  if (sink) await sink.display(bundle, { raw: true });
  else (opts.log ?? console.log)(bundle["text/plain"]);
}

export interface LiveDisplayOptions extends DisplayOptions {
  /** The Jupyter display id (default a random UUID). */
  id?: string;
  /** In a notebook: least milliseconds between two updates; closer ones merge into the latest (default 250). */
  minIntervalMs?: number;
  /** Outside a notebook: least milliseconds between two printed updates (default 10 000; final ones always print). */
  plainEveryMs?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

/** One output, shown once and then updated in place (plain text: printed now and then). */
export class LiveDisplay {
  readonly id: string;
  /** True when updates go to a notebook (false: plain text). */
  readonly notebook: boolean;
  readonly #sink?: DisplaySink;
  readonly #log: (text: string) => void;
  readonly #minIntervalMs: number;
  readonly #plainEveryMs: number;
  readonly #now: () => number;
  #shown = false;
  #lastSent = -Infinity;
  /** The latest value not yet sent (rendered only when it is sent). */
  #pending?: Displayable | MimeBundle;
  #timer?: ReturnType<typeof setTimeout>;
  #queue: Promise<void> = Promise.resolve();
  #error?: unknown;
  #sent = 0;
  #lastPrinted?: string;

  constructor(opts: LiveDisplayOptions = {}) {
    this.#sink = opts.sink ?? jupyterSink();
    this.notebook = this.#sink !== undefined;
    this.#log = opts.log ?? console.log;
    this.id = opts.id ?? crypto.randomUUID();
    this.#minIntervalMs = opts.minIntervalMs ?? 250;
    this.#plainEveryMs = opts.plainEveryMs ?? 10_000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Bundles handed to the notebook (or lines printed) so far. */
  get sent(): number {
    return this.#sent;
  }

  /** Shows the output (in a notebook: creates it, so later updates replace it). */
  show(value: Displayable | MimeBundle): void {
    if (this.#shown) {
      this.update(value, { final: true });
      return;
    }
    this.#shown = true;
    this.#send(value, false);
  }

  /**
   * Replaces the output with `value`. Throttled: updates within `minIntervalMs` of the last one are merged
   * (only the latest is rendered and sent, by a timer or the next update); `final` sends at once.
   */
  update(value: Displayable | MimeBundle, opts: { final?: boolean } = {}): void {
    if (!this.#shown) {
      this.show(value);
      return;
    }
    this.#pending = value;
    const wait = (this.notebook ? this.#minIntervalMs : this.#plainEveryMs) - (this.#now() - this.#lastSent);
    if (opts.final || wait <= 0) {
      this.#sendPending();
    } else if (this.notebook && this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#sendPending();
      }, wait);
    }
  }

  /** Sends what is pending and waits until everything sent so far has been delivered; rethrows a failure. */
  async flush(): Promise<void> {
    this.#sendPending();
    await this.#queue;
    if (this.#error !== undefined) {
      const error = this.#error;
      this.#error = undefined;
      throw error;
    }
  }

  #sendPending(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const value = this.#pending;
    this.#pending = undefined;
    if (value !== undefined) this.#send(value, true);
  }

  #send(value: Displayable | MimeBundle, update: boolean): void {
    this.#lastSent = this.#now();
    const bundle = bundleOf(value);
    const sink = this.#sink;
    if (!sink) {
      // A line is printed once, even when a final update repeats it.
      const text = bundle["text/plain"];
      if (text !== this.#lastPrinted) {
        this.#log(text);
        this.#sent++;
      }
      this.#lastPrinted = text;
      return;
    }
    this.#sent++;
    const options: SinkOptions = { raw: true, display_id: this.id, ...(update ? { update: true } : {}) };
    // Chained so updates arrive in order; a failure is kept for flush() instead of becoming an unhandled
    // rejection in the middle of a training run.
    this.#queue = this.#queue.then(() => sink.display(bundle, options)).catch((error) => {
      this.#error ??= error;
    });
  }
}
