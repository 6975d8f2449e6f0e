//! The register tile every product of attention goes through, like the GEMM's micro-kernel: an MR × NR
//! block of outputs stays in registers while `k` steps of `acc[r][c] += a(r, i) · b(i, c)` stream through
//! it — a(·, i) six broadcast scalars, b(i, ·) sixteen contiguous floats. Both operands are described by
//! offsets and strides into a slice, so the same tile reads query rows (scores), columns of a stored
//! probability block (dk, dv) or rows of probabilities (o, dq) without repacking.
//!
//! The element-wise steps of softmax (e^x, masks, row sums) are methods of the same trait:
//! compiler-vectorised loops of them took about twice the instructions of explicit AVX2 (constants
//! re-broadcast, 64-bit masks).
//!
//! Three twins with the same bits: `Plain` (loops, `f32::mul_add`), `Avx2` (12 ymm accumulators,
//! `vfmadd231ps`) and `Avx512` (a zmm per row, two panels at once in strips; `micro_avx512.rs`). A fused multiply-add rounds once on both, each output sums its k products in the same
//! order, and the element-wise steps are the same operations in the same order, so the paths agree exactly.

/// Rows of a tile (broadcast operand).
pub(super) const MR: usize = 6;
/// Columns of a tile (two AVX2 vectors).
pub(super) const NR: usize = 16;

pub(super) type Acc = [[f32; NR]; MR];

pub(super) const ZERO: Acc = [[0.0; NR]; MR];

/// The broadcast operand: a(r, i) = data[rows[r] + i · step].
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub data: &'a [f32],
    pub rows: [usize; MR],
    pub step: usize,
}

/// The vector operand: b(i, c) = data[at + i · step + c] for c < width (≤ NR), 0 for the other columns (a
/// head's last panel of features when hd is not a multiple of NR: nothing past it is read).
#[derive(Clone, Copy)]
pub(super) struct Panel<'a> {
    pub data: &'a [f32],
    pub at: usize,
    pub step: usize,
    pub width: usize,
}

/// The vector operand of a strip: `count` panels side by side, panel p read like a `Panel` at
/// `at + p · panel_step`, NR wide but for the last (`last_width`).
#[derive(Clone, Copy)]
pub(super) struct Panels<'a> {
    pub data: &'a [f32],
    pub at: usize,
    pub step: usize,
    pub panel_step: usize,
    pub count: usize,
    pub last_width: usize,
}

impl Panels<'_> {
    fn width(&self, p: usize) -> usize {
        if p + 1 == self.count {
            self.last_width
        } else {
            NR
        }
    }
}

/// Where a strip goes: out.data[rows[r] + p · NR + c] = scale[r] · tile_p[r][c] for the first `count` rows
/// and the columns of panel p.
pub(super) struct Out<'a> {
    pub data: &'a mut [f32],
    pub rows: [usize; MR],
    pub count: usize,
    pub scale: [f32; MR],
}

/// A micro-kernel: `tile` runs `acc[r][c] = fma(a(r, i), b(i, c), acc[r][c])` for i = 0..k in order; `strip`
/// does that from zero for each panel of a `Panels` and stores the scaled tiles (one rounding more:
/// acc · scale), so a row of tiles costs one call; `dot` is a dot product of two rows in a fixed order (16
/// lanes of fused multiply-adds over zero-padded chunks of 16, then halves added pairwise: lanes l + l⁺⁸,
/// then l + l⁺⁴, then (0 + 2) + (1 + 3)).
///
/// # Safety
/// The methods may only run where the implementor's instructions exist: `Avx2` inside code compiled with
/// AVX2 and FMA on a CPU that has them (what `on_micro!` arranges). Out-of-range operands panic on every
/// path.
pub(super) unsafe trait Micro {
    unsafe fn tile(k: usize, a: Rows<'_>, b: Panel<'_>, acc: &mut Acc);
    unsafe fn strip(k: usize, a: Rows<'_>, b: Panels<'_>, out: Out<'_>);
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32;
    /// Softmax numerators of MR rows of scores in place (row r: `panels` panels of NR from `rows[r]`): with m
    /// the maximum of the row's first `seen[r]` entries, entry j becomes `exp(x_j − m)` for j < seen[r] and 0
    /// after. Returns each row's m and the sums of its new entries by lane (entry j in lane j mod NR, summed
    /// in row order).
    unsafe fn softmax_rows(
        scores: &mut [f32],
        rows: [usize; MR],
        panels: usize,
        seen: [usize; MR],
    ) -> ([f32; MR], [[f32; NR]; MR]);
    /// One panel of keys for score tiles: out[d][jj] = src[rows[jj] + d] for d < out.len(), 0 where
    /// rows[jj] is None (past the visible keys).
    unsafe fn key_panel(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]);
    /// Probabilities and ds of a tile of scores and dp: s[r][c] ← p = exp(s · scale − lse[r]) for c < seen[r]
    /// (0 for the other columns), dp[r][c] ← p (dp − delta[r]).
    unsafe fn probabilities(
        s: &mut Acc,
        dp: &mut Acc,
        scale: f32,
        lse: [f32; MR],
        delta: [f32; MR],
        seen: [i32; MR],
    );
}

/// e^x for softmax numerators (x ≤ 0 up to rounding; masked columns may hold anything, their result is
/// discarded): x = n ln 2 + r with |r| ≤ ln 2 / 2, a degree-6 minimax polynomial in r, then 2^n from its
/// bits.
/// Every step is one rounding (`mul_add` is fused here and in `avx2::exp`), so both twins give the same bits.
/// Below 2 ulp on [-87, 1]; x < -87 gives e^-87 (≈ 1.6e-38, not 0); NaN stays NaN.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    let x = if x < exp_consts::MIN { exp_consts::MIN } else { x };
    let shifted = x.mul_add(exp_consts::LOG2E, exp_consts::SHIFTER);
    let n = shifted - exp_consts::SHIFTER;
    let r = (-n).mul_add(exp_consts::LN2_LO, (-n).mul_add(exp_consts::LN2_HI, x));
    let c = exp_consts::POLY;
    let mut p = c[6];
    for &c_i in c[..6].iter().rev() {
        p = p.mul_add(r, c_i);
    }
    let bits =
        (shifted.to_bits() as i32).wrapping_sub(exp_consts::SHIFTER.to_bits() as i32).wrapping_add(127);
    p * f32::from_bits((bits << 23) as u32)
}

mod exp_consts {
    pub const MIN: f32 = -87.0;
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    pub const LN2_HI: f32 = std::f32::consts::LN_2;
    /// ln 2 − LN2_HI.
    pub const LN2_LO: f32 = -1.904_654_3e-9;
    /// 1.5 · 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    pub const SHIFTER: f32 = 12_582_912.0;
    /// e^r ≈ Σ POLY[i] r^i on |r| ≤ 1.02 · ln 2 / 2 (relative error 2e-9 before rounding).
    pub const POLY: [f32; 7] =
        [1.0, 1.0, 0.499_999_9, 0.166_664, 0.041_668_355, 0.008_376_482, 0.001_383_474_7];
}

/// The reference: plain loops.
pub(super) struct Plain;

unsafe impl Micro for Plain {
    #[inline(always)]
    unsafe fn tile(k: usize, a: Rows<'_>, b: Panel<'_>, acc: &mut Acc) {
        assert!(b.width <= NR);
        for i in 0..k {
            let mut b_row = [0.0f32; NR];
            b_row[..b.width].copy_from_slice(&b.data[b.at + i * b.step..][..b.width]);
            for (acc_r, &row) in acc.iter_mut().zip(&a.rows) {
                let a_ri = a.data[row + i * a.step];
                for (cell, &b_ic) in acc_r.iter_mut().zip(&b_row) {
                    *cell = a_ri.mul_add(b_ic, *cell);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn strip(k: usize, a: Rows<'_>, b: Panels<'_>, out: Out<'_>) {
        assert!(out.count <= MR);
        for p in 0..b.count {
            let width = b.width(p);
            let mut acc = ZERO;
            let panel = Panel { data: b.data, at: b.at + p * b.panel_step, step: b.step, width };
            Self::tile(k, a, panel, &mut acc);
            for (r, acc_r) in acc.iter().enumerate().take(out.count) {
                for (x, &v) in out.data[out.rows[r] + p * NR..][..width].iter_mut().zip(acc_r) {
                    *x = v * out.scale[r];
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let mut acc = [0.0f32; 16];
        for (xa, xb) in a.chunks(16).zip(b.chunks(16)) {
            let (mut pa, mut pb) = ([0.0f32; 16], [0.0f32; 16]);
            pa[..xa.len()].copy_from_slice(xa);
            pb[..xb.len()].copy_from_slice(xb);
            for l in 0..16 {
                acc[l] = pa[l].mul_add(pb[l], acc[l]);
            }
        }
        let half: [f32; 8] = std::array::from_fn(|l| acc[l] + acc[l + 8]);
        let quarter: [f32; 4] = std::array::from_fn(|l| half[l] + half[l + 4]);
        (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
    }

    #[inline(always)]
    unsafe fn softmax_rows(
        scores: &mut [f32],
        rows: [usize; MR],
        panels: usize,
        seen: [usize; MR],
    ) -> ([f32; MR], [[f32; NR]; MR]) {
        let mut maxima = [0.0f32; MR];
        let mut lanes = [[0.0f32; NR]; MR];
        for r in 0..MR {
            assert!(seen[r] <= panels * NR);
            let row = &mut scores[rows[r]..][..panels * NR];
            let m = row[..seen[r]].iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
            for (j, x) in row.iter_mut().enumerate() {
                *x = if j < seen[r] { exp(*x - m) } else { 0.0 };
                lanes[r][j % NR] += *x;
            }
            maxima[r] = m;
        }
        (maxima, lanes)
    }

    #[inline(always)]
    unsafe fn key_panel(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]) {
        for (jj, row) in rows.iter().enumerate() {
            for (d, dst) in out.iter_mut().enumerate() {
                dst[jj] = row.map_or(0.0, |at| src[at + d]);
            }
        }
    }

    #[inline(always)]
    unsafe fn probabilities(
        s: &mut Acc,
        dp: &mut Acc,
        scale: f32,
        lse: [f32; MR],
        delta: [f32; MR],
        seen: [i32; MR],
    ) {
        for r in 0..MR {
            for c in 0..NR {
                let p = if (c as i32) < seen[r] { exp(s[r][c] * scale - lse[r]) } else { 0.0 };
                s[r][c] = p;
                dp[r][c] = p * (dp[r][c] - delta[r]);
            }
        }
    }
}

/// AVX-512: one zmm per tile row, masks for ragged panels (its own file).
#[cfg(target_arch = "x86_64")]
#[path = "micro_avx512.rs"]
mod avx512_twin;
#[cfg(target_arch = "x86_64")]
pub(super) use avx512_twin::Avx512;

/// AVX2 + FMA: twelve accumulators, two loads and six broadcasts per step.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

/// Panics unless a(r, k − 1) exists for every row.
fn check_rows(k: usize, a: &Rows<'_>) {
    for &row in &a.rows {
        assert!(row + (k - 1) * a.step < a.data.len(), "attention tile: a out of range");
    }
}

/// Panics unless the panel's last step (`width` floats) exists.
fn check_panel(k: usize, data: &[f32], at: usize, step: usize, width: usize) {
    assert!(width <= NR && at + (k - 1) * step + width <= data.len(), "attention tile: b out of range");
}

#[cfg(target_arch = "x86_64")]
unsafe impl Micro for Avx2 {
    #[inline(always)]
    unsafe fn tile(k: usize, a: Rows<'_>, b: Panel<'_>, acc: &mut Acc) {
        if k == 0 {
            return;
        }
        check_rows(k, &a);
        check_panel(k, b.data, b.at, b.step, b.width);
        let a_ptr = a.rows.map(|row| a.data.as_ptr().add(row));
        avx2::tile_call(k, (a_ptr, a.step), (b.data.as_ptr().add(b.at), b.step, b.width), acc);
    }

    #[inline(always)]
    unsafe fn strip(k: usize, a: Rows<'_>, b: Panels<'_>, out: Out<'_>) {
        if b.count == 0 {
            return;
        }
        assert!(out.count <= MR);
        for &row in &out.rows[..out.count] {
            assert!(
                row + (b.count - 1) * NR + b.last_width <= out.data.len(),
                "attention strip: out of range"
            );
        }
        if k > 0 {
            check_rows(k, &a);
            // Panel offsets only grow, so the last two panels bound all of them.
            let last = b.count - 1;
            check_panel(k, b.data, b.at + last * b.panel_step, b.step, b.last_width);
            if last > 0 {
                check_panel(k, b.data, b.at + (last - 1) * b.panel_step, b.step, NR);
            }
        }
        let a_ptr = a.rows.map(|row| a.data.as_ptr().add(row));
        let out_ptr = out.rows.map(|row| out.data.as_mut_ptr().wrapping_add(row));
        let panels = (b.data.as_ptr().wrapping_add(b.at), b.step, b.panel_step, b.count, b.last_width);
        avx2::strip_call(k, (a_ptr, a.step), panels, (out_ptr, out.count, out.scale));
    }

    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        avx2::dot(a, b)
    }

    #[inline(always)]
    unsafe fn softmax_rows(
        scores: &mut [f32],
        rows: [usize; MR],
        panels: usize,
        seen: [usize; MR],
    ) -> ([f32; MR], [[f32; NR]; MR]) {
        for r in 0..MR {
            assert!(
                seen[r] <= panels * NR && rows[r] + panels * NR <= scores.len(),
                "softmax rows out of range"
            );
        }
        avx2::softmax_rows(scores.as_mut_ptr(), rows, panels, seen)
    }

    #[inline(always)]
    unsafe fn key_panel(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]) {
        let hd = out.len();
        for at in rows.iter().flatten() {
            assert!(at + hd <= src.len(), "attention key panel out of range");
        }
        // Eight keys by eight features at a time where all eight keys exist; the rest as in `Plain`.
        let dst = out.as_mut_ptr() as *mut f32;
        for half in 0..2 {
            let keys = &rows[half * 8..half * 8 + 8];
            let whole = if keys.iter().all(Option::is_some) { hd / 8 * 8 } else { 0 };
            if whole > 0 {
                let starts: [*const f32; 8] = std::array::from_fn(|i| src.as_ptr().add(keys[i].unwrap_or(0)));
                for d0 in (0..whole).step_by(8) {
                    crate::simd::avx2::transpose8x8(
                        starts.map(|p| p.add(d0)),
                        dst.add(d0 * NR + half * 8),
                        NR,
                    );
                }
            }
            for (i, row) in keys.iter().enumerate() {
                for (d, dst_d) in out.iter_mut().enumerate().skip(whole) {
                    dst_d[half * 8 + i] = row.map_or(0.0, |at| src[at + d]);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn probabilities(
        s: &mut Acc,
        dp: &mut Acc,
        scale: f32,
        lse: [f32; MR],
        delta: [f32; MR],
        seen: [i32; MR],
    ) {
        avx2::probabilities(s, dp, scale, lse, delta, seen)
    }
}

/// The AVX2 loops. Each is compiled on its own, so its twelve accumulators keep their registers whatever the
/// caller's loops look like: rustc drops `#[inline(never)]` on `#[target_feature]` functions, so a plain
/// `*_call` function stands between (LLVM cannot inline an AVX2 function into it, nor it into its callers).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Acc, MR, NR};
    use std::arch::x86_64::*;

    type Tiles = [[__m256; 2]; MR];

    /// Load masks for the first `width` (≤ NR) of sixteen floats: lanes below it set.
    #[inline(always)]
    unsafe fn masks(width: usize) -> (__m256i, __m256i) {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let w = _mm256_set1_epi32(width as i32);
        (_mm256_cmpgt_epi32(w, lanes), _mm256_cmpgt_epi32(w, _mm256_add_epi32(lanes, _mm256_set1_epi32(8))))
    }

    /// k steps of c[r] += a(r, i) · b(i, ·); b rows `width` wide (MASKED) or NR.
    #[inline(always)]
    unsafe fn steps<const MASKED: bool>(
        k: usize,
        (a, a_step): ([*const f32; MR], usize),
        (b, b_step, width): (*const f32, usize, usize),
        c: &mut Tiles,
    ) {
        let (m_lo, m_hi) = masks(width);
        let (mut offset, mut b_ptr) = (0, b);
        for _ in 0..k {
            let (b0, b1) = if !MASKED {
                (_mm256_loadu_ps(b_ptr), _mm256_loadu_ps(b_ptr.add(8)))
            } else if width > 8 {
                (_mm256_loadu_ps(b_ptr), _mm256_maskload_ps(b_ptr.add(8), m_hi))
            } else {
                (_mm256_maskload_ps(b_ptr, m_lo), _mm256_setzero_ps())
            };
            for (c_r, p) in c.iter_mut().zip(&a) {
                let a_ri = _mm256_broadcast_ss(&*p.add(offset));
                c_r[0] = _mm256_fmadd_ps(a_ri, b0, c_r[0]);
                c_r[1] = _mm256_fmadd_ps(a_ri, b1, c_r[1]);
            }
            offset += a_step;
            b_ptr = b_ptr.add(b_step);
        }
    }

    #[inline(never)]
    pub(super) unsafe fn tile_call(
        k: usize,
        a: ([*const f32; MR], usize),
        b: (*const f32, usize, usize),
        acc: &mut Acc,
    ) {
        tile(k, a, b, acc)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(k: usize, a: ([*const f32; MR], usize), b: (*const f32, usize, usize), acc: &mut Acc) {
        let mut c: Tiles = [[_mm256_setzero_ps(); 2]; MR];
        for (c_r, acc_r) in c.iter_mut().zip(acc.iter()) {
            c_r[0] = _mm256_loadu_ps(acc_r.as_ptr());
            c_r[1] = _mm256_loadu_ps(acc_r.as_ptr().add(8));
        }
        if b.2 == NR {
            steps::<false>(k, a, b, &mut c);
        } else {
            steps::<true>(k, a, b, &mut c);
        }
        for (c_r, acc_r) in c.iter().zip(acc.iter_mut()) {
            _mm256_storeu_ps(acc_r.as_mut_ptr(), c_r[0]);
            _mm256_storeu_ps(acc_r.as_mut_ptr().add(8), c_r[1]);
        }
    }

    #[inline(never)]
    pub(super) unsafe fn strip_call(
        k: usize,
        a: ([*const f32; MR], usize),
        b: (*const f32, usize, usize, usize, usize),
        out: ([*mut f32; MR], usize, [f32; MR]),
    ) {
        strip(k, a, b, out)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn strip(
        k: usize,
        a: ([*const f32; MR], usize),
        (b, b_step, panel_step, count, last_width): (*const f32, usize, usize, usize, usize),
        (out, rows, scale): ([*mut f32; MR], usize, [f32; MR]),
    ) {
        for p in 0..count {
            let width = if p + 1 == count { last_width } else { NR };
            let mut c: Tiles = [[_mm256_setzero_ps(); 2]; MR];
            let panel = (b.wrapping_add(p * panel_step), b_step, width);
            if width == NR {
                steps::<false>(k, a, panel, &mut c);
            } else {
                steps::<true>(k, a, panel, &mut c);
            }
            let (m_lo, m_hi) = masks(width);
            for r in 0..rows {
                let s = _mm256_set1_ps(scale[r]);
                let dst = out[r].add(p * NR);
                let (v0, v1) = (_mm256_mul_ps(c[r][0], s), _mm256_mul_ps(c[r][1], s));
                if width == NR {
                    _mm256_storeu_ps(dst, v0);
                    _mm256_storeu_ps(dst.add(8), v1);
                } else if width > 8 {
                    _mm256_storeu_ps(dst, v0);
                    _mm256_maskstore_ps(dst.add(8), m_hi, v1);
                } else {
                    _mm256_maskstore_ps(dst, m_lo, v0);
                }
            }
        }
    }

    /// `super::exp` on eight lanes, step for step.
    #[inline(always)]
    unsafe fn exp(x: __m256) -> __m256 {
        use super::exp_consts as k;
        // max_ps returns its second operand when either is NaN: NaN stays NaN, as in `super::exp`.
        let x = _mm256_max_ps(_mm256_set1_ps(k::MIN), x);
        let shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(k::LOG2E), _mm256_set1_ps(k::SHIFTER));
        let n = _mm256_sub_ps(shifted, _mm256_set1_ps(k::SHIFTER));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(k::LN2_LO), r);
        let mut p = _mm256_set1_ps(k::POLY[6]);
        for &c in k::POLY[..6].iter().rev() {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let bias = _mm256_set1_epi32(127 - k::SHIFTER.to_bits() as i32);
        let two_n = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(shifted), bias));
        _mm256_mul_ps(p, _mm256_castsi256_ps(two_n))
    }

    /// Lanes below `limit` (of the indices `first..first + 8`) set.
    #[inline(always)]
    unsafe fn below(first: i32, limit: i32) -> __m256 {
        let index = _mm256_add_epi32(_mm256_set1_epi32(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(limit), index))
    }

    /// See `Micro::softmax_rows`. The rows go side by side (panel by panel), so six exponentials are in
    /// flight at once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_rows(
        scores: *mut f32,
        rows: [usize; MR],
        panels: usize,
        seen: [usize; MR],
    ) -> ([f32; MR], [[f32; NR]; MR]) {
        let ptr = rows.map(|row| scores.add(row));
        let limit = seen.map(|s| s as i32);
        // Maxima: whole vectors below `seen`, then the masked rest (max is exact in any order).
        let mut maxima = [0.0f32; MR];
        for r in 0..MR {
            let mut m8 = _mm256_set1_ps(f32::NEG_INFINITY);
            let full = seen[r] / 8;
            for v in 0..full {
                m8 = _mm256_max_ps(m8, _mm256_loadu_ps(ptr[r].add(v * 8)));
            }
            if full * 8 < seen[r] {
                let x = _mm256_loadu_ps(ptr[r].add(full * 8));
                let x = _mm256_blendv_ps(
                    _mm256_set1_ps(f32::NEG_INFINITY),
                    x,
                    below((full * 8) as i32, limit[r]),
                );
                m8 = _mm256_max_ps(m8, x);
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps::<1>(m8));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            maxima[r] = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        }
        // Numerators and lane sums.
        let mv = maxima.map(|m| _mm256_set1_ps(m));
        let mut sums = [[_mm256_setzero_ps(); 2]; MR];
        for p in 0..panels {
            let first = (p * NR) as i32;
            for r in 0..MR {
                let at = ptr[r].add(p * NR);
                let mut e0 = exp(_mm256_sub_ps(_mm256_loadu_ps(at), mv[r]));
                let mut e1 = exp(_mm256_sub_ps(_mm256_loadu_ps(at.add(8)), mv[r]));
                if first + NR as i32 > limit[r] {
                    e0 = _mm256_and_ps(e0, below(first, limit[r]));
                    e1 = _mm256_and_ps(e1, below(first + 8, limit[r]));
                }
                _mm256_storeu_ps(at, e0);
                _mm256_storeu_ps(at.add(8), e1);
                sums[r][0] = _mm256_add_ps(sums[r][0], e0);
                sums[r][1] = _mm256_add_ps(sums[r][1], e1);
            }
        }
        let mut lanes = [[0.0f32; NR]; MR];
        for (lanes_r, sums_r) in lanes.iter_mut().zip(&sums) {
            _mm256_storeu_ps(lanes_r.as_mut_ptr(), sums_r[0]);
            _mm256_storeu_ps(lanes_r.as_mut_ptr().add(8), sums_r[1]);
        }
        (maxima, lanes)
    }

    /// See `Micro::probabilities`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn probabilities(
        s: &mut Acc,
        dp: &mut Acc,
        scale: f32,
        lse: [f32; MR],
        delta: [f32; MR],
        seen: [i32; MR],
    ) {
        let sc = _mm256_set1_ps(scale);
        for r in 0..MR {
            let (l, d) = (_mm256_set1_ps(lse[r]), _mm256_set1_ps(delta[r]));
            for half in 0..2 {
                let (sp, dpp) = (s[r].as_mut_ptr().add(half * 8), dp[r].as_mut_ptr().add(half * 8));
                let e = exp(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(sp), sc), l));
                let p = _mm256_and_ps(e, below((half * 8) as i32, seen[r]));
                _mm256_storeu_ps(sp, p);
                _mm256_storeu_ps(dpp, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(dpp), d)));
            }
        }
    }

    /// See `Micro::dot`.
    #[inline(always)]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), hi);
            i += 16;
        }
        if i < n {
            let (m_lo, m_hi) = masks(n - i);
            let (a_lo, b_lo) = (_mm256_maskload_ps(pa.add(i), m_lo), _mm256_maskload_ps(pb.add(i), m_lo));
            // The upper half starts past the end when fewer than 9 remain: never address it then.
            let (a_hi, b_hi) = if n - i > 8 {
                (_mm256_maskload_ps(pa.add(i + 8), m_hi), _mm256_maskload_ps(pb.add(i + 8), m_hi))
            } else {
                (_mm256_setzero_ps(), _mm256_setzero_ps())
            };
            lo = _mm256_fmadd_ps(a_lo, b_lo, lo);
            hi = _mm256_fmadd_ps(a_hi, b_hi, hi);
        }
        let half = _mm256_add_ps(lo, hi);
        let quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps::<1>(half));
        let pairs = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
    }
}

/// Declares `fn $name(path: Path, args...)` running the generic `unsafe fn $body<M: Micro>(args...)` with
/// the plain micro-kernel, or with the AVX2 one inside a function compiled for AVX2 + FMA (so the body's
/// own loops — exp, masks, copies — are vectorised too; they never contract into FMAs, so both builds of
/// them give the same bits).
macro_rules! on_micro {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $body:ident) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(path: $crate::ops::exec::Path, $($arg: $ty),*) {
            $crate::report::note($crate::report::Family::Attention, path.route());
            match path {
                // SAFETY: the plain micro-kernel runs anywhere.
                $crate::ops::exec::Path::Plain => unsafe { $body::<super::micro::Plain>($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::ops::exec::Path::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn avx2($($arg: $ty),*) {
                        $body::<super::micro::Avx2>($($arg),*)
                    }
                    // SAFETY: Path::Avx2 is only chosen when dispatch found AVX2 and FMA on this CPU.
                    unsafe { avx2($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                $crate::ops::exec::Path::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                    unsafe fn avx512($($arg: $ty),*) {
                        $body::<super::micro::Avx512>($($arg),*)
                    }
                    // SAFETY: Path::Avx512 is only chosen when dispatch found AVX-512 F/BW/VL, AVX2 and FMA.
                    unsafe { avx512($($arg),*) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                // SAFETY: as above.
                $crate::ops::exec::Path::Avx2 | $crate::ops::exec::Path::Avx512 => unsafe {
                    $body::<super::micro::Plain>($($arg),*)
                },
            }
        }
    };
}
pub(super) use on_micro;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exec::Path;
    use crate::ops::testutil::data;

    /// Runs `$call` (a method of `M`) on `$path`'s twin, the AVX2 one inside an AVX2 + FMA function.
    macro_rules! on {
        ($path:expr, |$m:ident| $call:expr) => {{
            match $path {
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                        f()
                    }
                    type $m = Avx2;
                    unsafe { avx2(|| $call) }
                }
                #[cfg(target_arch = "x86_64")]
                Path::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                    unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                        f()
                    }
                    type $m = Avx512;
                    unsafe { avx512(|| $call) }
                }
                _ => {
                    type $m = Plain;
                    unsafe { $call }
                }
            }
        }};
    }

    fn b_value(b: &Panel<'_>, i: usize, c: usize) -> f32 {
        if c < b.width {
            b.data[b.at + i * b.step + c]
        } else {
            0.0
        }
    }

    /// Units of 2⁻²⁴ relative to `want`: an f32 rounding is at most 1 (and 2 ulp at most 4).
    fn rel_units(got: f32, want: f64) -> f64 {
        (got as f64 - want).abs() / want.abs().max(f64::MIN_POSITIVE) * (1u64 << 24) as f64
    }

    #[test]
    fn tiles_agree_bit_for_bit_and_match_f64() {
        let a_data = data(8000, 1);
        let b_data = data(8000, 2);
        let start: Acc = std::array::from_fn(|r| std::array::from_fn(|c| (r * NR + c) as f32 * 0.01));
        // Row operands (step 1, scattered rows), column operands (step > 1, adjacent rows), ragged k and
        // widths; the last panels end exactly at the end of the data.
        for (k, rows, a_step, b_at, b_step, width) in [
            (0, [0, 1, 2, 3, 4, 5], 1, 0, NR, NR),
            (1, [7, 100, 3, 900, 40, 41], 1, 5, NR, NR),
            (37, [0, 37, 74, 111, 148, 185], 1, 3, 19, 13),
            (64, [9, 10, 11, 12, 13, 14], 48, 0, 64, NR),
            (101, [500, 3, 3, 3, 1000, 2], 7, 17, 33, 8),
            (5, [0, 1, 2, 3, 4, 5], 1, 8000 - 4 * 20 - 5, 20, 5),
            (9, [0, 1, 2, 3, 4, 5], 1, 8000 - 8 * 40 - 9, 40, 9),
        ] {
            let a = Rows { data: &a_data, rows, step: a_step };
            let b = Panel { data: &b_data, at: b_at, step: b_step, width };
            let mut reference = start;
            on!(Path::Plain, |M| M::tile(k, a, b, &mut reference));
            for path in Path::available() {
                let mut got = start;
                on!(path, |M| M::tile(k, a, b, &mut got));
                assert_eq!(got, reference, "{path:?} k = {k}, width = {width}");
            }
            // Budget: f32 rounding of a k-term dot product, relative to Σ|a||b| + |acc|.
            for r in 0..MR {
                for c in 0..NR {
                    let terms =
                        (0..k).map(|i| a_data[rows[r] + i * a_step] as f64 * b_value(&b, i, c) as f64);
                    let want = start[r][c] as f64 + terms.clone().sum::<f64>();
                    let magnitude = start[r][c].abs() as f64 + terms.map(f64::abs).sum::<f64>();
                    let err = (reference[r][c] as f64 - want).abs();
                    assert!(err <= 1e-6 * (1.0 + magnitude), "k = {k} [{r}][{c}]: {err}");
                }
            }
        }
    }

    #[test]
    fn strips_are_scaled_tiles_on_every_path() {
        let (a_data, b_data) = (data(3000, 3), data(3000, 4));
        // Panels of 16 with a ragged last one or not (the AVX-512 twin runs panels in pairs, so odd and even
        // counts), rows stored at scattered places; 4 of 6 rows kept.
        let a = Rows { data: &a_data, rows: [0, 50, 100, 150, 200, 250], step: 1 };
        for (count, last_width) in [(3, 9), (2, 9), (2, 16), (1, 5), (4, 16), (5, 1)] {
            let b = Panels { data: &b_data, at: 7, step: 40, panel_step: 16, count, last_width };
            let (k, rows, scale) = (45, [0, 100, 200, 300, 400, 500], [0.5, -2.0, 1.0, 0.125, 3.0, 1.0]);
            let mut want = vec![f32::NAN; 600];
            for p in 0..b.count {
                let width = if p + 1 == b.count { b.last_width } else { NR };
                let mut acc = ZERO;
                on!(Path::Plain, |M| M::tile(
                    k,
                    a,
                    Panel { data: &b_data, at: b.at + p * 16, step: 40, width },
                    &mut acc
                ));
                for r in 0..4 {
                    for c in 0..width {
                        want[rows[r] + p * NR + c] = acc[r][c] * scale[r];
                    }
                }
            }
            for path in Path::available() {
                let mut got = vec![f32::NAN; 600];
                on!(path, |M| M::strip(k, a, b, Out { data: &mut got, rows, count: 4, scale }));
                assert_eq!(
                    got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "{path:?} {count} panels, last {last_width} wide"
                );
            }
        }
    }

    #[test]
    fn dots_agree_bit_for_bit_and_match_f64() {
        let (a, b) = (data(300, 3), data(300, 4));
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 64, 72, 299] {
            // The rows end at the end of their slices: a masked tail must not read past them.
            let (a, b) = (&a[300 - n..], &b[300 - n..]);
            let reference = on!(Path::Plain, |M| M::dot(a, b));
            for path in Path::available() {
                assert_eq!(on!(path, |M| M::dot(a, b)).to_bits(), reference.to_bits(), "{path:?} n = {n}");
            }
            let want: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let magnitude: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
            assert!((reference as f64 - want).abs() <= 1e-6 * (1.0 + magnitude), "n = {n}");
        }
    }

    #[test]
    fn exp_is_within_2_ulp_on_softmax_arguments() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 1.0 {
            worst = worst.max(rel_units(exp(x), (x as f64).exp()));
            x += 0.000_371;
        }
        // 2 ulp is 4 units for results in [0.5, 1) and 2 in [1, 2).
        assert!(worst < 3.0, "worst error {worst} · 2^-24");
        assert_eq!(exp(0.0), 1.0);
        assert!((exp(-1000.0) as f64 - (-87f64).exp()).abs() < 1e-44);
        assert!(exp(f32::NAN).is_nan());
    }

    /// Scores with a spread that makes the maximum matter, rows of ragged lengths.
    fn scores(panels: usize) -> (Vec<f32>, [usize; MR], [usize; MR]) {
        let x: Vec<f32> = data(MR * panels * NR + 40, 5).iter().map(|v| v * 30.0).collect();
        let rows = std::array::from_fn(|r| 40 + r * panels * NR);
        (x, rows, [1, 7, 16, 17, 33, panels * NR].map(|s| s.min(panels * NR)))
    }

    #[test]
    fn softmax_rows_agree_bit_for_bit_and_match_f64() {
        for panels in [1, 3] {
            let (x, rows, seen) = scores(panels);
            let mut reference = x.clone();
            let (m_ref, lanes_ref) =
                on!(Path::Plain, |M| M::softmax_rows(&mut reference, rows, panels, seen));
            for path in Path::available() {
                let mut got = x.clone();
                let (m, lanes) = on!(path, |M| M::softmax_rows(&mut got, rows, panels, seen));
                assert_eq!((m, lanes), (m_ref, lanes_ref), "{path:?}");
                assert_eq!(got, reference, "{path:?}");
            }
            for r in 0..MR {
                let row = &x[rows[r]..][..panels * NR];
                let m = row[..seen[r]].iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                assert_eq!(m_ref[r] as f64, m);
                for (j, &p) in reference[rows[r]..][..panels * NR].iter().enumerate() {
                    if j < seen[r] {
                        // x − m is rounded to f32 before the exponential, as in the kernels.
                        let arg = (row[j] - m_ref[r]) as f64;
                        let want = arg.exp();
                        assert!(rel_units(p, want) < 3.0 || arg < -87.0, "row {r} key {j}: {p} vs {want}");
                    } else {
                        assert_eq!(p, 0.0);
                    }
                }
                let total: f64 = lanes_ref[r].iter().map(|&v| v as f64).sum();
                let want: f64 = row[..seen[r]].iter().map(|&v| (v as f64 - m).exp()).sum();
                assert!((total - want).abs() <= 1e-6 * want, "row {r}");
            }
        }
    }

    #[test]
    fn probabilities_agree_bit_for_bit() {
        let s: Acc =
            std::array::from_fn(|r| std::array::from_fn(|c| ((r * NR + c) as f32 * 0.37).sin() * 4.0));
        let dp: Acc = std::array::from_fn(|r| std::array::from_fn(|c| ((r * NR + c) as f32 * 0.11).cos()));
        let (lse, delta) = ([1.0, 2.0, 0.5, 3.0, -1.0, 0.0], [0.1, -0.2, 0.3, 0.0, 1.0, -1.0]);
        let seen = [0, 1, 8, 9, 16, 40];
        let run = |path| {
            let (mut s, mut dp) = (s, dp);
            on!(path, |M| M::probabilities(&mut s, &mut dp, 0.125, lse, delta, seen));
            (s, dp)
        };
        let reference = run(Path::Plain);
        for path in Path::available() {
            assert_eq!(run(path), reference, "{path:?}");
        }
        for r in 0..MR {
            for c in 0..NR {
                let p = if (c as i32) < seen[r] { exp(s[r][c] * 0.125 - lse[r]) } else { 0.0 };
                assert_eq!(reference.0[r][c], p);
                assert_eq!(reference.1[r][c], p * (dp[r][c] - delta[r]));
            }
        }
    }

    #[test]
    fn out_of_range_operands_panic_on_every_path() {
        let x = vec![0.0f32; 64];
        for (rows, width) in [([0, 0, 0, 0, 0, 60], NR), ([0; MR], NR + 1)] {
            let a = Rows { data: &x, rows, step: 1 };
            let b = Panel { data: &x, at: 0, step: 0, width };
            for path in Path::available() {
                let caught = std::panic::catch_unwind(|| {
                    let mut acc = ZERO;
                    on!(path, |M| M::tile(8, a, b, &mut acc))
                });
                assert!(caught.is_err(), "{path:?}");
            }
        }
    }
}
