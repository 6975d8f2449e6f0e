//! Development probe: one NF4 GEMM on AMX tiles at one shape, called repeatedly for a few seconds (as the
//! bench and PyTorch time theirs), printing the median and best GFLOP/s. `THREADS=n SECS=s cargo run
//! --release --example amx_probe -- [in] [out] [m] [fwd|bwd]`; run it under `perf record` to see where a
//! product's time goes.

use qlora_kernels::dispatch::{Bf16Unit, Kernel};
use qlora_kernels::gemm::{nf4_backward, nf4_forward, Compute, LowRank, Run};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().expect("a whole number"));
    let (inp, out, m) = (arg(1, 4096), arg(2, 1024), arg(3, 256));
    let backward = args.get(4).is_some_and(|d| d == "bwd");
    let secs: f64 = std::env::var("SECS").map_or(3.0, |v| v.parse().expect("seconds"));
    let threads: usize = std::env::var("THREADS").map_or(2, |v| v.parse().expect("a thread count"));
    qlora_kernels::threads::set_threads(threads).unwrap();
    if let Err(why) = qlora_kernels::gemm::amx::os::enable_tiles() {
        eprintln!("no AMX here: {why}");
        std::process::exit(1);
    }
    let run = Run { kernel: Kernel::Avx512, compute: Compute::Bf16, unit: Bf16Unit::Amx, threads };
    let rand = |len: usize, seed: u64| -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 0.1 - 0.05
            })
            .collect()
    };
    let q = qlora_kernels::nf4::quantize::quantize(&rand(out * inp, 1), out, inp, true).unwrap();
    // COPIES=n cycles through n copies of the weight, so that (with enough of them) each call reads its
    // weight from memory, as a training step does, not from a cache warmed by the previous call.
    let copies: usize = std::env::var("COPIES").map_or(1, |v| v.parse().expect("a count"));
    let weights: Vec<_> = (0..copies).map(|_| q.clone()).collect();
    let (x, dy) = (rand(m * inp, 2), rand(m * out, 3));
    let (mut y, mut dx) = (vec![0.0f32; m * out], vec![0.0f32; m * inp]);
    // RANK=r adds a LoRA term of that rank in the same call, as the training step does.
    let rank: usize = std::env::var("RANK").map_or(0, |v| v.parse().expect("a rank"));
    let (left_f, left_b, right_f, right_b) =
        (rand(m * rank, 4), rand(m * rank, 5), rand(out * rank, 6), rand(rank * inp, 7));
    let mut times = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed().as_secs_f64() < secs || times.len() < 3 {
        let t = std::time::Instant::now();
        let q = &weights[times.len() % copies];
        if backward {
            let low = (rank > 0).then(|| LowRank { left: &left_b, right: &right_b, rank, scale: 2.0 });
            nf4_backward(q, &dy, m, &mut dx, false, low, run).unwrap();
        } else {
            let low = (rank > 0).then(|| LowRank { left: &left_f, right: &right_f, rank, scale: 2.0 });
            nf4_forward(q, &x, m, &mut y, false, low, run).unwrap();
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let gflops = |s: f64| 2.0 * (m * inp * out) as f64 / s / 1e9;
    let dir = if backward { "bwd" } else { "fwd" };
    println!(
        "{dir} {m}×{inp}→{out}, {threads} threads: median {:.0} GFLOP/s, best {:.0} ({} calls)",
        gflops(times[times.len() / 2]),
        gflops(times[0]),
        times.len()
    );
}
