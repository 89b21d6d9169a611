// ops::gemm (threaded split over the BLAS kernel) against the scalar reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare {
namespace {

std::vector<float> random_vec(size_t n, uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.uniform(-1.0f, 1.0f);
  return v;
}

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  float alpha, beta;
};

// Runs ops::gemm and the reference on the same inputs with padded leading
// dimensions and returns the max relative error (|d| / (1 + |ref|)).
struct GemmRun {
  std::vector<float> got, want;
};

GemmRun run_case(const GemmCase& c, uint64_t seed) {
  const int64_t pad = 3;  // leading dimensions larger than the logical width
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = c.n + pad;
  auto a = random_vec(static_cast<size_t>(a_rows * lda), seed);
  auto b = random_vec(static_cast<size_t>(b_rows * ldb), seed + 1);
  auto c0 = random_vec(static_cast<size_t>(std::max<int64_t>(c.m, 1) * ldc), seed + 2);
  GemmRun r{c0, c0};
  kernels::GemmParams p{.trans_a = c.ta, .trans_b = c.tb, .alpha = c.alpha, .beta = c.beta};
  ops::gemm(c.m, c.n, c.k, r.got.data(), ldc, a.data(), lda, b.data(), ldb, p);
  kernels::gemm_f32__ref(c.m, c.n, c.k, r.want.data(), ldc, a.data(), lda, b.data(), ldb, p);
  return r;
}

void expect_close(const GemmCase& c, const GemmRun& r, int threads) {
  const int64_t ldc = c.n + 3;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t idx = static_cast<size_t>(i * ldc + j);
      if (j >= c.n) {
        // Padding columns must not be touched.
        ASSERT_EQ(r.got[idx], r.want[idx]) << "padding written at (" << i << ", " << j << ")";
        continue;
      }
      const float tol = 1e-5f * static_cast<float>(c.k + 1) * (1.0f + std::abs(r.want[idx]));
      ASSERT_NEAR(r.got[idx], r.want[idx], tol)
          << "at (" << i << ", " << j << ") for m=" << c.m << " n=" << c.n << " k=" << c.k
          << " ta=" << c.ta << " tb=" << c.tb << " beta=" << c.beta << " threads=" << threads;
    }
  }
}

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = num_threads(); }
  void TearDown() override { set_num_threads(saved_); }
  int saved_ = 1;
};

TEST_F(GemmTest, MatchesReferenceAllTransposesAndBetas) {
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> sizes = {
      {1, 1, 1},   {3, 5, 7},    {17, 9, 33},   {64, 64, 64},
      {200, 300, 150},  // large: split along N (n > m)
      {300, 200, 150},  // large: split along M
      {257, 19, 130},   // M split with a ragged last chunk
      {8, 600, 40},     // wide: split along N with few rows
      {5, 4, 0},        // k = 0: c = beta c
  };
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    uint64_t seed = 1;
    for (auto [m, n, k] : sizes)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.0f, 1.0f}) {
            GemmCase c{m, n, k, ta, tb, 1.0f, beta};
            GemmRun r = run_case(c, seed += 10);
            expect_close(c, r, threads);
            if (HasFatalFailure()) return;
          }
  }
}

TEST_F(GemmTest, AlphaScales) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    GemmCase c{200, 300, 150, false, true, -0.5f, 1.0f};
    expect_close(c, run_case(c, 99), threads);
  }
}

TEST_F(GemmTest, BetaZeroIgnoresNaNInOutput) {
  // beta = 0 overwrites C without reading it (contract in kernels.h).
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    const int64_t m = 200, n = 300, k = 150;
    auto a = random_vec(m * k, 1), b = random_vec(k * n, 2);
    std::vector<float> c(m * n, std::nanf(""));
    ops::gemm(m, n, k, c.data(), n, a.data(), k, b.data(), n, {});
    for (float v : c) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST_F(GemmTest, DeterministicAcrossRunsWithSameThreadCount) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (auto [m, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {200, 300, 150}, {300, 200, 150}, {257, 19, 130}}) {
      GemmCase c{m, n, k, false, false, 1.0f, 1.0f};
      GemmRun r1 = run_case(c, 5), r2 = run_case(c, 5);
      ASSERT_EQ(r1.got.size(), r2.got.size());
      EXPECT_EQ(std::memcmp(r1.got.data(), r2.got.data(), r1.got.size() * sizeof(float)), 0)
          << "m=" << m << " n=" << n << " k=" << k << " threads=" << threads;
    }
  }
}

// ops::gemm called from inside a parallel_for chunk: the pool runs the nested
// call serially as fn(0, parts, 0), so gemm must still compute the whole
// product (regression: it once computed only the first part).
TEST_F(GemmTest, NestedInsideParallelForComputesWholeProduct) {
  set_num_threads(2);
  GemmCase c{200, 300, 150, false, false, 1.0f, 0.0f};
  GemmRun r;
  thread_pool().parallel_for(1, [&](int64_t, int64_t, int) { r = run_case(c, 7); });
  // n=1 runs on the caller without marking it nested; force nesting with n=2.
  thread_pool().parallel_for(2, [&](int64_t b, int64_t, int) {
    if (b == 0) r = run_case(c, 7);
  });
  expect_close(c, r, 2);
}

TEST(ParallelRange, CoversRangeOnceAndRunsSmallWorkInline) {
  set_num_threads(2);
  std::vector<int> hits(100000, 0);
  ops::parallel_range(100000, 10.0, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  int calls = 0;
  ops::parallel_range(10, 1.0, [&](int64_t b, int64_t e) {
    ++calls;
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
  });
  EXPECT_EQ(calls, 1);
  ops::parallel_range(0, 1e9, [&](int64_t, int64_t) { ADD_FAILURE() << "called for n = 0"; });
}

}  // namespace
}  // namespace pare
