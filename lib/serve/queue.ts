/**
 * One generation at a time (it takes every core) and a bounded line of requests waiting for their turn.
 * A full line is refused at once rather than letting clients wait without bound; a waiting request whose
 * client leaves gives up its place.
 */
export class QueueFullError extends Error {
  override name = "QueueFullError";
}

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (error: unknown) => void;
}

export class GenerationQueue {
  #busy = false;
  #closed = false;
  readonly #waiting: Waiter[] = [];

  /** `maxWaiting` requests may wait while one runs (0: only the running one). */
  constructor(readonly maxWaiting: number) {
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) {
      throw new RangeError(`maxWaiting must be an integer ≥ 0, got ${maxWaiting}`);
    }
  }

  get busy(): boolean {
    return this.#busy;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Takes a place in line; throws QueueFullError at once when the line is full. The promise resolves with
   * `release` (call it when the generation is over) when it is this caller's turn, and rejects with the
   * signal's reason if the signal aborts first.
   */
  join(signal?: AbortSignal): Promise<() => void> {
    if (this.#closed) throw new QueueFullError("the server is shutting down");
    signal?.throwIfAborted();
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve(this.#releaser());
    }
    if (this.#waiting.length >= this.maxWaiting) {
      throw new QueueFullError(
        `the server is busy: 1 generation running and ${this.#waiting.length} waiting (queue size ${this.maxWaiting})`,
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject };
      this.#waiting.push(waiter);
      signal?.addEventListener("abort", () => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) {
          this.#waiting.splice(at, 1);
          reject(signal.reason);
        }
      }, { once: true });
    });
  }

  /** Refuses new requests from now on; those already waiting still get their turn. */
  close(): void {
    this.#closed = true;
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next.resolve(this.#releaser());
      else this.#busy = false;
    };
  }
}
