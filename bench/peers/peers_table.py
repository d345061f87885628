#!/usr/bin/env python3
"""One table from run_peers.sh's results: per dtype and N, spattn's dense flash
against PyTorch SDPA, and spattn's SparseD step against FlexAttention on the
same exported block mask. Reads OUT/<dtype>/torch.json (torch_peers.py's
records, which carry spattn's figures from the same export as spattn-*).

  peers_table.py OUT [--markdown]

Ratios are PyTorch time / spattn time (> 1: spattn faster); each pair of
figures comes from one run_peers.sh command on one machine.
"""
import argparse
import json
import os
import sys


def load(out):
    recs = []
    for dtype in sorted(os.listdir(out)):
        path = os.path.join(out, dtype, "torch.json")
        if os.path.isfile(path):
            with open(path) as f:
                recs += json.load(f)
    return recs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="run_peers.sh's --out folder")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table instead of aligned text")
    args = ap.parse_args()
    recs = load(args.out)
    if not recs:
        print(f"peers_table: no <dtype>/torch.json under {args.out}", file=sys.stderr)
        return 2
    by = {}
    for r in recs:
        by[(r["dtype"], r["heads"], r["seq_len"], r["method"].replace("-eager", ""))] = r
    cols = ["dtype", "heads", "N", "spattn flash", "torch SDPA", "SDPA/flash", "density",
            "spattn SparseD", "torch Flex", "Flex/SparseD"]
    rows = []
    for dtype, heads, n in sorted({(k[0], k[1], k[2]) for k in by}, key=lambda x: (x[0] != "fp32", x[0], x[1], x[2])):
        get = lambda m: (by.get((dtype, heads, n, m)) or {}).get("ms_per_step")  # noqa: E731
        flash, sp, flex = get("spattn-flash"), get("spattn-sparsed"), get("torch-flex")
        sdpa = get("torch-sdpa") or get("torch-math")  # torch-math: PyTorch < 2.0
        dens = (by.get((dtype, heads, n, "spattn-sparsed")) or {}).get("density")
        ms = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        ratio = lambda a, b: "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"  # noqa: E731
        nn = f"{n // 1024}K" if n % 1024 == 0 else str(n)
        rows.append([dtype, str(heads), nn, ms(flash), ms(sdpa), ratio(sdpa, flash),
                     "-" if dens is None else f"{dens:.3f}", ms(sp), ms(flex), ratio(flex, sp)])
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w[i]) for i, c in enumerate(cols)))
        for r in rows:
            print("  ".join(x.rjust(w[i]) for i, x in enumerate(r)))
    print("ms per call (medians); ratios > 1: spattn faster. Flex is compiled FlexAttention on spattn's exported "
          "SparseD mask; '-': not run (see torch.txt).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
