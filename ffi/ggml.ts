/**
 * Typed wrappers of `qlora_ggml_dequantize` and `qlora_ggml_quantize` (rust-kernels/src/abi/ggml.rs):
 * ggml blocks ↔ f32.
 * Lengths are checked here first, so a mistake is a readable exception naming the argument.
 */
import { type GgmlType, ggmlType, ggmlTypeByName } from "./ggml_types.ts";
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

/** The types `ggmlQuantize` writes (ggml's reference quantizers, rust-kernels/src/ggml/quantize/). */
export const QUANTIZABLE_TYPES = ["F16", "Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"] as const;
export type QuantizableType = typeof QUANTIZABLE_TYPES[number];

/** Bytes that `values` values of `type` take (values must be a whole number of blocks). */
export function ggmlByteLength(type: GgmlType, values: number): number {
  if (values % type.blockElements !== 0) {
    throw new RangeError(
      `ggmlByteLength: ${values} values is not a whole number of ${type.name} blocks (${type.blockElements} each)`,
    );
  }
  return (values / type.blockElements) * type.blockBytes;
}

/**
 * Quantizes `src` (a whole number of blocks) to ggml type `type` into `dst` (allocated when not given,
 * else exactly the encoded size) and returns it. Non-finite values are refused with their index.
 */
export function ggmlQuantize(
  type: QuantizableType | GgmlType,
  src: Float32Array,
  dst?: Uint8Array,
): Uint8Array<ArrayBufferLike> {
  const t = typeof type === "string" ? ggmlTypeByName(type) : type;
  if (!(QUANTIZABLE_TYPES as readonly string[]).includes(t.name)) {
    throw new RangeError(
      `ggmlQuantize: type: cannot quantize to ${t.name} (supported: ${QUANTIZABLE_TYPES.join(", ")})`,
    );
  }
  const bytes = ggmlByteLength(t, src.length);
  const out = dst ?? new Uint8Array(bytes);
  if (out.length !== bytes) {
    throw new RangeError(
      `ggmlQuantize: dst: expected ${bytes} bytes for ${src.length} ${t.name} values, got ${out.length}`,
    );
  }
  if (src.length > MAX_CALL_LENGTH) {
    throw new RangeError(
      `ggmlQuantize: src: more than ${MAX_CALL_LENGTH} values per call; split into whole blocks`,
    );
  }
  check(kernels().qlora_ggml_quantize(t.id, src, src.length, out, out.length), "qlora_ggml_quantize");
  return out;
}
