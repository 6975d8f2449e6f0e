/**
 * Examples → batches for the trainer. A sequence of n tokens gives n-1 (input, target) pairs: the input at
 * position t is token t, the target is token t+1, or IGNORE_INDEX where token t+1 is not trained (prompt,
 * user turn, padding). Rows are padded at the end with the pad id (the tokenizer's pad, else EOS).
 *
 * Order: a seeded shuffle per epoch; the stream's state is just (epoch, position), so a resumed run sees
 * exactly the batches the interrupted one would have. A batch never spans two epochs, so an epoch's last
 * batch may have fewer rows.
 *
 * Packing (optional): rows of exactly `maxLength` positions holding several whole examples one after the
 * other (an example is never split across rows; the rest of a row is padding). `segmentStarts` lists where
 * each example starts in its row and `positions` restart at 0 there. A packed row needs a block-diagonal
 * causal mask (a token attends only to earlier tokens of its own example); with the plain causal mask the
 * examples would see each other. Padding sits after the last example, so causality alone hides it.
 */
import { Rng } from "../random.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import type { Example } from "./dataset.ts";

/** The target of a position without loss (PyTorch's cross-entropy convention). */
export const IGNORE_INDEX = -100;

export interface Batch {
  /** Rows (B) and positions per row (T). */
  rows: number;
  width: number;
  /** `[B*T]` token ids, row-major. */
  inputs: Uint32Array;
  /** `[B*T]` the next token, or IGNORE_INDEX. */
  targets: Int32Array;
  /** `[B*T]` position ids for RoPE (restarting at each packed example). */
  positions: Uint32Array;
  /** Per row, the start of each example in it (`[0]` when not packed). */
  segmentStarts: number[][];
  /** Positions holding real tokens (not padding). */
  tokens: number;
  /** Positions with a target (≠ IGNORE_INDEX): the loss is averaged over these. */
  lossTokens: number;
  /** Examples in the batch. */
  examples: number;
}

/** The id that pads rows: the tokenizer's pad token, else its EOS (targets there are ignored anyway). */
export function padTokenId(tokenizer: Tokenizer): number {
  const id = tokenizer.padTokenId ?? tokenizer.eosTokenId;
  if (id === null) throw new Error(`${tokenizer.source}: the tokenizer has neither a pad nor an EOS token`);
  return id;
}

/**
 * One batch; each row holds the examples listed for it, one after the other. `width` defaults to the
 * longest row.
 */
export function makeBatch(rows: readonly (readonly Example[])[], padId: number, width?: number): Batch {
  const lengths = rows.map((row) => row.reduce((sum, ex) => sum + ex.ids.length - 1, 0));
  const T = width ?? Math.max(1, ...lengths);
  const B = rows.length;
  const inputs = new Uint32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  const positions = new Uint32Array(B * T);
  const segmentStarts: number[][] = [];
  let tokens = 0;
  let lossTokens = 0;
  for (let r = 0; r < B; r++) {
    if (lengths[r] > T) throw new RangeError(`row ${r} needs ${lengths[r]} positions, the batch has ${T}`);
    const starts: number[] = [];
    let p = r * T;
    for (const { ids, mask } of rows[r]) {
      starts.push(p - r * T);
      for (let t = 0; t + 1 < ids.length; t++, p++) {
        inputs[p] = ids[t];
        positions[p] = t;
        if (mask[t + 1]) {
          targets[p] = ids[t + 1];
          lossTokens++;
        }
      }
    }
    // Padding keeps counting positions, so a row looks like one sequence to an unpacked model.
    for (let q = p, t = p - r * T - (starts.at(-1) ?? 0); q < (r + 1) * T; q++, t++) positions[q] = t;
    tokens += p - r * T;
    segmentStarts.push(starts);
  }
  const examples = rows.reduce((sum, row) => sum + row.length, 0);
  return { rows: B, width: T, inputs, targets, positions, segmentStarts, tokens, lossTokens, examples };
}

export interface BatchOptions {
  /** Rows per batch. */
  batchSize: number;
  /** The pad id (see padTokenId). */
  padId: number;
  /** Pack several examples per row of `maxLength` positions; default false. */
  pack?: boolean;
  /** Row width when packing (the dataset's maxLength). */
  maxLength?: number;
}

export interface StreamOptions extends BatchOptions {
  /** Seed of the per-epoch shuffles. */
  seed: number;
  /** Shuffle each epoch; default true. */
  shuffle?: boolean;
}

/** Where a stream is: the epoch and the index (in that epoch's order) of the next example. */
export interface StreamState {
  epoch: number;
  position: number;
}

/** An endless stream of training batches, epoch after epoch. */
export class BatchStream {
  #epoch: number;
  #position: number;
  #order: number[] = [];
  #orderEpoch = -1;

  constructor(
    readonly examples: readonly Example[],
    readonly options: StreamOptions,
    state: StreamState = { epoch: 0, position: 0 },
  ) {
    checkOptions(examples, options);
    if (!Number.isInteger(state.epoch) || state.epoch < 0 || !Number.isInteger(state.position)) {
      throw new RangeError(`invalid stream state ${JSON.stringify(state)}`);
    }
    if (state.position < 0 || state.position > examples.length) {
      throw new RangeError(`stream position ${state.position} is outside the ${examples.length} examples`);
    }
    this.#epoch = state.epoch;
    this.#position = state.position;
  }

  /** The state to save with a checkpoint; `new BatchStream(examples, options, state)` resumes from it. */
  get state(): StreamState {
    return { epoch: this.#epoch, position: this.#position };
  }

  /** The next batch, with the epoch it belongs to. */
  next(): Batch & { epoch: number } {
    if (this.#position >= this.examples.length) {
      this.#epoch++;
      this.#position = 0;
    }
    const order = this.#orderOf(this.#epoch);
    const { rows, next } = takeRows(this.examples, order, this.#position, this.options);
    this.#position = next;
    return {
      ...makeBatch(rows, this.options.padId),
      epoch: this.#epoch,
    };
  }

  /** How many batches make up `epoch` (with packing it depends on that epoch's order). */
  batchesInEpoch(epoch = this.#epoch): number {
    const order = this.#orderOf(epoch);
    let count = 0;
    for (let position = 0; position < order.length; count++) {
      position = takeRows(this.examples, order, position, this.options).next;
    }
    return count;
  }

  #orderOf(epoch: number): number[] {
    if (epoch !== this.#orderEpoch) {
      this.#order = this.options.shuffle === false
        ? this.examples.map((_, i) => i)
        : shuffled(this.examples.length, this.options.seed, epoch);
      this.#orderEpoch = epoch;
    }
    return this.#order;
  }
}

/** Every example once, in order (for validation). */
export function* orderedBatches(examples: readonly Example[], options: BatchOptions): Generator<Batch> {
  checkOptions(examples, options);
  const order = examples.map((_, i) => i);
  for (let position = 0; position < order.length;) {
    const { rows, next } = takeRows(examples, order, position, options);
    position = next;
    yield makeBatch(rows, options.padId);
  }
}

/** Up to batchSize rows from `order[position..]`; packed rows take examples while they fit. */
function takeRows(
  examples: readonly Example[],
  order: readonly number[],
  position: number,
  options: BatchOptions,
): { rows: Example[][]; next: number } {
  const rows: Example[][] = [];
  while (rows.length < options.batchSize && position < order.length) {
    if (!options.pack) {
      rows.push([examples[order[position++]]]);
      continue;
    }
    const row: Example[] = [];
    let used = 0;
    while (position < order.length) {
      const need = examples[order[position]].ids.length - 1;
      if (row.length > 0 && used + need > options.maxLength!) break;
      row.push(examples[order[position++]]);
      used += need;
    }
    rows.push(row);
  }
  return { rows, next: position };
}

/** A permutation of 0..n-1 that depends only on (seed, epoch) (Fisher–Yates). */
export function shuffled(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function checkOptions(examples: readonly Example[], options: BatchOptions): void {
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new RangeError(`batchSize must be an integer ≥ 1, got ${options.batchSize}`);
  }
  if (examples.length === 0) throw new RangeError("no examples to batch");
  if (options.pack) {
    const max = options.maxLength;
    if (max === undefined || !Number.isInteger(max) || max < 1) {
      throw new RangeError(`packing needs maxLength (the row width), got ${max}`);
    }
    const long = examples.find((ex) => ex.ids.length - 1 > max);
    if (long) {
      throw new RangeError(
        `an example (${long.record.file}:${long.record.line}) has ${long.ids.length} tokens, more than ` +
          `maxLength ${max} + 1; load the dataset with the same maxLength`,
      );
    }
  }
}
