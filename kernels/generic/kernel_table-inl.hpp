// make_kernel_table: this ISA's function pointers, one per kernel family.
// Included last, inside the per-ISA namespace, after every family.

inline KernelTable make_kernel_table(Isa isa) {
  return KernelTable{
      .isa = isa,
      .vector_floats = Ops::W,
      .qk_scores = &qk_scores,
      .online_softmax_update = &online_softmax_update,
      .pv_accumulate = &pv_accumulate,
      .exp_inplace = &exp_inplace,
      .pack_key_blocks = &pack_key_blocks,
      .attend_query_block = &attend_query_block,
      .tiles_fp32 = Tiles::dense,
      .fp32_step_keys = Tiles::step_keys,
  };
}
