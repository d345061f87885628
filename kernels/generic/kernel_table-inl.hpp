// make_kernel_table: this ISA's function pointers, one per kernel family.
// Included last, inside the per-ISA namespace, after every family.

inline KernelTable make_kernel_table(Isa isa) {
  KernelTable t{isa,          Ops::W,          &qk_scores,       &online_softmax_update,
                &pv_accumulate, &exp_inplace, &pack_key_blocks, &attend_query_block};
  t.tiles_fp32 = Tiles::dense;
  t.fp32_step_keys = Tiles::step_keys;
  return t;
}
