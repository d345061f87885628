"""The Python module against a float64 NumPy reference, and its argument errors."""
import threading

import numpy as np
import pytest

import spattn


def reference(q, k, v, causal=False, q_offset=None, mask=None, block=64):
    """softmax(q k^T / sqrt(d)) v in float64, GQA by head groups."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    heads, n_q, d = q.shape
    kv_heads, n_k, _ = k.shape
    group = heads // kv_heads
    pos0 = n_k - n_q if q_offset is None else q_offset
    out = np.zeros_like(q)
    for h in range(heads):
        logits = q[h] @ k[h // group].T / np.sqrt(d)
        allowed = np.ones((n_q, n_k), dtype=bool)
        if causal:
            allowed &= np.arange(n_k)[None, :] <= (pos0 + np.arange(n_q))[:, None]
        if mask is not None:
            allowed &= np.repeat(np.repeat(mask[h].astype(bool), block, 0), block, 1)[:n_q, :n_k]
        logits = np.where(allowed, logits, -np.inf)
        mx = logits.max(axis=1, keepdims=True)
        mx[~np.isfinite(mx)] = 0
        p = np.exp(logits - mx)
        s = p.sum(axis=1, keepdims=True)
        out[h] = np.divide(p @ v[h // group], s, out=np.zeros((n_q, d)), where=s > 0)
    return out


def rel_err(out, ref):
    return np.abs(out - ref).max() / np.abs(ref).max()


def qkv(heads=4, kv_heads=2, n_q=77, n_k=131, d=64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((heads, n_q, d), dtype=np.float32),
            rng.standard_normal((kv_heads, n_k, d), dtype=np.float32),
            rng.standard_normal((kv_heads, n_k, d), dtype=np.float32))


def test_version_and_isa():
    assert spattn.__version__.count(".") == 2
    assert spattn.isa() in {"scalar", "avx2", "avx512", "avx512_bf16", "amx", "neon", "neon_bf16"}


@pytest.mark.parametrize("causal", [False, True])
def test_dense_matches_reference(causal):
    q, k, v = qkv()
    out = spattn.dense_attention(q, k, v, causal=causal)
    assert out.shape == q.shape and out.dtype == np.float32
    assert rel_err(out, reference(q, k, v, causal=causal)) < 2e-5


def test_causal_chunk_with_offset():
    q, k, v = qkv(n_q=40, n_k=150)
    out = spattn.dense_attention(q, k, v, causal=True, q_offset=37)
    assert rel_err(out, reference(q, k, v, causal=True, q_offset=37)) < 2e-5


def test_strided_views_are_read_in_place():
    # tokens-major [tokens][heads][d] transposed to [heads][tokens][d]: no copy needed.
    q, k, v = qkv(heads=2, kv_heads=2, n_q=50, n_k=50, d=32)
    qt, kt, vt = (np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2) for x in (q, k, v))
    assert not qt.flags.c_contiguous
    assert np.array_equal(spattn.dense_attention(qt, kt, vt), spattn.dense_attention(q, k, v))


def test_float16_and_bf16_inputs():
    q, k, v = qkv(d=32)
    ref = reference(q, k, v)
    out16 = spattn.dense_attention(q.astype(np.float16), k.astype(np.float16), v.astype(np.float16))
    assert rel_err(out16, ref) < 1e-2  # the inputs' own fp16 rounding
    qb, kb, vb = (spattn.to_bf16_bits(x) for x in (q, k, v))
    assert qb.dtype == np.uint16
    rounded = [spattn.from_bf16_bits(x) for x in (qb, kb, vb)]
    out = spattn.dense_attention(qb, kb, vb)
    # Against the rounded inputs: within the bf16 rounding of P (2^-8 max|v|).
    bound = 2e-5 * np.abs(ref).max() + 2.0 ** -8 * np.abs(rounded[2]).max()
    assert np.abs(out - reference(*rounded)).max() <= bound
    out_b = spattn.dense_attention(qb, kb, vb, out_dtype="bf16")
    assert out_b.dtype == np.uint16
    assert np.abs(spattn.from_bf16_bits(out_b) - out).max() <= 2.0 ** -8 * np.abs(out).max()


def test_block_sparse_from_a_numpy_mask():
    q, k, v = qkv(n_q=100, n_k=100, d=32)
    rng = np.random.default_rng(3)
    mask = rng.random((4, 4, 4)) < 0.5
    mask[:, :, 0] = True
    out = spattn.block_sparse_attention(q, k, v, mask, block_size=32)
    assert rel_err(out, reference(q, k, v, mask=mask, block=32)) < 2e-5


def test_unisparse_causal_mask_runs_and_stays_causal():
    q, k, v = qkv(heads=2, kv_heads=2, n_q=1000, n_k=1000, d=64)
    mask = spattn.unisparse_select(q, k, causal=True, tau=0.9)
    assert mask.shape == (2, 16, 16) and mask.dtype == np.uint8
    assert not np.triu(mask, 1).any()  # nothing after the diagonal block
    out = spattn.block_sparse_attention(q, k, v, mask, causal=True)
    assert rel_err(out, reference(q, k, v, causal=True, mask=mask)) < 2e-5


def test_window_sink_mask():
    m = spattn.window_sink_mask(1, 1000, 1000, block_size=64, sink_tokens=64, window_tokens=256, causal=True)
    assert list(np.flatnonzero(m[0, 10])) == [0, 6, 7, 8, 9, 10]


def test_errors_name_the_argument():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="q_offset"):
        spattn.dense_attention(q, k, v, causal=False, q_offset=3)
    with pytest.raises(ValueError, match="kv_heads"):
        spattn.dense_attention(q, k[:1].repeat(3, 0), v[:1].repeat(3, 0))
    with pytest.raises(TypeError, match="float64"):
        spattn.dense_attention(q.astype(np.float64), k, v)
    with pytest.raises(ValueError, match="3-d"):
        spattn.dense_attention(q[0], k, v)
    with pytest.raises(ValueError, match="mask"):
        spattn.block_sparse_attention(q, k, v, np.ones((4, 2, 2)))
    with pytest.raises(ValueError, match="causal"):  # a causal mask listing a future block
        spattn.block_sparse_attention(q, k, v, np.ones((4, 2, 3)), causal=True, q_offset=0)


def test_session_records_then_reuses_the_pattern():
    q, k, v = qkv(heads=2, kv_heads=2, n_q=512, n_k=512, d=64, seed=5)
    k = q.copy()  # each query's own key dominates its row: the recorded pattern holds the mass
    s = spattn.Session(2, 2, 512, 64, policy="sparsed", total_steps=4, warmup_fraction=0.25, topk_ratio=0.5)
    assert s.warmup_steps == 1 and s.config["policy"] == "sparsed"
    paths = []
    for i in range(4):
        out, report = s.step(q, k, v)
        paths.append(report["path"])
        if i == 0:  # the dense step is dense attention
            assert rel_err(out, reference(q, k, v)) < 2e-5
    assert paths == ["dense+record", "sparse(cached)", "sparse(cached)", "sparse(cached)"]
    assert 0.45 < report["density"] <= 0.55 and out.shape == q.shape
    ref = reference(q, k, v)
    cos = (out * ref).sum(-1) / np.linalg.norm(out, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert cos.mean() > 0.99
    with pytest.raises(ValueError, match="total_steps"):
        s.step(q, k, v)  # past the last step


def test_session_arguments_are_checked():
    with pytest.raises(ValueError, match="policy"):
        spattn.Session(2, 2, 512, 64, policy="magic")
    with pytest.raises(ValueError):
        spattn.Session(2, 2, 512, 64, profile="/nonexistent/profile.yaml")


def test_kernels_release_the_gil():
    # Two Python threads in kernels at once finish with correct results.
    q, k, v = qkv(heads=2, kv_heads=2, n_q=512, n_k=512, d=64)
    results = [None, None]

    def work(i):
        results[i] = spattn.dense_attention(q, k, v, threads=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results[0], results[1])


class DLPackOnly:
    """Hands an array over only through the DLPack protocol (as a torch or JAX tensor would)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_dlpack_inputs_are_read_in_place():
    q, k, v = qkv()
    want = spattn.dense_attention(q, k, v, causal=True)
    got = spattn.dense_attention(DLPackOnly(q), DLPackOnly(k), DLPackOnly(v), causal=True)
    assert np.array_equal(got, want)
    half = [x.astype(np.float16) for x in (q, k, v)]
    assert np.array_equal(spattn.dense_attention(*map(DLPackOnly, half)), spattn.dense_attention(*half))
    # A strided (transposed) view through DLPack.
    qt = np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert np.array_equal(spattn.dense_attention(DLPackOnly(qt), k, v, causal=True), want)
    with pytest.raises(TypeError, match="float64"):
        spattn.dense_attention(DLPackOnly(q.astype(np.float64)), k, v)
    with pytest.raises(TypeError, match="__dlpack__"):
        spattn.dense_attention(q.tolist(), k, v)


def test_tune_writes_a_profile_the_session_reads(tmp_path):
    fractions = []
    profile = tmp_path / "tuned.yaml"
    r = spattn.tune(seq_len=512, heads=4, head_dim=32, steps=8, block_sizes=[32], threads=[1], reps=1,
                    budget_s=30, out=str(profile), progress=lambda f, eta, phase: fractions.append(f))
    assert r["met"] and r["profile"] == str(profile) and profile.exists()
    e = r["entry"]
    assert e["block_size"] == 32 and e["mean_cosine"] >= 0.99 and e["min_cosine"] >= 0.98
    assert e["dense_ms"] > 0 and e["sparse_ms"] > 0 and 0 < e["mean_density"] <= 1
    assert fractions and all(0 <= f <= 1 for f in fractions)
    found = spattn.profile_lookup(str(profile), heads=4, seq_len=512, head_dim=32, steps=8)
    assert found["fits"] and found["entry"]["topk_ratio"] == e["topk_ratio"]
    far = spattn.profile_lookup(str(profile), heads=4, seq_len=65536, head_dim=32)
    assert not far["fits"] and "seq_len" in far["why"]
    assert spattn.profile_lookup(str(profile), heads=4, seq_len=512, head_dim=64)["entry"] is None
    s = spattn.Session(4, 4, 512, 32, profile=str(profile), total_steps=8)
    assert s.config["block_size"] == 32 and s.config["topk_ratio"] == pytest.approx(e["topk_ratio"])
    with pytest.raises(ValueError, match="dtype"):
        spattn.tune(seq_len=512, heads=4, head_dim=32, steps=8, dtype="fp64")


def torch_attention(torch, q, k, v, causal):
    """PyTorch's own attention: SDPA where this torch has it (2.0+), else its math."""
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if sdpa is not None:
        return sdpa(q, k, v, is_causal=causal)
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        n = q.shape[-2]
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def test_replaces_the_attention_of_a_small_torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    heads, n, d = 4, 256, 32

    class Block(torch.nn.Module):
        """One pre-norm transformer block whose attention is a swappable function."""

        def __init__(self, attend):
            super().__init__()
            self.norm = torch.nn.LayerNorm(heads * d)
            self.qkv = torch.nn.Linear(heads * d, 3 * heads * d)
            self.proj = torch.nn.Linear(heads * d, heads * d)
            self.attend = attend

        def forward(self, x):  # x [n, heads * d]
            q, k, v = self.qkv(self.norm(x)).view(n, 3, heads, d).permute(1, 2, 0, 3)  # each [heads][n][d]
            return x + self.proj(self.attend(q, k, v).transpose(0, 1).reshape(n, heads * d))

    def spattn_attention(q, k, v):  # torch tensors in (DLPack), a torch tensor out
        out, report = session.step(q.contiguous(), k.contiguous(), v.contiguous())
        reports.append(report)
        return torch.from_numpy(out)

    x = torch.randn(n, heads * d)
    with torch.no_grad():
        model = Block(lambda q, k, v: torch_attention(torch, q, k, v, causal=False))
        want = model(x)
        # The same weights with spattn's session as the attention (2 dense steps, then sparse).
        session, reports = spattn.Session(heads, heads, n, d, policy="sparsed", total_steps=4,
                                          warmup_fraction=0.5, block_size=32, topk_ratio=0.75), []
        model.attend = spattn_attention
        got = [model(x) for _ in range(4)]
    assert [r["path"] for r in reports][:2] == ["dense", "dense+record"]
    assert np.abs(got[0].numpy() - want.numpy()).max() < 1e-4 * np.abs(want.numpy()).max()
    for g in got[2:]:  # sparse steps: close, not exact
        cos = torch.nn.functional.cosine_similarity(g, want, dim=-1)
        assert cos.min() > 0.99
    # Causal, and bf16 tensors handed over through DLPack.
    qt, kt, vt = torch.randn(3, heads, n, d).unbind(0)
    ref = torch_attention(torch, qt, kt, vt, causal=True).numpy()
    assert np.abs(spattn.dense_attention(qt, kt, vt, causal=True) - ref).max() < 1e-4 * np.abs(ref).max()
    got16 = spattn.dense_attention(qt.bfloat16(), kt.bfloat16(), vt.bfloat16(), causal=True)
    ref16 = torch_attention(torch, qt.bfloat16().float(), kt.bfloat16().float(), vt.bfloat16().float(),
                            causal=True).numpy()
    assert np.abs(got16 - ref16).max() <= 2.0 ** -8 * np.abs(vt).max().item() + 1e-5


def _qkv(heads, kv_heads, n, d, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((heads, n, d), dtype=np.float32),
            rng.standard_normal((kv_heads, n, d), dtype=np.float32),
            rng.standard_normal((kv_heads, n, d), dtype=np.float32))


@pytest.mark.parametrize("causal", [False, True])
def test_kv_cache_rows_and_blocks_match_dense_attention(causal):
    q, k, v = _qkv(4, 2, 777, 64, 3)
    cache = spattn.KVCache(2, 800, 64)
    cache.write(0, k[:, :300], v[:, :300])
    cache.write(300, k[:, 300:], v[:, 300:])
    assert cache.length == 777 and cache.capacity == 800 and cache.kv_heads == 2
    whole = spattn.dense_attention(q, k, v, causal=causal)
    rows = [0, 5, 64, 65, 400, 776]
    got = spattn.cached_attention(np.ascontiguousarray(q[:, rows]), cache, rows=rows, causal=causal)
    np.testing.assert_allclose(got, whole[:, rows], atol=2e-5 * np.abs(whole).max())
    block = spattn.cached_attention(np.ascontiguousarray(q[:, 320:352]), cache, first=320, q_offset=320 if causal else -1,
                                    causal=causal)
    np.testing.assert_allclose(block, whole[:, 320:352], atol=2e-5 * np.abs(whole).max())
    # A refreshed row changes only what it should: rewrite row 10 with new K/V.
    k2, v2 = k.copy(), v.copy()
    k2[:, 10] += 1.0
    v2[:, 10] -= 2.0
    cache.write_rows([10], np.ascontiguousarray(k2[:, 10:11]), np.ascontiguousarray(v2[:, 10:11]))
    again = spattn.cached_attention(np.ascontiguousarray(q[:, rows]), cache, rows=rows, causal=causal)
    np.testing.assert_allclose(again, spattn.dense_attention(q, k2, v2, causal=causal)[:, rows],
                               atol=2e-5 * np.abs(whole).max())


def test_kv_cache_sparse_uses_the_rows_of_the_whole_sequence_mask():
    q, k, v = _qkv(2, 2, 512, 64, 4)
    mask = (np.random.default_rng(0).random((2, 8, 8)) < 0.4).astype(np.uint8)
    for i in range(8):
        mask[:, i, i] = 1
    whole = spattn.block_sparse_attention(q, k, v, mask)
    cache = spattn.KVCache(2, 512, 64)
    cache.write(0, k, v)
    rows = [1, 100, 130, 511]
    got = spattn.cached_block_sparse_attention(np.ascontiguousarray(q[:, rows]), cache, mask, rows=rows)
    np.testing.assert_allclose(got, whole[:, rows], atol=2e-5 * np.abs(whole).max())


def test_merge_attention_states_and_its_errors():
    q, k, v = _qkv(2, 2, 300, 32, 5)
    a, la = spattn.dense_attention_with_lse(q, k[:, :100], v[:, :100])
    b, lb = spattn.dense_attention_with_lse(q, k[:, 100:], v[:, 100:])
    merged, lse = spattn.merge_attention_states([a, b], [la, lb])
    whole, lw = spattn.dense_attention_with_lse(q, k, v)
    np.testing.assert_allclose(merged, whole, atol=2e-5 * np.abs(whole).max())
    np.testing.assert_allclose(lse, lw, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 outputs but 1"):
        spattn.merge_attention_states([a, b], [la])
    with pytest.raises(ValueError, match="write.*first.*gap"):
        spattn.KVCache(2, 10, 32).write(3, k[:, :2], v[:, :2])


def test_split_kv_over_two_processes_example():
    torch = pytest.importorskip("torch")
    import torch.distributed
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this PyTorch has no gloo backend")
    import os
    import subprocess
    import sys
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "split_kv_distributed.py")
    r = subprocess.run([sys.executable, example, "--kv-len", "2051", "--q-len", "17"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "agrees" in r.stdout and "rank 1:" in r.stdout
