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
    assert spattn.isa() in {"scalar", "avx2", "avx512", "avx512_bf16", "neon"}


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


def test_replaces_torch_sdpa_in_a_small_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    heads, n, d = 4, 256, 32
    x = torch.randn(1, n, heads * d)
    proj = torch.nn.Linear(heads * d, 3 * heads * d)
    qt, kt, vt = proj(x).detach().view(1, n, 3, heads, d).permute(2, 0, 3, 1, 4)[:, 0]  # [heads][n][d] each
    want = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
    got = spattn.dense_attention(qt.contiguous().numpy(), kt.contiguous().numpy(), vt.contiguous().numpy(),
                                 causal=True)
    assert np.abs(got - want.numpy()).max() < 1e-4 * np.abs(want.numpy()).max() + 1e-6
