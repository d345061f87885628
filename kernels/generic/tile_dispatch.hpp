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

}  // namespace spattn::detail
