//! The pair layout bf16 units read: two consecutive depth steps as two bf16 in one u32 (low half = even
//! step), so `vdpbf16ps` and AMX's `tdpbf16ps` multiply a pair per f32 lane. Weights are decoded per depth
//! block straight into it (NF4 or bf16 → f32 run → pairs), with no f32 panel in between.
//!
//! - B panels (both units): `NR` = 32 columns; pair q of column c at `[q * 32 + c]`.
//! - A for `vdpbf16ps`: panels of `DOT_MR` rows; pair q of row r at `[q * DOT_MR + r]` (broadcast per row).
//! - AMX has layouts of its own (`amx/nest.rs`), filled by `decode_pairs_spread` and `pair_rows`.
//!
//! Depth is padded with zero pairs to whole chunks of 16 pairs (`padded_pairs`), rows and columns with zero
//! pairs to whole panels, so padding never meets garbage (NaN · 0 would poison a sum).
//! Every packer has a plain twin (`simd = false`); tests check the two give the same bits.

use super::bf16_native::bf16_bits;
use super::pack::{Bf16Matrix, Direct, PackCtx, Strided, Transposed, Weight};
use crate::nf4::codebook::NF4;
use crate::nf4::weight::BLOCK;
use crate::nf4::Nf4Weight;

/// Columns of a B panel.
pub const NR: usize = 32;
/// Rows of an A panel for the `vdpbf16ps` micro-kernel.
pub const DOT_MR: usize = 8;
/// Pairs in one AMX tile row.
const CHUNK: usize = 16;

/// Pairs stored for `kc` depth steps: rounded up to whole chunks of 16 pairs.
pub fn padded_pairs(kc: usize) -> usize {
    kc.div_ceil(2 * CHUNK) * CHUNK
}

#[inline(always)]
pub fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) as u32 | (bf16_bits(hi) as u32) << 16
}

/// `out[q] = pair(src[2q], src[2q+1])`, values past the end of `src` taken as 0.
pub fn pairs_from_run(simd: bool, src: &[f32], out: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // Safety: `simd` is only set where the CPU has AVX512-BF16 (see `simd_ok`).
        done = unsafe { simd_x86::pairs_from_run(src, out) };
    }
    let _ = simd;
    for (q, o) in out.iter_mut().enumerate().skip(done) {
        let at = |i: usize| src.get(i).copied().unwrap_or(0.0);
        *o = pair(at(2 * q), at(2 * q + 1));
    }
}

/// `out[c] = pair(even[c], odd[c])` for two depth steps of a row of columns.
pub fn interleave_rows(simd: bool, even: &[f32], odd: &[f32], out: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // Safety: as above.
        done = unsafe { simd_x86::interleave_rows(even, odd, out) };
    }
    let _ = simd;
    for c in done..out.len() {
        out[c] = pair(even[c], odd[c]);
    }
}

/// Whether the SIMD packers may run: the AVX-512 family with AVX512-BF16 conversions.
pub fn simd_ok(ctx: &PackCtx) -> bool {
    ctx.kernel == crate::dispatch::Kernel::Avx512 && crate::dispatch::cpu().avx512_bf16
}

/// Reusable buffers of a packer.
#[derive(Default)]
pub struct Scratch {
    pub f: Vec<f32>,
    pub u: Vec<u32>,
}

/// A weight that decodes a run of its flattened elements straight into pairs.
pub trait PairWeight: Weight {
    /// `out[q] = pair(w[start + 2q], w[start + 2q + 1])` for the `len` elements from `start` (`out` holds
    /// `ceil(len / 2)` pairs; an odd last element is paired with 0). The default decodes to f32 first.
    fn decode_pairs(
        &self,
        ctx: &PackCtx,
        simd: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        f: &mut Vec<f32>,
    ) {
        f.resize(len, 0.0);
        self.decode(ctx, start, &mut f[..len]);
        pairs_from_run(simd, &f[..len], out);
    }

    /// As `decode_pairs`, each 16 pairs `stride` values after the previous 16: pair q at
    /// `out[(q / 16) · stride + q % 16]` (the AMX nest decodes W rows straight into tiles). The default
    /// decodes contiguous pairs into `tmp`, then spreads them.
    #[allow(clippy::too_many_arguments)]
    fn decode_pairs_spread(
        &self,
        ctx: &PackCtx,
        simd: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        stride: usize,
        tmp: &mut Vec<u32>,
        f: &mut Vec<f32>,
    ) {
        let pairs = len.div_ceil(2);
        tmp.resize(pairs, 0);
        self.decode_pairs(ctx, simd, start, len, &mut tmp[..pairs], f);
        for (g, piece) in tmp[..pairs].chunks(16).enumerate() {
            out[g * stride..][..piece.len()].copy_from_slice(piece);
        }
    }

    /// `out[c] = pair(w[even, c0 + c], w[odd, c0 + c])` for `c < out.len()`: two rows' runs as pairs (the
    /// backward's depth pairs; `odd = None` pairs with 0). The default decodes both rows to f32 first.
    #[allow(clippy::too_many_arguments)]
    fn pair_rows(
        &self,
        ctx: &PackCtx,
        simd: bool,
        even: usize,
        odd: Option<usize>,
        c0: usize,
        out: &mut [u32],
        f: &mut Vec<f32>,
    ) {
        default_pair_rows(self, ctx, simd, even, odd, c0, out, f);
    }

    /// As `pair_rows` for `len` columns, each 32 pairs `stride` values after the previous 32: column c at
    /// `out[(c / 32) · stride + c % 32]` (the AMX backward decodes pair rows straight into its panels).
    /// The default pairs contiguously into `tmp`, then spreads.
    #[allow(clippy::too_many_arguments)]
    fn pair_rows_spread(
        &self,
        ctx: &PackCtx,
        simd: bool,
        even: usize,
        odd: Option<usize>,
        c0: usize,
        len: usize,
        out: &mut [u32],
        stride: usize,
        tmp: &mut Vec<u32>,
        f: &mut Vec<f32>,
    ) {
        spread_pair_rows(self, ctx, simd, even, odd, c0, len, out, stride, tmp, f);
    }
}

/// The trait's default `pair_rows_spread`, callable from an override: contiguous pairs into `tmp`, spread.
#[allow(clippy::too_many_arguments)]
fn spread_pair_rows<W: PairWeight + ?Sized>(
    w: &W,
    ctx: &PackCtx,
    simd: bool,
    even: usize,
    odd: Option<usize>,
    c0: usize,
    len: usize,
    out: &mut [u32],
    stride: usize,
    tmp: &mut Vec<u32>,
    f: &mut Vec<f32>,
) {
    tmp.resize(len, 0);
    w.pair_rows(ctx, simd, even, odd, c0, &mut tmp[..len], f);
    for (g, piece) in tmp[..len].chunks(32).enumerate() {
        out[g * stride..][..piece.len()].copy_from_slice(piece);
    }
}

/// NF4: from an even start, a pair's two codes are one byte (high nibble first), so 16 bytes give 16 pairs:
/// both nibbles through the 16-entry table, times the block's scale, rounded to bf16 and interleaved.
impl PairWeight for Nf4Weight {
    fn decode_pairs(
        &self,
        ctx: &PackCtx,
        simd: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        f: &mut Vec<f32>,
    ) {
        if !simd || start % 2 == 1 {
            f.resize(len, 0.0);
            self.decode(ctx, start, &mut f[..len]);
            pairs_from_run(simd, &f[..len], out);
            return;
        }
        let mut i = 0;
        while i < len {
            let block = (start + i) / BLOCK;
            let segment_end = ((block + 1) * BLOCK - start).min(len);
            let scale = self.block_scale(block, &ctx.map);
            #[cfg(target_arch = "x86_64")]
            if i + 32 <= segment_end {
                let pieces = (segment_end - i) / 32;
                // Safety: `simd` is only set where the CPU has AVX512-BF16; 16 · pieces bytes from byte
                // (start + i) / 2 lie inside the run, and 16 · pieces pairs from i / 2 inside `out`.
                unsafe {
                    let codes = self.packed.as_ptr().add((start + i) / 2);
                    simd_x86::nf4_pieces(codes, pieces, scale, out.as_mut_ptr().add(i / 2));
                }
                i += 32 * pieces;
            }
            while i < segment_end {
                // i is even, and so is every block boundary: a pair never straddles two blocks.
                let lo = NF4[self.code(start + i) as usize] * scale;
                let hi = if i + 1 < len { NF4[self.code(start + i + 1) as usize] * scale } else { 0.0 };
                out[i / 2] = pair(lo, hi);
                i += 2;
            }
        }
    }

    /// From a start on a multiple of 32, every piece of 32 codes lies in one block and fills one group of 16
    /// pairs: decoded through the block tables straight to its place.
    fn decode_pairs_spread(
        &self,
        ctx: &PackCtx,
        simd: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        stride: usize,
        tmp: &mut Vec<u32>,
        f: &mut Vec<f32>,
    ) {
        let pieces = len / 32;
        if !simd || !start.is_multiple_of(32) || pieces == 0 {
            let mut plain = Vec::new();
            std::mem::swap(tmp, &mut plain);
            let pairs = len.div_ceil(2);
            plain.resize(pairs, 0);
            self.decode_pairs(ctx, simd, start, len, &mut plain[..pairs], f);
            for (g, piece) in plain[..pairs].chunks(16).enumerate() {
                out[g * stride..][..piece.len()].copy_from_slice(piece);
            }
            *tmp = plain;
            return;
        }
        assert!(out.len() >= (pieces - 1) * stride + 16 && start + len <= self.len());
        #[cfg(target_arch = "x86_64")]
        // Safety: `simd` is only set where the CPU has AVX512-BF16; the pieces' codes lie inside the weight
        // (asserted) and their groups inside `out` (asserted).
        unsafe {
            simd_x86::nf4_spread(self, &ctx.map, start, pieces, out.as_mut_ptr(), stride)
        };
        let done = 32 * pieces;
        if done < len {
            let rest = len - done;
            let pairs = rest.div_ceil(2);
            tmp.resize(pairs, 0);
            self.decode_pairs(ctx, simd, start + done, rest, &mut tmp[..pairs], f);
            out[pieces * stride..][..pairs].copy_from_slice(&tmp[..pairs]);
        }
    }

    /// Pieces of 32 columns whose runs start on a multiple of 32 (inside one block of 64) go through the
    /// block tables and one two-source permute; the rest through the default.
    fn pair_rows(
        &self,
        ctx: &PackCtx,
        simd: bool,
        even: usize,
        odd: Option<usize>,
        c0: usize,
        out: &mut [u32],
        f: &mut Vec<f32>,
    ) {
        let cols = self.cols;
        let len = out.len();
        let aligned = cols.is_multiple_of(32) && c0.is_multiple_of(32);
        if !simd || !aligned || len < 32 {
            return default_pair_rows(self, ctx, simd, even, odd, c0, out, f);
        }
        let whole = len / 32 * 32;
        #[cfg(target_arch = "x86_64")]
        // Safety: `simd` is only set where the CPU has AVX512-BF16; the runs of both rows from `c0` hold
        // `whole` elements inside the weight, and `out` holds `whole` values.
        unsafe {
            simd_x86::nf4_pair_rows(self, &ctx.map, even, odd, c0, whole, out.as_mut_ptr(), 32)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let whole = 0;
        if whole < len {
            default_pair_rows(self, ctx, simd, even, odd, c0 + whole, &mut out[whole..], f);
        }
    }

    /// Whole pieces of 32 columns go to their places through the block tables; a ragged rest through
    /// the default.
    fn pair_rows_spread(
        &self,
        ctx: &PackCtx,
        simd: bool,
        even: usize,
        odd: Option<usize>,
        c0: usize,
        len: usize,
        out: &mut [u32],
        stride: usize,
        tmp: &mut Vec<u32>,
        f: &mut Vec<f32>,
    ) {
        let aligned = self.cols.is_multiple_of(32) && c0.is_multiple_of(32);
        let pieces = if simd && aligned { len / 32 } else { 0 };
        let (rows, cols) = (self.rows, self.cols);
        if pieces > 0 {
            assert!(out.len() >= (pieces - 1) * stride + 32 && stride >= 32);
            assert!(even < rows && odd.is_none_or(|o| o < rows) && c0 + 32 * pieces <= cols);
            #[cfg(target_arch = "x86_64")]
            // Safety: `simd` is only set where the CPU has AVX512-BF16; both rows' runs lie inside the weight
            // and every piece inside `out` (asserted).
            unsafe {
                simd_x86::nf4_pair_rows(self, &ctx.map, even, odd, c0, 32 * pieces, out.as_mut_ptr(), stride)
            };
        }
        let done = 32 * pieces;
        if done < len {
            let rest = &mut out[pieces * stride..];
            spread_pair_rows(self, ctx, simd, even, odd, c0 + done, len - done, rest, stride, tmp, f);
        }
    }
}

/// The trait's default `pair_rows`, callable from an override.
#[allow(clippy::too_many_arguments)]
fn default_pair_rows<W: Weight + ?Sized>(
    w: &W,
    ctx: &PackCtx,
    simd: bool,
    even: usize,
    odd: Option<usize>,
    c0: usize,
    out: &mut [u32],
    f: &mut Vec<f32>,
) {
    let len = out.len();
    f.resize(2 * len, 0.0);
    let (e, o) = f.split_at_mut(len);
    w.decode(ctx, even * w.cols() + c0, e);
    match odd {
        Some(odd) => w.decode(ctx, odd * w.cols() + c0, o),
        None => o.fill(0.0),
    }
    interleave_rows(simd, e, o, out);
}

/// bf16: the weight's bits already are the operand; a pair is two neighbours read as one u32 (no rounding).
impl PairWeight for Bf16Matrix<'_> {
    fn decode_pairs(
        &self,
        _: &PackCtx,
        _: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        _: &mut Vec<f32>,
    ) {
        let run = &self.bits[start..start + len];
        for (o, two) in out.iter_mut().zip(run.chunks(2)) {
            *o = two[0] as u32 | (two.get(1).copied().unwrap_or(0) as u32) << 16;
        }
    }

    /// Whole groups of 32 values are copied as they are (16 pairs, 64 bytes); the rest pairs as above.
    fn decode_pairs_spread(
        &self,
        ctx: &PackCtx,
        simd: bool,
        start: usize,
        len: usize,
        out: &mut [u32],
        stride: usize,
        tmp: &mut Vec<u32>,
        f: &mut Vec<f32>,
    ) {
        let run = &self.bits[start..start + len];
        let groups = len / 32;
        for (g, values) in run.chunks_exact(32).enumerate() {
            let piece = &mut out[g * stride..][..16];
            for (o, two) in piece.iter_mut().zip(values.chunks_exact(2)) {
                *o = two[0] as u32 | (two[1] as u32) << 16;
            }
        }
        let done = 32 * groups;
        if done < len {
            let pairs = (len - done).div_ceil(2);
            tmp.resize(pairs, 0);
            self.decode_pairs(ctx, simd, start + done, len - done, &mut tmp[..pairs], f);
            out[groups * stride..][..pairs].copy_from_slice(&tmp[..pairs]);
        }
    }

    fn pair_rows(
        &self,
        _: &PackCtx,
        _: bool,
        even: usize,
        odd: Option<usize>,
        c0: usize,
        out: &mut [u32],
        _: &mut Vec<f32>,
    ) {
        let len = out.len();
        let e = &self.bits[even * self.cols + c0..][..len];
        match odd {
            Some(odd) => {
                let o = &self.bits[odd * self.cols + c0..][..len];
                for ((out, &e), &o) in out.iter_mut().zip(e).zip(o) {
                    *out = e as u32 | (o as u32) << 16;
                }
            }
            None => {
                for (out, &e) in out.iter_mut().zip(e) {
                    *out = e as u32;
                }
            }
        }
    }
}

/// A weight-derived B operand that packs itself into pair panels.
pub trait PairB: Sync {
    /// Largest depth block worth packing at once (see `native.rs`).
    const KC: usize;

    /// The weight behind the operand and whether B is its transpose (the forward `X · Wᵀ`): the AMX nest
    /// (`amx/nest.rs`) decodes the weight in its own layouts.
    fn weight(&self) -> (&dyn PairWeight, bool);

    /// Packs depth `p0 .. p0+kc` (as `padded_pairs(kc)` pairs) and columns `j0 .. j0+nc` into 32-column panels.
    #[allow(clippy::too_many_arguments)]
    fn pack_pairs(
        &self,
        ctx: &PackCtx,
        simd: bool,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [u32],
        s: &mut Scratch,
    );
}

/// Forward B = Wᵀ: column j of B is a run of W's row j. Each column's run becomes pairs, then the 32 columns
/// are transposed into the panel.
impl<W: PairWeight> PairB for Transposed<'_, W> {
    const KC: usize = 2048;

    fn weight(&self) -> (&dyn PairWeight, bool) {
        (self.0, true)
    }

    fn pack_pairs(
        &self,
        ctx: &PackCtx,
        simd: bool,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [u32],
        s: &mut Scratch,
    ) {
        let w = self.0;
        let kq = padded_pairs(kc);
        s.u.resize(NR * kq, 0);
        for (panel, out) in dst.chunks_exact_mut(kq * NR).take(nc.div_ceil(NR)).enumerate() {
            let cols = NR.min(nc - panel * NR);
            for c in 0..NR {
                let column = &mut s.u[c * kq..(c + 1) * kq];
                if c < cols {
                    let filled = kc.div_ceil(2);
                    w.decode_pairs(
                        ctx,
                        simd,
                        (j0 + panel * NR + c) * w.cols() + p0,
                        kc,
                        &mut column[..filled],
                        &mut s.f,
                    );
                    column[filled..].fill(0);
                } else {
                    column.fill(0);
                }
            }
            transpose_columns(simd, &s.u, kq, out);
        }
    }
}

/// `out[q * 32 + c] = columns[c * kq + q]` (32 columns of `kq` pairs).
fn transpose_columns(simd: bool, columns: &[u32], kq: usize, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if simd && kq.is_multiple_of(16) {
        // Safety: as above; both buffers hold 32 · kq values.
        unsafe { simd_x86::transpose_columns(columns, kq, out) };
        return;
    }
    let _ = simd;
    for (q, row) in out.chunks_exact_mut(NR).take(kq).enumerate() {
        for (c, o) in row.iter_mut().enumerate() {
            *o = columns[c * kq + q];
        }
    }
}

/// Backward B = W: depth step p is a run of W's row p. Two rows are decoded, then interleaved into pairs.
impl<W: PairWeight> PairB for Direct<'_, W> {
    const KC: usize = 1024;

    fn weight(&self) -> (&dyn PairWeight, bool) {
        (self.0, false)
    }

    fn pack_pairs(
        &self,
        ctx: &PackCtx,
        simd: bool,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        dst: &mut [u32],
        s: &mut Scratch,
    ) {
        let w = self.0;
        let kq = padded_pairs(kc);
        let panels = nc.div_ceil(NR);
        let width = panels * NR;
        s.f.resize(2 * width, 0.0);
        s.u.resize(width, 0);
        let (even, odd) = s.f.split_at_mut(width);
        for q in 0..kq {
            for (step, row) in [(2 * q, &mut *even), (2 * q + 1, &mut *odd)] {
                if step < kc {
                    w.decode(ctx, (p0 + step) * w.cols() + j0, &mut row[..nc]);
                    row[nc..].fill(0.0);
                } else {
                    row.fill(0.0);
                }
            }
            interleave_rows(simd, even, odd, &mut s.u);
            for (panel, piece) in s.u.chunks_exact(NR).enumerate() {
                dst[(panel * kq + q) * NR..][..NR].copy_from_slice(piece);
            }
        }
    }
}

/// Pairs of rows `i0 .. i0+rows` (padded with zero rows to `padded_rows`) at depth `p0 .. p0+kc`, one row at a
/// time into `row` (`kq` pairs), handed to `put(r, row)`.
#[allow(clippy::too_many_arguments)]
fn each_row_pairs(
    simd: bool,
    a: &Strided,
    i0: usize,
    rows: usize,
    padded_rows: usize,
    p0: usize,
    kc: usize,
    kq: usize,
    s: &mut Scratch,
    mut put: impl FnMut(usize, &[u32]),
) {
    s.u.resize(kq, 0);
    for r in 0..padded_rows {
        if r >= rows {
            s.u.fill(0);
        } else if a.cs == 1 {
            let start = (i0 + r) * a.rs + p0;
            pairs_from_run(simd, &a.data[start..start + kc], &mut s.u);
        } else {
            s.f.clear();
            s.f.extend((0..kc).map(|p| a.data[(i0 + r) * a.rs + (p0 + p) * a.cs]));
            pairs_from_run(simd, &s.f, &mut s.u);
        }
        put(r, &s.u);
    }
}

/// A block for `vdpbf16ps`: `ceil(mc / DOT_MR)` panels of `kq` pairs × `DOT_MR` rows.
#[allow(clippy::too_many_arguments)]
pub fn pack_a_dot(
    simd: bool,
    a: &Strided,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [u32],
    s: &mut Scratch,
) {
    let kq = padded_pairs(kc);
    let padded = mc.div_ceil(DOT_MR) * DOT_MR;
    each_row_pairs(simd, a, i0, mc, padded, p0, kc, kq, s, |r, row| {
        let base = (r / DOT_MR) * kq * DOT_MR + r % DOT_MR;
        for (q, &v) in row.iter().enumerate() {
            dst[base + q * DOT_MR] = v;
        }
    });
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd_x86 {
    use std::arch::x86_64::*;

    /// Whole groups of 16 pairs from 32 values; returns how many pairs were written.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn pairs_from_run(src: &[f32], out: &mut [u32]) -> usize {
        let mut q = 0;
        while q + 16 <= out.len() && 2 * q + 32 <= src.len() {
            let lo = _mm512_loadu_ps(src.as_ptr().add(2 * q));
            let hi = _mm512_loadu_ps(src.as_ptr().add(2 * q + 16));
            // Lanes 0–15 of the result come from the second operand: src[2q..2q+32] in order, as pairs.
            let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(out.as_mut_ptr().add(q) as *mut _, packed);
            q += 16;
        }
        q
    }

    /// The block's table: bf16(NF4[i] · scale) in u16 lanes i and 16 + i (`vpermw` reads 5 index bits, so
    /// the repeat lets an index keep a stray fifth bit). The same bits as rounding each decoded value.
    #[inline(always)]
    unsafe fn nf4_table(scale: f32) -> __m512i {
        let values =
            _mm512_mul_ps(_mm512_loadu_ps(crate::nf4::codebook::NF4.as_ptr()), _mm512_set1_ps(scale));
        // One conversion fills both halves (the second operand's values go to lanes 0–15).
        std::mem::transmute(_mm512_cvtne2ps_pbh(values, values))
    }

    /// 32 NF4 codes (16 bytes, high nibble first) → their 32 bf16 values in order, i.e. 16 pairs: each
    /// byte copied into two u16 lanes, the even lane shifted right by 4, then one table permute.
    #[inline(always)]
    unsafe fn nf4_lookup_32(bytes: *const u8, table: __m512i) -> __m512i {
        // u16 lane j (lane j' = j mod 8 of 128-bit lane L) takes byte j / 2 = 4L + j' / 2 in both halves.
        const DUP: [u8; 64] = {
            let mut d = [0u8; 64];
            let mut i = 0;
            while i < 64 {
                d[i] = ((i / 16) * 4 + (i % 16) / 4) as u8;
                i += 1;
            }
            d
        };
        let bytes = _mm512_broadcast_i32x4(_mm_loadu_si128(bytes as *const __m128i));
        let doubled = _mm512_shuffle_epi8(bytes, _mm512_loadu_si512(DUP.as_ptr() as *const _));
        let index = _mm512_srlv_epi16(doubled, _mm512_set1_epi32(4));
        _mm512_permutexvar_epi16(index, table)
    }

    /// 32 pairs (e[c], o[c]) from two rows of 32 bf16 each, to `out[0..32]`.
    #[inline(always)]
    unsafe fn store_interleaved(out: *mut u32, e: __m512i, o: __m512i) {
        const LOW: [u16; 32] = {
            let mut d = [0u16; 32];
            let mut i = 0;
            while i < 32 {
                d[i] = (i / 2 + if i % 2 == 1 { 32 } else { 0 }) as u16;
                i += 1;
            }
            d
        };
        let low = _mm512_loadu_si512(LOW.as_ptr() as *const _);
        let high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
        _mm512_storeu_si512(out as *mut _, _mm512_permutex2var_epi16(e, low, o));
        _mm512_storeu_si512(out.add(16) as *mut _, _mm512_permutex2var_epi16(e, high, o));
    }

    /// `pieces` runs of 32 codes of one block (scale `scale`) → 16 · pieces pairs at `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn nf4_pieces(codes: *const u8, pieces: usize, scale: f32, out: *mut u32) {
        let table = nf4_table(scale);
        for i in 0..pieces {
            _mm512_storeu_si512(out.add(16 * i) as *mut _, nf4_lookup_32(codes.add(16 * i), table));
        }
    }

    /// `pieces` runs of 32 codes from `start` (a multiple of 32) → groups of 16 pairs `stride` values apart.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn nf4_spread(
        w: &crate::nf4::Nf4Weight,
        map: &[f32; 256],
        start: usize,
        pieces: usize,
        out: *mut u32,
        stride: usize,
    ) {
        use crate::nf4::weight::BLOCK;
        let packed = w.packed.as_ptr();
        let mut block = usize::MAX;
        let mut table = _mm512_setzero_si512();
        for i in 0..pieces {
            let at = start + 32 * i;
            if at / BLOCK != block {
                block = at / BLOCK;
                table = nf4_table(w.block_scale(block, map));
            }
            _mm512_storeu_si512(out.add(i * stride) as *mut _, nf4_lookup_32(packed.add(at / 2), table));
        }
    }

    /// `out[c / 32 · stride + c % 32] = pair(w[even, c0 + c], w[odd, c0 + c])` for `c < len` (a multiple of
    /// 32; both rows' runs start on a multiple of 32, so each piece of 32 lies in one block). A block's table
    /// is built once.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn nf4_pair_rows(
        w: &crate::nf4::Nf4Weight,
        map: &[f32; 256],
        even: usize,
        odd: Option<usize>,
        c0: usize,
        len: usize,
        out: *mut u32,
        stride: usize,
    ) {
        use crate::nf4::weight::BLOCK;
        let cols = w.cols;
        let packed = w.packed.as_ptr();
        let (mut block_e, mut block_o) = (usize::MAX, usize::MAX);
        let (mut table_e, mut table_o) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for c in (0..len).step_by(32) {
            let start_e = even * cols + c0 + c;
            if start_e / BLOCK != block_e {
                block_e = start_e / BLOCK;
                table_e = nf4_table(w.block_scale(block_e, map));
            }
            let e = nf4_lookup_32(packed.add(start_e / 2), table_e);
            let o = match odd {
                Some(odd) => {
                    let start_o = odd * cols + c0 + c;
                    if start_o / BLOCK != block_o {
                        block_o = start_o / BLOCK;
                        table_o = nf4_table(w.block_scale(block_o, map));
                    }
                    nf4_lookup_32(packed.add(start_o / 2), table_o)
                }
                None => _mm512_setzero_si512(),
            };
            store_interleaved(out.add(c / 32 * stride), e, o);
        }
    }

    /// 16 columns at a time: bf16 of the even row in lanes 0–15, odd in 16–31, then interleaved.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn interleave_rows(even: &[f32], odd: &[f32], out: &mut [u32]) -> usize {
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
            18, 2, 17, 1, 16, 0,
        );
        let n = out.len().min(even.len()).min(odd.len());
        let mut c = 0;
        while c + 16 <= n {
            let e = _mm512_loadu_ps(even.as_ptr().add(c));
            let o = _mm512_loadu_ps(odd.as_ptr().add(c));
            let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(o, e));
            _mm512_storeu_si512(out.as_mut_ptr().add(c) as *mut _, _mm512_permutexvar_epi16(idx, halves));
            c += 16;
        }
        c
    }

    /// `out[q * 32 + c] = columns[c * kq + q]`, in 16 × 16 blocks transposed in registers (`kq % 16 == 0`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn transpose_columns(columns: &[u32], kq: usize, out: &mut [u32]) {
        assert!(columns.len() >= 32 * kq && out.len() >= 32 * kq && kq.is_multiple_of(16));
        for c0 in [0, 16] {
            for q0 in (0..kq).step_by(16) {
                let mut r = [_mm512_setzero_si512(); 16];
                for (i, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(columns.as_ptr().add((c0 + i) * kq + q0) as *const _);
                }
                let t = transpose_16x16(r);
                for (i, v) in t.iter().enumerate() {
                    _mm512_storeu_si512(out.as_mut_ptr().add((q0 + i) * 32 + c0) as *mut _, *v);
                }
            }
        }
    }

    /// 16 × 16 u32 transpose: element (i, j) of the rows becomes element (j, i).
    #[inline(always)]
    pub unsafe fn transpose_16x16(r: [__m512i; 16]) -> [__m512i; 16] {
        // Stage 1: interleave 32-bit elements of row pairs (within 128-bit lanes).
        let mut a = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        // Stage 2: interleave 64-bit elements: each 128-bit lane now holds one column of 4 consecutive rows.
        let mut b = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
            b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
            b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
            b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
        }
        // b[4g + j], lane L (128-bit) = column 4L + j of rows 4g..4g+4.
        // Stage 3/4: gather lane L of b[4g + j] for g = 0..4 into output row 4L + j.
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            // Lanes (0, 2) / (1, 3) of two sources: 0x88 picks lanes 0,2 of each, 0xdd lanes 1,3.
            let x02 = _mm512_shuffle_i32x4::<0x88>(b[j], b[4 + j]); // g0 L0, g0 L2, g1 L0, g1 L2
            let x13 = _mm512_shuffle_i32x4::<0xdd>(b[j], b[4 + j]); // g0 L1, g0 L3, g1 L1, g1 L3
            let y02 = _mm512_shuffle_i32x4::<0x88>(b[8 + j], b[12 + j]); // g2 L0, g2 L2, g3 L0, g3 L2
            let y13 = _mm512_shuffle_i32x4::<0xdd>(b[8 + j], b[12 + j]);
            out[j] = _mm512_shuffle_i32x4::<0x88>(x02, y02); // g0 L0, g1 L0, g2 L0, g3 L0
            out[8 + j] = _mm512_shuffle_i32x4::<0xdd>(x02, y02); // L2
            out[4 + j] = _mm512_shuffle_i32x4::<0x88>(x13, y13); // L1
            out[12 + j] = _mm512_shuffle_i32x4::<0xdd>(x13, y13); // L3
        }
        out
    }
}
