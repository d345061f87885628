#include <gtest/gtest.h>

#include <cstdlib>

#include "dispatch/cpu_features.hpp"
#include "kernels/kernel_table.hpp"
#include "spattn/lab/lab.hpp"

namespace spattn {
namespace {

TEST(Dispatch, ScalarAlwaysSupportedAndBestIsDefault) {
  const auto all = supported_isas();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), Isa::scalar);
  if (std::getenv("SPATTN_ISA") == nullptr) {
    EXPECT_EQ(active_isa(), all.back());
  }
}

TEST(Dispatch, TablesMatchTheirIsa) {
  for (Isa isa : supported_isas()) {
    const detail::KernelTable* t = detail::kernel_table_for(isa);
    ASSERT_NE(t, nullptr) << isa_name(isa);
    EXPECT_EQ(t->isa, isa);
    EXPECT_GE(t->vector_floats, 1);
    EXPECT_EQ(16 % t->vector_floats, 0) << "head_dim multiples of 16 must tile evenly";
  }
}

TEST(Dispatch, ParseIsaRoundTripsAndRejectsUnknown) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx, Isa::neon, Isa::neon_bf16})
    EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  EXPECT_EQ(parse_isa("AVX2"), Isa::avx2);  // any case
  EXPECT_EQ(parse_isa("Scalar"), Isa::scalar);
  EXPECT_THROW(parse_isa("sse9"), Error);
  try {
    parse_isa("sse9");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sse9"), std::string::npos);
  }
}

TEST(Dispatch, ForcingAnUnsupportedIsaIsAnErrorNotACrash) {
  const Isa before = active_isa();
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (isa_supported(isa)) {
      set_isa(isa);
      EXPECT_EQ(active_isa(), isa);
    } else {
      EXPECT_THROW(set_isa(isa), Error) << isa_name(isa);
    }
  }
  set_isa(before);
#if defined(__x86_64__)
  EXPECT_FALSE(isa_supported(Isa::neon));
#elif defined(__aarch64__)
  EXPECT_FALSE(isa_supported(Isa::avx2));
  EXPECT_TRUE(isa_supported(Isa::neon));
#endif
}

TEST(Dispatch, FeatureDetectionIsConsistent) {
  const auto& f = detail::cpu_features();
  if (f.avx512) {
    EXPECT_TRUE(f.avx2_fma) << "AVX-512 implies AVX2+FMA on every shipped CPU";
  }
  EXPECT_EQ(isa_supported(Isa::avx512), f.avx512);
  EXPECT_EQ(isa_supported(Isa::avx2), f.avx2_fma);
}

}  // namespace
}  // namespace spattn
