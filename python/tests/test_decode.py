"""examples/diffusion_decode.py on a tiny random-weight model of tiny-mdlm's architecture: the decode
through spattn's dense attention equals PyTorch's byte for byte, a sparse session's agrees on >= 99% of
the bytes, and the cached session decodes every position."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
import diffusion_decode as dd  # noqa: E402


class Args:
    threads = 1
    profile = None
    policy = "sparsed"
    mass_tau = 0.0
    cache = "dual"


def run(model, name, prompt, **kw):
    a = Args()
    for k, v in kw.items():
        setattr(a, k, v)
    gen, block, steps = 192, 64, 4
    backend = dd.Backend(name, model, len(prompt) + gen, (gen // block) * steps, a)
    out, _ = dd.decode(model, prompt, gen, block, steps, backend, progress=False)
    return out, backend


def test_decode_dense_equals_torch_and_sparse_agrees():
    model = dd.Model.random(3)
    prompt = bytes(range(32, 32 + 95)) * 3  # 285 known bytes
    ref, _ = run(model, "torch", prompt)
    assert len(ref) == 192 and all(0 <= b < 256 for b in ref)
    dense, _ = run(model, "spattn-dense", prompt)
    assert dense == ref
    sparse, b = run(model, "spattn-session", prompt, mass_tau=0.995)
    agree = sum(x == y for x, y in zip(sparse, ref)) / len(ref)
    assert agree >= 0.99, agree
    assert min(min(d) for d in b.densities) < 1.0  # some step ran sparse
    cached, c = run(model, "spattn-cached", prompt, policy="dense")
    assert len(cached) == 192 and all(0 <= x < 256 for x in cached)
    assert sum(len(s.cached_rows) for s in c.sessions) > 0
