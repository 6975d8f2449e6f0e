/**
 * Dense f32 GEMMs. `sgemm` is the general strided form; the named helpers are the three products of
 * training: `X·Wᵀ` (forward), `dY·W` (gradient to the input) and `dYᵀ·X` (gradient of a weight).
 */
import { outputBuffer } from "./buffer_pool.ts";
import { check, kernels } from "./load.ts";
import { type Compute, computeCode } from "./nf4.ts";
import { count, dim, elements, f32 } from "./validate.ts";

/** A matrix operand: data plus the strides of its rows and columns (in elements). */
export interface StridedMatrix {
  data: Float32Array;
  rowStride: number;
  colStride: number;
}

export interface GemmOptions {
  alpha?: number;
  /** 0 (default) overwrites C without reading it; 1 accumulates. */
  beta?: number;
  compute?: Compute;
}

function extent(rows: number, cols: number, rs: number, cs: number): number {
  return (rows - 1) * rs + (cols - 1) * cs + 1;
}

/** `C = alpha · A · B + beta · C`: A is m×k, B is k×n (any strides), C row-major m×n with row stride ldc. */
export function sgemm(
  m: number,
  n: number,
  k: number,
  a: StridedMatrix,
  b: StridedMatrix,
  c: Float32Array,
  ldc: number = n,
  opts: GemmOptions = {},
): Float32Array {
  const fn = "sgemm";
  dim(fn, "m", m);
  dim(fn, "n", n);
  count(fn, "k", k);
  for (
    const [name, v] of [["a.rowStride", a.rowStride], ["a.colStride", a.colStride], [
      "b.rowStride",
      b.rowStride,
    ], [
      "b.colStride",
      b.colStride,
    ], ["ldc", ldc]] as const
  ) count(fn, name, v);
  f32(fn, "a.data", a.data);
  f32(fn, "b.data", b.data);
  f32(fn, "c", c);
  if (ldc < n) throw new RangeError(`${fn}: ldc (${ldc}) is less than n (${n})`);
  if (k > 0 && extent(m, k, a.rowStride, a.colStride) > a.data.length) {
    throw new RangeError(
      `${fn}: a (${m}×${k} with strides ${a.rowStride},${a.colStride}) overruns its ${a.data.length} elements`,
    );
  }
  if (k > 0 && extent(k, n, b.rowStride, b.colStride) > b.data.length) {
    throw new RangeError(
      `${fn}: b (${k}×${n} with strides ${b.rowStride},${b.colStride}) overruns its ${b.data.length} elements`,
    );
  }
  if (extent(m, n, ldc, 1) > c.length) {
    throw new RangeError(
      `${fn}: c (${m}×${n}, row stride ${ldc}) needs ${extent(m, n, ldc, 1)} elements, has ${c.length}`,
    );
  }
  const { alpha = 1, beta = 0 } = opts;
  const status = kernels().qlora_sgemm(
    m,
    n,
    k,
    a.data,
    a.data.length,
    a.rowStride,
    a.colStride,
    b.data,
    b.data.length,
    b.rowStride,
    b.colStride,
    c,
    c.length,
    ldc,
    alpha,
    beta,
    computeCode(fn, opts.compute),
  );
  check(status, fn);
  return c;
}

/** The caller's output, or a new one: recycled when beta is 0 (the product overwrites it), else zeros. */
function output(
  fn: string,
  rows: number,
  cols: number,
  out: Float32Array | undefined,
  opts: GemmOptions,
): Float32Array {
  if (out) return out;
  const n = elements(fn, "output", rows, cols);
  return opts.beta ? new Float32Array(n) : outputBuffer(n);
}

/** `Y[m, out] = X[m, in] · W[out, in]ᵀ` (+ beta·Y). */
export function matmulXWt(
  x: Float32Array,
  w: Float32Array,
  m: number,
  inDim: number,
  outDim: number,
  y?: Float32Array,
  opts: GemmOptions = {},
): Float32Array {
  const fn = "matmulXWt";
  f32(fn, "x", x, elements(fn, "x", dim(fn, "m", m), dim(fn, "in", inDim)), "m × in");
  f32(fn, "w", w, elements(fn, "w", dim(fn, "out", outDim), inDim), "out × in");
  const out = output(fn, m, outDim, y, opts);
  f32(fn, "y", out, m * outDim, "m × out");
  return sgemm(
    m,
    outDim,
    inDim,
    { data: x, rowStride: inDim, colStride: 1 },
    {
      data: w,
      rowStride: 1,
      colStride: inDim,
    },
    out,
    outDim,
    opts,
  );
}

/** `dX[m, in] = dY[m, out] · W[out, in]` (+ beta·dX). */
export function matmulDyW(
  dy: Float32Array,
  w: Float32Array,
  m: number,
  inDim: number,
  outDim: number,
  dx?: Float32Array,
  opts: GemmOptions = {},
): Float32Array {
  const fn = "matmulDyW";
  f32(fn, "dy", dy, elements(fn, "dy", dim(fn, "m", m), dim(fn, "out", outDim)), "m × out");
  f32(fn, "w", w, elements(fn, "w", outDim, dim(fn, "in", inDim)), "out × in");
  const out = output(fn, m, inDim, dx, opts);
  f32(fn, "dx", out, m * inDim, "m × in");
  return sgemm(
    m,
    inDim,
    outDim,
    { data: dy, rowStride: outDim, colStride: 1 },
    {
      data: w,
      rowStride: inDim,
      colStride: 1,
    },
    out,
    inDim,
    opts,
  );
}

/** `dW[out, in] = dY[m, out]ᵀ · X[m, in]` (+ beta·dW; pass beta 1 to accumulate gradients). */
export function matmulDyTX(
  dy: Float32Array,
  x: Float32Array,
  m: number,
  inDim: number,
  outDim: number,
  dw?: Float32Array,
  opts: GemmOptions = {},
): Float32Array {
  const fn = "matmulDyTX";
  f32(fn, "dy", dy, elements(fn, "dy", dim(fn, "m", m), dim(fn, "out", outDim)), "m × out");
  f32(fn, "x", x, elements(fn, "x", m, dim(fn, "in", inDim)), "m × in");
  const out = output(fn, outDim, inDim, dw, opts);
  f32(fn, "dw", out, outDim * inDim, "out × in");
  return sgemm(
    outDim,
    inDim,
    m,
    { data: dy, rowStride: 1, colStride: outDim },
    {
      data: x,
      rowStride: inDim,
      colStride: 1,
    },
    out,
    inDim,
    opts,
  );
}
