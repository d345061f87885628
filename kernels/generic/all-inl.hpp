// Every generic kernel family, in dependency order. Included once per ISA
// translation unit, inside that ISA's namespace, after Ops and Tiles are set.
#include "kernels/generic/qk_scores-inl.hpp"
#include "kernels/generic/online_softmax-inl.hpp"
#include "kernels/generic/pv_accumulate-inl.hpp"
#include "kernels/generic/pack_key_blocks-inl.hpp"
#include "kernels/generic/attend_query_block-inl.hpp"
#include "kernels/generic/kernel_table-inl.hpp"
