/**
 * Causal grouped-query attention over a batch laid out as rows: q `[rows, heads·headDim]`, k and v
 * `[rows, kvHeads·headDim]`, where the rows hold the batch's sequences one after the other. Each sequence
 * is one kernel call on its own slice (so sequences never see each other; packed examples are simply
 * separate sequences); the linears before and after run on all rows at once. The forward keeps each row's
 * log-sum-exp for the backward.
 */
import { attentionBackward, attentionForward } from "../../../ffi/ops.ts";
import { addGrad, type Tape } from "../tape.ts";
import { Tensor } from "../tensor.ts";

export interface AttentionLayout {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** The sequences as `[firstRow, rows]`, disjoint and in order; rows outside all of them get o = 0. */
  sequences: readonly (readonly [number, number])[];
}

export function attention(
  tape: Tape | undefined,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  layout: AttentionLayout,
): Tensor {
  const { heads, kvHeads, headDim, sequences } = layout;
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
  const o = new Float32Array(rows * qw);
  const lse = new Float32Array(rows * heads); // per sequence: [heads, tokens] at offset first·heads
  const slices = (first: number, n: number) => ({
    q: [first * qw, (first + n) * qw] as const,
    kv: [first * kw, (first + n) * kw] as const,
    lse: lse.subarray(first * heads, (first + n) * heads),
    shape: { tokens: n, keys: n, heads, kvHeads, headDim },
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
    const [dq, dk, dv] = [new Float32Array(q.size), new Float32Array(k.size), new Float32Array(v.size)];
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
