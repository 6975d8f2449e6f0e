/** A fast 64-bit checksum of bytes (see rust-kernels/src/checksum.rs): finds damaged cache files. */
import { check, kernels } from "./load.ts";

/** The checksum of `bytes` as 16 hex digits. Buffers of 4 GiB or more are hashed in 1 GiB pieces. */
export function checksum64(bytes: Uint8Array): string {
  const out = new Uint32Array(2);
  const piece = 1 << 30;
  if (bytes.length < 2 ** 32) {
    check(kernels().qlora_checksum64(bytes, bytes.length, out, 2), "checksum64");
    return hex(out);
  }
  const sums = new Uint32Array(2 * Math.ceil(bytes.length / piece));
  for (let i = 0; i * piece < bytes.length; i++) {
    const part = bytes.subarray(i * piece, (i + 1) * piece);
    check(kernels().qlora_checksum64(part, part.length, out, 2), "checksum64");
    sums.set(out, 2 * i);
  }
  const folded = new Uint8Array(sums.buffer);
  check(kernels().qlora_checksum64(folded, folded.length, out, 2), "checksum64");
  return hex(out);
}

function hex(words: Uint32Array): string {
  return words[1].toString(16).padStart(8, "0") + words[0].toString(16).padStart(8, "0");
}
