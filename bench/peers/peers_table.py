#!/usr/bin/env python3
"""One table from run_peers.sh's results: per dtype and N, spattn's dense flash
against PyTorch SDPA, and spattn's SparseD step against FlexAttention on the
same exported block mask. Reads OUT/<dtype>/torch.json (torch_peers.py's
records, which carry spattn's figures from the same export as spattn-*).

  peers_table.py OUT [--markdown]

Ratios are PyTorch time / spattn time (> 1: spattn faster); each pair of
figures comes from one run_peers.sh command on one machine. With rounds
(OUT/<dtype>/round-<i>/torch.json, run_peers.sh --rounds K) each ratio is the
median of the rounds' own ratios (each round's spattn and PyTorch ran one
after the other), each time the median of the rounds' times, and the
per-round ratios are listed below the table.
"""
import argparse
import json
import os
import sys


def load(out):
    """Records of every round: [(round, record)], round 0 without rounds."""
    recs = []
    for dtype in sorted(os.listdir(out)):
        folder = os.path.join(out, dtype)
        if not os.path.isdir(folder):
            continue
        paths = [(0, os.path.join(folder, "torch.json"))]
        for sub in sorted(os.listdir(folder)):
            if sub.startswith("round-") and sub[6:].isdigit():
                paths.append((int(sub[6:]), os.path.join(folder, sub, "torch.json")))
        for rnd, path in paths:
            if os.path.isfile(path):
                with open(path) as f:
                    recs += [(rnd, r) for r in json.load(f)]
    return recs


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return None if n == 0 else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)


def summarize(recs):
    """Per (dtype, heads, N): median times, median per-round ratios, and the
    per-round ratios (flash vs SDPA, SparseD vs Flex)."""
    by = {}
    for rnd, r in recs:
        key = (r["dtype"], r["heads"], r["seq_len"])
        by.setdefault(key, {}).setdefault(rnd, {})[r["method"].replace("-eager", "")] = r
    out = {}
    for key, rounds in by.items():
        def times(m):
            return [v[m]["ms_per_step"] for v in rounds.values() if m in v and v[m].get("ms_per_step")]

        def ratios(theirs, ours):
            res = []
            for rnd in sorted(rounds):
                v = rounds[rnd]
                t = (v.get(theirs) or {}).get("ms_per_step")
                o = (v.get(ours) or {}).get("ms_per_step")
                if t and o:
                    res.append(t / o)
            return res

        sdpa = "torch-sdpa" if times("torch-sdpa") else "torch-math"  # torch-math: PyTorch < 2.0
        dens = [v["spattn-sparsed"].get("density") for v in rounds.values() if "spattn-sparsed" in v]
        r_flash, r_sparse = ratios(sdpa, "spattn-flash"), ratios("torch-flex", "spattn-sparsed")
        out[key] = {
            "flash": median(times("spattn-flash")), "sdpa": median(times(sdpa)),
            "sparsed": median(times("spattn-sparsed")), "flex": median(times("torch-flex")),
            "density": dens[0] if dens else None,
            "flash_ratio": median(r_flash), "sparse_ratio": median(r_sparse),
            "flash_ratios": r_flash, "sparse_ratios": r_sparse, "rounds": len(rounds),
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="run_peers.sh's --out folder")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table instead of aligned text")
    args = ap.parse_args()
    recs = load(args.out)
    if not recs:
        print(f"peers_table: no <dtype>/torch.json under {args.out}", file=sys.stderr)
        return 2
    table = summarize(recs)
    cols = ["dtype", "heads", "N", "spattn flash", "torch SDPA", "SDPA/flash", "density",
            "spattn SparseD", "torch Flex", "Flex/SparseD"]
    rows, per_round = [], []
    for dtype, heads, n in sorted(table, key=lambda x: (x[0] != "fp32", x[0], x[1], x[2])):
        t = table[(dtype, heads, n)]
        ms = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        ratio = lambda x: "-" if x is None else f"{x:.2f}x"  # noqa: E731
        nn = f"{n // 1024}K" if n % 1024 == 0 else str(n)
        rows.append([dtype, str(heads), nn, ms(t["flash"]), ms(t["sdpa"]), ratio(t["flash_ratio"]),
                     "-" if t["density"] is None else f"{t['density']:.3f}", ms(t["sparsed"]), ms(t["flex"]),
                     ratio(t["sparse_ratio"])])
        if t["rounds"] > 1:
            fmt = lambda xs: " / ".join(f"{x:.2f}" for x in xs) or "-"  # noqa: E731
            per_round.append(f"{dtype} {nn}: SDPA/flash {fmt(t['flash_ratios'])}; "
                             f"Flex/SparseD {fmt(t['sparse_ratios'])}")
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
    if per_round:
        print("Ratios per round (the table gives their medians):")
        for line in per_round:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
