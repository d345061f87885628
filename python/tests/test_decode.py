"""examples/diffusion_decode.py on tiny random-weight models of tiny-mdlm's architecture: the decode
through spattn's dense attention equals PyTorch's byte for byte; a sparse SparseD session (adaptive
budget) decodes >= 99% of the bytes the same, freely and step by step beside the dense decode; the
cached session decodes every position.

The sparse check uses a random model whose key projection equals its query projection (tied_qk):
each token then attends mostly near itself, structure a block pattern can hold. With independent
random projections attention is diffuse and the decode chaotic (flat byte probabilities: any dropped
mass flips bytes, and every later step follows), which no lossy pattern survives."""
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


GEN, BLOCK, STEPS = 192, 64, 4


def backend(model, name, prompt, **kw):
    a = Args()
    for k, v in kw.items():
        setattr(a, k, v)
    return dd.Backend(name, model, len(prompt) + GEN, (GEN // BLOCK) * STEPS, a)


def run(model, name, prompt, shadow=None, **kw):
    b = backend(model, name, prompt, **kw)
    out, _ = dd.decode(model, prompt, GEN, BLOCK, STEPS, b, progress=False, shadow=shadow)
    return out, b


def test_decode_dense_equals_torch_and_cached_decodes_everything():
    model = dd.Model.random(3)
    prompt = bytes(range(32, 32 + 95)) * 3  # 285 known bytes
    ref, _ = run(model, "torch", prompt)
    assert len(ref) == 192 and all(0 <= b < 256 for b in ref)
    dense, _ = run(model, "spattn-dense", prompt)
    assert dense == ref
    cached, c = run(model, "spattn-cached", prompt, policy="dense")
    assert len(cached) == GEN and all(0 <= x < 256 for x in cached)
    assert all(len(s.cached_rows) == BLOCK for s in c.sessions)


def test_decode_sparse_session_agrees_with_dense():
    model = dd.Model.random(3, tied_qk=True)
    prompt = bytes(range(32, 32 + 95)) * 3
    ref, _ = run(model, "spattn-dense", prompt)
    free, b = run(model, "spattn-session", prompt, mass_tau=0.95)
    assert sum(x == y for x, y in zip(free, ref)) / GEN >= 0.99
    assert sum(sum(d) / len(d) for d in b.densities) / len(b.densities) < 0.6  # it skipped key blocks
    shadow = backend(model, "spattn-session", prompt, mass_tau=0.95)
    again, _ = run(model, "spattn-dense", prompt, shadow=shadow)
    assert again == ref and shadow.compared > GEN  # every step's masked positions, compared
    assert shadow.agree / shadow.compared >= 0.99, (shadow.agree, shadow.compared)
