/**
 * Typed wrapper of `qlora_ggml_dequantize` (rust-kernels/src/abi/ggml.rs): ggml blocks → f32.
 * Lengths are checked here first, so a mistake is a readable exception naming the argument.
 */
import { type GgmlType, ggmlType } from "./ggml_types.ts";
import { check, kernels } from "./load.ts";

/** The largest count one call takes (the ABI passes lengths as u32); callers split bigger tensors. */
export const MAX_CALL_LENGTH = 0xffff_ffff;

/**
 * Dequantizes `dst.length` values of ggml type `type` (an id or a table entry) from the whole blocks in
 * `src` into `dst`, and returns `dst`. Throws RangeError on a length mismatch or an unsupported type.
 */
export function ggmlDequantize(type: number | GgmlType, src: Uint8Array, dst: Float32Array): Float32Array {
  const t = typeof type === "number" ? ggmlType(type) : type;
  if (t === undefined) throw new RangeError(`ggmlDequantize: type: ${type} is not a ggml type id`);
  if (!t.dequantize) throw new RangeError(`ggmlDequantize: type: ${t.name} (${t.id}) cannot be dequantized`);
  if (dst.length % t.blockElements !== 0) {
    throw new RangeError(
      `ggmlDequantize: dst: ${dst.length} values is not a whole number of ${t.name} blocks ` +
        `(${t.blockElements} values each)`,
    );
  }
  const expectedBytes = (dst.length / t.blockElements) * t.blockBytes;
  if (src.length !== expectedBytes) {
    throw new RangeError(
      `ggmlDequantize: src: expected ${expectedBytes} bytes for ${dst.length} ${t.name} values, got ${src.length}`,
    );
  }
  if (src.length > MAX_CALL_LENGTH || dst.length > MAX_CALL_LENGTH) {
    throw new RangeError(
      `ggmlDequantize: src/dst: more than ${MAX_CALL_LENGTH} per call; split into whole blocks`,
    );
  }
  check(kernels().qlora_ggml_dequantize(t.id, src, src.length, dst, dst.length), "qlora_ggml_dequantize");
  return dst;
}
