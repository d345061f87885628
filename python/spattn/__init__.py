"""spattn: hand-vectorized CPU sparse attention for diffusion and long-context LMs.

Arrays are [heads][tokens][head_dim] NumPy arrays (any head/token strides,
contiguous rows) of float32, float16, or uint16 holding bfloat16 bits (a
torch.bfloat16 tensor gives them through ``t.view(torch.uint16).numpy()``).
Inputs are read in place; the kernels run with the GIL released. Errors in
the arguments raise ValueError naming the argument.

    import numpy as np, spattn
    q = np.random.randn(8, 4096, 128).astype(np.float32)
    k, v = q.copy(), q.copy()
    out = spattn.dense_attention(q, k, v, causal=True)            # [8, 4096, 128]
    mask = spattn.unisparse_select(q, k, causal=True, tau=0.95)   # uint8 [8, 64, 64]
    sparse = spattn.block_sparse_attention(q, k, v, mask, causal=True)
"""
import numpy as _np

from ._spattn import (  # noqa: F401
    KVCache,
    Session,
    block_sparse_attention,
    cached_attention,
    cached_block_sparse_attention,
    dense_attention,
    dense_attention_with_lse,
    merge_attention_states,
    isa,
    unisparse_select,
    version,
    window_sink_mask,
)

try:  # builds without yaml-cpp have no profiles, hence no tuner
    from ._spattn import profile_lookup, tune  # noqa: F401
except ImportError:
    pass

__version__ = version()


def to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bits, rounded to nearest even (NaN stays NaN)."""
    x = _np.ascontiguousarray(x, dtype=_np.float32)
    u = x.view(_np.uint32).astype(_np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(_np.uint16)
    return _np.where(_np.isnan(x), _np.uint16(0x7FC0), rounded)


def from_bf16_bits(b):
    """uint16 bfloat16 bits -> float32 array (exact)."""
    b = _np.ascontiguousarray(b, dtype=_np.uint16)
    return (b.astype(_np.uint32) << 16).view(_np.float32)
