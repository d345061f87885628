#!/usr/bin/env python3
"""PyTorch CPU attention on the shapes spattn-compare exported.

Reads the directory written by `spattn-compare --export-mask DIR` (one
subfolder per shape: q/k/v.npy float32 [heads][N][d], mask.npy uint8
[heads][q_blocks][k_blocks] = the SparseD pattern, out_flash.npy /
out_sparsed.npy = spattn's outputs, meta.json), runs

  - sdpa: torch.nn.functional.scaled_dot_product_attention (dense),
  - flex: torch.nn.attention.flex_attention with a BlockMask built from the
    exported block mask (compiled with torch.compile; eager flex materializes
    the N x N scores, so it is tried only for small shapes),

with torch.set_num_threads(T), in the dtype the export was made in (meta.json
"dtype": fp32, or bf16 / fp16 when spattn-compare ran with --dtype; the
exported float32 values are then exactly representable in that dtype, so
both libraries read the same numbers), and prints the columns spattn-compare prints
(method, heads, N, density, ms/step, GFLOP/s, cosine vs SDPA) next to
spattn's own figures from meta.json. Medians over --reps timed calls.

The .npy reader is plain Python (no NumPy needed): the files are spattn's own,
version 1.0/2.0, C order, '<f4' or '|u1'.
"""
import argparse
import ast
import json
import math
import os
import statistics
import struct
import sys
import time


def read_npy(path):
    """Returns (shape, descr, payload bytes) of a C-order .npy file."""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic != b"\x93NUMPY":
            raise ValueError(f"{path}: not a .npy file")
        major, _minor = f.read(2)
        if major == 1:
            (hlen,) = struct.unpack("<H", f.read(2))
        elif major in (2, 3):
            (hlen,) = struct.unpack("<I", f.read(4))
        else:
            raise ValueError(f"{path}: unsupported .npy version {major}")
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header.get("fortran_order"):
            raise ValueError(f"{path}: fortran_order arrays are not supported")
        shape = tuple(int(x) for x in header["shape"])
        descr = header["descr"]
        itemsize = {"<f4": 4, "|u1": 1, "<u1": 1, "|b1": 1}.get(descr)
        if itemsize is None:
            raise ValueError(f"{path}: unsupported dtype {descr!r}")
        count = math.prod(shape)
        data = f.read(count * itemsize)
        if len(data) != count * itemsize:
            raise ValueError(f"{path}: truncated: {len(data)} of {count * itemsize} bytes")
    return shape, descr, data


def load_tensor(torch, path):
    shape, descr, data = read_npy(path)
    dtype = torch.float32 if descr == "<f4" else torch.uint8
    # bytearray: torch.frombuffer wants a writable buffer.
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def list_shapes(root):
    dirs = []
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if os.path.isfile(os.path.join(d, "meta.json")):
            with open(os.path.join(d, "meta.json")) as f:
                meta = json.load(f)
            dirs.append((meta["heads"], meta["seq_len"], d, meta))
    dirs.sort(key=lambda x: (x[0], x[1]))
    return dirs


def fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def finite_or_none(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def row_cosine(torch, a, b):
    """Mean over (head, row) of the cosine between rows, as spattn's metric."""
    a = a.reshape(-1, a.shape[-1]).double()
    b = b.reshape(-1, b.shape[-1]).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()


def build_block_mask(torch, mask, n, block):
    """A flex_attention BlockMask listing, per (head, query block), the key
    blocks the exported SparseD mask keeps."""
    from torch.nn.attention.flex_attention import BlockMask

    keep = mask.bool()
    h, qb, kb = keep.shape
    num = keep.sum(-1).to(torch.int32).reshape(1, h, qb)
    # Kept blocks first (stable sort keeps them ascending); the rest is padding.
    order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    idx = order.reshape(1, h, qb, kb).contiguous()
    try:
        return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block, seq_lengths=(n, n))
    except TypeError:  # older PyTorch without seq_lengths
        return BlockMask.from_kv_blocks(num, idx, BLOCK_SIZE=block)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir", help="directory written by spattn-compare --export-mask")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: PyTorch's)")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per method (median)")
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention")
    ap.add_argument("--eager-flex-max-bytes", type=float, default=2 ** 31,
                    help="try eager flex only when heads*N*N*4 stays below this (default 2 GiB)")
    ap.add_argument("--json", help="write one record per method and shape")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    if args.threads < 0:
        ap.error("--threads must be >= 0")

    if not os.path.isdir(args.export_dir):
        print(f"torch_peers: {args.export_dir} is not a directory", file=sys.stderr)
        return 2
    shapes = list_shapes(args.export_dir)
    if not shapes:
        print(f"torch_peers: no shape folders with meta.json under {args.export_dir}", file=sys.stderr)
        return 2

    try:
        import torch  # only here, so --help and the reader work without PyTorch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_peers: PyTorch is not importable here ({e}); the export in {args.export_dir} is intact",
              file=sys.stderr)
        return 3

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"torch_peers: PyTorch {torch.__version__}, {threads} threads, median of {args.reps} reps, "
          f"{torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, 'cpu') else '?'}")

    # PyTorch < 2.0 has no SDPA: its softmax math stands in, under its own name.
    sdpa, sdpa_name = getattr(F, "scaled_dot_product_attention", None), "torch-sdpa"
    if sdpa is None:
        def sdpa(q, k, v):
            s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v
        sdpa_name = "torch-math"

    flex_fn = None
    flex_why = ""
    if not args.no_flex:
        try:
            from torch.nn.attention.flex_attention import flex_attention
            flex_fn = flex_attention
        except Exception as e:  # noqa: BLE001 - report whatever stops it
            flex_why = f"import failed: {type(e).__name__}: {e}"
    compiled_flex = None
    if flex_fn is not None:
        try:
            compiled_flex = torch.compile(flex_fn, dynamic=False)
        except Exception as e:  # noqa: BLE001
            flex_why = f"torch.compile failed: {type(e).__name__}: {e}"

    records = []
    print(f"{'method':<16} {'dtype':>5} {'heads':>5} {'N':>6} {'density':>8} {'ms/step':>10} {'GFLOP/s':>8} "
          f"{'vs sdpa':>8} {'cosine':>9}  note", flush=True)
    for heads, n, d_path, meta in shapes:
        d = meta["head_dim"]
        block = meta["block_size"]
        q = load_tensor(torch, os.path.join(d_path, "q.npy")).unsqueeze(0)  # [1, H, N, d]
        k = load_tensor(torch, os.path.join(d_path, "k.npy")).unsqueeze(0)
        v = load_tensor(torch, os.path.join(d_path, "v.npy")).unsqueeze(0)
        mask = load_tensor(torch, os.path.join(d_path, "mask.npy"))
        dtype = meta.get("dtype", "fp32")
        tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        q, k, v = q.to(tdtype), k.to(tdtype), v.to(tdtype)
        density = mask.float().mean().item()
        dense_flop = 4.0 * heads * n * n * d
        label = f"h{heads} N{n}"

        def add(method, ms, dens, cos, sdpa_ms, note=""):
            gflops = dense_flop * dens / (ms * 1e6) if ms else float("nan")
            rec = {"method": method, "seq_len": n, "heads": heads, "head_dim": d, "density": dens,
                   "ms_per_step": ms, "gflops": gflops, "speedup_vs_sdpa": (sdpa_ms / ms) if ms else None,
                   "cosine": cos, "threads": threads, "dtype": dtype, "note": note}
            records.append(rec)
            nn = f"{n // 1024}K" if n % 1024 == 0 else str(n)
            spd = rec["speedup_vs_sdpa"]
            # Printed as measured, so a run cut short keeps what it had.
            print(f"{method:<16} {dtype:>5} {heads:>5} {nn:>6} {fmt(dens, '.4f'):>8} {fmt(ms, '.2f'):>10} "
                  f"{fmt(gflops, '.1f'):>8} {fmt(spd, '.2f') + ('x' if spd else ''):>8} {fmt(cos, '.6f'):>9}  {note}",
                  flush=True)

        print(f"[{label}] {sdpa_name}", file=sys.stderr, flush=True)
        with torch.no_grad():
            ref = sdpa(q, k, v)  # scale 1/sqrt(d), as spattn
            sdpa_ms = median_ms(lambda: sdpa(q, k, v), args.reps)
        # Same inputs, same attention? spattn's flash output against SDPA's.
        check = ""
        flash_path = os.path.join(d_path, "out_flash.npy")
        if os.path.exists(flash_path):
            ours = load_tensor(torch, flash_path).unsqueeze(0)
            check = f"cosine vs spattn flash {row_cosine(torch, ref, ours):.6f}"
        add(sdpa_name, sdpa_ms, 1.0, 1.0, sdpa_ms, check)

        if flex_fn is not None:
            out = None
            note = ""
            try:
                bm = build_block_mask(torch, mask, n, block)
            except Exception as e:  # noqa: BLE001
                bm = None
                note = f"BlockMask failed: {type(e).__name__}: {e}"
            fn = compiled_flex
            if bm is not None and fn is not None:
                print(f"[{label}] flex (compiling)", file=sys.stderr, flush=True)
                try:
                    with torch.no_grad():
                        out = fn(q, k, v, block_mask=bm)  # first call compiles: not timed
                        ms = median_ms(lambda: fn(q, k, v, block_mask=bm), args.reps)
                    method = "torch-flex"
                except Exception as e:  # noqa: BLE001
                    note = f"compiled flex failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
                    out = None
            elif fn is None and not note:
                note = flex_why
            if out is None and bm is not None and heads * n * n * 4 <= args.eager_flex_max_bytes:
                print(f"[{label}] flex (eager)", file=sys.stderr, flush=True)
                try:
                    with torch.no_grad():
                        out = flex_fn(q, k, v, block_mask=bm)
                        ms = median_ms(lambda: flex_fn(q, k, v, block_mask=bm), args.reps)
                    method = "torch-flex-eager"
                    note = (note + "; " if note else "") + "eager (materializes scores)"
                except Exception as e:  # noqa: BLE001
                    note = (note + "; " if note else "") + f"eager flex failed: {type(e).__name__}: {e}"
                    out = None
            if out is not None:
                extra = ""
                sp_path = os.path.join(d_path, "out_sparsed.npy")
                if os.path.exists(sp_path):
                    ours = load_tensor(torch, sp_path).unsqueeze(0)
                    extra = f"cosine vs spattn sparsed {row_cosine(torch, out, ours):.6f}"
                add(method, ms, density, row_cosine(torch, out, ref), sdpa_ms, "; ".join(x for x in (note, extra) if x))
            else:
                print(f"[{label}] flex: {note}", file=sys.stderr)
                add("torch-flex", None, density, None, sdpa_ms, note)

        # spattn's own figures from the same export run (its cosine is against spattn flash).
        for key, name, dens in (("spattn_flash_ms", "spattn-flash", 1.0), ("spattn_openblas_ms", "spattn-openblas", 1.0),
                                ("spattn_sparsed_ms", "spattn-sparsed", meta.get("density", density))):
            if meta.get(key) is not None:
                cos = 1.0 if name != "spattn-sparsed" else meta.get("spattn_sparsed_cosine")
                add(name, meta[key], dens, cos, sdpa_ms, f"from spattn-compare ({meta.get('threads')} threads)")
        del q, k, v, ref
        if args.json:  # after every shape, so a run cut short keeps what it had
            with open(args.json, "w") as f:
                json.dump([{k: finite_or_none(v) for k, v in r.items()} for r in records], f, indent=1)

    print("cosine: torch rows vs torch SDPA; spattn-sparsed vs spattn flash. "
          "density: share of (query block, key block) pairs kept.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
