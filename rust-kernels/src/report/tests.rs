//! Runs one small call of every family on every path this CPU has, checks that each family recorded the
//! route `route()` promised, and prints the paths exercised (and those the CPU lacks) for the test log.

use super::*;
use crate::dispatch::{available, supported};
use crate::gemm::{nf4_forward, sgemm, Compute, Run};
use crate::ops::exec::{Ctx, Path};
use std::io::Write;

fn values(n: usize, seed: u32) -> Vec<f32> {
    crate::ops::testutil::data(n, seed)
}

/// One call of each family with `kernel` (the numerics are checked by each family's own tests).
fn exercise(kernel: Kernel) {
    let (m, n, k) = (9, 40, 70);
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let mut c = vec![0.0f32; m * n];
    for compute in [Compute::F32, Compute::Bf16] {
        let run = Run { kernel, compute, threads: 2 };
        sgemm(m, n, k, (&a, k, 1), (&b, n, 1), &mut c, n, 1.0, 0.0, run).unwrap();
    }
    let w = crate::nf4::quantize::quantize(&values(n * k, 3), n, k, true).unwrap();
    let run = Run { kernel, compute: Compute::F32, threads: 2 };
    nf4_forward(&w, &a, m, &mut c, false, None, run).unwrap();

    let ctx = Ctx::with_threads(2, Path::for_kernel(kernel));
    let (g, u) = (values(100, 4), values(100, 5));
    let mut h = vec![0.0f32; 100];
    crate::ops::swiglu::forward(&ctx, &g, &u, &mut h);
    let sh =
        crate::ops::attention::Shape { tokens: 7, keys: 7, heads: 2, kv_heads: 1, head_dim: 16, q_offset: 0 };
    let (q, kv) = (values(sh.q_len(), 6), values(sh.kv_len(), 7));
    let (mut o, mut lse) = (vec![0.0f32; sh.q_len()], vec![0.0f32; sh.lse_len()]);
    crate::ops::attention::forward(&ctx, &sh, &q, &kv, &kv, &mut o, &mut lse);
}

#[test]
fn every_family_runs_the_route_it_reports_on_every_path() {
    for kernel in available() {
        exercise(kernel);
        for family in Family::ALL {
            let want = route(family, kernel);
            assert!(
                used(family).contains(&want),
                "{family:?} on {kernel:?}: {want:?} not among {:?}",
                used(family)
            );
        }
    }
    let ran: Vec<&str> = available().iter().map(|k| k.name()).collect();
    let lacks: Vec<&str> =
        [Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| !supported(*k)).map(|k| k.name()).collect();
    // Written past the test harness's capture on purpose: `deno task test` shows this line.
    let line = format!(
        "kernel paths exercised (cargo tests): {} (this CPU lacks: {}); per family: {}\n",
        ran.join(", "),
        if lacks.is_empty() { "none".to_string() } else { lacks.join(", ") },
        describe_used().replace(';', " · ").replace('=', " ")
    );
    std::io::stdout().write_all(line.as_bytes()).unwrap();
}

#[test]
fn routes_never_claim_a_path_the_cpu_lacks() {
    for kernel in available() {
        for family in Family::ALL {
            let r = route(family, kernel);
            let ok = match r {
                Route::Scalar => true,
                Route::Avx2 => supported(Kernel::Avx2),
                Route::Avx512 => supported(Kernel::Avx512),
                Route::Avx512Bf16 => crate::dispatch::cpu().avx512_bf16,
            };
            assert!(ok, "{family:?} on {kernel:?} claims {r:?}");
        }
        assert_eq!(route(Family::GemmF32, kernel), Route::of_kernel(kernel));
    }
}
