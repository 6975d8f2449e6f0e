/**
 * Hand-made GGUF files for the reader's error tests: a minimal writer of the format (v2/v3 layout,
 * little-endian) that can also write what a real writer never would (wrong magic, version 1, unknown types,
 * offsets past the end).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { FormatError } from "../../lib/errors.ts";

export const GGUF_FIXTURES = fileURLToPath(new URL("../fixtures/gguf/", import.meta.url));

export function ggufFixture(name: string): string {
  return join(GGUF_FIXTURES, name);
}

export interface CraftTensor {
  name: string;
  /** ggml dims, fastest first. */
  ne: number[];
  type: number;
  data: Uint8Array;
  /** Relative data offset; defaults to the next aligned position. */
  offset?: bigint;
}

export interface CraftOptions {
  magic?: string;
  version?: number;
  /** String values become GGUF strings, numbers uint32; a `[type, bytes]` pair is written raw. */
  metadata?: Record<string, string | number | [number, Uint8Array]>;
  tensors?: CraftTensor[];
}

const ALIGNMENT = 32;

export function craftGguf(options: CraftOptions = {}): Uint8Array {
  const { magic = "GGUF", version = 3, tensors = [] } = options;
  const metadata = options.metadata ?? { "general.architecture": "llama" };
  const parts: Uint8Array[] = [];
  let length = 0;
  const push = (bytes: Uint8Array) => {
    parts.push(bytes);
    length += bytes.length;
  };
  const u32 = (v: number) => push(new Uint8Array(new Uint32Array([v]).buffer));
  const u64 = (v: bigint) => push(new Uint8Array(new BigUint64Array([v]).buffer));
  const str = (s: string) => {
    const bytes = new TextEncoder().encode(s);
    u64(BigInt(bytes.length));
    push(bytes);
  };
  push(new TextEncoder().encode(magic));
  u32(version);
  u64(BigInt(tensors.length));
  u64(BigInt(Object.keys(metadata).length));
  for (const [key, value] of Object.entries(metadata)) {
    str(key);
    if (typeof value === "string") {
      u32(8);
      str(value);
    } else if (typeof value === "number") {
      u32(4);
      u32(value);
    } else {
      u32(value[0]);
      push(value[1]);
    }
  }
  let next = 0n;
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(BigInt(d));
    u32(t.type);
    u64(t.offset ?? next);
    next += BigInt(pad(t.data.length));
  }
  push(new Uint8Array(pad(length) - length));
  for (const t of tensors) {
    push(t.data);
    push(new Uint8Array(pad(t.data.length) - t.data.length));
  }
  const file = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    file.set(part, at);
    at += part.length;
  }
  return file;
}

function pad(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}

/** Asserts the promise rejects with a FormatError naming `file` (and `tensor`) and mentioning `words`. */
export async function assertRejectsFormat(
  promise: Promise<unknown>,
  expected: { file: string; tensor?: string; words: string[] },
): Promise<FormatError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${caught}`);
  assert.equal(caught.file, expected.file);
  assert.ok(caught.message.includes(expected.file), `message should name the file: ${caught.message}`);
  if (expected.tensor !== undefined) {
    assert.equal(caught.tensor, expected.tensor);
    assert.ok(caught.message.includes(expected.tensor), `message should name the tensor: ${caught.message}`);
  }
  for (const word of expected.words) {
    assert.ok(caught.message.includes(word), `message should mention "${word}": ${caught.message}`);
  }
  return caught;
}
