"""PyTorch's bf16 matmul on the shapes of `tasks/bench/bf16_gemm.ts` (the baseline its ratios use).

Usage: python torch_bf16_matmul.py <threads>
Then one request per stdin line, JSON [m, in, out, "fwd" | "bwd", min_seconds]; each answer is one JSON line
{"gflops": …} (the median call). The first line written is {"torch": version}. The process stays up so the
bench can alternate PyTorch's timings with its own, shape by shape.
Forward is X[m, in] · Wᵀ (W [out, in]), backward dY[m, out] · W, both in bf16 (oneDNN; AMX where present).
"""

import json
import sys
import time

import torch


def median_seconds(fn, min_seconds):
    fn()  # warm-up (oneDNN picks and caches its kernel)
    samples = []
    start = time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - start < min_seconds and len(samples) < 50):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    torch.set_num_threads(int(sys.argv[1]))
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    print(json.dumps({"torch": torch.__version__}), flush=True)
    with torch.no_grad():
        for line in sys.stdin:
            m, k_in, n_out, direction, min_seconds = json.loads(line)
            if (m, k_in, n_out) not in tensors:
                tensors[(m, k_in, n_out)] = (
                    (torch.rand(n_out, k_in, generator=gen) * 0.1 - 0.05).to(torch.bfloat16),
                    (torch.rand(m, k_in, generator=gen) * 2 - 1).to(torch.bfloat16),
                    (torch.rand(m, n_out, generator=gen) * 2 - 1).to(torch.bfloat16),
                )
            w, x, dy = tensors[(m, k_in, n_out)]
            if direction == "fwd":
                seconds = median_seconds(lambda: torch.matmul(x, w.t()), min_seconds)
            else:
                seconds = median_seconds(lambda: torch.matmul(dy, w), min_seconds)
            print(json.dumps({"gflops": 2 * m * k_in * n_out / seconds / 1e9}), flush=True)


if __name__ == "__main__":
    main()
