"""PyTorch's CPU SDPA on the cached-decoding shapes of `spattn-compare --workload cached`.

For each dtype, heads, kv length and q length: q [1, heads, q, d] against k, v [1, kv_heads, kv, d]
(random, the same shapes spattn's run used), torch.nn.functional.scaled_dot_product_attention on
--threads threads, median of --reps after one warm-up call. With --spattn FILE (that run's
stdout) it prints one table joining both: spattn's cached dense and sparse step against SDPA, and
spattn's 1-thread scaling where the run had --scaling.

    python3 bench/peers/torch_cached.py --spattn out/cached.txt [--threads 16] [--reps 5]
"""
import argparse
import re
import statistics
import time

import torch


def parse_spattn(path):
    """Rows of spattn's table: {(heads, q, kv, dtype): dict of its columns}."""
    rows = {}
    pat = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(fp32|bf16|fp16)\s*\|(.*)$")
    for line in open(path):
        m = pat.match(line)
        if not m:
            continue
        nums = [float(x) for x in re.findall(r"[-+]?\d*\.\d+|\d+", m.group(5))]
        # write32 attend step step/a | uncached unc/a | sparse dens spd | GB/s bw% [| 1-thr scaling]
        r = dict(attend=nums[1], step=nums[2], uncached=nums[4], sparse=nums[6], density=nums[7], gbs=nums[9],
                 bw=nums[10])
        if len(nums) >= 13:
            r["one_thread"], r["scaling"] = nums[11], nums[12]
        rows[(int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4))] = r
    return rows


def sdpa_ms(heads, kv_heads, q_len, kv_len, d, dtype, reps):
    g = torch.Generator().manual_seed(q_len * 7 + kv_len)
    q = torch.randn(1, heads, q_len, d, generator=g).to(dtype)
    k = torch.randn(1, kv_heads, kv_len, d, generator=g).to(dtype)
    v = torch.randn(1, kv_heads, kv_len, d, generator=g).to(dtype)
    extra = {"enable_gqa": True} if kv_heads != heads else {}
    f = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if f is None:  # PyTorch < 2.0 (Debian 12's 1.13): the same attention written out
        def f(q, k, v):
            return torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5, dim=-1) @ v
        extra = {}
        if kv_heads != heads:
            k, v = (x.repeat_interleave(heads // kv_heads, dim=1) for x in (k, v))
    f(q, k, v, **extra)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(q, k, v, **extra)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spattn", help="spattn-compare --workload cached output to join")
    p.add_argument("--heads", default="8")
    p.add_argument("--kv-heads", type=int, default=0)
    p.add_argument("--q-lens", default="1,32,64")
    p.add_argument("--kv-lens", default="16384,65536,131072")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ours = parse_spattn(a.spattn) if a.spattn else {}
    types = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    kind = "SDPA" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "softmax(q k^T) v (no SDPA)"
    print(f"torch {torch.__version__} {kind}, {a.threads} threads, median of {a.reps}")
    print(f"{'heads':>5} {'q':>4} {'kv':>7} {'dtype':>5} | {'sdpa ms':>9} | {'spattn ms':>9} {'vs sdpa':>8} | "
          f"{'sparse ms':>9} {'dens':>5} {'vs sdpa':>8} | {'KV GB/s':>8} {'bw':>5} | {'scaling':>7}")
    for dt in a.dtypes.split(","):
        for h in (int(x) for x in a.heads.split(",")):
            kvh = a.kv_heads or h
            for kv in (int(x) for x in a.kv_lens.split(",")):
                for q in (int(x) for x in a.q_lens.split(",")):
                    t = sdpa_ms(h, kvh, q, kv, a.head_dim, types[dt], a.reps)
                    r = ours.get((h, q, kv, dt))
                    if r is None:
                        print(f"{h:5d} {q:4d} {kv:7d} {dt:>5} | {t:9.3f} |")
                        continue
                    sc = f"{r['scaling']:6.2f}x" if "scaling" in r else "      -"
                    print(f"{h:5d} {q:4d} {kv:7d} {dt:>5} | {t:9.3f} | {r['attend']:9.3f} {t / r['attend']:7.2f}x | "
                          f"{r['sparse']:9.3f} {r['density']:5.3f} {t / r['sparse']:7.2f}x | {r['gbs']:8.1f} "
                          f"{r['bw']:4.0f}% | {sc}", flush=True)
    print("spattn ms: cached_attention (dense over every cached key); sparse: on a random pattern of that density; "
          "vs sdpa: SDPA time / ours; scaling: spattn's 1-thread time / its time on all threads")


if __name__ == "__main__":
    main()
