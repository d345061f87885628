"""One attention split over 2 processes by keys, merged exactly.

Each process (torch.distributed, gloo backend, localhost) holds half of the
keys and values, computes its partial attention with spattn and the rows'
log-sum-exp, and the parts are all-gathered and merged with
spattn.merge_attention_states (as FlashInfer's merge_state merges them). The
merged output is checked against the single-process spattn.dense_attention
and against PyTorch's attention (float64) on the same tensors.

    PYTHONPATH=build/release/python python3 examples/split_kv_distributed.py
    [--heads 4] [--q-len 32] [--kv-len 4099] [--head-dim 64] [--world 2]

Exits 0 when every rank's merge agrees (max |diff| <= 1e-5 x max |out|), 1
otherwise.
"""
import argparse
import os
import socket
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import spattn


def inputs(args):
    """The same Q, K, V on every rank (one seed): q [heads, q_len, d], k and v [heads, kv_len, d]."""
    rng = np.random.default_rng(1)
    q = rng.standard_normal((args.heads, args.q_len, args.head_dim), dtype=np.float32)
    k = rng.standard_normal((args.heads, args.kv_len, args.head_dim), dtype=np.float32)
    v = rng.standard_normal((args.heads, args.kv_len, args.head_dim), dtype=np.float32)
    return q, k, v


def worker(rank, args, port, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    q, k, v = inputs(args)
    # This rank's keys: a contiguous share (the shares need not be equal).
    lo, hi = rank * args.kv_len // args.world, (rank + 1) * args.kv_len // args.world
    out, lse = spattn.dense_attention_with_lse(q, np.ascontiguousarray(k[:, lo:hi]), np.ascontiguousarray(v[:, lo:hi]),
                                               threads=1)
    outs = [torch.empty(out.shape) for _ in range(args.world)]
    lses = [torch.empty(lse.shape) for _ in range(args.world)]
    dist.all_gather(outs, torch.from_numpy(out))
    dist.all_gather(lses, torch.from_numpy(lse))
    merged, _ = spattn.merge_attention_states([o.numpy() for o in outs], [l.numpy() for l in lses])
    whole = spattn.dense_attention(q, k, v, threads=1)
    # PyTorch's attention in float64 (SDPA where this PyTorch has it, else
    # the same softmax(q k^T / sqrt(d)) v written out).
    tq, tk, tv = (torch.from_numpy(x).double() for x in (q, k, v))
    if hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        sdpa = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv).numpy()
    else:
        sdpa = torch.softmax(tq @ tk.transpose(1, 2) / args.head_dim ** 0.5, dim=-1).matmul(tv).numpy()
    scale = float(np.abs(whole).max())
    err_spattn = float(np.abs(merged - whole).max()) / scale
    err_torch = float(np.abs(merged - sdpa).max()) / scale
    results[rank] = (err_spattn, err_torch, hi - lo)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--q-len", type=int, default=32)
    p.add_argument("--kv-len", type=int, default=4099)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--world", type=int, default=2)
    args = p.parse_args()
    results = mp.Manager().dict()
    mp.spawn(worker, args=(args, free_port(), results), nprocs=args.world, join=True)
    ok = len(results) == args.world
    for rank in range(args.world):
        if rank not in results:
            print(f"rank {rank}: no result")
            continue
        e_s, e_t, n = results[rank]
        print(f"rank {rank}: {n} keys; merged vs one-process spattn {e_s:.2e}, vs torch float64 {e_t:.2e} (of max |out|)")
        ok = ok and e_s <= 1e-5 and e_t <= 1e-5
    print("split-KV over", args.world, "processes:", "agrees" if ok else "DISAGREES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
