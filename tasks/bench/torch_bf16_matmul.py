"""PyTorch's bf16 matmul on the shapes of `tasks/bench/bf16_gemm.ts` (the baseline its ratios use).

Usage: python torch_bf16_matmul.py '<json list of [m, in, out]>' <threads> <min_seconds>
Prints one JSON line: {"torch": version, "gflops": {"fwd m×in→out": …, "bwd m×in→out": …}}.
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
    shapes = json.loads(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]))
    min_seconds = float(sys.argv[3])
    gen = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        for m, k_in, n_out in shapes:
            w = (torch.rand(n_out, k_in, generator=gen) * 0.1 - 0.05).to(torch.bfloat16)
            x = (torch.rand(m, k_in, generator=gen) * 2 - 1).to(torch.bfloat16)
            dy = (torch.rand(m, n_out, generator=gen) * 2 - 1).to(torch.bfloat16)
            flops = 2 * m * k_in * n_out
            label = f"{m}×{k_in}→{n_out}"
            out["fwd " + label] = flops / median_seconds(lambda: torch.matmul(x, w.t()), min_seconds) / 1e9
            out["bwd " + label] = flops / median_seconds(lambda: torch.matmul(dy, w), min_seconds) / 1e9
    print(json.dumps({"torch": torch.__version__, "gflops": out}))


if __name__ == "__main__":
    main()
