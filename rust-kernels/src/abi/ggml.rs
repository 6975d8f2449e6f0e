//! ggml tensor formats (GGUF files) ↔ f32.

use super::{run, slice, slice_mut};
use crate::ggml;

/// `int32_t qlora_ggml_dequantize(uint32_t ggml_type, const uint8_t *src, uint32_t src_len, float *dst,
/// uint32_t dst_len)` — dequantizes `dst_len` values (whole blocks) of type `ggml_type` (the id stored in
/// the GGUF tensor info) from `src_len` bytes. Unsupported: unknown types; InvalidArgument: `src_len` is
/// not the byte size of `dst_len` values.
///
/// # Safety
/// `src` and `dst` point to at least `src_len` bytes and `dst_len` floats, and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn qlora_ggml_dequantize(
    ggml_type: u32,
    src: *const u8,
    src_len: u32,
    dst: *mut f32,
    dst_len: u32,
) -> i32 {
    run(|| {
        let src = slice(src, src_len, "src")?;
        let dst = slice_mut(dst, dst_len, "dst")?;
        ggml::dequantize_id(ggml_type, src, dst)
    })
}

/// `int32_t qlora_ggml_quantize(uint32_t ggml_type, const float *src, uint32_t src_len, uint8_t *dst,
/// uint32_t dst_len)` — quantizes `src_len` values (whole blocks) to `ggml_type` (F16, Q8_0, Q4_0, Q5_0,
/// Q4_K, Q6_K) into exactly `dst_len` bytes, as ggml's reference quantizers do. Unsupported: other types;
/// InvalidArgument: wrong lengths, a non-finite value, or (F16) a value beyond ±65504.
///
/// # Safety
/// `src` and `dst` point to at least `src_len` floats and `dst_len` bytes, and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn qlora_ggml_quantize(
    ggml_type: u32,
    src: *const f32,
    src_len: u32,
    dst: *mut u8,
    dst_len: u32,
) -> i32 {
    run(|| {
        let src = slice(src, src_len, "src")?;
        let dst = slice_mut(dst, dst_len, "dst")?;
        ggml::quantize::quantize_id(ggml_type, src, dst)
    })
}
