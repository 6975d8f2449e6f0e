//! NF4 weights: quantize, import/export in bitsandbytes' layout, dequantize, free.

use super::{expect_len, run, slice, slice_mut};
use crate::error::{ensure, KResult};
use crate::handles;
use crate::nf4::codebook::{dynamic_map, NF4};
use crate::nf4::dequant::dequant_run;
use crate::nf4::quantize::quantize;
use crate::nf4::weight::{block_count, group_count};
use crate::nf4::{Nf4Weight, Scales};

fn dims(rows: u32, cols: u32) -> KResult<(usize, usize)> {
    ensure(rows > 0 && cols > 0, || format!("shape: dims must be positive, got [{rows}, {cols}]"))?;
    Ok((rows as usize, cols as usize))
}

/// `int32_t qlora_nf4_quantize(const float *w, uint32_t w_len, uint32_t rows, uint32_t cols,
///   int32_t double_quant, uint32_t *handle_out)` — quantizes `w [rows, cols]`; non-finite values fail.
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_quantize(
    w: *const f32,
    w_len: u32,
    rows: u32,
    cols: u32,
    double_quant: i32,
    handle_out: *mut u32,
) -> i32 {
    run(|| {
        let (rows, cols) = dims(rows, cols)?;
        let w = slice(w, w_len, "w")?;
        let out = slice_mut(handle_out, 1, "handle_out")?;
        expect_len("w", w.len(), rows * cols, "rows × cols")?;
        let weight = crate::threads::pool().install(|| quantize(w, rows, cols, double_quant != 0))?;
        out[0] = handles::insert(weight);
        Ok(())
    })
}

/// `int32_t qlora_nf4_from_parts(uint32_t rows, uint32_t cols, const uint8_t *packed, uint32_t packed_len,
///   const uint8_t *absmax_codes, uint32_t codes_len, const float *nested, uint32_t nested_len, float offset,
///   const float *absmax, uint32_t absmax_len, uint32_t *handle_out)` — imports bitsandbytes' parts: either
///   `absmax_codes` + `nested` + `offset` (double quant) or `absmax` (f32 scales); the other pair empty.
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_from_parts(
    rows: u32,
    cols: u32,
    packed: *const u8,
    packed_len: u32,
    absmax_codes: *const u8,
    codes_len: u32,
    nested: *const f32,
    nested_len: u32,
    offset: f32,
    absmax: *const f32,
    absmax_len: u32,
    handle_out: *mut u32,
) -> i32 {
    run(|| {
        let (rows, cols) = dims(rows, cols)?;
        let packed = slice(packed, packed_len, "packed")?.to_vec();
        let codes = slice(absmax_codes, codes_len, "absmax_codes")?;
        let nested = slice(nested, nested_len, "nested_absmax")?;
        let absmax = slice(absmax, absmax_len, "absmax")?;
        let out = slice_mut(handle_out, 1, "handle_out")?;
        let scales = if !codes.is_empty() {
            ensure(absmax.is_empty(), || {
                "absmax: give either f32 absmax or absmax_codes + nested, not both".into()
            })?;
            ensure(offset.is_finite(), || format!("offset: must be finite, got {offset}"))?;
            ensure(nested.iter().all(|v| v.is_finite()), || "nested_absmax: non-finite value".into())?;
            Scales::Double { codes: codes.to_vec(), nested: nested.to_vec(), offset }
        } else {
            ensure(nested.is_empty(), || "nested_absmax: given without absmax_codes".into())?;
            ensure(absmax.iter().all(|v| v.is_finite()), || "absmax: non-finite value".into())?;
            Scales::Plain(absmax.to_vec())
        };
        out[0] = handles::insert(Nf4Weight::new(rows, cols, packed, scales)?);
        Ok(())
    })
}

/// `int32_t qlora_nf4_info(uint32_t handle, uint32_t *info, uint32_t info_len)` — writes 5 values:
/// rows, cols, double_quant (0/1), block count, nested group count.
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_info(handle: u32, info: *mut u32, info_len: u32) -> i32 {
    run(|| {
        let w = handles::get(handle)?;
        let info = slice_mut(info, info_len, "info")?;
        expect_len("info", info.len(), 5, "rows, cols, double_quant, blocks, groups")?;
        let blocks = block_count(w.len());
        info.copy_from_slice(&[
            w.rows as u32,
            w.cols as u32,
            w.is_double_quant() as u32,
            blocks as u32,
            if w.is_double_quant() { group_count(blocks) as u32 } else { 0 },
        ]);
        Ok(())
    })
}

/// `int32_t qlora_nf4_export(uint32_t handle, uint8_t *packed, uint32_t packed_len, uint8_t *absmax_codes,
///   uint32_t codes_len, float *nested, uint32_t nested_len, float *absmax, uint32_t absmax_len,
///   float *offset_out)` — copies the parts out in bitsandbytes' layout (sizes from `qlora_nf4_info`; the
///   pair that the weight does not hold must be empty).
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_export(
    handle: u32,
    packed: *mut u8,
    packed_len: u32,
    absmax_codes: *mut u8,
    codes_len: u32,
    nested: *mut f32,
    nested_len: u32,
    absmax: *mut f32,
    absmax_len: u32,
    offset_out: *mut f32,
) -> i32 {
    run(|| {
        let w = handles::get(handle)?;
        let packed = slice_mut(packed, packed_len, "packed")?;
        expect_len("packed", packed.len(), w.packed.len(), "ceil(rows × cols / 2) bytes")?;
        packed.copy_from_slice(&w.packed);
        let codes_out = slice_mut(absmax_codes, codes_len, "absmax_codes")?;
        let nested_out = slice_mut(nested, nested_len, "nested_absmax")?;
        let absmax_out = slice_mut(absmax, absmax_len, "absmax")?;
        let offset_out = slice_mut(offset_out, 1, "offset_out")?;
        match &w.scales {
            Scales::Double { codes, nested, offset } => {
                expect_len("absmax_codes", codes_out.len(), codes.len(), "one per block")?;
                expect_len("nested_absmax", nested_out.len(), nested.len(), "one per 256 blocks")?;
                expect_len("absmax", absmax_out.len(), 0, "none with double quantization")?;
                codes_out.copy_from_slice(codes);
                nested_out.copy_from_slice(nested);
                offset_out[0] = *offset;
            }
            Scales::Plain(values) => {
                expect_len("absmax", absmax_out.len(), values.len(), "one per block")?;
                expect_len("absmax_codes", codes_out.len(), 0, "none without double quantization")?;
                expect_len("nested_absmax", nested_out.len(), 0, "none without double quantization")?;
                absmax_out.copy_from_slice(values);
                offset_out[0] = 0.0;
            }
        }
        Ok(())
    })
}

/// `int32_t qlora_nf4_dequantize(uint32_t handle, float *out, uint32_t out_len)` — the whole weight as f32.
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_dequantize(handle: u32, out: *mut f32, out_len: u32) -> i32 {
    run(|| {
        let w = handles::get(handle)?;
        let out = slice_mut(out, out_len, "out")?;
        expect_len("out", out.len(), w.len(), "rows × cols")?;
        let map = dynamic_map();
        let kernel = crate::dispatch::active();
        use rayon::prelude::*;
        // Chunks of whole blocks, in parallel.
        crate::threads::pool().install(|| {
            out.par_chunks_mut(64 * 256).enumerate().for_each(|(i, chunk)| {
                dequant_run(kernel, &w, i * 64 * 256, chunk, map);
            })
        });
        Ok(())
    })
}

/// `int32_t qlora_nf4_free(uint32_t handle)`
#[no_mangle]
pub extern "C" fn qlora_nf4_free(handle: u32) -> i32 {
    run(|| handles::remove(handle))
}

/// `uint32_t qlora_nf4_live(void)` — how many NF4 weights are alive (leak checks in tests).
#[no_mangle]
pub extern "C" fn qlora_nf4_live() -> u32 {
    handles::live_count() as u32
}

/// `int32_t qlora_nf4_tables(float *code, uint32_t code_len, float *dynamic, uint32_t dynamic_len)` — the 16
/// NF4 values and the 256-entry dynamic map of the nested scales.
#[no_mangle]
pub unsafe extern "C" fn qlora_nf4_tables(
    code: *mut f32,
    code_len: u32,
    dynamic: *mut f32,
    dynamic_len: u32,
) -> i32 {
    run(|| {
        let code = slice_mut(code, code_len, "code")?;
        let dynamic = slice_mut(dynamic, dynamic_len, "dynamic")?;
        expect_len("code", code.len(), 16, "16 NF4 values")?;
        expect_len("dynamic", dynamic.len(), 256, "256 map entries")?;
        code.copy_from_slice(&NF4);
        dynamic.copy_from_slice(dynamic_map());
        Ok(())
    })
}
