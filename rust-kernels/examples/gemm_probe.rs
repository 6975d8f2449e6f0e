//! Development probe: f32 GEMMs at one shape, by process CPU time, as a share of a one-thread FMA loop timed
//! the same way (less exposed to other jobs than wall time). `THREADS=n cargo run --release --example
//! gemm_probe -- [avx2|avx512] [in] [out] [m]`; prints the BLIS nest (`driver.rs`) and what the entry points
//! run now (`wxt.rs` where it applies) side by side, and the micro-kernels alone. `ONLY=densefwd|densebwd|
//! nf4fwd|nf4bwd` runs one product for 3 s instead (for `perf record`).

use qlora_kernels::dispatch::{Bf16Unit, Kernel};
use qlora_kernels::gemm::driver::{gemm, Problem};
use qlora_kernels::gemm::pack::{Direct, PackB, Strided, Transposed};
use qlora_kernels::gemm::{nf4_backward, nf4_forward, sgemm, Compute, Run};

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}
fn cpu_seconds() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(2, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

fn best_cpu(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t0 = cpu_seconds();
        f();
        best = best.min(cpu_seconds() - t0);
    }
    best
}

fn blis<B: PackB>(kernel: Kernel, p: &Problem<B>, c: &mut [f32]) {
    unsafe { gemm(p, c.as_mut_ptr(), kernel, Compute::F32, qlora_kernels::threads::threads()) }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kernel = if args.get(1).map(|s| s.as_str()) == Some("avx2") { Kernel::Avx2 } else { Kernel::Avx512 };
    let inp: usize = args.get(2).map_or(4096, |s| s.parse().unwrap());
    let out: usize = args.get(3).map_or(4096, |s| s.parse().unwrap());
    let m: usize = args.get(4).map_or(256, |s| s.parse().unwrap());
    let threads: usize = std::env::var("THREADS").map_or(1, |v| v.parse().unwrap());
    qlora_kernels::threads::set_threads(threads).unwrap();
    let run = Run { kernel, compute: Compute::F32, unit: Bf16Unit::Fma, threads };
    let rand = |len: usize, seed: u64| -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 0.1 - 0.05
            })
            .collect()
    };
    let w = rand(out * inp, 1);
    let x = rand(m * inp, 2);
    let dy = rand(m * out, 3);
    let mut y = vec![0.0f32; m * out];
    let mut dx = vec![0.0f32; m * inp];
    let mut dw = vec![0.0f32; out * inp];
    let q = qlora_kernels::nf4::quantize::quantize(&w, out, inp, true).unwrap();
    let peak_s = best_cpu(3, || {
        std::hint::black_box(qlora_kernels::calibrate::run_chains(kernel, 1 << 20));
    });
    let lanes = if kernel == Kernel::Avx2 { 8.0 } else { 16.0 };
    let peak = (1u64 << 20) as f64 * 12.0 * lanes * 2.0 / peak_s;
    let flops = 2.0 * (m * inp * out) as f64;
    let reps = 5;
    let pct = |s: f64| 100.0 * flops / s / peak;
    let xa = Strided { data: &x, rs: inp, cs: 1 };
    let dya = Strided { data: &dy, rs: out, cs: 1 };
    let wt = Strided { data: &w, rs: 1, cs: inp };
    let wd = Strided { data: &w, rs: inp, cs: 1 };
    if let Ok(only) = std::env::var("ONLY") {
        let t0 = std::time::Instant::now();
        while t0.elapsed().as_secs_f64() < 3.0 {
            match only.as_str() {
                "nf4bwd" => nf4_backward(&q, &dy, m, &mut dx, false, None, run).unwrap(),
                "nf4fwd" => nf4_forward(&q, &x, m, &mut y, false, None, run).unwrap(),
                "densebwd" => {
                    sgemm(m, inp, out, (&dy, out, 1), (&w, inp, 1), &mut dx, inp, 1.0, 0.0, run).unwrap()
                }
                _ => sgemm(m, out, inp, (&x, inp, 1), (&w, 1, inp), &mut y, out, 1.0, 0.0, run).unwrap(),
            }
        }
        return;
    }
    let rows: [(&str, f64, f64); 5] = [
        (
            "dense fwd",
            best_cpu(reps, || {
                blis(
                    kernel,
                    &Problem {
                        m,
                        n: out,
                        k: inp,
                        a: xa,
                        b: &wt,
                        alpha: 1.0,
                        beta: 0.0,
                        ldc: out,
                        tail: None,
                    },
                    &mut y,
                )
            }),
            best_cpu(reps, || {
                sgemm(m, out, inp, (&x, inp, 1), (&w, 1, inp), &mut y, out, 1.0, 0.0, run).unwrap()
            }),
        ),
        (
            "dense bwd",
            best_cpu(reps, || {
                blis(
                    kernel,
                    &Problem {
                        m,
                        n: inp,
                        k: out,
                        a: dya,
                        b: &wd,
                        alpha: 1.0,
                        beta: 0.0,
                        ldc: inp,
                        tail: None,
                    },
                    &mut dx,
                )
            }),
            best_cpu(reps, || {
                sgemm(m, inp, out, (&dy, out, 1), (&w, inp, 1), &mut dx, inp, 1.0, 0.0, run).unwrap()
            }),
        ),
        (
            "dense dW",
            best_cpu(reps, || {
                sgemm(out, inp, m, (&dy, 1, out), (&x, inp, 1), &mut dw, inp, 1.0, 0.0, run).unwrap()
            }),
            f64::NAN,
        ),
        (
            "nf4 fwd",
            best_cpu(reps, || {
                blis(
                    kernel,
                    &Problem {
                        m,
                        n: out,
                        k: inp,
                        a: xa,
                        b: &Transposed(&q),
                        alpha: 1.0,
                        beta: 0.0,
                        ldc: out,
                        tail: None,
                    },
                    &mut y,
                )
            }),
            best_cpu(reps, || nf4_forward(&q, &x, m, &mut y, false, None, run).unwrap()),
        ),
        (
            "nf4 bwd",
            best_cpu(reps, || {
                blis(
                    kernel,
                    &Problem {
                        m,
                        n: inp,
                        k: out,
                        a: dya,
                        b: &Direct(&q),
                        alpha: 1.0,
                        beta: 0.0,
                        ldc: inp,
                        tail: None,
                    },
                    &mut dx,
                )
            }),
            best_cpu(reps, || nf4_backward(&q, &dy, m, &mut dx, false, None, run).unwrap()),
        ),
    ];
    // The micro-kernel alone on cached operands (rows of a decoded block, ps = 1; an MR-wide panel, ps = mr).
    let (shape, tile) = qlora_kernels::gemm::wxt_kernel::tile_of(kernel);
    let kc = 256;
    let wblock = rand(shape.mr * kc * 2, 4);
    let mut panel_buf = rand(kc * shape.nr + 16, 5);
    let panel = qlora_kernels::gemm::pack::aligned(&mut panel_buf, kc * shape.nr).to_vec();
    let off = std::env::var("PANEL_OFF").map_or(0, |v| v.parse::<usize>().unwrap());
    let mut pb = vec![0.0f32; kc * shape.nr + 32];
    let pa = qlora_kernels::gemm::pack::aligned(&mut pb, kc * shape.nr + 16);
    pa[off..off + kc * shape.nr].copy_from_slice(&panel);
    let panel = &pa[off..];
    let mut sc = vec![0.0f32; shape.mr * shape.nr];
    for (label, rs, ps) in [("rows", kc, 1), ("panel", 1, shape.mr)] {
        let ptrs: Vec<*const f32> = (0..shape.mr).map(|r| wblock[r * rs..].as_ptr()).collect();
        let calls = 2000;
        let secs = best_cpu(3, || {
            for _ in 0..calls {
                unsafe { tile(kc, ptrs.as_ptr(), ps, panel.as_ptr(), sc.as_mut_ptr(), shape.nr, 1.0, true) };
            }
        });
        let f = 2.0 * (shape.mr * shape.nr * kc * calls) as f64;
        println!("hot loop ({label}): {:.1}% of the FMA peak", 100.0 * f / secs / peak);
    }
    {
        let micro = qlora_kernels::gemm::kernel::kernel_fn(kernel);
        let bl = qlora_kernels::gemm::blocking::blocking(kernel);
        let a = rand(bl.mr * kc, 6);
        let b = rand(kc * bl.nr, 7);
        let mut c = vec![0.0f32; bl.mr * bl.nr];
        let calls = 2000;
        let secs = best_cpu(3, || {
            for _ in 0..calls {
                unsafe { micro(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), bl.nr, 1.0, 1.0) };
            }
        });
        let f = 2.0 * (bl.mr * bl.nr * kc * calls) as f64;
        println!("hot loop (BLIS nest's micro-kernel): {:.1}% of the FMA peak", 100.0 * f / secs / peak);
    }
    println!(
        "{kernel:?} {m}x{inp}->{out}, one thread, % of FMA peak by CPU time (peak {:.0} GFLOP/s)",
        peak / 1e9
    );
    for (name, old, new) in rows {
        println!("{name:10} blis {:5.1}%   wxt {:5.1}%", pct(old), pct(new));
    }
}
