//! Ops: RMSNorm, RoPE, SwiGLU, attention, cross-entropy, AdamW and flat-vector helpers (see `crate::ops`).
//! Every call runs on the library's thread pool and CPU path (`Ctx::current`).

use super::{expect_len, run, slice, slice_mut};
use crate::error::{ensure, KResult};
use crate::ops::adamw::{self, AdamW};
use crate::ops::attention::{self, Shape};
use crate::ops::exec::Ctx;
use crate::ops::{cross_entropy, geglu, rmsnorm, rope, swiglu, vector};

fn positive(name: &str, value: u32) -> KResult<usize> {
    ensure(value > 0, || format!("{name}: must be positive"))?;
    Ok(value as usize)
}

/// `int32_t qlora_rmsnorm_forward(const float *x, uint32_t x_len, const float *w, uint32_t w_len,
///   uint32_t rows, uint32_t dim, float eps, float *y, uint32_t y_len, float *rstd, uint32_t rstd_len)` —
///   y = w * (x * rstd) per row of x [rows, dim]; rstd [rows] = 1 / sqrt(mean(x²) + eps) (for backward).
#[no_mangle]
pub unsafe extern "C" fn qlora_rmsnorm_forward(
    x: *const f32,
    x_len: u32,
    w: *const f32,
    w_len: u32,
    rows: u32,
    dim: u32,
    eps: f32,
    y: *mut f32,
    y_len: u32,
    rstd: *mut f32,
    rstd_len: u32,
) -> i32 {
    run(|| {
        let (rows, dim) = (rows as usize, positive("dim", dim)?);
        let x = slice(x, x_len, "x")?;
        let w = slice(w, w_len, "w")?;
        let y = slice_mut(y, y_len, "y")?;
        let rstd = slice_mut(rstd, rstd_len, "rstd")?;
        expect_len("x", x.len(), rows * dim, "rows × dim")?;
        expect_len("w", w.len(), dim, "dim")?;
        expect_len("y", y.len(), rows * dim, "rows × dim")?;
        expect_len("rstd", rstd.len(), rows, "rows")?;
        ensure(eps.is_finite() && eps >= 0.0, || format!("eps: must be finite and >= 0, got {eps}"))?;
        rmsnorm::forward(&Ctx::current(), x, w, eps, y, rstd);
        Ok(())
    })
}

/// `int32_t qlora_rmsnorm_backward(const float *dy, uint32_t dy_len, const float *x, uint32_t x_len,
///   const float *w, uint32_t w_len, const float *rstd, uint32_t rstd_len, uint32_t rows, uint32_t dim,
///   float *dx, uint32_t dx_len, uint32_t accumulate, float *dw, uint32_t dw_len)` — dx is overwritten
///   (accumulate = 0) or added to (1); dw [dim] is added to, or skipped when dw_len = 0 (frozen weight).
#[no_mangle]
pub unsafe extern "C" fn qlora_rmsnorm_backward(
    dy: *const f32,
    dy_len: u32,
    x: *const f32,
    x_len: u32,
    w: *const f32,
    w_len: u32,
    rstd: *const f32,
    rstd_len: u32,
    rows: u32,
    dim: u32,
    dx: *mut f32,
    dx_len: u32,
    accumulate: u32,
    dw: *mut f32,
    dw_len: u32,
) -> i32 {
    run(|| {
        let (rows, dim) = (rows as usize, positive("dim", dim)?);
        let dy = slice(dy, dy_len, "dy")?;
        let x = slice(x, x_len, "x")?;
        let w = slice(w, w_len, "w")?;
        let rstd = slice(rstd, rstd_len, "rstd")?;
        let dx = slice_mut(dx, dx_len, "dx")?;
        let dw = slice_mut(dw, dw_len, "dw")?;
        expect_len("dy", dy.len(), rows * dim, "rows × dim")?;
        expect_len("x", x.len(), rows * dim, "rows × dim")?;
        expect_len("w", w.len(), dim, "dim")?;
        expect_len("rstd", rstd.len(), rows, "rows")?;
        expect_len("dx", dx.len(), rows * dim, "rows × dim")?;
        if !dw.is_empty() {
            expect_len("dw", dw.len(), dim, "dim, or 0 to skip")?;
        }
        ensure(accumulate <= 1, || format!("accumulate: must be 0 or 1, got {accumulate}"))?;
        rmsnorm::backward(&Ctx::current(), dy, x, w, rstd, dx, accumulate == 1, dw);
        Ok(())
    })
}

/// `int32_t qlora_rope_cos_sin(const uint32_t *positions, uint32_t positions_len, const float *inv_freq,
///   uint32_t inv_freq_len, uint32_t tokens, uint32_t half, float attention_scaling, float *cos,
///   uint32_t cos_len, float *sin, uint32_t sin_len)` — the rotation table cos, sin [tokens, half] for
///   positions [tokens] and inv_freq [half] (half = head_dim / 2), in transformers' fp32 recipe.
#[no_mangle]
pub unsafe extern "C" fn qlora_rope_cos_sin(
    positions: *const u32,
    positions_len: u32,
    inv_freq: *const f32,
    inv_freq_len: u32,
    tokens: u32,
    half: u32,
    attention_scaling: f32,
    cos: *mut f32,
    cos_len: u32,
    sin: *mut f32,
    sin_len: u32,
) -> i32 {
    run(|| {
        let (tokens, half) = (tokens as usize, positive("half", half)?);
        let positions = slice(positions, positions_len, "positions")?;
        let inv_freq = slice(inv_freq, inv_freq_len, "inv_freq")?;
        let cos = slice_mut(cos, cos_len, "cos")?;
        let sin = slice_mut(sin, sin_len, "sin")?;
        expect_len("positions", positions.len(), tokens, "tokens")?;
        expect_len("inv_freq", inv_freq.len(), half, "half = head_dim / 2")?;
        expect_len("cos", cos.len(), tokens * half, "tokens × half")?;
        expect_len("sin", sin.len(), tokens * half, "tokens × half")?;
        ensure(attention_scaling.is_finite(), || {
            format!("attention_scaling: must be finite, got {attention_scaling}")
        })?;
        rope::cos_sin(positions, inv_freq, attention_scaling, cos, sin);
        Ok(())
    })
}

/// `int32_t qlora_rope_apply(float *x, uint32_t x_len, uint32_t tokens, uint32_t heads, uint32_t head_dim,
///   uint32_t rotary_dim, const float *cos, uint32_t cos_len, const float *sin, uint32_t sin_len,
///   uint32_t inverse)` — rotates the first rotary_dim features of each head of x [tokens, heads, head_dim]
///   in place (rotary_dim even, ≤ head_dim; the rest pass unchanged); cos, sin [tokens, rotary_dim / 2];
///   inverse = 1: the transpose, i.e. the backward pass.
#[no_mangle]
pub unsafe extern "C" fn qlora_rope_apply(
    x: *mut f32,
    x_len: u32,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    cos: *const f32,
    cos_len: u32,
    sin: *const f32,
    sin_len: u32,
    inverse: u32,
) -> i32 {
    run(|| {
        let (tokens, heads, head_dim) = (tokens as usize, heads as usize, positive("head_dim", head_dim)?);
        let rotary_dim = positive("rotary_dim", rotary_dim)?;
        ensure(rotary_dim % 2 == 0 && rotary_dim <= head_dim, || {
            format!("rotary_dim: must be even and at most head_dim ({head_dim}), got {rotary_dim}")
        })?;
        let half = rotary_dim / 2;
        let x = slice_mut(x, x_len, "x")?;
        let cos = slice(cos, cos_len, "cos")?;
        let sin = slice(sin, sin_len, "sin")?;
        expect_len("x", x.len(), tokens * heads * head_dim, "tokens × heads × head_dim")?;
        expect_len("cos", cos.len(), tokens * half, "tokens × rotary_dim / 2")?;
        expect_len("sin", sin.len(), tokens * half, "tokens × rotary_dim / 2")?;
        ensure(inverse <= 1, || format!("inverse: must be 0 or 1, got {inverse}"))?;
        rope::apply(&Ctx::current(), x, heads, head_dim, half, cos, sin, inverse == 1);
        Ok(())
    })
}

/// `int32_t qlora_swiglu_forward(const float *g, uint32_t g_len, const float *u, uint32_t u_len, float *h,
///   uint32_t h_len)` — h = silu(g) * u elementwise; all three of g_len elements.
#[no_mangle]
pub unsafe extern "C" fn qlora_swiglu_forward(
    g: *const f32,
    g_len: u32,
    u: *const f32,
    u_len: u32,
    h: *mut f32,
    h_len: u32,
) -> i32 {
    run(|| {
        let g = slice(g, g_len, "g")?;
        let u = slice(u, u_len, "u")?;
        let h = slice_mut(h, h_len, "h")?;
        expect_len("u", u.len(), g.len(), "like g")?;
        expect_len("h", h.len(), g.len(), "like g")?;
        swiglu::forward(&Ctx::current(), g, u, h);
        Ok(())
    })
}

/// `int32_t qlora_swiglu_backward(const float *dh, uint32_t dh_len, const float *g, uint32_t g_len,
///   const float *u, uint32_t u_len, float *dg, uint32_t dg_len, float *du, uint32_t du_len)` — dg, du
///   (overwritten) for h = silu(g) * u; all five of dh_len elements.
#[no_mangle]
pub unsafe extern "C" fn qlora_swiglu_backward(
    dh: *const f32,
    dh_len: u32,
    g: *const f32,
    g_len: u32,
    u: *const f32,
    u_len: u32,
    dg: *mut f32,
    dg_len: u32,
    du: *mut f32,
    du_len: u32,
) -> i32 {
    run(|| {
        let dh = slice(dh, dh_len, "dh")?;
        let g = slice(g, g_len, "g")?;
        let u = slice(u, u_len, "u")?;
        let dg = slice_mut(dg, dg_len, "dg")?;
        let du = slice_mut(du, du_len, "du")?;
        for (name, len) in [("g", g.len()), ("u", u.len()), ("dg", dg.len()), ("du", du.len())] {
            expect_len(name, len, dh.len(), "like dh")?;
        }
        swiglu::backward(&Ctx::current(), dh, g, u, dg, du);
        Ok(())
    })
}

/// `int32_t qlora_geglu_forward(const float *g, uint32_t g_len, const float *u, uint32_t u_len, float *h,
///   uint32_t h_len)` — h = gelu_tanh(g) * u elementwise (Gemma); all three of g_len elements.
#[no_mangle]
pub unsafe extern "C" fn qlora_geglu_forward(
    g: *const f32,
    g_len: u32,
    u: *const f32,
    u_len: u32,
    h: *mut f32,
    h_len: u32,
) -> i32 {
    run(|| {
        let g = slice(g, g_len, "g")?;
        let u = slice(u, u_len, "u")?;
        let h = slice_mut(h, h_len, "h")?;
        expect_len("u", u.len(), g.len(), "like g")?;
        expect_len("h", h.len(), g.len(), "like g")?;
        geglu::forward(&Ctx::current(), g, u, h);
        Ok(())
    })
}

/// `int32_t qlora_geglu_backward(const float *dh, uint32_t dh_len, const float *g, uint32_t g_len,
///   const float *u, uint32_t u_len, float *dg, uint32_t dg_len, float *du, uint32_t du_len)` — dg, du
///   (overwritten) for h = gelu_tanh(g) * u; all five of dh_len elements.
#[no_mangle]
pub unsafe extern "C" fn qlora_geglu_backward(
    dh: *const f32,
    dh_len: u32,
    g: *const f32,
    g_len: u32,
    u: *const f32,
    u_len: u32,
    dg: *mut f32,
    dg_len: u32,
    du: *mut f32,
    du_len: u32,
) -> i32 {
    run(|| {
        let dh = slice(dh, dh_len, "dh")?;
        let g = slice(g, g_len, "g")?;
        let u = slice(u, u_len, "u")?;
        let dg = slice_mut(dg, dg_len, "dg")?;
        let du = slice_mut(du, du_len, "du")?;
        for (name, len) in [("g", g.len()), ("u", u.len()), ("dg", dg.len()), ("du", du.len())] {
            expect_len(name, len, dh.len(), "like dh")?;
        }
        geglu::backward(&Ctx::current(), dh, g, u, dg, du);
        Ok(())
    })
}

fn attention_shape(
    tokens: u32,
    keys: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    q_offset: u32,
    window: u32,
) -> KResult<Shape> {
    let sh = Shape {
        tokens: tokens as usize,
        keys: keys as usize,
        heads: heads as usize,
        kv_heads: kv_heads as usize,
        head_dim: head_dim as usize,
        q_offset: q_offset as usize,
        window: window as usize,
    };
    sh.check()?;
    Ok(sh)
}

/// `int32_t qlora_attention_forward(const float *q, uint32_t q_len, const float *k, uint32_t k_len,
///   const float *v, uint32_t v_len, uint32_t tokens, uint32_t keys, uint32_t heads, uint32_t kv_heads,
///   uint32_t head_dim, uint32_t q_offset, uint32_t window, float *o, uint32_t o_len, float *lse,
///   uint32_t lse_len)` — causal GQA for one sequence: q, o [tokens, heads, head_dim]; k, v [keys, kv_heads,
///   head_dim] with keys >= q_offset + tokens; query row t attends to keys 0..=q_offset + t, or with
///   window > 0 only to the last `window` of them. lse [heads, tokens] is kept for backward; lse_len = 0
///   skips it (inference).
#[no_mangle]
pub unsafe extern "C" fn qlora_attention_forward(
    q: *const f32,
    q_len: u32,
    k: *const f32,
    k_len: u32,
    v: *const f32,
    v_len: u32,
    tokens: u32,
    keys: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    q_offset: u32,
    window: u32,
    o: *mut f32,
    o_len: u32,
    lse: *mut f32,
    lse_len: u32,
) -> i32 {
    run(|| {
        let sh = attention_shape(tokens, keys, heads, kv_heads, head_dim, q_offset, window)?;
        let q = slice(q, q_len, "q")?;
        let k = slice(k, k_len, "k")?;
        let v = slice(v, v_len, "v")?;
        let o = slice_mut(o, o_len, "o")?;
        let lse = slice_mut(lse, lse_len, "lse")?;
        expect_len("q", q.len(), sh.q_len(), "tokens × heads × head_dim")?;
        expect_len("k", k.len(), sh.kv_len(), "keys × kv_heads × head_dim")?;
        expect_len("v", v.len(), sh.kv_len(), "keys × kv_heads × head_dim")?;
        expect_len("o", o.len(), sh.q_len(), "tokens × heads × head_dim")?;
        let ctx = Ctx::current();
        if lse.is_empty() {
            let mut scratch = vec![0.0f32; sh.lse_len()];
            attention::forward(&ctx, &sh, q, k, v, o, &mut scratch);
        } else {
            expect_len("lse", lse.len(), sh.lse_len(), "heads × tokens, or 0 to skip")?;
            attention::forward(&ctx, &sh, q, k, v, o, lse);
        }
        Ok(())
    })
}

/// `int32_t qlora_attention_backward(const float *q, uint32_t q_len, const float *k, uint32_t k_len,
///   const float *v, uint32_t v_len, const float *o, uint32_t o_len, const float *lse, uint32_t lse_len,
///   const float *dout, uint32_t dout_len, uint32_t tokens, uint32_t keys, uint32_t heads,
///   uint32_t kv_heads, uint32_t head_dim, uint32_t q_offset, uint32_t window, float *dq, uint32_t dq_len, float *dk,
///   uint32_t dk_len, float *dv, uint32_t dv_len)` — dq, dk, dv (overwritten) from the forward inputs, its
///   outputs o and lse, and dout = dL/do. Shapes as in `qlora_attention_forward`.
#[no_mangle]
pub unsafe extern "C" fn qlora_attention_backward(
    q: *const f32,
    q_len: u32,
    k: *const f32,
    k_len: u32,
    v: *const f32,
    v_len: u32,
    o: *const f32,
    o_len: u32,
    lse: *const f32,
    lse_len: u32,
    dout: *const f32,
    dout_len: u32,
    tokens: u32,
    keys: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    q_offset: u32,
    window: u32,
    dq: *mut f32,
    dq_len: u32,
    dk: *mut f32,
    dk_len: u32,
    dv: *mut f32,
    dv_len: u32,
) -> i32 {
    run(|| {
        let sh = attention_shape(tokens, keys, heads, kv_heads, head_dim, q_offset, window)?;
        let q = slice(q, q_len, "q")?;
        let k = slice(k, k_len, "k")?;
        let v = slice(v, v_len, "v")?;
        let o = slice(o, o_len, "o")?;
        let lse = slice(lse, lse_len, "lse")?;
        let dout = slice(dout, dout_len, "dout")?;
        let dq = slice_mut(dq, dq_len, "dq")?;
        let dk = slice_mut(dk, dk_len, "dk")?;
        let dv = slice_mut(dv, dv_len, "dv")?;
        let (qs, kvs) = ("tokens × heads × head_dim", "keys × kv_heads × head_dim");
        expect_len("q", q.len(), sh.q_len(), qs)?;
        expect_len("k", k.len(), sh.kv_len(), kvs)?;
        expect_len("v", v.len(), sh.kv_len(), kvs)?;
        expect_len("o", o.len(), sh.q_len(), qs)?;
        expect_len("lse", lse.len(), sh.lse_len(), "heads × tokens")?;
        expect_len("dout", dout.len(), sh.q_len(), qs)?;
        expect_len("dq", dq.len(), sh.q_len(), qs)?;
        expect_len("dk", dk.len(), sh.kv_len(), kvs)?;
        expect_len("dv", dv.len(), sh.kv_len(), kvs)?;
        attention::backward(&Ctx::current(), &sh, q, k, v, o, lse, dout, dq, dk, dv);
        Ok(())
    })
}

/// `int32_t qlora_cross_entropy(float *logits, uint32_t logits_len, const int32_t *targets,
///   uint32_t targets_len, uint32_t rows, uint32_t vocab, float grad_scale, double *out, uint32_t out_len)`
///   — out[0] = loss summed over rows whose target is not -100, out[1] = their count; logits [rows, vocab]
///   are overwritten with (softmax - onehot) * grad_scale (zeros on ignored rows). A target outside
///   [0, vocab) other than -100 fails before anything is written.
#[no_mangle]
pub unsafe extern "C" fn qlora_cross_entropy(
    logits: *mut f32,
    logits_len: u32,
    targets: *const i32,
    targets_len: u32,
    rows: u32,
    vocab: u32,
    grad_scale: f32,
    out: *mut f64,
    out_len: u32,
) -> i32 {
    run(|| {
        let (rows, vocab) = (rows as usize, positive("vocab", vocab)?);
        let logits = slice_mut(logits, logits_len, "logits")?;
        let targets = slice(targets, targets_len, "targets")?;
        let out = slice_mut(out, out_len, "out")?;
        expect_len("logits", logits.len(), rows * vocab, "rows × vocab")?;
        expect_len("targets", targets.len(), rows, "rows")?;
        expect_len("out", out.len(), 2, "loss sum, count")?;
        ensure(grad_scale.is_finite(), || format!("grad_scale: must be finite, got {grad_scale}"))?;
        let (sum, count) = cross_entropy::loss_and_grad(&Ctx::current(), logits, vocab, targets, grad_scale)?;
        out[0] = sum;
        out[1] = count as f64;
        Ok(())
    })
}

/// `int32_t qlora_log_softmax_gather(const float *logits, uint32_t logits_len, const int32_t *targets,
///   uint32_t targets_len, uint32_t rows, uint32_t vocab, float *out, uint32_t out_len)` — out[r] =
///   log_softmax(logits[r])[targets[r]], or 0 where the target is -100. logits are not modified.
#[no_mangle]
pub unsafe extern "C" fn qlora_log_softmax_gather(
    logits: *const f32,
    logits_len: u32,
    targets: *const i32,
    targets_len: u32,
    rows: u32,
    vocab: u32,
    out: *mut f32,
    out_len: u32,
) -> i32 {
    run(|| {
        let (rows, vocab) = (rows as usize, positive("vocab", vocab)?);
        let logits = slice(logits, logits_len, "logits")?;
        let targets = slice(targets, targets_len, "targets")?;
        let out = slice_mut(out, out_len, "out")?;
        expect_len("logits", logits.len(), rows * vocab, "rows × vocab")?;
        expect_len("targets", targets.len(), rows, "rows")?;
        expect_len("out", out.len(), rows, "rows")?;
        cross_entropy::logprobs(&Ctx::current(), logits, vocab, targets, out)
    })
}

/// `int32_t qlora_adamw(float *p, uint32_t p_len, const float *g, uint32_t g_len, float *m, uint32_t m_len,
///   float *v, uint32_t v_len, uint32_t step, double lr, double beta1, double beta2, double eps,
///   double weight_decay)` — one AdamW step (step = 1 for the first) over flat buffers of p_len elements.
#[no_mangle]
pub unsafe extern "C" fn qlora_adamw(
    p: *mut f32,
    p_len: u32,
    g: *const f32,
    g_len: u32,
    m: *mut f32,
    m_len: u32,
    v: *mut f32,
    v_len: u32,
    step: u32,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
) -> i32 {
    run(|| {
        let p = slice_mut(p, p_len, "p")?;
        let g = slice(g, g_len, "g")?;
        let m = slice_mut(m, m_len, "m")?;
        let v = slice_mut(v, v_len, "v")?;
        for (name, len) in [("g", g.len()), ("m", m.len()), ("v", v.len())] {
            expect_len(name, len, p.len(), "like p")?;
        }
        let hp = AdamW { lr, beta1, beta2, eps, weight_decay };
        adamw::step(&Ctx::current(), p, g, m, v, step, &hp)
    })
}

/// `int32_t qlora_sum_squares(const float *x, uint32_t x_len, double *out, uint32_t out_len)` —
///   out[0] = Σ x², accumulated in f64 (for the global gradient norm).
#[no_mangle]
pub unsafe extern "C" fn qlora_sum_squares(x: *const f32, x_len: u32, out: *mut f64, out_len: u32) -> i32 {
    run(|| {
        let x = slice(x, x_len, "x")?;
        let out = slice_mut(out, out_len, "out")?;
        expect_len("out", out.len(), 1, "one sum")?;
        out[0] = vector::sum_squares(&Ctx::current(), x);
        Ok(())
    })
}

/// `int32_t qlora_scale(float *x, uint32_t x_len, float c)` — x *= c.
#[no_mangle]
pub unsafe extern "C" fn qlora_scale(x: *mut f32, x_len: u32, c: f32) -> i32 {
    run(|| {
        let x = slice_mut(x, x_len, "x")?;
        vector::scale(&Ctx::current(), x, c);
        Ok(())
    })
}

/// `int32_t qlora_add_scaled(float *y, uint32_t y_len, float a, const float *x, uint32_t x_len)` —
///   y += a * x.
#[no_mangle]
pub unsafe extern "C" fn qlora_add_scaled(y: *mut f32, y_len: u32, a: f32, x: *const f32, x_len: u32) -> i32 {
    run(|| {
        let y = slice_mut(y, y_len, "y")?;
        let x = slice(x, x_len, "x")?;
        expect_len("x", x.len(), y.len(), "like y")?;
        vector::add_scaled(&Ctx::current(), y, a, x);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::last_error;

    // One test, so no other test of this module overwrites the (global) last error in between.
    #[test]
    fn errors_name_the_argument() {
        let x = [1.0f32; 6];
        let w = [1.0f32; 3];
        let (mut y, mut rstd) = ([0.0f32; 6], [0.0f32; 2]);
        let status = unsafe {
            qlora_rmsnorm_forward(
                x.as_ptr(),
                6,
                w.as_ptr(),
                3,
                2,
                3,
                1e-5,
                y.as_mut_ptr(),
                5,
                rstd.as_mut_ptr(),
                2,
            )
        };
        assert_eq!(status, 1);
        assert_eq!(last_error(), "y: expected 6 elements (rows × dim), got 5");
        let status = unsafe {
            qlora_rmsnorm_forward(
                x.as_ptr(),
                6,
                w.as_ptr(),
                3,
                2,
                3,
                1e-5,
                y.as_mut_ptr(),
                6,
                rstd.as_mut_ptr(),
                2,
            )
        };
        assert_eq!(status, 0);
        assert!((y[0] - 1.0).abs() < 1e-4);

        let mut logits = [0.0f32; 4];
        let mut out = [0.0f64; 2];
        let null = std::ptr::null_mut();
        let status = unsafe { qlora_cross_entropy(null, 4, [0].as_ptr(), 1, 1, 4, 1.0, out.as_mut_ptr(), 2) };
        assert_eq!(status, 1);
        assert!(last_error().starts_with("logits: null pointer"));
        let status = unsafe {
            qlora_cross_entropy(logits.as_mut_ptr(), 4, [7].as_ptr(), 1, 1, 4, 1.0, out.as_mut_ptr(), 2)
        };
        assert_eq!(status, 1);
        assert!(last_error().starts_with("targets: targets[0] = 7"));
        let status = unsafe {
            qlora_cross_entropy(logits.as_mut_ptr(), 4, [3].as_ptr(), 1, 1, 4, 1.0, out.as_mut_ptr(), 2)
        };
        assert_eq!(status, 0);
        assert!((out[0] - 4f64.ln()).abs() < 1e-6 && out[1] == 1.0);

        // The shape is checked before the lengths.
        let q = [0.0f32; 8];
        let mut o = [0.0f32; 8];
        let status = unsafe {
            let p = q.as_ptr();
            qlora_attention_forward(
                p,
                8,
                p,
                8,
                p,
                8,
                2,
                2,
                3,
                2,
                2,
                0,
                0,
                o.as_mut_ptr(),
                8,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(status, 1);
        assert!(last_error().starts_with("heads:"), "{}", last_error());
    }
}

/// `int32_t qlora_dropout(const float *x, uint32_t x_len, float *out, uint32_t out_len, float p,
///   uint32_t seed_lo, uint32_t seed_hi)` — out = x · mask / (1 − p), the mask a pure function of the seed.
#[no_mangle]
pub unsafe extern "C" fn qlora_dropout(
    x: *const f32,
    x_len: u32,
    out: *mut f32,
    out_len: u32,
    p: f32,
    seed_lo: u32,
    seed_hi: u32,
) -> i32 {
    run(|| {
        let x = slice(x, x_len, "x")?;
        let out = slice_mut(out, out_len, "out")?;
        crate::ops::dropout::dropout(&Ctx::current(), x, out, p, (seed_hi as u64) << 32 | seed_lo as u64)
    })
}
