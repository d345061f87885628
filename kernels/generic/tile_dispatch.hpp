#pragma once
// Maps a run-time tile shape (rows <= MR, vectors <= NV) onto the compile-time
// micro-kernel instance of that exact shape, so edge tiles stay register-blocked.
namespace spattn::detail {

template <int MR, int NV, class F>
inline void with_tile(int mr, int nv, F&& f) {
  if constexpr (MR > 1) {
    if (mr < MR) return with_tile<MR - 1, NV>(mr, nv, f);
  }
  if constexpr (NV > 1) {
    if (nv < NV) return with_tile<MR, NV - 1>(mr, nv, f);
  }
  f.template operator()<MR, NV>();
}

// Walks a rows x vecs grid (vecs in SIMD vectors) in MR x NV tiles, edge
// tiles included, calling f.template operator()<mr, nv>(r0, v0) on the exact
// instance of each tile's shape. Every micro-kernel driver is this loop.
template <int MR, int NV, class F>
inline void for_each_tile(int rows, int vecs, F&& f) {
  for (int r0 = 0; r0 < rows; r0 += MR) {
    const int mr = rows - r0 < MR ? rows - r0 : MR;
    for (int v0 = 0; v0 < vecs; v0 += NV) {
      const int nv = vecs - v0 < NV ? vecs - v0 : NV;
      with_tile<MR, NV>(mr, nv, [&]<int R, int C>() { f.template operator()<R, C>(r0, v0); });
    }
  }
}

}  // namespace spattn::detail
