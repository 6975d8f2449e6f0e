//! Native bf16 units (AMX tiles, `vdpbf16ps`) and their plain twin, on ragged shapes: against the f64 oracle on
//! the unrounded operands, against each other (same bf16 operands, only the order of f32 sums differs), and
//! SIMD pair packers against their plain loops bit for bit. Units the CPU lacks are skipped and named.

use super::naive::{abs_dot, gemm_naive};
use super::native::{run, Product, Unit};
use super::pack::{Bf16Matrix, Direct, PackCtx, Strided, Transposed, Weight};
use super::pairs::{self, padded_pairs, PairB, PairWeight, Scratch, NR};
use super::{nf4_backward, nf4_forward, Compute, Run};
use crate::dispatch::{cpu, Bf16Unit, Kernel};
use crate::nf4::quantize::quantize;

/// Against f64 on unrounded operands: both operands rounded to 8 significant bits (≤ 2^-8 relative each).
const BF16_BUDGET: f64 = 2.0 * (1.0 / 256.0) + 1e-5;
/// Against the plain twin on the same bf16 operands: products are exact in f32, only the order of the f32
/// sums differs (≤ k · 2^-24 of Σ|a||b| in the worst case; 1e-5 covers k ≤ 160 worst case, far more in practice).
const SAME_OPERANDS_BUDGET: f64 = 1e-5;

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bf16(x: f32) -> f32 {
    super::pack::bf16_round(x)
}

/// The units this CPU has, the plain twin first; printed so a test log says which paths ran.
fn units() -> Vec<Unit> {
    let mut units = vec![Unit::Twin];
    if cpu().avx512 && cpu().avx512_bf16 {
        units.push(Unit::Dot);
    }
    if cpu().avx512 && cpu().amx_bf16 {
        units.push(Unit::Amx);
    }
    eprintln!("native bf16 units tested on this CPU: {units:?}");
    units
}

fn kernel_for(unit: Unit) -> Kernel {
    if unit == Unit::Twin {
        Kernel::Scalar
    } else {
        Kernel::Avx512
    }
}

/// (m, out, in): M = 1, rows and columns not multiples of 8, 16 or 32, depth not a multiple of 32 or 64, a
/// depth over one block with a ragged last block, a column count over one decoded block (128), rows over
/// several row blocks.
const SHAPES: [(usize, usize, usize); 11] = [
    (1, 63, 10),
    (7, 17, 45),
    (33, 70, 130),
    (5, 64, 64),
    (40, 48, 200),
    (3, 130, 77),
    (65, 161, 1100),
    (32, 32, 33),
    // Depth over one block in both directions (forward KC 2048, backward 1024), with ragged last blocks.
    (9, 40, 2100),
    (9, 1100, 40),
    // Rows over several of the AMX nest's row blocks (at most 512 rows; here 3 of 352, the last 326).
    (1030, 40, 70),
];

fn worst(got: &[f32], want: &[f32], scale: impl Fn(usize) -> f64) -> f64 {
    (0..got.len()).map(|i| (got[i] as f64 - want[i] as f64).abs() / scale(i).max(1e-30)).fold(0.0, f64::max)
}

/// Runs `C = alpha · A · B + beta · C0` with every unit and checks it; `a(i, p)`, `b(p, j)` give the operands.
#[allow(clippy::too_many_arguments)]
fn check_units<B: PairB>(
    what: &str,
    b_src: &B,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: impl Fn(usize, usize) -> f32,
    alpha: f32,
    beta: f32,
) {
    let c0 = random(m * n, 99);
    let mut want = c0.clone();
    gemm_naive(m, n, k, |i, p| a[i * k + p], &b, &mut want, n, alpha, beta);
    let scale = |idx: usize| {
        let (i, j) = (idx / n, idx % n);
        alpha.abs() as f64 * abs_dot(k, |p| a[i * k + p], |p| b(p, j))
            + (beta as f64 * c0[idx] as f64).abs()
            + 1e-6
    };
    let mut twin = None;
    for unit in units() {
        let mut by_threads = Vec::new();
        for threads in [1, 2] {
            let mut got = if beta == 0.0 { vec![f32::NAN; m * n] } else { c0.clone() };
            let p = Product { m, n, k, a: Strided { data: a, rs: k, cs: 1 }, b: b_src, alpha, beta, ldc: n };
            unsafe { run(&p, got.as_mut_ptr(), kernel_for(unit), unit, threads) };
            by_threads.push(got);
        }
        assert_eq!(by_threads[0], by_threads[1], "{what} {unit:?} m{m} n{n} k{k}: 1 vs 2 threads");
        let got = by_threads.pop().unwrap();
        let err = worst(&got, &want, scale);
        assert!(err <= BF16_BUDGET, "{what} {unit:?} m{m} n{n} k{k}: vs f64 {err:.3e} > {BF16_BUDGET:.1e}");
        match &twin {
            None => twin = Some(got),
            Some(t) => {
                let err = worst(&got, t, scale);
                assert!(
                    err <= SAME_OPERANDS_BUDGET,
                    "{what} {unit:?} m{m} n{n} k{k}: vs twin {err:.3e} > {SAME_OPERANDS_BUDGET:.1e}"
                );
            }
        }
    }
}

fn dense(w: &(impl Weight + ?Sized), kernel: Kernel) -> Vec<f32> {
    let ctx = PackCtx { kernel, map: *crate::nf4::codebook::dynamic_map() };
    let mut out = vec![0.0; w.rows() * w.cols()];
    w.decode(&ctx, 0, &mut out);
    out
}

#[test]
fn nf4_products_on_every_unit_match_the_oracle_and_the_twin() {
    for &(m, out, inp) in &SHAPES {
        let w = quantize(&random(out * inp, 6), out, inp, true).unwrap();
        let d = dense(&w, Kernel::Scalar);
        let x = random(m * inp, 7);
        for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
            check_units("nf4 fwd", &Transposed(&w), m, out, inp, &x, |p, j| d[j * inp + p], alpha, beta);
        }
        let dy = random(m * out, 9);
        for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
            check_units("nf4 bwd", &Direct(&w), m, inp, out, &dy, |p, j| d[p * inp + j], alpha, beta);
        }
    }
}

#[test]
fn bf16_weight_products_on_every_unit_match_the_oracle_and_the_twin() {
    for &(m, rows, cols) in &SHAPES {
        let bits: Vec<u16> =
            random(rows * cols, 12).iter().map(|&v| super::bf16_native::bf16_bits(v)).collect();
        let w = Bf16Matrix { bits: &bits, rows, cols };
        let d = dense(&w, Kernel::Scalar);
        let x = random(m * cols, 13);
        check_units("bf16 fwd", &Transposed(&w), m, rows, cols, &x, |p, j| d[j * cols + p], 1.0, 0.0);
        let dy = random(m * rows, 14);
        check_units("bf16 bwd", &Direct(&w), m, cols, rows, &dy, |p, j| d[p * cols + j], 1.0, 1.0);
    }
}

#[test]
fn a_scaled_product_or_an_empty_depth_adds_its_low_rank_term_after() {
    // C = alpha · X·Wᵀ + beta · C + s · L·Rᵀ when alpha ≠ 1 (AMX cannot fold the term into its tiles then) and
    // when the depth is empty (no tiles at all): the term in f32 after the product, on every unit.
    let (m, out, inp, rank, s) = (37, 45, 70, 5, 0.75f32);
    let w = quantize(&random(out * inp, 61), out, inp, true).unwrap();
    let mut wd = vec![0.0; out * inp];
    crate::nf4::weight::dequant_run_scalar(&w, 0, &mut wd, crate::nf4::codebook::dynamic_map());
    let (x, left, right, c0) =
        (random(m * inp, 62), random(m * rank, 63), random(out * rank, 64), random(m * out, 65));
    let tail = super::driver::Tail {
        k: rank,
        a: Strided { data: &left, rs: rank, cs: 1 },
        b: Strided { data: &right, rs: 1, cs: rank },
        alpha: s,
    };
    for unit in units() {
        for (k, alpha) in [(inp, 0.5f32), (0, 1.0)] {
            let p = Product {
                m,
                n: out,
                k,
                a: Strided { data: &x, rs: inp, cs: 1 },
                b: &Transposed(&w),
                alpha,
                beta: 0.25,
                ldc: out,
            };
            let mut want = c0.clone();
            gemm_naive(m, out, k, |i, q| x[i * inp + q], |q, j| wd[j * inp + q], &mut want, out, alpha, 0.25);
            gemm_naive(
                m,
                out,
                rank,
                |i, q| left[i * rank + q],
                |q, j| right[j * rank + q],
                &mut want,
                out,
                s,
                1.0,
            );
            let mut got = c0.clone();
            unsafe {
                super::native::run_with_tail(&p, Some(&tail), got.as_mut_ptr(), kernel_for(unit), unit, 2)
            };
            let scale = |idx: usize| {
                let (i, j) = (idx / out, idx % out);
                alpha as f64 * abs_dot(k, |q| x[i * inp + q], |q| wd[j * inp + q])
                    + s as f64 * abs_dot(rank, |q| left[i * rank + q], |q| right[j * rank + q])
                    + 0.25 * (c0[idx] as f64).abs()
            };
            let err = worst(&got, &want, scale);
            assert!(err <= BF16_BUDGET, "{unit:?} k{k} alpha {alpha}: worst {err:.3e}");
        }
    }
}

#[test]
fn an_empty_depth_scales_c_only() {
    let w = Bf16Matrix { bits: &[], rows: 9, cols: 0 };
    for unit in units() {
        let mut c = vec![2.0f32; 5 * 9];
        let p = Product {
            m: 5,
            n: 9,
            k: 0,
            a: Strided { data: &[], rs: 0, cs: 1 },
            b: &Transposed(&w),
            alpha: 1.0,
            beta: 0.5,
            ldc: 9,
        };
        unsafe { run(&p, c.as_mut_ptr(), kernel_for(unit), unit, 2) };
        assert!(c.iter().all(|&v| v == 1.0), "{unit:?}");
    }
}

#[test]
fn simd_pair_packers_give_the_plain_loops_bits() {
    if !(cpu().avx512 && cpu().avx512_bf16) {
        eprintln!("simd pair packers: skipped, this CPU has no AVX512-BF16");
        return;
    }
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    assert!(pairs::simd_ok(&ctx));
    let v = random(2000, 21);
    for len in [0usize, 1, 31, 32, 33, 64, 100, 999] {
        let (mut plain, mut simd) = (vec![0u32; len.div_ceil(2)], vec![0u32; len.div_ceil(2)]);
        pairs::pairs_from_run(false, &v[..len], &mut plain);
        pairs::pairs_from_run(true, &v[..len], &mut simd);
        assert_eq!(plain, simd, "pairs_from_run len {len}");
        let (mut plain, mut simd) = (vec![0u32; len], vec![0u32; len]);
        pairs::interleave_rows(false, &v[..len], &v[500..500 + len], &mut plain);
        pairs::interleave_rows(true, &v[..len], &v[500..500 + len], &mut simd);
        assert_eq!(plain, simd, "interleave_rows len {len}");
    }
    for &(m, out, inp) in &SHAPES {
        let w = quantize(&random(out * inp, 22), out, inp, true).unwrap();
        for (p0, kc) in [(0, inp), (inp / 3, inp - inp / 3)] {
            let kq = padded_pairs(kc);
            for (j0, nc) in [(0, out), (out / 2, out - out / 2)] {
                let len = nc.div_ceil(NR) * NR * kq;
                let (mut plain, mut simd) = (vec![7u32; len], vec![9u32; len]);
                Transposed(&w).pack_pairs(&ctx, false, p0, kc, j0, nc, &mut plain, &mut Scratch::default());
                Transposed(&w).pack_pairs(&ctx, true, p0, kc, j0, nc, &mut simd, &mut Scratch::default());
                assert_eq!(plain, simd, "forward panels {out}x{inp} p0 {p0} kc {kc} j0 {j0} nc {nc}");
            }
            // Backward: depth runs over W's rows.
            let (p0, kc) = (p0 * out / inp, out - p0 * out / inp);
            let kq = padded_pairs(kc);
            let len = inp.div_ceil(NR) * NR * kq;
            let (mut plain, mut simd) = (vec![7u32; len], vec![9u32; len]);
            Direct(&w).pack_pairs(&ctx, false, p0, kc, 0, inp, &mut plain, &mut Scratch::default());
            Direct(&w).pack_pairs(&ctx, true, p0, kc, 0, inp, &mut simd, &mut Scratch::default());
            assert_eq!(plain, simd, "backward panels {out}x{inp} p0 {p0} kc {kc}");
        }
        // A blocks for `vdpbf16ps` (AMX's are checked in `amx_layout_decoders_give_the_plain_bits`).
        let x = random(m * inp, 23);
        let a = Strided { data: &x, rs: inp, cs: 1 };
        let len = m.div_ceil(pairs::DOT_MR) * padded_pairs(inp) * pairs::DOT_MR;
        let (mut plain, mut simd) = (vec![7u32; len], vec![9u32; len]);
        pairs::pack_a_dot(false, &a, 0, m, 0, inp, &mut plain, &mut Scratch::default());
        pairs::pack_a_dot(true, &a, 0, m, 0, inp, &mut simd, &mut Scratch::default());
        assert_eq!(plain, simd, "A block m{m} k{inp}");
    }
}

#[test]
fn weights_decode_into_pairs_as_decoding_to_f32_then_pairing() {
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    let simd_modes: &[bool] = if cpu().avx512 && cpu().avx512_bf16 { &[false, true] } else { &[false] };
    let (rows, cols) = (5, 333);
    let w = quantize(&random(rows * cols, 51), rows, cols, true).unwrap();
    let bits: Vec<u16> = random(rows * cols, 52).iter().map(|&v| super::bf16_native::bf16_bits(v)).collect();
    let b = Bf16Matrix { bits: &bits, rows, cols };
    // Even and odd starts, runs within one block, across blocks, odd lengths, the very end.
    for (start, len) in [
        (0usize, 333usize),
        (333, 333),
        (2, 62),
        (64, 64),
        (10, 1),
        (101, 200),
        (1664, 1),
        (1000, 665),
        (40, 0),
    ] {
        let pairs = len.div_ceil(2);
        let mut f = vec![0.0; len];
        for &simd in simd_modes {
            w.decode(&ctx, start, &mut f);
            let mut want = vec![0u32; pairs];
            pairs::pairs_from_run(false, &f, &mut want);
            let mut got = vec![7u32; pairs];
            w.decode_pairs(&ctx, simd, start, len, &mut got, &mut Vec::new());
            assert_eq!(got, want, "nf4 start {start} len {len} simd {simd}");
            b.decode(&ctx, start, &mut f);
            pairs::pairs_from_run(false, &f, &mut want);
            b.decode_pairs(&ctx, simd, start, len, &mut got, &mut Vec::new());
            assert_eq!(got, want, "bf16 start {start} len {len} simd {simd}");
        }
    }
}

#[test]
fn pair_values_round_to_nearest_even_like_the_fma_path() {
    // The pair layout holds the same bf16 values the rounding path multiplies in f32.
    let v = random(64, 31);
    let mut out = vec![0u32; 32];
    pairs::pairs_from_run(false, &v, &mut out);
    for (q, &p) in out.iter().enumerate() {
        assert_eq!(f32::from_bits(p << 16), bf16(v[2 * q]));
        assert_eq!(f32::from_bits(p & 0xffff_0000), bf16(v[2 * q + 1]));
    }
}

#[test]
fn weight_products_reach_the_unit_a_run_names() {
    // nf4_forward / nf4_backward with a Run naming a unit give exactly what that unit gives when called directly.
    let (m, out, inp) = (40, 70, 130);
    let w = quantize(&random(out * inp, 41), out, inp, true).unwrap();
    let x = random(m * inp, 42);
    for unit in units().into_iter().filter(|u| *u != Unit::Twin) {
        let bf16_unit = if unit == Unit::Amx { Bf16Unit::Amx } else { Bf16Unit::Dot };
        let r = Run { kernel: Kernel::Avx512, compute: Compute::Bf16, unit: bf16_unit, threads: 2 };
        let mut via_run = vec![0.0; m * out];
        nf4_forward(&w, &x, m, &mut via_run, false, None, r).unwrap();
        let mut direct = vec![0.0; m * out];
        let p = Product {
            m,
            n: out,
            k: inp,
            a: Strided { data: &x, rs: inp, cs: 1 },
            b: &Transposed(&w),
            alpha: 1.0,
            beta: 0.0,
            ldc: out,
        };
        unsafe { run(&p, direct.as_mut_ptr(), Kernel::Avx512, unit, 2) };
        assert_eq!(via_run, direct, "{unit:?} forward");
        let dy = random(m * out, 43);
        let mut via_run = vec![0.0; m * inp];
        nf4_backward(&w, &dy, m, &mut via_run, false, None, r).unwrap();
        let mut direct = vec![0.0; m * inp];
        let p = Product {
            m,
            n: inp,
            k: out,
            a: Strided { data: &dy, rs: out, cs: 1 },
            b: &Direct(&w),
            alpha: 1.0,
            beta: 0.0,
            ldc: inp,
        };
        unsafe { run(&p, direct.as_mut_ptr(), Kernel::Avx512, unit, 2) };
        assert_eq!(via_run, direct, "{unit:?} backward");
    }
}

#[test]
fn a_low_rank_term_rides_on_every_unit() {
    // Y (+)= X·Wᵀ + s·L·Rᵀ and dX (+)= dY·W + s·L·R at bf16 compute, within the bf16 budget of the f64 oracle
    // (the term in f32 after the product on `vdpbf16ps`, folded into the tiles as extra depth on AMX) and added
    // once. Shapes over several row blocks (m > 512), weight blocks (out > 512) and depth blocks, ragged
    // everywhere, ranks of one and of two 32-deep chunks; both splits between the 2 threads (narrow and wide
    // weights).
    for unit in units().into_iter().filter(|u| *u != Unit::Twin) {
        let bf16_unit = if unit == Unit::Amx { Bf16Unit::Amx } else { Bf16Unit::Dot };
        for &(m, out, inp, rank) in
            &[(300, 600, 530, 16), (33, 40, 70, 3), (70, 17, 45, 1), (600, 70, 1100, 40), (40, 1030, 33, 33)]
        {
            let w = quantize(&random(out * inp, 51), out, inp, true).unwrap();
            let mut wd = vec![0.0; out * inp];
            crate::nf4::weight::dequant_run_scalar(&w, 0, &mut wd, crate::nf4::codebook::dynamic_map());
            let s = 0.75f32;
            for accumulate in [false, true] {
                let beta = if accumulate { 1.0 } else { 0.0 };
                let r = Run { kernel: Kernel::Avx512, compute: Compute::Bf16, unit: bf16_unit, threads: 2 };
                let what = format!("{unit:?} m{m} {out}x{inp} r{rank} acc={accumulate}");
                for forward in [true, false] {
                    let (n, k) = if forward { (out, inp) } else { (inp, out) };
                    let (a, left, c0) = (random(m * k, 52), random(m * rank, 53), random(m * n, 55));
                    // Forward: right [out, rank] read transposed; backward: right [rank, in].
                    let right = random(n * rank, 54);
                    let wv = |p: usize, j: usize| if forward { wd[j * inp + p] } else { wd[p * inp + j] };
                    let rv =
                        |p: usize, j: usize| if forward { right[j * rank + p] } else { right[p * n + j] };
                    let mut want = c0.clone();
                    gemm_naive(m, n, k, |i, p| a[i * k + p], wv, &mut want, n, 1.0, beta);
                    gemm_naive(m, n, rank, |i, p| left[i * rank + p], rv, &mut want, n, s, 1.0);
                    let mut got = c0.clone();
                    let low = super::LowRank { left: &left, right: &right, rank, scale: s };
                    if forward {
                        nf4_forward(&w, &a, m, &mut got, accumulate, Some(low), r).unwrap();
                    } else {
                        nf4_backward(&w, &a, m, &mut got, accumulate, Some(low), r).unwrap();
                    }
                    let scale = |idx: usize| {
                        let (i, j) = (idx / n, idx % n);
                        abs_dot(k, |p| a[i * k + p], |p| wv(p, j))
                            + s as f64 * abs_dot(rank, |p| left[i * rank + p], |p| rv(p, j))
                            + beta as f64 * (c0[idx] as f64).abs()
                    };
                    let err = worst(&got, &want, scale);
                    assert!(err <= BF16_BUDGET, "{what} fwd={forward}: worst {err:.3e}");
                }
            }
        }
    }
}

/// Rough single-thread timing of the pieces (`cargo test --release -- --ignored --nocapture native_pieces`).
#[test]
#[ignore]
fn native_pieces_timing() {
    let (m, out, inp) = (256, 4096, 4096);
    let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
    let x = random(m * inp, 2);
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    let kc = 512;
    let kq = padded_pairs(kc);
    let mut s = Scratch::default();
    let mut b = vec![0u32; 128 * kq];
    let t = std::time::Instant::now();
    for jc in (0..out).step_by(128) {
        Transposed(&w).pack_pairs(&ctx, true, 0, kc, jc, 128, &mut b, &mut s);
    }
    let e = t.elapsed().as_secs_f64();
    eprintln!("fwd B pack: {:.2} ns/weight", e * 1e9 / (out * kc) as f64);
    let t = std::time::Instant::now();
    for pc in (0..out).step_by(kc) {
        Direct(&w).pack_pairs(&ctx, true, pc, kc, 0, 128, &mut b, &mut s);
    }
    let e = t.elapsed().as_secs_f64();
    eprintln!("bwd B pack (nc 128): {:.2} ns/weight", e * 1e9 / (out * 128) as f64);
    let mut d = vec![0.0f32; kc];
    let t = std::time::Instant::now();
    for j in 0..out {
        w.decode(&ctx, j * inp, &mut d);
    }
    let e = t.elapsed().as_secs_f64();
    eprintln!("decode alone: {:.2} ns/weight", e * 1e9 / (out * kc) as f64);
    let mut a = vec![0u32; m * kq];
    let t = std::time::Instant::now();
    for _ in 0..8 {
        pairs::pack_a_dot(true, &Strided { data: &x, rs: inp, cs: 1 }, 0, m, 0, kc, &mut a, &mut s);
    }
    eprintln!("A pack dot: {:.2} ns/value", t.elapsed().as_secs_f64() * 1e9 / (8 * m * kc) as f64);
    let mut c = vec![0.0f32; m * 32];
    // (AMX's micro-kernel has its own probe: `amx_probe_timing`.)
    let reps = 2000;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        for ir in (0..m).step_by(8) {
            let (ap, cp) = (a[ir * kq..].as_ptr(), c[ir * 32..].as_mut_ptr());
            unsafe { super::bf16_native::tile_8x32(kq, ap, b.as_ptr(), cp, 32, 1.0, 1.0) };
        }
    }
    let e = t.elapsed().as_secs_f64();
    eprintln!("Dot micro: {:.1} GFLOP/s", 2.0 * (reps * m * 32 * kc) as f64 / e / 1e9);
}

/// Whole products at a 7B shape (`cargo test --release -- --ignored --nocapture native_whole`).
#[test]
#[ignore]
fn native_whole_timing() {
    let (m, out, inp) = (256, 4096, 4096);
    let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
    let x = random(m * inp, 2);
    let dy = random(m * out, 3);
    let mut y = vec![0.0f32; m * out];
    let mut dx = vec![0.0f32; m * inp];
    for threads in [1, 2] {
        for unit in [Unit::Dot, Unit::Amx] {
            for fwd in [true, false] {
                let mut best = f64::MAX;
                for _ in 0..4 {
                    let t = std::time::Instant::now();
                    unsafe {
                        if fwd {
                            let p = Product {
                                m,
                                n: out,
                                k: inp,
                                a: Strided { data: &x, rs: inp, cs: 1 },
                                b: &Transposed(&w),
                                alpha: 1.0,
                                beta: 0.0,
                                ldc: out,
                            };
                            run(&p, y.as_mut_ptr(), Kernel::Avx512, unit, threads);
                        } else {
                            let p = Product {
                                m,
                                n: inp,
                                k: out,
                                a: Strided { data: &dy, rs: out, cs: 1 },
                                b: &Direct(&w),
                                alpha: 1.0,
                                beta: 0.0,
                                ldc: inp,
                            };
                            run(&p, dx.as_mut_ptr(), Kernel::Avx512, unit, threads);
                        }
                    }
                    best = best.min(t.elapsed().as_secs_f64());
                }
                eprintln!(
                    "threads {threads} {unit:?} fwd={fwd}: {:.1} GFLOP/s ({:.1} ms)",
                    2.0 * (m * out * inp) as f64 / best / 1e9,
                    best * 1e3
                );
            }
        }
    }
}

/// Fused NF4 → pairs against decode-then-pair, interleaved, best of many (`native_fused`).
#[test]
#[ignore]
fn native_fused_timing() {
    let (out, inp) = (1024, 4096);
    let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    let mut pairs_out = vec![0u32; inp / 2];
    let mut f = Vec::new();
    let (mut fused, mut generic) = (f64::MAX, f64::MAX);
    for _ in 0..20 {
        let t = std::time::Instant::now();
        for r in 0..out {
            w.decode_pairs(&ctx, true, r * inp, inp, &mut pairs_out, &mut f);
        }
        fused = fused.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        for r in 0..out {
            f.resize(inp, 0.0);
            w.decode(&ctx, r * inp, &mut f);
            pairs::pairs_from_run(true, &f, &mut pairs_out);
        }
        generic = generic.min(t.elapsed().as_secs_f64());
    }
    let per = |s: f64| s * 1e9 / (out * inp) as f64;
    eprintln!("fused {:.3} ns/weight, decode+pair {:.3} ns/weight", per(fused), per(generic));
}

/// Weight block packing, best of many (`native_packing`).
#[test]
#[ignore]
fn native_packing_timing() {
    let (out, inp) = (4096, 4096);
    let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    let kc = 512;
    let kq = padded_pairs(kc);
    let mut s = Scratch::default();
    for nc in [128, 512] {
        let mut b = vec![0u32; nc * kq];
        let (mut fwd, mut bwd) = (f64::MAX, f64::MAX);
        for _ in 0..10 {
            let t = std::time::Instant::now();
            for jc in (0..1024).step_by(nc) {
                Transposed(&w).pack_pairs(&ctx, true, 0, kc, jc, nc, &mut b, &mut s);
            }
            fwd = fwd.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            for jc in (0..1024).step_by(nc) {
                Direct(&w).pack_pairs(&ctx, true, 0, kc, jc, nc, &mut b, &mut s);
            }
            bwd = bwd.min(t.elapsed().as_secs_f64());
        }
        let per = |s: f64| s * 1e9 / (1024 * kc) as f64;
        eprintln!("nc {nc}: fwd pack {:.3} ns/weight, bwd pack {:.3} ns/weight", per(fwd), per(bwd));
    }
}

/// KC candidates, interleaved, best of several (`native_kc`).
#[test]
#[ignore]
fn native_kc_timing() {
    let (m, out, inp) = (256, 4096, 4096);
    let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
    let x = random(m * inp, 2);
    let dy = random(m * out, 3);
    let mut y = vec![0.0f32; m * out];
    let mut dx = vec![0.0f32; m * inp];
    let kcs = [256usize, 512, 1024, 2048];
    let mut best = vec![(f64::MAX, f64::MAX); kcs.len()];
    for _ in 0..15 {
        for (i, &kc) in kcs.iter().enumerate() {
            super::native::KC_TRY.store(kc, std::sync::atomic::Ordering::Relaxed);
            let t = std::time::Instant::now();
            let p = Product {
                m,
                n: out,
                k: inp,
                a: Strided { data: &x, rs: inp, cs: 1 },
                b: &Transposed(&w),
                alpha: 1.0,
                beta: 0.0,
                ldc: out,
            };
            unsafe { run(&p, y.as_mut_ptr(), Kernel::Avx512, Unit::Amx, 1) };
            best[i].0 = best[i].0.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            let p = Product {
                m,
                n: inp,
                k: out,
                a: Strided { data: &dy, rs: out, cs: 1 },
                b: &Direct(&w),
                alpha: 1.0,
                beta: 0.0,
                ldc: inp,
            };
            unsafe { run(&p, dx.as_mut_ptr(), Kernel::Avx512, Unit::Amx, 1) };
            best[i].1 = best[i].1.min(t.elapsed().as_secs_f64());
        }
    }
    let g = |s: f64| 2.0 * (m * out * inp) as f64 / s / 1e9;
    for (i, kc) in kcs.iter().enumerate() {
        eprintln!("KC {kc}: fwd {:.0} bwd {:.0} GFLOP/s", g(best[i].0), g(best[i].1));
    }
    super::native::KC_TRY.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// The AMX path alone at the 7B shapes, best of 5 (`cargo test --release -- --ignored --nocapture amx_whole`).
#[test]
#[ignore]
fn amx_whole_timing() {
    if !cpu().amx_bf16 {
        return;
    }
    let m = 256;
    let shapes: Vec<(usize, usize)> = match std::env::var("AMX_SHAPE").as_deref() {
        Ok("square") => vec![(4096, 4096)],
        Ok("kv") => vec![(1024, 4096)],
        Ok("small") => vec![(4096, 4096), (1024, 4096)],
        _ => vec![(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)],
    };
    for (out, inp) in shapes {
        let w = quantize(&random(out * inp, 1), out, inp, true).unwrap();
        let x = random(m * inp, 2);
        let dy = random(m * out, 3);
        let mut y = vec![0.0f32; m * out];
        let mut dx = vec![0.0f32; m * inp];
        let dirs: &[bool] = match std::env::var("AMX_DIR").as_deref() {
            Ok("fwd") => &[true],
            Ok("bwd") => &[false],
            _ => &[true, false],
        };
        let threads_list: &[usize] = match std::env::var("AMX_THREADS").as_deref() {
            Ok("1") => &[1],
            Ok("2") => &[2],
            _ => &[1, 2],
        };
        for &threads in threads_list {
            for &fwd in dirs {
                let mut best = f64::MAX;
                for _ in 0..std::env::var("AMX_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(5) {
                    let t = std::time::Instant::now();
                    unsafe {
                        if fwd {
                            let a = Strided { data: &x, rs: inp, cs: 1 };
                            let b = Transposed(&w);
                            let p = Product { m, n: out, k: inp, a, b: &b, alpha: 1.0, beta: 0.0, ldc: out };
                            run(&p, y.as_mut_ptr(), Kernel::Avx512, Unit::Amx, threads);
                        } else {
                            let a = Strided { data: &dy, rs: out, cs: 1 };
                            let b = Direct(&w);
                            let p = Product { m, n: inp, k: out, a, b: &b, alpha: 1.0, beta: 0.0, ldc: inp };
                            run(&p, dx.as_mut_ptr(), Kernel::Avx512, Unit::Amx, threads);
                        }
                    }
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let dir = if fwd { "fwd" } else { "bwd" };
                let g = 2.0 * (m * out * inp) as f64 / best / 1e9;
                eprintln!(
                    "amx {m}x{inp}->{out} {dir} threads {threads}: {g:.0} GFLOP/s ({:.2} ms)",
                    best * 1e3
                );
            }
        }
    }
}

/// The AMX nest's decoders (`decode_pairs_spread`, `pair_rows`) and activation packer on SIMD give the plain
/// loops' bits, and the plain loops give decode-to-f32-then-pair.
#[test]
fn amx_layout_decoders_give_the_plain_bits() {
    let ctx = PackCtx { kernel: Kernel::Avx512, map: *crate::nf4::codebook::dynamic_map() };
    let simd_modes: &[bool] = if cpu().avx512 && cpu().avx512_bf16 { &[false, true] } else { &[false] };
    // Columns a multiple of 32 (the fast paths) and not (their fallbacks).
    for (rows, cols) in [(6usize, 256usize), (5, 333), (4, 96)] {
        let w = quantize(&random(rows * cols, 61), rows, cols, true).unwrap();
        let bits: Vec<u16> =
            random(rows * cols, 62).iter().map(|&v| super::bf16_native::bf16_bits(v)).collect();
        let b = Bf16Matrix { bits: &bits, rows, cols };
        let weights: [(&str, &dyn PairWeight); 2] = [("nf4", &w), ("bf16", &b)];
        for (name, wt) in weights {
            let d = dense(wt, Kernel::Scalar);
            // Spread runs: pair q at (q / 16) · stride + q % 16, everything else untouched.
            for (start, len) in
                [(0usize, cols), (32, 64), (cols, cols - 1), (64, 100), (3, 70), (2 * cols + 32, 5)]
            {
                let len = len.min(rows * cols - start);
                let stride = 40;
                let pairs_n = len.div_ceil(2);
                let mut want = vec![u32::MAX; pairs_n.div_ceil(16) * stride];
                for q in 0..pairs_n {
                    let hi = if 2 * q + 1 < len { d[start + 2 * q + 1] } else { 0.0 };
                    want[q / 16 * stride + q % 16] = pairs::pair(d[start + 2 * q], hi);
                }
                for &simd in simd_modes {
                    let mut got = vec![u32::MAX; want.len()];
                    wt.decode_pairs_spread(
                        &ctx,
                        simd,
                        start,
                        len,
                        &mut got,
                        stride,
                        &mut Vec::new(),
                        &mut Vec::new(),
                    );
                    assert_eq!(got, want, "{name} {rows}x{cols} spread start {start} len {len} simd {simd}");
                }
            }
            // Row pairs: out[c] = pair(w[e, c0 + c], w[o, c0 + c]).
            for (even, odd, c0, len) in [
                (0usize, Some(1usize), 0usize, cols),
                (2, Some(3), 32, 64.min(cols - 32)),
                (4, None, 0, cols),
                (1, Some(4), 7, 40),
            ] {
                if even >= rows || odd.is_some_and(|o| o >= rows) || c0 + len > cols {
                    continue;
                }
                let want: Vec<u32> = (0..len)
                    .map(|c| pairs::pair(d[even * cols + c0 + c], odd.map_or(0.0, |o| d[o * cols + c0 + c])))
                    .collect();
                // Spread: column c at (c / 32) · stride + c % 32, everything else untouched.
                let stride = 48;
                let mut spread_want = vec![u32::MAX; len.div_ceil(32) * stride];
                for (c, &v) in want.iter().enumerate() {
                    spread_want[c / 32 * stride + c % 32] = v;
                }
                for &simd in simd_modes {
                    let mut got = vec![7u32; len];
                    wt.pair_rows(&ctx, simd, even, odd, c0, &mut got, &mut Vec::new());
                    assert_eq!(
                        got, want,
                        "{name} {rows}x{cols} rows ({even}, {odd:?}) c0 {c0} len {len} simd {simd}"
                    );
                    let mut got = vec![u32::MAX; spread_want.len()];
                    let (mut tmp, mut f) = (Vec::new(), Vec::new());
                    wt.pair_rows_spread(&ctx, simd, even, odd, c0, len, &mut got, stride, &mut tmp, &mut f);
                    assert_eq!(
                        got, spread_want,
                        "{name} {rows}x{cols} spread rows ({even}, {odd:?}) c0 {c0} len {len} simd {simd}"
                    );
                }
            }
        }
    }
    // The activation packer, both layouts, ragged rows and depth.
    #[cfg(target_arch = "x86_64")]
    if cpu().avx512 && cpu().avx512_bf16 {
        for (mc, k) in [(33usize, 70usize), (5, 32), (64, 200), (64, 96), (40, 64)] {
            let x = random(mc * k + 3 * k, 63);
            let a = Strided { data: &x, rs: k, cs: 1 };
            let len = mc.div_ceil(32) * 32 * padded_pairs(k);
            for transpose in [false, true] {
                let (mut plain, mut simd) = (vec![7u32; len], vec![9u32; len]);
                super::amx::nest::pack_tiles(false, &a, None, 2, mc, k, transpose, &mut plain);
                super::amx::nest::pack_tiles(true, &a, None, 2, mc, k, transpose, &mut simd);
                assert_eq!(plain, simd, "pack_tiles mc {mc} k {k} transpose {transpose}");
            }
        }
    }
}

/// The bf16 LM heads (576 → 49152, 4096 → 32000) on AMX, best of 3 (`amx_head_timing`).
#[test]
#[ignore]
fn amx_head_timing() {
    if !cpu().amx_bf16 {
        return;
    }
    let m = 256;
    for (rows, cols) in [(49152, 576), (32000, 4096)] {
        let bits: Vec<u16> =
            random(rows * cols, 5).iter().map(|&v| super::bf16_native::bf16_bits(v)).collect();
        let w = Bf16Matrix { bits: &bits, rows, cols };
        let x = random(m * cols, 6);
        let dy = random(m * rows, 7);
        let mut y = vec![0.0f32; m * rows];
        let mut dx = vec![0.0f32; m * cols];
        for fwd in [true, false] {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                unsafe {
                    if fwd {
                        let a = Strided { data: &x, rs: cols, cs: 1 };
                        let p = Product {
                            m,
                            n: rows,
                            k: cols,
                            a,
                            b: &Transposed(&w),
                            alpha: 1.0,
                            beta: 0.0,
                            ldc: rows,
                        };
                        run(&p, y.as_mut_ptr(), Kernel::Avx512, Unit::Amx, 2);
                    } else {
                        let a = Strided { data: &dy, rs: rows, cs: 1 };
                        let p = Product {
                            m,
                            n: cols,
                            k: rows,
                            a,
                            b: &Direct(&w),
                            alpha: 1.0,
                            beta: 0.0,
                            ldc: cols,
                        };
                        run(&p, dx.as_mut_ptr(), Kernel::Avx512, Unit::Amx, 2);
                    }
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            let dir = if fwd { "fwd" } else { "bwd" };
            let g = 2.0 * (m * rows * cols) as f64 / best / 1e9;
            eprintln!(
                "amx bf16 head {m}x{cols}->{rows} {dir} threads 2: {g:.0} GFLOP/s ({:.2} ms)",
                best * 1e3
            );
        }
    }
}
