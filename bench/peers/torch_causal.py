#!/usr/bin/env python3
"""PyTorch CPU SDPA on causal prefill shapes, for side-by-side runs with
`spattn-compare --workload prefill` on the same machine and thread count.

For each N: torch.nn.functional.scaled_dot_product_attention on random
[1, heads, N, head_dim] tensors, causal (is_causal=True) and bidirectional,
fp32 and bf16, torch.set_num_threads(T); medians over --reps timed calls
after one warm-up. Prints one line per (N, dtype, mask): ms and GFLOP/s of
useful work (the causal half for causal). Timing only: the inputs are random.
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seq-lens", default="16384")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (default both)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, heads {a.heads}, head_dim {a.head_dim}, "
          f"median of {a.reps}")
    for n in (int(x) for x in a.seq_lens.split(",")):
        g = torch.Generator().manual_seed(1)
        q, k, v = (torch.randn(1, a.heads, n, a.head_dim, generator=g) for _ in range(3))
        names = {"fp32": torch.float32, "bf16": torch.bfloat16}
        for dtype in (names[x] for x in a.dtypes.split(",")):
            qd, kd, vd = q.to(dtype), k.to(dtype), v.to(dtype)
            for causal in (True, False):
                f = lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, is_causal=causal)
                f()
                times = []
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    f()
                    times.append((time.perf_counter() - t0) * 1e3)
                ms = statistics.median(times)
                flops = 4.0 * a.heads * n * n * a.head_dim * (0.5 if causal else 1.0)
                print(f"N {n} {str(dtype).split('.')[-1]:9s} {'causal' if causal else 'bidir':6s} "
                      f"{ms:10.1f} ms {flops / ms / 1e6:8.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
