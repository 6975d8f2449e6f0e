/**
 * Output buffers for the kernels, recycled. `new Float32Array(n)` zero-fills: a 7B training step allocates
 * ~15 GB of activations and gradients, and zeroing them cost ~0.6 s of a ~10.6 s step. Buffers that the
 * training graph frees (`recycleBuffer`) wait here, keyed by byte length, and `outputBuffer` hands them out
 * again without zeroing — only for outputs a kernel overwrites whole.
 *
 * A recycled buffer's memory moves to a new `ArrayBuffer` (`transfer()`, no copy) and the old one is
 * detached, so a view someone still held reads nothing rather than another tensor's data. The pool holds at
 * most `capacityBytes`: a buffer coming back evicts the ones pooled longest ago (sizes that went out of use,
 * e.g. the last batch's sequence length, leave rather than sit in memory).
 */

const MIN_BYTES = 64 * 1024; // smaller buffers are cheap to zero and not worth a map entry
// 128 MiB: a 7B step at 256 tokens then zero-fills 0.3 of its 7.7 GB of outputs (256 MiB: 0.1 GB, but
// +50 MB of peak RSS; 64 MiB: 3 GB). QLORA_POOL_MB overrides it (0 turns recycling off).
const DEFAULT_CAPACITY = poolMegabytes(Deno.env.get("QLORA_POOL_MB")) * 1024 * 1024;

const free = new Map<number, ArrayBuffer[]>();
// Pooled buffers in the order they came back (with buffers since taken out, skipped and compacted lazily).
let arrivals: ArrayBuffer[] = [];
const pooled = new Set<ArrayBuffer>();
let pooledBytes = 0;
let capacityBytes = DEFAULT_CAPACITY;
let poison = false;
// Bytes handed out since the last reset: recycled, and new (zero-filled by V8), of poolable sizes.
let recycledBytes = 0;
let freshBytes = 0;

function poolMegabytes(setting: string | undefined): number {
  if (setting === undefined || setting === "") return 128;
  const mb = Number(setting);
  if (!(Number.isFinite(mb) && mb >= 0)) {
    throw new RangeError(`QLORA_POOL_MB must be a number of MiB ≥ 0, got "${setting}"`);
  }
  return mb;
}

/** A `Float32Array` of `length` elements whose contents are unspecified: the caller must overwrite it all. */
export function outputBuffer(length: number): Float32Array {
  const bytes = length * 4;
  const stack = bytes >= MIN_BYTES ? free.get(bytes) : undefined;
  const recycled = stack?.pop();
  if (recycled) {
    pooled.delete(recycled);
    pooledBytes -= bytes;
    recycledBytes += bytes;
  } else if (bytes >= MIN_BYTES) {
    freshBytes += bytes;
  }
  const out = recycled ? new Float32Array(recycled) : new Float32Array(length);
  if (poison) out.fill(NaN);
  return out;
}

/**
 * Gives `buffer` back (nothing may read it again: it is detached here). Kept for `outputBuffer`, evicting
 * the buffers pooled longest ago when the pool is full; freed at once if it is small or larger than the
 * pool. Shared or already detached buffers are left alone.
 */
export function recycleBuffer(buffer: ArrayBufferLike | undefined): void {
  if (!(buffer instanceof ArrayBuffer) || buffer.detached || buffer.resizable) return;
  const bytes = buffer.byteLength;
  if (bytes < MIN_BYTES || bytes > capacityBytes) {
    buffer.transfer(0);
    return;
  }
  evict(capacityBytes - bytes);
  const moved = buffer.transfer();
  const stack = free.get(bytes) ?? [];
  stack.push(moved);
  free.set(bytes, stack);
  arrivals.push(moved);
  pooled.add(moved);
  pooledBytes += bytes;
}

/** Frees the buffers pooled longest ago until at most `limit` bytes remain. */
function evict(limit: number): void {
  let i = 0;
  while (pooledBytes > limit && i < arrivals.length) {
    const oldest = arrivals[i++];
    if (!pooled.has(oldest)) continue;
    const stack = free.get(oldest.byteLength)!;
    stack.splice(stack.indexOf(oldest), 1);
    pooled.delete(oldest);
    pooledBytes -= oldest.byteLength;
    oldest.transfer(0);
  }
  arrivals = i > 0 || arrivals.length > 4 * pooled.size + 64
    ? arrivals.slice(i).filter((b) => pooled.has(b))
    : arrivals;
}

/** Frees every pooled buffer (the end of a training run; memory returns to the system now). */
export function drainBufferPool(): void {
  evict(0);
  free.clear();
  arrivals = [];
}

/** Bytes of poolable outputs handed out since the last call: recycled, and new (zero-filled). */
export function takeBufferPoolCounts(): { recycledBytes: number; freshBytes: number } {
  const counts = { recycledBytes, freshBytes };
  recycledBytes = freshBytes = 0;
  return counts;
}

/** The most bytes the pool holds. */
export function bufferPoolCapacity(): number {
  return capacityBytes;
}

/** Bytes waiting in the pool (for tests and memory reports). */
export function pooledBufferBytes(): number {
  return pooledBytes;
}

/**
 * Tuning and testing: the pool's capacity in bytes (0 turns recycling off), and `poison`, which fills every
 * buffer `outputBuffer` returns with NaN so a kernel that reads its output before writing it shows up.
 */
export function configureBufferPool(opts: { capacityBytes?: number; poison?: boolean }): void {
  if (opts.capacityBytes !== undefined) {
    if (!(Number.isFinite(opts.capacityBytes) && opts.capacityBytes >= 0)) {
      throw new RangeError(`configureBufferPool: capacityBytes must be ≥ 0, got ${opts.capacityBytes}`);
    }
    capacityBytes = opts.capacityBytes;
    evict(capacityBytes);
  }
  if (opts.poison !== undefined) poison = opts.poison;
}
