//! Attention against a naive full-matrix f64 implementation, its gradients against finite differences of
//! that implementation, and the determinism promises (threads, paths, cache).

use super::*;
use crate::ops::exec::Path;
use crate::ops::testutil::{data, max_rel_err, to64};

/// Plain softmax(q kᵀ · scale + causal mask) v in f64, with the full [T, S] score matrix per head.
fn naive(sh: &Shape, q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let Shape { tokens, keys, heads, kv_heads, head_dim: hd, q_offset, .. } = *sh;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut o = vec![0.0; sh.q_len()];
    for h in 0..heads {
        let g = h / (heads / kv_heads);
        for t in 0..tokens {
            let qi = |d: usize| q[(t * heads + h) * hd + d];
            let kv = |x: &[f64], j: usize, d: usize| x[(j * kv_heads + g) * hd + d];
            let mut scores = vec![f64::NEG_INFINITY; keys];
            let first = sh.first_key(q_offset + t);
            for (j, sj) in scores.iter_mut().enumerate().take(q_offset + t + 1).skip(first) {
                *sj = (0..hd).map(|d| qi(d) * kv(k, j, d)).sum::<f64>() * scale;
            }
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for d in 0..hd {
                o[(t * heads + h) * hd + d] = (0..keys).map(|j| e[j] / total * kv(v, j, d)).sum();
            }
        }
    }
    o
}

/// dq, dk, dv of L = Σ o · dout in f64 from the full matrices: dp = dout vᵀ, ds = p (dp − rowsum(dout ∘ o)),
/// dq = scale ds k, dk = scale dsᵀ q, dv = pᵀ dout.
fn naive_backward(sh: &Shape, q: &[f64], k: &[f64], v: &[f64], dout: &[f64]) -> [Vec<f64>; 3] {
    let Shape { tokens, heads, kv_heads, head_dim: hd, q_offset, .. } = *sh;
    let scale = 1.0 / (hd as f64).sqrt();
    let (mut dq, mut dk, mut dv) = (vec![0.0; sh.q_len()], vec![0.0; sh.kv_len()], vec![0.0; sh.kv_len()]);
    for h in 0..heads {
        let g = h / (heads / kv_heads);
        let kv = |j: usize, d: usize| (j * kv_heads + g) * hd + d;
        for t in 0..tokens {
            let qt = |d: usize| (t * heads + h) * hd + d;
            let n = q_offset + t + 1;
            let first = sh.first_key(q_offset + t);
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    if j < first {
                        f64::NEG_INFINITY
                    } else {
                        (0..hd).map(|d| q[qt(d)] * k[kv(j, d)]).sum::<f64>() * scale
                    }
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = s.iter().map(|x| (x - m).exp()).sum();
            let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / total).collect();
            let dp: Vec<f64> = (0..n).map(|j| (0..hd).map(|d| dout[qt(d)] * v[kv(j, d)]).sum()).collect();
            let delta: f64 = (0..n).map(|j| p[j] * dp[j]).sum();
            for j in first..n {
                let ds = p[j] * (dp[j] - delta);
                for d in 0..hd {
                    dq[qt(d)] += scale * ds * k[kv(j, d)];
                    dk[kv(j, d)] += scale * ds * q[qt(d)];
                    dv[kv(j, d)] += p[j] * dout[qt(d)];
                }
            }
        }
    }
    [dq, dk, dv]
}

fn shape(
    tokens: usize,
    keys: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    q_offset: usize,
) -> Shape {
    let sh = Shape { tokens, keys, heads, kv_heads, head_dim, q_offset, window: 0 };
    sh.check().unwrap();
    sh
}

/// The same shape with a sliding window.
fn windowed(sh: Shape, window: usize) -> Shape {
    Shape { window, ..sh }
}

fn inputs(sh: &Shape, seed: u32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Spread q so some rows are peaked and the max subtraction matters.
    let q: Vec<f32> = data(sh.q_len(), seed).iter().map(|x| x * 3.0).collect();
    (q, data(sh.kv_len(), seed + 1), data(sh.kv_len(), seed + 2))
}

fn run_forward(ctx: &Ctx, sh: &Shape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut o, mut lse) = (vec![0.0; sh.q_len()], vec![0.0; sh.lse_len()]);
    forward(ctx, sh, q, k, v, &mut o, &mut lse);
    (o, lse)
}

type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

fn run_backward(ctx: &Ctx, sh: &Shape, q: &[f32], k: &[f32], v: &[f32], dout: &[f32]) -> Grads {
    let (o, lse) = run_forward(ctx, sh, q, k, v);
    let (mut dq, mut dk, mut dv) = (vec![9.0; sh.q_len()], vec![9.0; sh.kv_len()], vec![9.0; sh.kv_len()]);
    backward(ctx, sh, q, k, v, &o, &lse, dout, &mut dq, &mut dk, &mut dv);
    (dq, dk, dv)
}

/// Ragged shapes covering GQA (groups of 1 to 5), a cache offset, a single query row, head sizes that are
/// not a multiple of 8 or 16, and group rows, keys and tokens that do not divide the tiles (6 rows × 16
/// keys), key blocks (48) or token blocks.
fn cases() -> Vec<Shape> {
    vec![
        shape(1, 1, 1, 1, 1, 0),
        shape(3, 3, 2, 2, 4, 0),
        shape(5, 5, 4, 2, 6, 0),
        shape(3, 7, 4, 2, 4, 4),
        shape(1, 9, 4, 2, 8, 8),
        shape(1, 12, 4, 1, 8, 5), // S larger than q_offset + T: a preallocated cache
        shape(37, 37, 3, 1, 5, 0),
        shape(20, 90, 2, 2, 16, 70),
        shape(3, 5, 2, 1, 72, 2), // head_dim past one panel and several feature slices
        shape(130, 130, 2, 1, 80, 0), // several row chunks and key blocks
        shape(49, 49, 9, 3, 20, 0), // SmolLM2's grouping, 147 group rows
        shape(49, 60, 6, 3, 13, 11), // groups of 2 with a cache offset
        shape(33, 33, 3, 3, 9, 0), // Hkv = H
        shape(70, 120, 4, 1, 24, 50), // three key blocks, the last ragged, behind a cache
        shape(17, 17, 5, 1, 7, 0), // groups of 5
        shape(100, 100, 3, 1, 64, 0), // whole panels of features
        // Sliding windows: narrower than a panel, a ragged one across panels and key blocks, one behind a
        // cache offset, one wider than the sequence (no effect), a window of 1 (each row sees itself).
        windowed(shape(37, 37, 3, 1, 5, 0), 5),
        windowed(shape(130, 130, 2, 1, 80, 0), 50),
        windowed(shape(70, 120, 4, 1, 24, 50), 33),
        windowed(shape(20, 90, 2, 2, 16, 70), 17),
        windowed(shape(49, 49, 9, 3, 20, 0), 100),
        windowed(shape(9, 9, 4, 2, 8, 0), 1),
    ]
}

#[test]
fn forward_matches_naive_f64() {
    for path in Path::available() {
        let ctx = Ctx::with_threads(2, path);
        for sh in cases() {
            let (q, k, v) = inputs(&sh, 1);
            let (o, _) = run_forward(&ctx, &sh, &q, &k, &v);
            let err = max_rel_err(&o, &naive(&sh, &to64(&q), &to64(&k), &to64(&v)));
            assert!(err < 2e-6, "{path:?} {sh:?}: {err}");
        }
    }
}

#[test]
fn backward_matches_naive_f64() {
    for path in Path::available() {
        let ctx = Ctx::with_threads(2, path);
        for sh in cases() {
            let (q, k, v) = inputs(&sh, 3);
            let dout = data(sh.q_len(), 7);
            let got = run_backward(&ctx, &sh, &q, &k, &v, &dout);
            let want = naive_backward(&sh, &to64(&q), &to64(&k), &to64(&v), &to64(&dout));
            for (name, got, want) in
                [("dq", &got.0, &want[0]), ("dk", &got.1, &want[1]), ("dv", &got.2, &want[2])]
            {
                let err = max_rel_err(got, want);
                assert!(err < 5e-6, "{path:?} {name} {sh:?}: {err}");
            }
        }
    }
}

#[test]
fn lse_is_the_log_normaliser() {
    let sh = shape(4, 6, 2, 1, 3, 2);
    let (q, k, v) = inputs(&sh, 2);
    let (_, lse) = run_forward(&Ctx::with_threads(1, Path::Plain), &sh, &q, &k, &v);
    let scale = 1.0 / 3f64.sqrt();
    for h in 0..2 {
        for t in 0..4 {
            let total: f64 = (0..=2 + t)
                .map(|j| {
                    let s: f64 = (0..3).map(|d| q[(t * 2 + h) * 3 + d] as f64 * k[j * 3 + d] as f64).sum();
                    (s * scale).exp()
                })
                .sum();
            assert!((lse[h * 4 + t] as f64 - total.ln()).abs() < 1e-5);
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let ctx = Ctx::with_threads(2, Path::Plain);
    for sh in cases().into_iter().filter(|sh| sh.q_len() + 2 * sh.kv_len() <= 1200) {
        let (q, k, v) = inputs(&sh, 3);
        let dout = data(sh.q_len(), 7);
        let (dq, dk, dv) = run_backward(&ctx, &sh, &q, &k, &v, &dout);
        // L = Σ o · dout, differentiated numerically through the f64 implementation.
        let (q64, k64, v64, g64) = (to64(&q), to64(&k), to64(&v), to64(&dout));
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            naive(&sh, q, k, v).iter().zip(&g64).map(|(a, b)| a * b).sum()
        };
        let h = 1e-6;
        let numeric = |which: usize, len: usize| -> Vec<f64> {
            (0..len)
                .map(|i| {
                    let (mut xs_p, mut xs_m) =
                        ([q64.clone(), k64.clone(), v64.clone()], [q64.clone(), k64.clone(), v64.clone()]);
                    xs_p[which][i] += h;
                    xs_m[which][i] -= h;
                    (loss(&xs_p[0], &xs_p[1], &xs_p[2]) - loss(&xs_m[0], &xs_m[1], &xs_m[2])) / (2.0 * h)
                })
                .collect()
        };
        for (name, got, which) in [("dq", &dq, 0), ("dk", &dk, 1), ("dv", &dv, 2)] {
            let err = max_rel_err(got, &numeric(which, got.len()));
            assert!(err < 2e-5, "{name} {sh:?}: {err}");
        }
    }
}

#[test]
fn keys_past_the_last_query_are_never_read() {
    let sh = shape(2, 10, 2, 1, 4, 3);
    let (q, mut k, mut v) = inputs(&sh, 4);
    let ctx = Ctx::with_threads(1, Path::Plain);
    let clean = run_forward(&ctx, &sh, &q, &k, &v);
    let dout = data(sh.q_len(), 8);
    let clean_grads = run_backward(&ctx, &sh, &q, &k, &v, &dout);
    for x in k[5 * 4..].iter_mut().chain(v[5 * 4..].iter_mut()) {
        *x = f32::NAN;
    }
    assert_eq!(run_forward(&ctx, &sh, &q, &k, &v), clean);
    let grads = run_backward(&ctx, &sh, &q, &k, &v, &dout);
    assert_eq!(grads, clean_grads);
    assert!(grads.1[5 * 4..].iter().all(|&x| x == 0.0));
}

#[test]
fn cached_decoding_equals_the_full_pass() {
    // The last row of a full causal pass equals one decoding step over the cache.
    let full = shape(9, 9, 4, 2, 8, 0);
    let (q, k, v) = inputs(&full, 5);
    let ctx = Ctx::with_threads(1, Path::Plain);
    let (o_full, lse_full) = run_forward(&ctx, &full, &q, &k, &v);
    let step = shape(1, 9, 4, 2, 8, 8);
    let row = full.heads * full.head_dim;
    let (o_step, lse_step) = run_forward(&ctx, &step, &q[8 * row..], &k, &v);
    assert_eq!(&o_full[8 * row..], &o_step[..]);
    for h in 0..4 {
        assert_eq!(lse_full[h * 9 + 8], lse_step[h]);
    }
}

#[test]
fn a_window_wider_than_the_sequence_changes_no_bit() {
    let sh = shape(61, 70, 6, 3, 20, 9);
    let (q, k, v) = inputs(&sh, 14);
    let dout = data(sh.q_len(), 15);
    let ctx = Ctx::with_threads(2, Path::Plain);
    let wide = windowed(sh, 70);
    assert!(run_forward(&ctx, &wide, &q, &k, &v) == run_forward(&ctx, &sh, &q, &k, &v));
    assert!(run_backward(&ctx, &wide, &q, &k, &v, &dout) == run_backward(&ctx, &sh, &q, &k, &v, &dout));
}

#[test]
fn threads_and_paths_agree_bit_for_bit() {
    let shapes = [
        windowed(shape(97, 97, 9, 3, 64, 0), 40),
        shape(70, 75, 4, 2, 16, 5),
        shape(150, 150, 2, 1, 128, 0),
        shape(97, 97, 9, 3, 64, 0),
        shape(61, 70, 6, 3, 20, 9),
    ];
    for sh in shapes {
        let (q, k, v) = inputs(&sh, 6);
        let dout = data(sh.q_len(), 9);
        let run = |ctx: &Ctx| (run_forward(ctx, &sh, &q, &k, &v), run_backward(ctx, &sh, &q, &k, &v, &dout));
        let reference = run(&Ctx::with_threads(1, Path::Plain));
        for path in Path::available() {
            for threads in [1, 2] {
                assert!(run(&Ctx::with_threads(threads, path)) == reference, "{path:?} × {threads} {sh:?}");
            }
        }
    }
}

#[test]
fn chunked_backward_gives_the_same_bits() {
    // Groups of 3 (64-token steps) and of 2 (96), several chunks, the last ragged.
    for sh in [shape(150, 160, 6, 2, 24, 10), shape(200, 200, 6, 3, 16, 0)] {
        let (q, k, v) = inputs(&sh, 10);
        let dout = data(sh.q_len(), 11);
        for path in Path::available() {
            let ctx = Ctx::with_threads(2, path);
            let whole = run_backward(&ctx, &sh, &q, &k, &v, &dout);
            let (o, lse) = run_forward(&ctx, &sh, &q, &k, &v);
            for chunk in [sh.chunk_tokens(), 2 * sh.chunk_tokens()] {
                assert!(chunk < sh.tokens);
                let (mut dq, mut dk, mut dv) =
                    (vec![9.0; sh.q_len()], vec![9.0; sh.kv_len()], vec![9.0; sh.kv_len()]);
                backward_in_chunks(
                    &ctx,
                    &sh,
                    (&q, &k, &v),
                    (&o, &lse, &dout),
                    (&mut dq, &mut dk, &mut dv),
                    chunk,
                );
                assert!((dq, dk, dv) == whole, "{path:?} {sh:?} chunks of {chunk}");
            }
        }
    }
}

#[test]
fn a_stale_workspace_changes_nothing() {
    let sh = shape(61, 70, 6, 3, 20, 9);
    let (q, k, v) = inputs(&sh, 12);
    let dout = data(sh.q_len(), 13);
    for path in Path::available() {
        let ctx = Ctx::with_threads(1, path);
        WORKSPACE.set(Vec::new());
        let fresh = (run_forward(&ctx, &sh, &q, &k, &v), run_backward(&ctx, &sh, &q, &k, &v, &dout));
        WORKSPACE.set(vec![f32::NAN; 1 << 20]);
        let stale = (run_forward(&ctx, &sh, &q, &k, &v), run_backward(&ctx, &sh, &q, &k, &v, &dout));
        assert!(stale == fresh, "{path:?}");
    }
}

#[test]
fn shape_errors_name_the_argument() {
    let bad = Shape { tokens: 2, keys: 4, heads: 3, kv_heads: 2, head_dim: 4, q_offset: 0, window: 0 };
    assert!(bad.check().unwrap_err().message.starts_with("heads:"));
    let bad = Shape { tokens: 2, keys: 4, heads: 2, kv_heads: 2, head_dim: 4, q_offset: 3, window: 0 };
    assert!(bad.check().unwrap_err().message.starts_with("keys:"));
}
