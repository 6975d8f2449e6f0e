/**
 * Causal grouped-query attention over a batch laid out as rows: q `[rows, heads·headDim]`, k and v
 * `[rows, kvHeads·headDim]`, where the rows hold the batch's sequences one after the other. Each sequence
 * is one kernel call on its own slice (so sequences never see each other; packed examples are simply
 * separate sequences); the linears before and after run on all rows at once. The forward keeps each row's
 * log-sum-exp for the backward.
 *
 * Generation passes `past` instead: the rows are the newest positions of one sequence whose keys and values
 * (these rows' included) sit in a KV cache. That form is inference only: it records nothing.
 */
import { outputBuffer } from "../../../ffi/buffer_pool.ts";
import { attentionBackward, attentionForward } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export interface AttentionLayout {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The sequences as `[firstRow, rows]`, disjoint and in order; rows outside all of them get o = 0. */
  sequences: readonly (readonly [number, number])[];
  /** Sliding window: a row sees the `window` keys ending at its own position (absent: all earlier keys). */
  window?: number;
}

/** The cached keys and values of one sequence, `[positions, kvHeads·headDim]`; the rows of q are positions `offset…`. */
export interface PastKeys {
  keys: Float32Array;
  values: Float32Array;
  offset: number;
}

/** Attention of the newest rows of a sequence over its cached keys (generation; nothing is recorded). */
export function cachedAttention(
  q: Tensor,
  past: PastKeys,
  layout: Omit<AttentionLayout, "sequences">,
): Tensor {
  const { heads, kvHeads, headDim, window } = layout;
  const kw = kvHeads * headDim;
  const keys = past.keys.length / kw;
  if (q.cols !== heads * headDim || !Number.isInteger(keys) || past.values.length !== past.keys.length) {
    throw new RangeError(
      `cachedAttention: q [${q.shape}] and ${past.keys.length} / ${past.values.length} cached values do not ` +
        `fit ${heads}/${kvHeads} heads of ${headDim}`,
    );
  }
  if (past.offset + q.rows > keys) {
    throw new RangeError(
      `cachedAttention: rows ${past.offset}…${past.offset + q.rows - 1} are not in the cache`,
    );
  }
  const o = new Float32Array(q.size);
  attentionForward(q.data, past.keys, past.values, {
    tokens: q.rows,
    keys,
    heads,
    kvHeads,
    headDim,
    qOffset: past.offset,
    window,
  }, { o, lse: null });
  return new Tensor(o, q.shape);
}

export function attention(
  tape: Tape | undefined,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  layout: AttentionLayout,
): Tensor {
  const { heads, kvHeads, headDim, sequences, window } = layout;
  const [qw, kw] = [heads * headDim, kvHeads * headDim];
  const rows = q.rows;
  if (q.cols !== qw || k.cols !== kw || v.cols !== kw || k.rows !== rows || v.rows !== rows) {
    throw new RangeError(
      `attention: q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit ${heads}/${kvHeads} heads of ${headDim}`,
    );
  }
  let end = 0;
  for (const [first, n] of sequences) {
    if (first < end || n < 1 || first + n > rows) {
      throw new RangeError(
        `attention: sequence [${first}, ${n}] overlaps another or leaves the ${rows} rows`,
      );
    }
    end = first + n;
  }
  // Rows outside every sequence (padding) stay zero, so only a full cover may take unzeroed buffers.
  const covered = sequences.reduce((sum, [, n]) => sum + n, 0) === rows;
  const buffer = (n: number) => covered ? outputBuffer(n) : new Float32Array(n);
  const o = buffer(rows * qw);
  const lse = buffer(rows * heads); // per sequence: [heads, tokens] at offset first·heads
  const slices = (first: number, n: number) => ({
    q: [first * qw, (first + n) * qw] as const,
    kv: [first * kw, (first + n) * kw] as const,
    lse: lse.subarray(first * heads, (first + n) * heads),
    shape: { tokens: n, keys: n, heads, kvHeads, headDim, window },
  });
  for (const [first, n] of sequences) {
    const s = slices(first, n);
    attentionForward(q.data.subarray(...s.q), k.data.subarray(...s.kv), v.data.subarray(...s.kv), s.shape, {
      o: o.subarray(...s.q),
      lse: s.lse,
    });
  }
  const out = new Tensor(o, [rows, qw]);
  const [qData, kData, vData] = [q.data, k.data, v.data];
  tape?.record("attention", [q, k, v], [out], () => {
    const dout = out.grad!;
    const [dq, dk, dv] = [buffer(q.size), buffer(k.size), buffer(v.size)];
    for (const [first, n] of sequences) {
      const s = slices(first, n);
      attentionBackward(
        qData.subarray(...s.q),
        kData.subarray(...s.kv),
        vData.subarray(...s.kv),
        o.subarray(...s.q),
        s.lse,
        dout.subarray(...s.q),
        s.shape,
        { dq: dq.subarray(...s.q), dk: dk.subarray(...s.kv), dv: dv.subarray(...s.kv) },
      );
    }
    if (q.requiresGrad) addGrad(q, dq);
    if (k.requiresGrad) addGrad(k, dk);
    if (v.requiresGrad) addGrad(v, dv);
  });
  return out;
}
