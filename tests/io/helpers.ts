/** Shared helpers for the io tests: fixture paths, temporary directories, hand-made files, error checks. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FormatError } from "../../lib/errors.ts";

export const FIXTURES = fileURLToPath(new URL("../fixtures/safetensors/", import.meta.url));

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

/** Runs `body` with a fresh temporary directory, removed afterwards. */
export function withTempDir(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "qlora-io-"));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes a safetensors-like file by hand: length prefix, header (JSON text or value), data bytes. */
export function writeRawSafetensors(path: string, header: string | object, data = new Uint8Array()): void {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const file = new Uint8Array(8 + json.length + data.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
  file.set(json, 8);
  file.set(data, 8 + json.length);
  writeFileSync(path, file);
}

/** Asserts `body` throws a FormatError naming `file` (and `tensor`) whose message contains every `words`. */
export function assertFormatError(
  body: () => unknown,
  expected: { file: string; tensor?: string; words: string[] },
): FormatError {
  let caught: unknown;
  try {
    body();
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

/** Bit patterns of f32 values, for exact comparisons that also hold for NaN and -0. */
export function f32Bits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}
