//! The AVX-512 twin of the attention micro-kernel: a row of a 6 × 16 tile is one zmm register, ragged panels
//! and tails use mask registers (masked loads never touch the lanes they skip). Six accumulators cannot
//! cover the latency of two FMA ports, so a strip runs two panels side by side (twelve accumulators); panels
//! are independent, so every output keeps the plain twin's order of operations, and the same bits.

use super::{check_panel, check_rows, Acc, Micro, Out, Panel, Panels, Rows, MR, NR};

/// AVX-512 F/BW/VL + FMA.
pub(in crate::ops::attention) struct Avx512;

unsafe impl Micro for Avx512 {
    #[inline(always)]
    unsafe fn tile(k: usize, a: Rows<'_>, b: Panel<'_>, acc: &mut Acc) {
        if k == 0 {
            return;
        }
        check_rows(k, &a);
        check_panel(k, b.data, b.at, b.step, b.width);
        let a_ptr = a.rows.map(|row| a.data.as_ptr().add(row));
        zmm::tile_call(k, (a_ptr, a.step), (b.data.as_ptr().add(b.at), b.step, b.width), acc);
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
            let last = b.count - 1;
            check_panel(k, b.data, b.at + last * b.panel_step, b.step, b.last_width);
            if last > 0 {
                check_panel(k, b.data, b.at + (last - 1) * b.panel_step, b.step, NR);
            }
        }
        let a_ptr = a.rows.map(|row| a.data.as_ptr().add(row));
        let out_ptr = out.rows.map(|row| out.data.as_mut_ptr().wrapping_add(row));
        let panels = (b.data.as_ptr().wrapping_add(b.at), b.step, b.panel_step, b.count, b.last_width);
        zmm::strip_call(k, (a_ptr, a.step), panels, (out_ptr, out.count, out.scale));
    }

    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        zmm::dot(a, b)
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
        zmm::softmax_rows(scores.as_mut_ptr(), rows, panels, seen)
    }

    #[inline(always)]
    unsafe fn key_panel(src: &[f32], rows: [Option<usize>; NR], out: &mut [[f32; NR]]) {
        // A copy (8×8 AVX2 transposes), the same bits on either twin; AVX-512 CPUs have AVX2.
        <super::Avx2 as Micro>::key_panel(src, rows, out)
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
        zmm::probabilities(s, dp, scale, lse, delta, seen)
    }
}

/// The AVX-512 loops, each compiled on its own behind a plain `*_call` (see the AVX2 twin for why).
mod zmm {
    use super::super::exp_consts as k;
    use super::{Acc, MR, NR};
    use std::arch::x86_64::*;

    type Tiles = [__m512; MR];

    /// The first `width` (≤ 16) lanes.
    #[inline(always)]
    fn lanes_below(width: usize) -> __mmask16 {
        ((1u32 << width.min(16)) - 1) as __mmask16
    }

    /// Lanes i of `first..first + 16` with first + i < limit.
    #[inline(always)]
    fn below(first: i32, limit: i32) -> __mmask16 {
        lanes_below((limit - first).clamp(0, 16) as usize)
    }

    /// One step's row of b: all sixteen, or the first `width` (the rest zero, never read).
    #[inline(always)]
    unsafe fn load_b<const MASKED: bool>(p: *const f32, mask: __mmask16) -> __m512 {
        if MASKED {
            _mm512_maskz_loadu_ps(mask, p)
        } else {
            _mm512_loadu_ps(p)
        }
    }

    /// k steps of c[r] += a(r, i) · b(i, ·).
    #[inline(always)]
    unsafe fn steps<const MASKED: bool>(
        k: usize,
        (a, a_step): ([*const f32; MR], usize),
        (b, b_step, width): (*const f32, usize, usize),
        c: &mut Tiles,
    ) {
        let mask = lanes_below(width);
        let (mut offset, mut b_ptr) = (0, b);
        for _ in 0..k {
            let bv = load_b::<MASKED>(b_ptr, mask);
            for (c_r, p) in c.iter_mut().zip(&a) {
                *c_r = _mm512_fmadd_ps(_mm512_set1_ps(*p.add(offset)), bv, *c_r);
            }
            offset += a_step;
            b_ptr = b_ptr.add(b_step);
        }
    }

    /// Two panels at once (the first NR wide, the second `width2` wide): twelve independent accumulators.
    #[inline(always)]
    unsafe fn steps2<const MASKED: bool>(
        k: usize,
        (a, a_step): ([*const f32; MR], usize),
        (b, b_step, panel_step, width2): (*const f32, usize, usize, usize),
        c: &mut [Tiles; 2],
    ) {
        let mask = lanes_below(width2);
        let (mut offset, mut b_ptr) = (0, b);
        for _ in 0..k {
            let b0 = _mm512_loadu_ps(b_ptr);
            let b1 = load_b::<MASKED>(b_ptr.add(panel_step), mask);
            for (r, p) in a.iter().enumerate() {
                let a_ri = _mm512_set1_ps(*p.add(offset));
                c[0][r] = _mm512_fmadd_ps(a_ri, b0, c[0][r]);
                c[1][r] = _mm512_fmadd_ps(a_ri, b1, c[1][r]);
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

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn tile(k: usize, a: ([*const f32; MR], usize), b: (*const f32, usize, usize), acc: &mut Acc) {
        let mut c: Tiles = [_mm512_setzero_ps(); MR];
        for (c_r, acc_r) in c.iter_mut().zip(acc.iter()) {
            *c_r = _mm512_loadu_ps(acc_r.as_ptr());
        }
        if b.2 == NR {
            steps::<false>(k, a, b, &mut c);
        } else {
            steps::<true>(k, a, b, &mut c);
        }
        for (c_r, acc_r) in c.iter().zip(acc.iter_mut()) {
            _mm512_storeu_ps(acc_r.as_mut_ptr(), *c_r);
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

    /// Stores `rows` rows of a tile, scaled, at panel `p` of the outputs (the first `width` columns).
    #[inline(always)]
    unsafe fn store_tile(
        c: &Tiles,
        (out, rows, scale): ([*mut f32; MR], usize, [f32; MR]),
        p: usize,
        width: usize,
    ) {
        let mask = lanes_below(width);
        for r in 0..rows {
            let v = _mm512_mul_ps(c[r], _mm512_set1_ps(scale[r]));
            _mm512_mask_storeu_ps(out[r].add(p * NR), mask, v);
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn strip(
        k: usize,
        a: ([*const f32; MR], usize),
        (b, b_step, panel_step, count, last_width): (*const f32, usize, usize, usize, usize),
        out: ([*mut f32; MR], usize, [f32; MR]),
    ) {
        let width = |p: usize| if p + 1 == count { last_width } else { NR };
        let mut p = 0;
        while p + 1 < count {
            let mut c = [[_mm512_setzero_ps(); MR]; 2];
            let pair = (b.wrapping_add(p * panel_step), b_step, panel_step, width(p + 1));
            if width(p + 1) == NR {
                steps2::<false>(k, a, pair, &mut c);
            } else {
                steps2::<true>(k, a, pair, &mut c);
            }
            store_tile(&c[0], out, p, NR);
            store_tile(&c[1], out, p + 1, width(p + 1));
            p += 2;
        }
        if p < count {
            let mut c: Tiles = [_mm512_setzero_ps(); MR];
            let panel = (b.wrapping_add(p * panel_step), b_step, width(p));
            if width(p) == NR {
                steps::<false>(k, a, panel, &mut c);
            } else {
                steps::<true>(k, a, panel, &mut c);
            }
            store_tile(&c, out, p, width(p));
        }
    }

    /// `super::super::exp` on sixteen lanes, step for step.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // max_ps returns its second operand when either is NaN: NaN stays NaN, as in the plain twin.
        let x = _mm512_max_ps(_mm512_set1_ps(k::MIN), x);
        let shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(k::LOG2E), _mm512_set1_ps(k::SHIFTER));
        let n = _mm512_sub_ps(shifted, _mm512_set1_ps(k::SHIFTER));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(k::LN2_LO), r);
        let mut p = _mm512_set1_ps(k::POLY[6]);
        for &c in k::POLY[..6].iter().rev() {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let bias = _mm512_set1_epi32(127 - k::SHIFTER.to_bits() as i32);
        let two_n = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_castps_si512(shifted), bias));
        _mm512_mul_ps(p, _mm512_castsi512_ps(two_n))
    }

    /// See `Micro::softmax_rows`; the six rows go side by side, panel by panel.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn softmax_rows(
        scores: *mut f32,
        rows: [usize; MR],
        panels: usize,
        seen: [usize; MR],
    ) -> ([f32; MR], [[f32; NR]; MR]) {
        let ptr = rows.map(|row| scores.add(row));
        let limit = seen.map(|s| s as i32);
        // Maxima over the first seen[r] entries (max is exact in any order); masked lanes read as −inf.
        let mut maxima = [0.0f32; MR];
        let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
        for r in 0..MR {
            let mut m = neg_inf;
            let full = seen[r] / NR;
            for v in 0..full {
                m = _mm512_max_ps(m, _mm512_loadu_ps(ptr[r].add(v * NR)));
            }
            if full * NR < seen[r] {
                let x =
                    _mm512_mask_loadu_ps(neg_inf, lanes_below(seen[r] - full * NR), ptr[r].add(full * NR));
                m = _mm512_max_ps(m, x);
            }
            maxima[r] = _mm512_reduce_max_ps(m);
        }
        let mv = maxima.map(|m| _mm512_set1_ps(m));
        let mut sums = [_mm512_setzero_ps(); MR];
        for p in 0..panels {
            let first = (p * NR) as i32;
            for r in 0..MR {
                let at = ptr[r].add(p * NR);
                let mut e = exp(_mm512_sub_ps(_mm512_loadu_ps(at), mv[r]));
                if first + NR as i32 > limit[r] {
                    e = _mm512_maskz_mov_ps(below(first, limit[r]), e);
                }
                _mm512_storeu_ps(at, e);
                sums[r] = _mm512_add_ps(sums[r], e);
            }
        }
        let mut lanes = [[0.0f32; NR]; MR];
        for (lanes_r, sums_r) in lanes.iter_mut().zip(&sums) {
            _mm512_storeu_ps(lanes_r.as_mut_ptr(), *sums_r);
        }
        (maxima, lanes)
    }

    /// See `Micro::probabilities`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn probabilities(
        s: &mut Acc,
        dp: &mut Acc,
        scale: f32,
        lse: [f32; MR],
        delta: [f32; MR],
        seen: [i32; MR],
    ) {
        let sc = _mm512_set1_ps(scale);
        for r in 0..MR {
            let (l, d) = (_mm512_set1_ps(lse[r]), _mm512_set1_ps(delta[r]));
            let (sp, dpp) = (s[r].as_mut_ptr(), dp[r].as_mut_ptr());
            let e = exp(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(sp), sc), l));
            let p = _mm512_maskz_mov_ps(below(0, seen[r]), e);
            _mm512_storeu_ps(sp, p);
            _mm512_storeu_ps(dpp, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dpp), d)));
        }
    }

    /// See `Micro::dot`: sixteen lanes of fused multiply-adds (the tail masked to zeros), then the plain
    /// twin's pairwise halving.
    #[inline(always)]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_avx512(a, b)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + NR <= n {
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc);
            i += NR;
        }
        if i < n {
            let mask = lanes_below(n - i);
            acc = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(mask, pa.add(i)),
                _mm512_maskz_loadu_ps(mask, pb.add(i)),
                acc,
            );
        }
        let low = _mm512_castps512_ps256(acc);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        let half = _mm256_add_ps(low, high);
        let quarter = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps::<1>(half));
        let pairs = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
    }
}
