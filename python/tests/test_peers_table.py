"""bench/peers/peers_table.py: one run, and rounds whose per-round ratios give
the medians (run_peers.sh --rounds)."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "bench", "peers", "peers_table.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import peers_table  # noqa: E402


def records(flash, sdpa, sparsed, flex, n=16384):
    common = {"dtype": "bf16", "heads": 8, "seq_len": n}
    return [dict(common, method="spattn-flash", ms_per_step=flash),
            dict(common, method="torch-sdpa", ms_per_step=sdpa),
            dict(common, method="spattn-sparsed", ms_per_step=sparsed, density=0.1),
            dict(common, method="torch-flex", ms_per_step=flex)]


def write(folder, recs):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "torch.json"), "w") as f:
        json.dump(recs, f)


def test_one_run_gives_its_ratios(tmp_path):
    write(tmp_path / "bf16", records(100.0, 150.0, 10.0, 25.0))
    t = peers_table.summarize(peers_table.load(str(tmp_path)))[("bf16", 8, 16384)]
    assert t["flash_ratio"] == 1.5 and t["sparse_ratio"] == 2.5 and t["rounds"] == 1


def test_rounds_give_the_median_of_per_round_ratios(tmp_path):
    # The machine slows down in round 2: both sides take twice as long, so that
    # round's ratios stay those of round 1; medians of times alone would pair
    # spattn's fast round with PyTorch's slow one.
    write(tmp_path / "bf16" / "round-1", records(100.0, 150.0, 10.0, 25.0))
    write(tmp_path / "bf16" / "round-2", records(200.0, 300.0, 20.0, 50.0))
    write(tmp_path / "bf16" / "round-3", records(100.0, 120.0, 10.0, 30.0))
    t = peers_table.summarize(peers_table.load(str(tmp_path)))[("bf16", 8, 16384)]
    assert t["rounds"] == 3
    assert t["flash_ratios"] == [1.5, 1.5, 1.2] and t["flash_ratio"] == 1.5
    assert t["sparse_ratios"] == [2.5, 2.5, 3.0] and t["sparse_ratio"] == 2.5
    assert t["flash"] == 100.0 and t["sdpa"] == 150.0
    out = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "1.50x" in out and "2.50x" in out
    assert "bf16 16K: SDPA/flash 1.50 / 1.50 / 1.20; Flex/SparseD 2.50 / 2.50 / 3.00" in out


def test_a_missing_peer_shows_a_dash(tmp_path):
    recs = [r for r in records(100.0, 150.0, 10.0, 25.0) if r["method"] != "torch-flex"]
    write(tmp_path / "bf16", recs)
    out = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True).stdout
    row = [line for line in out.splitlines() if line.strip().startswith("bf16")][0]
    assert row.split()[-1] == "-" and row.split()[-2] == "-"
