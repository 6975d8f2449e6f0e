/**
 * The non-GEMM kernels of a Llama forward and backward pass (rust-kernels/src/ops): RMSNorm, RoPE, SwiGLU,
 * causal GQA attention, cross-entropy, AdamW and flat-vector helpers. Row-major f32 throughout.
 *
 * Every wrapper checks types, shapes and lengths before the call and throws naming the argument; outputs
 * may be passed in (to reuse buffers) or are allocated. An output must not overlap any input of the same
 * call (the kernel borrows them all at once), which is checked too.
 */
import { outputBuffer } from "./buffer_pool.ts";
import { check, kernels } from "./load.ts";
import { count, dim, elements, f32 } from "./validate.ts";

/** Target of rows that take no part in the loss (PyTorch's ignore_index). */
export const IGNORE_INDEX = -100;

type Ints = Int32Array | Uint32Array;

function ints<T extends Ints>(
  fn: string,
  name: string,
  value: unknown,
  ctor: { new (n: number): T; name: string },
  length?: number,
  shape?: string,
): T {
  if (!(value instanceof ctor)) {
    const got = value === null ? "null" : (value as object)?.constructor?.name ?? typeof value;
    throw new TypeError(`${fn}: ${name} must be a ${ctor.name}, got ${got}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${fn}: ${name} has ${value.length} elements, expected ${length} (${shape})`);
  }
  return value;
}

/** A finite number (and >= 0 unless negative values are allowed). */
function finite(fn: string, name: string, value: number, allowNegative = false): number {
  if (typeof value !== "number" || !Number.isFinite(value) || (!allowNegative && value < 0)) {
    const want = allowNegative ? "a finite number" : "a finite number >= 0";
    throw new RangeError(`${fn}: ${name} must be ${want}, got ${value}`);
  }
  return value;
}

type View = Float32Array | Int32Array | Uint32Array;

/** Throws if an output shares memory with another buffer of the call. */
function separate(fn: string, outputs: [string, View][], others: [string, View][]): void {
  const all = [...outputs, ...others];
  for (const [outName, out] of outputs) {
    for (const [name, other] of all) {
      if (other === out && name === outName) continue;
      if (other.buffer !== out.buffer || out.byteLength === 0 || other.byteLength === 0) continue;
      const [a0, a1] = [out.byteOffset, out.byteOffset + out.byteLength];
      const [b0, b1] = [other.byteOffset, other.byteOffset + other.byteLength];
      if (a0 < b1 && b0 < a1) throw new RangeError(`${fn}: ${outName} overlaps ${name} (same memory)`);
    }
  }
}

// --- RMSNorm -------------------------------------------------------------------------------------------

export interface RmsNormForward {
  /** [rows, dim] */
  y: Float32Array;
  /** [rows]: 1 / sqrt(mean(x²) + eps), what the backward pass needs. */
  rstd: Float32Array;
}

/** `y = w * (x * rstd)` per row of `x [rows, dim]`, as Llama's RMSNorm. */
export function rmsnormForward(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  dimension: number,
  eps: number,
  out: Partial<RmsNormForward> = {},
): RmsNormForward {
  const fn = "rmsnormForward";
  const n = elements(fn, "x", count(fn, "rows", rows), dim(fn, "dim", dimension));
  f32(fn, "x", x, n, "rows × dim");
  f32(fn, "w", w, dimension, "dim");
  finite(fn, "eps", eps);
  const y = f32(fn, "y", out.y ?? outputBuffer(n), n, "rows × dim");
  const rstd = f32(fn, "rstd", out.rstd ?? new Float32Array(rows), rows, "rows");
  separate(fn, [["y", y], ["rstd", rstd]], [["x", x], ["w", w]]);
  const status = kernels().qlora_rmsnorm_forward(x, n, w, dimension, rows, dimension, eps, y, n, rstd, rows);
  check(status, fn);
  return { y, rstd };
}

export interface RmsNormBackwardOptions {
  /** Where dx goes (allocated if absent). */
  dx?: Float32Array;
  /** Add into dx instead of overwriting it (default false). */
  accumulate?: boolean;
  /** [dim], added to; leave out when the weight is frozen. */
  dw?: Float32Array;
}

/** Gradient of RMSNorm with respect to x (returned) and, when `dw` is given, w (accumulated into dw). */
export function rmsnormBackward(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  rstd: Float32Array,
  rows: number,
  dimension: number,
  opts: RmsNormBackwardOptions = {},
): Float32Array {
  const fn = "rmsnormBackward";
  const n = elements(fn, "x", count(fn, "rows", rows), dim(fn, "dim", dimension));
  f32(fn, "dy", dy, n, "rows × dim");
  f32(fn, "x", x, n, "rows × dim");
  f32(fn, "w", w, dimension, "dim");
  f32(fn, "rstd", rstd, rows, "rows");
  const dx = f32(fn, "dx", opts.dx ?? new Float32Array(n), n, "rows × dim");
  const dw = opts.dw === undefined ? new Float32Array(0) : f32(fn, "dw", opts.dw, dimension, "dim");
  separate(fn, [["dx", dx], ["dw", dw]], [["dy", dy], ["x", x], ["w", w], ["rstd", rstd]]);
  const status = kernels().qlora_rmsnorm_backward(
    dy,
    n,
    x,
    n,
    w,
    dimension,
    rstd,
    rows,
    rows,
    dimension,
    dx,
    n,
    opts.accumulate ? 1 : 0,
    dw,
    dw.length,
  );
  check(status, fn);
  return dx;
}

// --- RoPE ----------------------------------------------------------------------------------------------

/**
 * Rotation table for a sequence: `cos`, `sin` `[tokens, rotaryDim / 2]` (rotaryDim = headDim unless only part
 * of each head rotates), shared by q, k, layers, backward.
 */
export interface RopeTable {
  tokens: number;
  half: number;
  cos: Float32Array;
  sin: Float32Array;
}

/**
 * The RoPE table for `positions [tokens]` and `invFreq [headDim / 2]` (which encodes rope_theta and any
 * rope_scaling), computed as transformers does in fp32: angle = f32(pos · invFreq[i]), then cos/sin of that
 * angle times `attentionScaling` (1 unless the scaling type says otherwise).
 */
export function ropeTable(positions: Uint32Array, invFreq: Float32Array, attentionScaling = 1): RopeTable {
  const fn = "ropeTable";
  const tokens = ints(fn, "positions", positions, Uint32Array).length;
  f32(fn, "invFreq", invFreq);
  const half = dim(fn, "invFreq.length", invFreq.length);
  finite(fn, "attentionScaling", attentionScaling, true);
  const n = elements(fn, "cos", tokens, half);
  const [cos, sin] = [new Float32Array(n), new Float32Array(n)];
  const status = kernels().qlora_rope_cos_sin(
    positions,
    tokens,
    invFreq,
    half,
    tokens,
    half,
    attentionScaling,
    cos,
    n,
    sin,
    n,
  );
  check(status, fn);
  return { tokens, half, cos, sin };
}

function ropeApply(
  fn: string,
  x: Float32Array,
  heads: number,
  table: RopeTable,
  inverse: boolean,
  headDim: number,
): void {
  if (typeof table !== "object" || table === null) throw new TypeError(`${fn}: table must be a RopeTable`);
  const { tokens, half } = table;
  dim(fn, "headDim", headDim);
  if (2 * half > headDim) {
    throw new RangeError(`${fn}: the table turns ${2 * half} features, more than headDim ${headDim}`);
  }
  const n = elements(fn, "x", count(fn, "table.tokens", tokens) * dim(fn, "heads", heads), headDim);
  f32(fn, "x", x, n, `tokens × heads × headDim = ${tokens} × ${heads} × ${headDim}`);
  f32(fn, "table.cos", table.cos, tokens * half, "tokens × rotaryDim / 2");
  f32(fn, "table.sin", table.sin, tokens * half, "tokens × rotaryDim / 2");
  separate(fn, [["x", x]], [["table.cos", table.cos], ["table.sin", table.sin]]);
  const status = kernels().qlora_rope_apply(
    x,
    n,
    tokens,
    heads,
    headDim,
    2 * half,
    table.cos,
    tokens * half,
    table.sin,
    tokens * half,
    inverse ? 1 : 0,
  );
  check(status, fn);
}

/**
 * Rotates `x [tokens, heads, headDim]` (q or k) in place, HF "rotate_half" layout: the first `2 · table.half`
 * features of each head turn, the rest pass (`headDim` defaults to the table's full rotary width).
 */
export function ropeForward(
  x: Float32Array,
  heads: number,
  table: RopeTable,
  headDim = 2 * table.half,
): void {
  ropeApply("ropeForward", x, heads, table, false, headDim);
}

/** The backward pass of `ropeForward`: rotates the gradient `dx [tokens, heads, headDim]` back, in place. */
export function ropeBackward(
  dx: Float32Array,
  heads: number,
  table: RopeTable,
  headDim = 2 * table.half,
): void {
  ropeApply("ropeBackward", dx, heads, table, true, headDim);
}

// --- SwiGLU --------------------------------------------------------------------------------------------

/** The gated activation of an MLP: SwiGLU (Llama) or GeGLU with tanh GELU (Gemma). */
export type GateActivation = "silu" | "gelu_tanh";

/** `h = silu(g) * u` elementwise (g = gate_proj(x), u = up_proj(x)). */
export function swigluForward(g: Float32Array, u: Float32Array, h?: Float32Array): Float32Array {
  return gluForward("swigluForward", "silu", g, u, h);
}

/** `h = gelu_tanh(g) * u` elementwise (Gemma's `gelu_pytorch_tanh`). */
export function gegluForward(g: Float32Array, u: Float32Array, h?: Float32Array): Float32Array {
  return gluForward("gegluForward", "gelu_tanh", g, u, h);
}

/** `h = act(g) * u` for either gate activation. */
export function gluForward(
  fn: string,
  activation: GateActivation,
  g: Float32Array,
  u: Float32Array,
  h?: Float32Array,
): Float32Array {
  const n = f32(fn, "g", g).length;
  f32(fn, "u", u, n, "like g");
  const out = f32(fn, "h", h ?? outputBuffer(n), n, "like g");
  separate(fn, [["h", out]], [["g", g], ["u", u]]);
  const kernel = activation === "silu" ? kernels().qlora_swiglu_forward : kernels().qlora_geglu_forward;
  check(kernel(g, n, u, n, out, n), fn);
  return out;
}

export interface SwigluGrads {
  dg: Float32Array;
  du: Float32Array;
}

/** Gradients of `h = silu(g) * u` given `dh` (dg, du overwritten). */
export function swigluBackward(
  dh: Float32Array,
  g: Float32Array,
  u: Float32Array,
  out: Partial<SwigluGrads> = {},
): SwigluGrads {
  return gluBackward("swigluBackward", "silu", dh, g, u, out);
}

/** Gradients of `h = gelu_tanh(g) * u` given `dh` (dg, du overwritten). */
export function gegluBackward(
  dh: Float32Array,
  g: Float32Array,
  u: Float32Array,
  out: Partial<SwigluGrads> = {},
): SwigluGrads {
  return gluBackward("gegluBackward", "gelu_tanh", dh, g, u, out);
}

/** Gradients of `h = act(g) * u` for either gate activation. */
export function gluBackward(
  fn: string,
  activation: GateActivation,
  dh: Float32Array,
  g: Float32Array,
  u: Float32Array,
  out: Partial<SwigluGrads> = {},
): SwigluGrads {
  const n = f32(fn, "dh", dh).length;
  f32(fn, "g", g, n, "like dh");
  f32(fn, "u", u, n, "like dh");
  const dg = f32(fn, "dg", out.dg ?? outputBuffer(n), n, "like dh");
  const du = f32(fn, "du", out.du ?? outputBuffer(n), n, "like dh");
  separate(fn, [["dg", dg], ["du", du]], [["dh", dh], ["g", g], ["u", u]]);
  const kernel = activation === "silu" ? kernels().qlora_swiglu_backward : kernels().qlora_geglu_backward;
  check(kernel(dh, n, g, n, u, n, dg, n, du, n), fn);
  return { dg, du };
}

// --- Attention -----------------------------------------------------------------------------------------

/**
 * One sequence of causal grouped-query attention: q `[tokens, heads, headDim]`, k and v
 * `[keys, kvHeads, headDim]`. Query row t sits at position `qOffset + t` and sees keys `0..=qOffset + t`;
 * in training `keys = tokens` and `qOffset = 0`, in generation k, v are the KV cache (keys may exceed
 * `qOffset + tokens`, e.g. a preallocated cache: the rest is never read). `heads % kvHeads == 0`. With a
 * sliding `window` > 0 a row sees only the `window` keys ending at its own position.
 */
export interface AttentionShape {
  tokens: number;
  keys: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  qOffset?: number;
  /** Sliding window (0 or absent: every earlier key). */
  window?: number;
}

interface Sizes {
  q: number;
  kv: number;
  lse: number;
  shape: [number, number, number, number, number, number, number];
}

function attentionSizes(fn: string, s: AttentionShape): Sizes {
  if (typeof s !== "object" || s === null) throw new TypeError(`${fn}: shape must be an AttentionShape`);
  const tokens = count(fn, "tokens", s.tokens);
  const keys = count(fn, "keys", s.keys);
  const heads = dim(fn, "heads", s.heads);
  const kvHeads = dim(fn, "kvHeads", s.kvHeads);
  const headDim = dim(fn, "headDim", s.headDim);
  const qOffset = count(fn, "qOffset", s.qOffset ?? 0);
  const window = count(fn, "window", s.window ?? 0);
  if (heads % kvHeads !== 0) {
    throw new RangeError(`${fn}: heads (${heads}) is not a multiple of kvHeads (${kvHeads})`);
  }
  if (qOffset + tokens > keys) {
    throw new RangeError(`${fn}: keys (${keys}) is less than qOffset + tokens (${qOffset} + ${tokens})`);
  }
  return {
    q: elements(fn, "q", tokens * heads, headDim),
    kv: elements(fn, "k", keys * kvHeads, headDim),
    lse: elements(fn, "lse", heads, tokens),
    shape: [tokens, keys, heads, kvHeads, headDim, qOffset, window],
  };
}

export interface AttentionForward {
  /** [tokens, heads, headDim] */
  o: Float32Array;
  /** [heads, tokens]: log-sum-exp of each row's scores, for the backward pass (empty when skipped). */
  lse: Float32Array;
}

export interface AttentionForwardOptions {
  o?: Float32Array;
  /** Where to keep lse; `null` skips it (inference). */
  lse?: Float32Array | null;
}

/** `o = softmax(q kᵀ / sqrt(headDim) + causal mask) v`, plus lse for the backward pass. */
export function attentionForward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  shape: AttentionShape,
  out: AttentionForwardOptions = {},
): AttentionForward {
  const fn = "attentionForward";
  const sz = attentionSizes(fn, shape);
  const qs = "tokens × heads × headDim";
  const kvs = "keys × kvHeads × headDim";
  f32(fn, "q", q, sz.q, qs);
  f32(fn, "k", k, sz.kv, kvs);
  f32(fn, "v", v, sz.kv, kvs);
  const o = f32(fn, "o", out.o ?? outputBuffer(sz.q), sz.q, qs);
  const lse = out.lse === null
    ? new Float32Array(0)
    : f32(fn, "lse", out.lse ?? new Float32Array(sz.lse), sz.lse, "heads × tokens");
  separate(fn, [["o", o], ["lse", lse]], [["q", q], ["k", k], ["v", v]]);
  const status = kernels().qlora_attention_forward(
    q,
    sz.q,
    k,
    sz.kv,
    v,
    sz.kv,
    ...sz.shape,
    o,
    sz.q,
    lse,
    lse.length,
  );
  check(status, fn);
  return { o, lse };
}

export interface AttentionGrads {
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

/**
 * Gradients of attention (overwritten; dk, dv rows past `qOffset + tokens` are zero) from the forward
 * inputs, its outputs `o` and `lse`, and `dout = dL/do`.
 */
export function attentionBackward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  o: Float32Array,
  lse: Float32Array,
  dout: Float32Array,
  shape: AttentionShape,
  out: Partial<AttentionGrads> = {},
): AttentionGrads {
  const fn = "attentionBackward";
  const sz = attentionSizes(fn, shape);
  const qs = "tokens × heads × headDim";
  const kvs = "keys × kvHeads × headDim";
  f32(fn, "q", q, sz.q, qs);
  f32(fn, "k", k, sz.kv, kvs);
  f32(fn, "v", v, sz.kv, kvs);
  f32(fn, "o", o, sz.q, qs);
  f32(fn, "lse", lse, sz.lse, "heads × tokens");
  f32(fn, "dout", dout, sz.q, qs);
  const dq = f32(fn, "dq", out.dq ?? outputBuffer(sz.q), sz.q, qs);
  const dk = f32(fn, "dk", out.dk ?? outputBuffer(sz.kv), sz.kv, kvs);
  const dv = f32(fn, "dv", out.dv ?? outputBuffer(sz.kv), sz.kv, kvs);
  separate(fn, [["dq", dq], ["dk", dk], ["dv", dv]], [
    ["q", q],
    ["k", k],
    ["v", v],
    ["o", o],
    ["lse", lse],
    ["dout", dout],
  ]);
  const status = kernels().qlora_attention_backward(
    q,
    sz.q,
    k,
    sz.kv,
    v,
    sz.kv,
    o,
    sz.q,
    lse,
    sz.lse,
    dout,
    sz.q,
    ...sz.shape,
    dq,
    sz.q,
    dk,
    sz.kv,
    dv,
    sz.kv,
  );
  check(status, fn);
  return { dq, dk, dv };
}

// --- Cross-entropy -------------------------------------------------------------------------------------

export interface CrossEntropyResult {
  /** Loss summed over the rows whose target is not IGNORE_INDEX. */
  lossSum: number;
  /** How many rows that is (mean loss = lossSum / count). */
  count: number;
}

/**
 * Cross-entropy of `logits [rows, vocab]` against `targets [rows]` (IGNORE_INDEX skips a row). In the same
 * pass the logits are OVERWRITTEN with their gradient `(softmax − onehot) · gradScale` (zeros on ignored
 * rows); `gradScale = 1 / count` gives the gradient of the mean loss. A target outside `[0, vocab)` other
 * than IGNORE_INDEX throws before anything is written.
 */
export function crossEntropy(
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  vocab: number,
  gradScale: number,
): CrossEntropyResult {
  const fn = "crossEntropy";
  const n = elements(fn, "logits", count(fn, "rows", rows), dim(fn, "vocab", vocab));
  f32(fn, "logits", logits, n, "rows × vocab");
  ints(fn, "targets", targets, Int32Array, rows, "rows");
  finite(fn, "gradScale", gradScale, true);
  separate(fn, [["logits", logits]], [["targets", targets]]);
  const result = new Float64Array(2);
  check(kernels().qlora_cross_entropy(logits, n, targets, rows, rows, vocab, gradScale, result, 2), fn);
  return { lossSum: result[0], count: result[1] };
}

/** `log_softmax(logits[r])[targets[r]]` per row (0 where the target is IGNORE_INDEX); logits unchanged. */
export function logSoftmaxGather(
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  vocab: number,
  out?: Float32Array,
): Float32Array {
  const fn = "logSoftmaxGather";
  const n = elements(fn, "logits", count(fn, "rows", rows), dim(fn, "vocab", vocab));
  f32(fn, "logits", logits, n, "rows × vocab");
  ints(fn, "targets", targets, Int32Array, rows, "rows");
  const result = f32(fn, "out", out ?? new Float32Array(rows), rows, "rows");
  separate(fn, [["out", result]], [["logits", logits], ["targets", targets]]);
  check(kernels().qlora_log_softmax_gather(logits, n, targets, rows, rows, vocab, result, rows), fn);
  return result;
}

// --- Optimiser and flat vectors ------------------------------------------------------------------------

/** torch.optim.AdamW's hyperparameters (decoupled weight decay). */
export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step in place on `p` with gradient `g` and state `m`, `v` (start at zero; `step` from 1). */
export function adamwStep(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  step: number,
  hp: AdamWHyper,
): void {
  const fn = "adamwStep";
  const n = f32(fn, "p", p).length;
  f32(fn, "g", g, n, "like p");
  f32(fn, "m", m, n, "like p");
  f32(fn, "v", v, n, "like p");
  dim(fn, "step", step);
  finite(fn, "lr", hp.lr);
  finite(fn, "eps", hp.eps);
  finite(fn, "weightDecay", hp.weightDecay);
  for (const [name, beta] of [["beta1", hp.beta1], ["beta2", hp.beta2]] as const) {
    if (!(beta >= 0 && beta < 1)) throw new RangeError(`${fn}: ${name} must be in [0, 1), got ${beta}`);
  }
  separate(fn, [["p", p], ["m", m], ["v", v]], [["g", g]]);
  const status = kernels().qlora_adamw(
    p,
    n,
    g,
    n,
    m,
    n,
    v,
    n,
    step,
    hp.lr,
    hp.beta1,
    hp.beta2,
    hp.eps,
    hp.weightDecay,
  );
  check(status, fn);
}

/** Σ x², accumulated in f64 (sum these over all gradients for the global norm). */
export function sumSquares(x: Float32Array): number {
  const fn = "sumSquares";
  f32(fn, "x", x);
  const out = new Float64Array(1);
  check(kernels().qlora_sum_squares(x, x.length, out, 1), fn);
  return out[0];
}

/** `x *= c` in place (e.g. gradient clipping). */
export function scaleInPlace(x: Float32Array, c: number): void {
  const fn = "scaleInPlace";
  f32(fn, "x", x);
  check(kernels().qlora_scale(x, x.length, finite(fn, "c", c, true)), fn);
}

/** `y += a · x` in place (gradient accumulation, residual adds). */
export function addScaled(y: Float32Array, a: number, x: Float32Array): void {
  const fn = "addScaled";
  const n = f32(fn, "y", y).length;
  f32(fn, "x", x, n, "like y");
  finite(fn, "a", a, true);
  separate(fn, [["y", y]], [["x", x]]);
  check(kernels().qlora_add_scaled(y, n, a, x, n), fn);
}
