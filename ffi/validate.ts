/** Argument checks run in TS before any kernel call, so a wrong size is an exception naming the argument. */

const U32_MAX = 0xffff_ffff;

/** A dimension: a positive integer that fits a u32. */
export function dim(fn: string, name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0 || value > U32_MAX) {
    throw new RangeError(`${fn}: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/** A count or stride that may be zero. */
export function count(fn: string, name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`${fn}: ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

type Typed = Float32Array | Uint8Array | Uint32Array | Int32Array;
type TypedCtor = { new (n: number): Typed; name: string };

function typed<T extends Typed>(
  fn: string,
  name: string,
  value: unknown,
  ctor: TypedCtor,
  length?: number,
): T {
  if (!(value instanceof ctor)) {
    const got = value === null ? "null" : (value as object)?.constructor?.name ?? typeof value;
    throw new TypeError(`${fn}: ${name} must be a ${ctor.name}, got ${got}`);
  }
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${fn}: ${name} has ${value.length} elements, expected ${length}`);
  }
  if (value.length > U32_MAX) throw new RangeError(`${fn}: ${name} is longer than 2^32-1 elements`);
  return value as T;
}

/** A Float32Array, of exactly `length` elements when given (the message names the shape). */
export function f32(fn: string, name: string, value: unknown, length?: number, shape?: string): Float32Array {
  try {
    return typed<Float32Array>(fn, name, value, Float32Array, length);
  } catch (e) {
    if (shape && e instanceof RangeError) throw new RangeError(`${e.message} (${shape})`);
    throw e;
  }
}

export function u8(fn: string, name: string, value: unknown, length?: number): Uint8Array {
  return typed<Uint8Array>(fn, name, value, Uint8Array, length);
}

/** Checks `rows*cols` fits the u32 counts of the ABI. */
export function elements(fn: string, name: string, rows: number, cols: number): number {
  const n = rows * cols;
  if (n > U32_MAX) {
    throw new RangeError(`${fn}: ${name} has ${n} elements, more than one call can take (2^32-1)`);
  }
  return n;
}
