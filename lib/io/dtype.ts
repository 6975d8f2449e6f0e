/**
 * Element types of safetensors files: their names, sizes, the TypedArray each is read into,
 * and the float conversions between f32 and the 16-bit formats.
 *
 * F16 and BF16 are read as raw bits (Uint16Array); `halfToF32` is the single place that widens them.
 */

/** Bytes per element and the TypedArray that holds the elements, for every dtype we read. */
export const DTYPES = {
  F64: { bytes: 8, array: Float64Array },
  F32: { bytes: 4, array: Float32Array },
  F16: { bytes: 2, array: Uint16Array },
  BF16: { bytes: 2, array: Uint16Array },
  I64: { bytes: 8, array: BigInt64Array },
  I32: { bytes: 4, array: Int32Array },
  I16: { bytes: 2, array: Int16Array },
  I8: { bytes: 1, array: Int8Array },
  U64: { bytes: 8, array: BigUint64Array },
  U32: { bytes: 4, array: Uint32Array },
  U16: { bytes: 2, array: Uint16Array },
  U8: { bytes: 1, array: Uint8Array },
  BOOL: { bytes: 1, array: Uint8Array },
} as const;

export type DType = keyof typeof DTYPES;

/** The TypedArray a tensor of dtype `D` is read into (F16/BF16: their raw bits). */
export type TensorData<D extends DType = DType> = InstanceType<(typeof DTYPES)[D]["array"]>;

export function isDType(name: unknown): name is DType {
  return typeof name === "string" && Object.hasOwn(DTYPES, name);
}

export function dtypeBytes(dtype: DType): number {
  return DTYPES[dtype].bytes;
}

/** Number of elements of a shape; `[]` is a scalar (1 element). */
export function elementCount(shape: readonly number[]): number {
  return shape.reduce((count, dim) => count * dim, 1);
}

/** A TypedArray of `dtype` over `bytes` (no copy); `bytes` must be aligned to the element size. */
export function viewAs<D extends DType>(dtype: D, bytes: Uint8Array<ArrayBuffer>): TensorData<D> {
  const { array, bytes: size } = DTYPES[dtype];
  return new array(bytes.buffer, bytes.byteOffset, bytes.byteLength / size) as TensorData<D>;
}

/** The bytes of a TypedArray (no copy). */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// ---------------------------------------------------------------------------------------------
// 16-bit floats → f32

/** f32 bit patterns of all 65536 f16 values, built on first use (256 KiB; a lookup beats bit fiddling). */
let f16ToF32Table: Uint32Array | undefined;

/** Exact f16 → f32 on bit patterns, including subnormals, ±inf and NaN payloads (made quiet). */
function f16BitsToF32Bits(half: number): number {
  const sign = (half & 0x8000) << 16;
  const exponent = (half >> 10) & 0x1f;
  let mantissa = half & 0x3ff;
  if (exponent === 0x1f) {
    // NaNs come out quiet with their payload, as hardware (F16C) and torch convert them.
    return (sign | (mantissa === 0 ? 0x7f800000 : 0x7fc00000 | (mantissa << 13))) >>> 0;
  }
  if (exponent !== 0) return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal half: shift the mantissa up until its leading 1 becomes the implicit bit of a normal f32.
  let shifts = 0;
  while ((mantissa & 0x400) === 0) {
    mantissa <<= 1;
    shifts++;
  }
  return (sign | ((113 - shifts) << 23) | ((mantissa & 0x3ff) << 13)) >>> 0;
}

function f16Table(): Uint32Array {
  if (f16ToF32Table === undefined) {
    f16ToF32Table = new Uint32Array(65536);
    for (let half = 0; half < 65536; half++) f16ToF32Table[half] = f16BitsToF32Bits(half);
  }
  return f16ToF32Table;
}

/**
 * Widens F16 or BF16 bit patterns to f32 (exact: every 16-bit value is representable in f32).
 * BF16 is the top half of an f32, so it is a shift; F16 goes through a table of all 65536 values.
 */
export function halfToF32(
  dtype: "F16" | "BF16",
  bits: Uint16Array,
  out: Float32Array = new Float32Array(bits.length),
): Float32Array {
  if (out.length !== bits.length) {
    throw new RangeError(`halfToF32: output has ${out.length} elements, input ${bits.length}`);
  }
  const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  if (dtype === "BF16") {
    for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  } else {
    const table = f16Table();
    for (let i = 0; i < bits.length; i++) outBits[i] = table[bits[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// f32 → 16-bit floats (round to nearest, ties to even; NaN stays NaN)

/** f32 → BF16 bits, rounding to nearest even; NaNs keep their sign and get the quiet bit. */
export function f32ToBf16(
  values: Float32Array,
  out: Uint16Array = new Uint16Array(values.length),
): Uint16Array {
  if (out.length !== values.length) {
    throw new RangeError(`f32ToBf16: output has ${out.length} elements, input ${values.length}`);
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    if ((x & 0x7fffffff) > 0x7f800000) {
      // Truncating could clear every mantissa bit left and turn a NaN into inf; force the quiet bit.
      out[i] = (x >>> 16) | 0x40;
    } else {
      // Adding 0x7fff plus the lowest kept bit rounds up above the halfway point and at it when odd.
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** f32 → F16 bits, rounding to nearest even; overflow gives ±inf, tiny values f16 subnormals or ±0. */
export function f32ToF16(
  values: Float32Array,
  out: Uint16Array = new Uint16Array(values.length),
): Uint16Array {
  if (out.length !== values.length) {
    throw new RangeError(`f32ToF16: output has ${out.length} elements, input ${values.length}`);
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  const halfExponent = exponent - 112;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Result is an f16 subnormal (or zero): value / 2^-24, rounded, with the implicit bit made explicit.
    const shift = 14 - halfExponent;
    if (shift > 24) return sign;
    return sign | roundShiftRightEven(mantissa | 0x800000, shift);
  }
  // A carry out of the mantissa correctly bumps the exponent (up to inf).
  return sign | roundShiftRightEven((halfExponent << 23) | mantissa, 13);
}

/** `value >> shift`, rounded to nearest with ties to even. */
function roundShiftRightEven(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return rest > halfway || (rest === halfway && (kept & 1) === 1) ? kept + 1 : kept;
}
