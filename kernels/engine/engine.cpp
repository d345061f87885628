// The engine's passes (see engine.hpp), all built on for_each_work_item.
#include "kernels/engine/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>

#include <cstring>

#include "kernels/kernel_table.hpp"
#include "kernels/convert.hpp"
#include "kernels/engine/phase_timer.hpp"

namespace spattn::detail {
namespace {

// One work item: rows [r0, r0 + rows) of head h, the tile-th tile of the
// head's rows, and (split-KV) the split-th piece of its key blocks.
struct WorkItem {
  int64_t head, tile, r0;
  int rows;
  int split = 0;
};

// The query tiles of a pass: tiles of tile_rows rows, or the explicit starts
// (tile t: rows [starts[t], starts[t + 1])).
struct Tiles {
  int64_t rows, tile_rows;
  std::span<const int64_t> starts;
  int64_t count() const {
    return starts.empty() ? (rows + tile_rows - 1) / tile_rows : static_cast<int64_t>(starts.size()) - 1;
  }
  int64_t first(int64_t t) const { return starts.empty() ? t * tile_rows : starts[static_cast<size_t>(t)]; }
  int size(int64_t t) const {
    return static_cast<int>(starts.empty() ? std::min(tile_rows, rows - t * tile_rows)
                                           : starts[static_cast<size_t>(t) + 1] - starts[static_cast<size_t>(t)]);
  }
};

// THE loop over (head, query tile[, key piece]) work items: heads x tiles x
// splits items over parallel_for (a tile's pieces next to each other, so
// they run at the same time); scratch_floats of per-thread scratch.
void for_each_work_item(int64_t heads, const Tiles& tiles, int splits, int threads, Schedule schedule,
                        const NumaPlan* numa, int64_t scratch_floats,
                        FunctionRef<void(const WorkItem&, float* scratch)> body) {
  const int64_t n_tiles = tiles.count();
  parallel_for(
      threads, heads * n_tiles * splits,
      [&](int64_t begin, int64_t end) {
        // One buffer per thread, kept across calls: with dynamic hand-out the
        // body runs once per item, and an allocation per item churns the
        // allocator. Zeroed per call, as a fresh vector was. It starts on a
        // cache line (malloc gives 16 bytes): the kernels' tiles of logits,
        // probabilities and outputs are rows of whole lines, and a row that
        // straddles two lines costs every vector and AMX tile access two.
        thread_local std::vector<float> buffer;
        constexpr int64_t kLineFloats = 16;
        if (buffer.size() < static_cast<size_t>(scratch_floats + kLineFloats))
          buffer.resize(static_cast<size_t>(scratch_floats + kLineFloats));
        const auto misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(buffer.data()) % 64 / 4);
        float* scratch = buffer.data() + (kLineFloats - misaligned) % kLineFloats;
        std::fill_n(scratch, scratch_floats, 0.0f);
        for (int64_t i = begin; i < end; ++i) {
          const int64_t item = i / splits, h = item / n_tiles, t = item % n_tiles;
          body(WorkItem{h, t, tiles.first(t), tiles.size(t), static_cast<int>(i % splits)}, scratch);
        }
      },
      schedule, numa);
}

void for_each_work_item(int64_t heads, int64_t rows, int64_t tile_rows, int threads, Schedule schedule,
                        const NumaPlan* numa, int64_t scratch_floats,
                        FunctionRef<void(const WorkItem&, float* scratch)> body) {
  for_each_work_item(heads, Tiles{rows, tile_rows, {}}, 1, threads, schedule, numa, scratch_floats, body);
}

// Columns qk_scores computes for a key block with `valid` keys: whole vectors.
int padded_cols(int64_t valid, int vector_floats) {
  return static_cast<int>((valid + vector_floats - 1) / vector_floats * vector_floats);
}

// q in the element type the plan's kernels read: q itself when it already is,
// else a converted heads-major copy held by the caller's buffer (from the
// plan buffers' cache: a large copy made every call would otherwise be
// zeroed and page-faulted in every call).
InputView queries_for(const KVPlan& kv, InputView q, int threads, std::unique_ptr<HeadBuffers>& buffer) {
  const DType want = kv.q_dtype();
  if (q.dtype == want) return q;
  const PhaseTimer timer("convert_q");
  const int64_t d = q.head_dim, rows = q.heads * q.tokens;
  buffer = std::make_unique<HeadBuffers>(NumaPlan{}, 1, (rows * d * dtype_bytes(want) + 3) / 4);
  float* dst = buffer->head(0);
  parallel_for(threads, rows, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const void* src = q.row(i / q.tokens, i % q.tokens);
      if (want == DType::fp32) widen_row(src, q.dtype, dst + i * d, d);
      else bf16_row(src, q.dtype, reinterpret_cast<uint16_t*>(dst) + i * d, d);
    }
  });
  return InputView(dst, want, q.heads, q.tokens, d, q.tokens * d, d);
}

// Scaled logits of rows [r0, r0 + rows) of head h (q already in the plan's
// dtype) against key block b: s[r * ld_s + j], whole vectors of columns.
void qk_block(const KernelTable& kt, const AttentionShape& shape, InputView q, const KVPlan& kv, int64_t h,
              int64_t r0, int rows, int64_t b, float* s, int64_t ld_s) {
  const int64_t kb = kv.k_block(), kvh = h / shape.group_size();
  const int cols = padded_cols(std::min(kb, kv.kv_len() - b * kb), kt.vector_floats);
  const int d = static_cast<int>(shape.head_dim);
  if (kv.format() == PackFormat::fp32)
    kt.qk_scores(static_cast<const float*>(q.row(h, r0)), q.token_stride, rows,
                 static_cast<const float*>(kv.key_block(kvh, b)), static_cast<int>(kb), cols, d,
                 shape.effective_scale(), s, static_cast<int>(ld_s));
  else
    kt.qk_scores_bf16(static_cast<const uint16_t*>(q.row(h, r0)), q.token_stride, rows,
                      static_cast<const uint16_t*>(kv.key_block(kvh, b)), static_cast<int>(kb), cols, d,
                      shape.effective_scale(), s, static_cast<int>(ld_s));
}

// Causal: how many of the plan's key blocks hold a key at a position <= pos
// (the blocks a query at pos may visit are exactly these, a prefix).
int64_t blocks_up_to(const KVPlan& kv, int64_t pos) {
  const int64_t kb = kv.k_block(), nk = kv.k_blocks();
  if (kv.key_positions() == nullptr) return std::clamp<int64_t>(pos / kb + 1, 0, nk);
  int64_t lo = 0, hi = nk;  // first block whose first key lies after pos
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (kv.key_position(mid * kb) <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Key blocks the work item's rows may see: blocks < n_visible (all of them
// without causality).
int64_t visible_blocks(const AttentionShape& shape, const KVPlan& kv, const QueryRows& pos, int64_t r0, int rows) {
  return shape.causal ? blocks_up_to(kv, pos.at(r0 + rows - 1)) : kv.k_blocks();
}
int64_t visible_blocks(const AttentionShape& shape, const KVPlan& kv, int64_t r0, int rows) {
  return visible_blocks(shape, kv, QueryRows{shape.query_position0()}, r0, rows);
}

// Causal: the blocks of an ascending list the item may visit (a prefix).
std::span<const int32_t> clip_blocks(std::span<const int32_t> blocks, int64_t n_visible) {
  const auto end = std::partition_point(blocks.begin(), blocks.end(), [&](int32_t b) { return b < n_visible; });
  return blocks.first(static_cast<size_t>(end - blocks.begin()));
}

// QK of a block then, under causality, the element mask of the diagonal.
void masked_qk_block(const KernelTable& kt, const AttentionShape& shape, InputView q, const KVPlan& kv, int64_t h,
                     int64_t r0, int rows, int64_t b, float* s, int64_t ld_s) {
  qk_block(kt, shape, q, kv, h, r0, rows, b, s, ld_s);
  if (!shape.causal) return;
  const int64_t kb = kv.k_block();
  mask_future_keys(s, ld_s, rows, shape.query_position0() + r0, b * kb,
                   static_cast<int>(std::min(kb, kv.kv_len() - b * kb)), kv.key_positions());
}

// Work items are handed out one by one: causal items cost in proportion to
// their position, and cores of a shared machine run at uneven speeds
// (contiguous shares were timed much slower on a shared 16-core VM:
// bench/results/README.md). Contiguous
// shares only where a plan over several NUMA nodes binds each thread's
// share to its node (non-causal; causal items are too uneven for it).
Schedule schedule_for(const AttentionShape& shape, const KVPlan& kv) {
  return kv.numa().nodes > 1 && !shape.causal ? Schedule::contiguous : Schedule::dynamic;
}

}  // namespace

std::vector<int32_t> all_key_blocks(const KVPlan& kv) {
  std::vector<int32_t> all(static_cast<size_t>(kv.k_blocks()));
  std::iota(all.begin(), all.end(), 0);
  return all;
}

namespace {

// The flash job of one work item over the given key blocks.
QueryBlockJob flash_job(const AttentionShape& shape, InputView q, const KVPlan& kv, OutputView out,
                        const WorkItem& w, std::span<const int32_t> blocks, float* lse, float* scratch,
                        const QueryRows& pos) {
  const int64_t kvh = w.head / shape.group_size();
  QueryBlockJob job;
  job.q = q.row(w.head, w.r0);
  job.q_stride = q.token_stride;
  job.rows = w.rows;
  job.k_packed = kv.key_block(kvh, 0);
  job.v = kv.values(kvh);
  job.v_stride = kv.v_stride();
  job.kv_len = kv.kv_len();
  job.head_dim = static_cast<int>(shape.head_dim);
  job.k_block = static_cast<int>(kv.k_block());
  job.scale = shape.effective_scale();
  job.key_blocks = blocks.data();
  job.n_key_blocks = static_cast<int64_t>(blocks.size());
  job.out = out.row(w.head, w.r0);
  job.out_stride = out.token_stride;
  job.out_dtype = out.dtype;
  job.lse = lse != nullptr ? lse + w.head * shape.q_len + w.r0 : nullptr;
  job.causal = shape.causal;
  job.q_pos = pos.at(w.r0);
  job.q_rows = pos.positions != nullptr ? pos.positions + w.r0 : nullptr;
  job.key_pos = kv.key_positions();
  job.scratch = scratch;
  return job;
}

// The flash kernel of the plan's format.
using AttendFn = void (*)(const QueryBlockJob&);
AttendFn attend_kernel(const KernelTable& kt, const KVPlan& kv) {
  return kv.format() == PackFormat::fp32 ? kt.attend_query_block : kt.attend_query_block_bf16;
}

std::atomic<int> g_step_keys_for_testing{0};  // set_softmax_step_keys_for_testing

// Key blocks per softmax step (QueryBlockJob::group) on this plan: the ISA's
// step length for the plan's format over the plan's blocks (at least 1).
int softmax_group(const KernelTable& kt, const KVPlan& kv) {
  int64_t keys = kv.format() == PackFormat::fp32 ? kt.fp32_step_keys : kt.bf16_step_keys;
  if (const int forced = g_step_keys_for_testing.load(); forced > 0) keys = forced;
  return static_cast<int>(std::max<int64_t>(1, keys / kv.k_block()));
}

}  // namespace

void set_softmax_step_keys_for_testing(int keys) { g_step_keys_for_testing.store(keys); }

int kv_split_count(int64_t items, int64_t visited_keys) {
  if (items >= kSplitTargetItems) return 1;
  const int64_t by_items = (kSplitTargetItems + items - 1) / items;
  return static_cast<int>(std::max<int64_t>(1, std::min(by_items, visited_keys / kSplitMinKeys)));
}

float merge_attention_rows(const float* const* outs, const float* lses, int64_t parts, int64_t head_dim,
                           float* out) {
  float m = -INFINITY;
  for (int64_t i = 0; i < parts; ++i) m = std::isnan(lses[i]) || lses[i] > m ? lses[i] : m;
  std::fill_n(out, head_dim, 0.0f);
  if (m == -INFINITY) return m;  // no part saw a key: zeros, as an empty row
  if (std::isnan(m)) {  // non-finite inputs reached a part: NaN, never a made-up value
    std::fill_n(out, head_dim, m);
    return m;
  }
  float total = 0.0f;
  for (int64_t i = 0; i < parts; ++i) {
    if (lses[i] == -INFINITY) continue;
    const float w = std::exp(lses[i] - m);
    total += w;
    for (int64_t c = 0; c < head_dim; ++c) out[c] += w * outs[i][c];
  }
  const float inv = 1.0f / total;  // total >= 1: the largest part has weight 1
  for (int64_t c = 0; c < head_dim; ++c) out[c] *= inv;
  return m + std::log(total);
}

namespace {

// Piece `split` of `splits` of an item's key blocks: whole softmax steps of
// `group` blocks, as evenly as they go.
std::span<const int32_t> key_piece(std::span<const int32_t> blocks, int split, int splits, int group) {
  const int64_t steps = (static_cast<int64_t>(blocks.size()) + group - 1) / group;
  const int64_t lo = std::min<int64_t>(steps * split / splits * group, static_cast<int64_t>(blocks.size()));
  const int64_t hi = std::min<int64_t>(steps * (split + 1) / splits * group, static_cast<int64_t>(blocks.size()));
  return blocks.subspan(static_cast<size_t>(lo), static_cast<size_t>(hi - lo));
}

// Split-KV: every piece's output (fp32, [splits][heads][q_len][d]) and LSE
// ([splits][heads * q_len]), then one merge per row into out (and lse).
void attend_split(const AttentionShape& shape, InputView q, const KVPlan& kv, OutputView out, const Tiles& tiles,
                  KeyBlocksFn key_blocks, int threads, const AttendExtras& x, const QueryRows& pos, int splits,
                  AttendFn kernel, int group) {
  const int64_t H = shape.heads, Q = shape.q_len, d = shape.head_dim, rows = H * Q;
  CachedFloats part_out(static_cast<size_t>(splits * rows * d)), part_lse(static_cast<size_t>(splits * rows));
  const int64_t q_block = tiles.tile_rows;  // the most rows a tile has
  for_each_work_item(H, tiles, splits, threads, Schedule::dynamic, &kv.numa(),
                     scratch_floats(q_block, group * kv.k_block(), d), [&](const WorkItem& w, float* scratch) {
                       std::span<const int32_t> blocks = key_blocks(w.head, w.tile);
                       if (shape.causal) blocks = clip_blocks(blocks, visible_blocks(shape, kv, pos, w.r0, w.rows));
                       const OutputView part(part_out.data() + w.split * rows * d, DType::fp32, H, Q, d, Q * d, d);
                       QueryBlockJob job = flash_job(shape, q, kv, part, w, key_piece(blocks, w.split, splits, group),
                                                     part_lse.data() + w.split * rows, scratch, pos);
                       job.group = group;
                       kernel(job);
                     });
  parallel_for(threads, rows, [&](int64_t begin, int64_t end) {
    std::vector<const float*> outs(static_cast<size_t>(splits));
    std::vector<float> lses(static_cast<size_t>(splits)), merged(static_cast<size_t>(d));
    for (int64_t i = begin; i < end; ++i) {
      for (int sp = 0; sp < splits; ++sp) {
        outs[static_cast<size_t>(sp)] = part_out.data() + (sp * rows + i) * d;
        lses[static_cast<size_t>(sp)] = part_lse.data()[sp * rows + i];
      }
      const float l = merge_attention_rows(outs.data(), lses.data(), splits, d, merged.data());
      store_row(merged.data(), out.row(i / Q, i % Q), out.dtype, d);
      if (x.lse != nullptr) x.lse[i] = l;
    }
  });
}

}  // namespace

void attend(const AttentionShape& shape, InputView q_in, const KVPlan& kv, OutputView out, int64_t q_block,
            KeyBlocksFn key_blocks, int threads, const AttendExtras& x) {
  const PhaseTimer timer("attend");
  const KernelTable& kt = active_kernels();
  const AttendFn kernel = attend_kernel(kt, kv);
  const int group = softmax_group(kt, kv);
  std::unique_ptr<HeadBuffers> q_buffer;
  const InputView q = queries_for(kv, q_in, threads, q_buffer);
  const QueryRows pos = x.rows != nullptr ? *x.rows : QueryRows{shape.query_position0()};
  const Tiles tiles{shape.q_len, q_block, x.tile_starts};
  const int splits = x.kv_splits > 0 ? x.kv_splits : kv_split_count(shape.heads * tiles.count(), kv.kv_len());
  if (splits > 1) {
    attend_split(shape, q, kv, out, tiles, key_blocks, threads, x, pos, splits, kernel, group);
    return;
  }
  for_each_work_item(shape.heads, tiles, 1, threads, schedule_for(shape, kv), &kv.numa(),
                     scratch_floats(q_block, group * kv.k_block(), shape.head_dim),
                     [&](const WorkItem& w, float* scratch) {
                       std::span<const int32_t> blocks = key_blocks(w.head, w.tile);
                       if (shape.causal) blocks = clip_blocks(blocks, visible_blocks(shape, kv, pos, w.r0, w.rows));
                       QueryBlockJob job = flash_job(shape, q, kv, out, w, blocks, x.lse, scratch, pos);
                       job.group = group;
                       kernel(job);
                     });
}

void attend_with_block_mass(const AttentionShape& shape, InputView q_in, const KVPlan& kv, OutputView out,
                            int64_t q_block, int threads, float* lse, float* mass) {
  const PhaseTimer timer("attend_with_block_mass");
  const KernelTable& kt = active_kernels();
  const AttendFn kernel = attend_kernel(kt, kv);
  const int group = softmax_group(kt, kv);  // as attend's, so output and LSE are bitwise the same
  std::unique_ptr<HeadBuffers> q_buffer;
  const InputView q = queries_for(kv, q_in, threads, q_buffer);
  const std::vector<int32_t> all = all_key_blocks(kv);
  const int64_t nk = kv.k_blocks(), q_blocks = (shape.q_len + q_block - 1) / q_block;
  const int64_t flash_floats = scratch_floats(q_block, group * kv.k_block(), shape.head_dim);
  for_each_work_item(
      shape.heads, shape.q_len, q_block, threads, schedule_for(shape, kv), &kv.numa(), flash_floats + 2 * q_block * nk,
      [&](const WorkItem& w, float* scratch) {
        const int64_t visible = visible_blocks(shape, kv, w.r0, w.rows);  // all blocks unless causal
        QueryBlockJob job = flash_job(shape, q, kv, out, w, std::span<const int32_t>(all).first(visible), lse, scratch,
                                      QueryRows{shape.query_position0()});
        job.block_max = scratch + flash_floats;
        job.block_sum = job.block_max + q_block * nk;
        job.group = group;
        kernel(job);
        // mass of block b = mean over rows of exp(max_rb - lse_r) * sum_rb
        // (job rows are strided by n_key_blocks, the visible blocks).
        float* dst = mass + (w.head * q_blocks + w.tile) * nk;
        std::fill(dst + visible, dst + nk, 0.0f);  // future blocks: no mass
        const float* row_lse = lse + w.head * shape.q_len + w.r0;
        for (int64_t b = 0; b < visible; ++b) {
          double total = 0.0;
          for (int r = 0; r < w.rows; ++r) {
            const float m = job.block_max[r * visible + b], l = row_lse[r];
            if (m == -INFINITY || l == -INFINITY) continue;  // nothing seen yet, or an empty row
            total += std::exp(static_cast<double>(m) - static_cast<double>(l)) * job.block_sum[r * visible + b];
          }
          dst[b] = static_cast<float>(total / w.rows);
        }
      });
}

std::vector<float> row_lse(const AttentionShape& shape, InputView q_in, const KVPlan& kv, int64_t q_block,
                           int threads) {
  const PhaseTimer timer("row_lse");
  const KernelTable& kt = active_kernels();
  const int64_t kb = kv.k_block();
  std::unique_ptr<HeadBuffers> q_buffer;
  const InputView q = queries_for(kv, q_in, threads, q_buffer);
  std::vector<float> lse(static_cast<size_t>(shape.heads * shape.q_len));
  // Scratch: scores, then running max, sum and rescale per row.
  for_each_work_item(
      shape.heads, shape.q_len, q_block, threads, schedule_for(shape, kv), &kv.numa(), q_block * kb + 3 * q_block,
      [&](const WorkItem& w, float* s) {
        float* mx = s + q_block * kb;
        float* sum = mx + q_block;
        float* resc = sum + q_block;
        std::fill_n(mx, w.rows, -INFINITY);
        std::fill_n(sum, w.rows, 0.0f);
        const int64_t visible = visible_blocks(shape, kv, w.r0, w.rows);
        for (int64_t b = 0; b < visible; ++b) {
          const int64_t valid = std::min(kb, kv.kv_len() - b * kb);
          masked_qk_block(kt, shape, q, kv, w.head, w.r0, w.rows, b, s, kb);
          kt.online_softmax_update(s, static_cast<int>(kb), w.rows, static_cast<int>(valid), mx, sum, resc);
        }
        for (int r = 0; r < w.rows; ++r) lse[w.head * shape.q_len + w.r0 + r] = mx[r] + std::log(sum[r]);
      });
  return lse;
}

void block_mass(const AttentionShape& shape, InputView q_in, const KVPlan& kv, const float* lse,
                int64_t q_block, int threads, float* mass) {
  const PhaseTimer timer("block_mass");
  const KernelTable& kt = active_kernels();
  const int64_t kb = kv.k_block(), k_blocks = kv.k_blocks();
  const int64_t q_blocks = (shape.q_len + q_block - 1) / q_block;
  std::unique_ptr<HeadBuffers> q_buffer;
  const InputView q = queries_for(kv, q_in, threads, q_buffer);
  for_each_work_item(
      shape.heads, shape.q_len, q_block, threads, schedule_for(shape, kv), &kv.numa(), q_block * kb,
      [&](const WorkItem& w, float* s) {
        const float* lse_rows = lse + w.head * shape.q_len + w.r0;
        float* dst = mass + (w.head * q_blocks + w.tile) * k_blocks;
        const int64_t visible = visible_blocks(shape, kv, w.r0, w.rows);
        std::fill(dst + visible, dst + k_blocks, 0.0f);  // future blocks: no mass
        for (int64_t b = 0; b < visible; ++b) {
          const int64_t valid = std::min(kb, kv.kv_len() - b * kb);
          masked_qk_block(kt, shape, q, kv, w.head, w.r0, w.rows, b, s, kb);
          double total = 0.0;
          for (int r = 0; r < w.rows; ++r) {
            float* sr = s + r * kb;
            const float l = lse_rows[r];
            for (int64_t j = 0; j < valid; ++j) sr[j] -= l;
            kt.exp_inplace(sr, valid);
            float acc = 0.0f;
            for (int64_t j = 0; j < valid; ++j) acc += sr[j];
            total += acc;
          }
          dst[b] = static_cast<float>(total / w.rows);
        }
      });
}

void key_softmax_rows(const AttentionShape& shape, InputView q_in, const KVPlan& kv, int64_t rows_per_item,
                      float last_key_bias, std::span<const int64_t> visible_keys, int threads,
                      SoftmaxRowsFn emit, const PrepareRowsFn* prepare) {
  const PhaseTimer timer("softmax_rows");
  const KernelTable& kt = active_kernels();
  const int64_t kb = kv.k_block(), nk = kv.kv_len();
  const int64_t ld = kv.k_blocks() * kb;
  // A converted copy of q would be made before any tile is prepared.
  if (prepare != nullptr && q_in.dtype != kv.q_dtype())
    throw std::logic_error("key_softmax_rows: rows written by prepare must be in the plan's query dtype");
  std::unique_ptr<HeadBuffers> q_buffer;
  const InputView q = queries_for(kv, q_in, threads, q_buffer);
  auto seen = [&](int64_t row) { return visible_keys.empty() ? nk : visible_keys[static_cast<size_t>(row)]; };
  for_each_work_item(
      shape.heads, shape.q_len, rows_per_item, threads, Schedule::dynamic, nullptr, rows_per_item * ld,
      [&](const WorkItem& w, float* s) {
        if (prepare != nullptr) (*prepare)(w.head, w.r0, w.rows);
        int64_t most = 0;  // keys any row of the item sees: blocks past them are not computed
        for (int r = 0; r < w.rows; ++r) most = std::max(most, seen(w.r0 + r));
        for (int64_t b = 0; b * kb < most; ++b) qk_block(kt, shape, q, kv, w.head, w.r0, w.rows, b, s + b * kb, ld);
        for (int r = 0; r < w.rows; ++r) {
          float* sr = s + r * ld;
          const int64_t n = seen(w.r0 + r);
          if (n == 0) {  // a row that sees no key: no distribution, zeros
            std::fill(sr, sr + nk, 0.0f);
            continue;
          }
          if (n == nk) sr[nk - 1] += last_key_bias;
          float mx = sr[0];
          for (int64_t j = 1; j < n; ++j) mx = sr[j] > mx ? sr[j] : mx;
          for (int64_t j = 0; j < n; ++j) sr[j] -= mx;
          kt.exp_inplace(sr, n);
          float sum = 0.0f;
          for (int64_t j = 0; j < n; ++j) sum += sr[j];
          const float inv = 1.0f / sum;
          for (int64_t j = 0; j < n; ++j) sr[j] *= inv;
          std::fill(sr + n, sr + nk, 0.0f);  // keys the row may not see
        }
        emit(w.head, w.r0, w.rows, s, ld);
      });
}

InputView gather_tokens(InputView x, std::span<const int32_t> kept, int threads, std::vector<float>& dst) {
  const int64_t n = static_cast<int64_t>(kept.size()), d = x.head_dim;
  const size_t row_bytes = static_cast<size_t>(d * dtype_bytes(x.dtype));
  dst.resize((static_cast<size_t>(x.heads * n) * row_bytes + 3) / 4);
  auto* base = reinterpret_cast<unsigned char*>(dst.data());
  parallel_for(threads, x.heads * n, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item)
      std::memcpy(base + static_cast<size_t>(item) * row_bytes, x.row(item / n, kept[item % n]), row_bytes);
  });
  return InputView(dst.data(), x.dtype, x.heads, n, d, n * d, d);
}

void scatter_tokens(InputView src, std::span<const int32_t> kept, OutputView out, int threads) {
  const int64_t n = static_cast<int64_t>(kept.size());
  const size_t row_bytes = static_cast<size_t>(out.head_dim * dtype_bytes(out.dtype));
  parallel_for(threads, out.heads, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      int64_t i = 0;
      for (int64_t t = 0; t < out.tokens; ++t) {
        void* row = out.row(h, t);
        if (i < n && kept[i] == t) {
          std::memcpy(row, src.row(h, i), row_bytes);
          ++i;
        } else {
          std::memset(row, 0, row_bytes);  // a token DPad dropped: not part of this step (0 in f32 and bf16)
        }
      }
    }
  });
}

}  // namespace spattn::detail
