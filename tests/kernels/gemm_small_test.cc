// gemm_f32__small against gemm_f32__ref over shapes around its tiles: M
// around the 8-row tile and its balanced splits, N around the vector width
// (16) and the 32-column tile up to a 28x28 and a 32x32 image, K from 1 up
// past the vector width to a long dot product, with leading dimensions wider
// than the rows, every transpose combination, beta 0 (C never read: it holds
// NaN) and 1, alpha 1 and -0.5. Seeded random inputs.
//
// Tolerance: |small - ref| <= 1e-5 (|alpha| sum_l |a||b| + |beta c|) per
// element, relative to the magnitudes that were summed (an error relative to
// the result itself would be unbounded where terms cancel).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "pare/base/rng.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kRtol = 1e-5;

Vec random_vec(Rng& rng, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-1.0f, 1.0f);
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Operands of one shape and transpose combination, stored with padding.
struct Problem {
  int64_t m, n, k;
  bool ta, tb;
  int64_t lda, ldb, ldc;
  Vec a, b, mag;  // mag: (M, ldc) = sum_l |op(a)||op(b)|
  std::string str(float alpha, float beta) const {
    std::ostringstream os;
    os << "gemm_f32__small m=" << m << " n=" << n << " k=" << k << (ta ? " A^T" : " A")
       << (tb ? " B^T" : " B") << " lda=" << lda << " ldb=" << ldb << " ldc=" << ldc
       << " alpha=" << alpha << " beta=" << beta;
    return os.str();
  }
};

Problem make_problem(Rng& rng, int64_t m, int64_t n, int64_t k, bool ta, bool tb) {
  Problem pr;
  pr.m = m, pr.n = n, pr.k = k, pr.ta = ta, pr.tb = tb;
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  pr.lda = a_cols + 3, pr.ldb = b_cols + 2, pr.ldc = n + 5;
  pr.a = random_vec(rng, a_rows * pr.lda);
  pr.b = random_vec(rng, b_rows * pr.ldb);
  Vec abs_a(pr.a.size()), abs_b(pr.b.size());
  for (size_t i = 0; i < pr.a.size(); ++i) abs_a[i] = std::fabs(pr.a[i]);
  for (size_t i = 0; i < pr.b.size(); ++i) abs_b[i] = std::fabs(pr.b[i]);
  pr.mag.assign(static_cast<size_t>(m * pr.ldc), 0.0f);
  gemm_f32__ref(m, n, k, pr.mag.data(), pr.ldc, abs_a.data(), pr.lda, abs_b.data(), pr.ldb,
                {.trans_a = ta, .trans_b = tb});
  return pr;
}

// Runs small and ref from the same C and compares; C's padding columns must
// be left alone.
::testing::AssertionResult check(const Problem& pr, Rng& rng, float alpha, float beta) {
  const int64_t m = pr.m, n = pr.n, ldc = pr.ldc;
  Vec c0 = random_vec(rng, m * ldc);
  if (beta == 0.0f)  // C must be overwritten, never read
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c0[i * ldc + j] = kNaN;
  const GemmParams p{.trans_a = pr.ta, .trans_b = pr.tb, .alpha = alpha, .beta = beta};
  Vec cs = c0, cr = c0;
  gemm_f32__small(m, n, pr.k, cs.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb, p);
  gemm_f32__ref(m, n, pr.k, cr.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb, p);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const int64_t q = i * ldc + j;
      if (j >= n) {
        if (!same_bits(cs[q], c0[q]))
          return ::testing::AssertionFailure()
                 << pr.str(alpha, beta) << ": wrote outside C at (" << i << ", " << j << ")";
        continue;
      }
      const double bound =
          kRtol * (std::fabs(alpha) * pr.mag[q] + (beta != 0.0f ? std::fabs(beta * c0[q]) : 0.0)) +
          1e-30;
      if (!std::isfinite(cs[q]) || std::fabs(double{cs[q]} - cr[q]) > bound)
        return ::testing::AssertionFailure()
               << pr.str(alpha, beta) << ": C(" << i << ", " << j << ") = " << cs[q] << ", ref "
               << cr[q] << " (bound " << bound << ")";
    }
  return ::testing::AssertionSuccess();
}

// One test per transpose combination (trans_a, trans_b), so that CTest can
// run them side by side.
class GemmSmallSweep : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(GemmSmallSweep, MatchesRefOverShapesAlphaAndBeta) {
  const auto [ta, tb] = GetParam();
  const int64_t ms[] = {1, 2, 3, 6, 7, 8, 9, 16, 17, 33};
  const int64_t ns[] = {1, 5, 16, 17, 31, 32, 33, 100, 784, 1024};
  const int64_t ks[] = {1, 2, 9, 25, 72, 150, 1024};
  Rng rng(41);
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks) {
        const Problem pr = make_problem(rng, m, n, k, ta, tb);
        for (float beta : {0.0f, 1.0f})
          for (float alpha : {1.0f, -0.5f}) ASSERT_TRUE(check(pr, rng, alpha, beta));
      }
}

INSTANTIATE_TEST_SUITE_P(Transposes, GemmSmallSweep,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "At" : "A") +
                                  (std::get<1>(info.param) ? "Bt" : "B");
                         });

TEST(GemmSmall, GeneralBetaAndEmptyShapes) {
  Rng rng(42);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // beta outside {0, 1} scales C; K = 0 leaves beta C.
      for (const auto& s : {std::vector<int64_t>{7, 33, 25}, {3, 5, 0}, {17, 100, 16}}) {
        const Problem pr = make_problem(rng, s[0], s[1], s[2], ta, tb);
        EXPECT_TRUE(check(pr, rng, 0.75f, 0.5f));
        EXPECT_TRUE(check(pr, rng, 1.0f, 0.0f));
      }
      // M = 0 or N = 0: nothing is touched.
      float c = 3.0f, a = 1.0f, b = 1.0f;
      gemm_f32__small(0, 1, 1, &c, 1, &a, 1, &b, 1, {.trans_a = ta, .trans_b = tb});
      gemm_f32__small(1, 0, 1, &c, 1, &a, 1, &b, 1, {.trans_a = ta, .trans_b = tb});
      EXPECT_EQ(c, 3.0f);
    }
}

TEST(GemmSmall, SameInputsGiveSameBits) {
  Rng rng(43);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Problem pr = make_problem(rng, 17, 784, 150, ta, tb);
      const GemmParams p{.trans_a = ta, .trans_b = tb, .beta = 1.0f};
      const Vec c0 = random_vec(rng, pr.m * pr.ldc);
      Vec c1 = c0, c2 = c0;
      gemm_f32__small(pr.m, pr.n, pr.k, c1.data(), pr.ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      p);
      gemm_f32__small(pr.m, pr.n, pr.k, c2.data(), pr.ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      p);
      EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)), 0)
          << pr.str(1.0f, 1.0f);
    }
}

// The epilogue (bias, ReLU, mask) and sum_a against the reference, over the
// tile edges of every transpose; the mask holds zeros, negatives and NaNs.
// The ReLU and the mask are 1-Lipschitz and the mask's decisions come from
// the same inputs, so the product's bound still holds, with |bias| added.
TEST(GemmSmall, EpilogueAndRowSumsMatchRef) {
  Rng rng(44);
  const int64_t ms[] = {1, 5, 6, 7, 8, 9, 16, 17};
  const int64_t ns[] = {1, 3, 4, 9, 16, 17, 33, 100};
  const int64_t ks[] = {1, 9, 16, 17, 100};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t m : ms)
        for (int64_t n : ns)
          for (int64_t k : ks) {
            const Problem pr = make_problem(rng, m, n, k, ta, tb);
            const int64_t ldm = n + 7;
            Vec bias = random_vec(rng, m), mask = random_vec(rng, m * ldm);
            for (size_t q = 0; q < mask.size(); q += 5) mask[q] = q % 2 ? 0.0f : kNaN;
            for (int variant = 0; variant < 4; ++variant) {
              GemmParams p{.trans_a = ta, .trans_b = tb, .beta = variant % 2 ? 1.0f : 0.0f};
              if (variant != 1) p.bias = bias.data();
              if (variant != 2) p.relu = true;
              if (variant >= 2) p.mask = mask.data(), p.ldm = ldm;
              Vec sum_s = random_vec(rng, m), sum_r = sum_s;
              Vec c0 = random_vec(rng, m * pr.ldc);
              if (p.beta == 0.0f)
                for (int64_t i = 0; i < m; ++i)
                  for (int64_t j = 0; j < n; ++j) c0[i * pr.ldc + j] = kNaN;
              Vec cs = c0, cr = c0;
              p.sum_a = sum_s.data();
              gemm_f32__small(m, n, k, cs.data(), pr.ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                              p);
              p.sum_a = sum_r.data();
              gemm_f32__ref(m, n, k, cr.data(), pr.ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                            p);
              const std::string where =
                  pr.str(1.0f, p.beta) + " variant " + std::to_string(variant);
              for (int64_t i = 0; i < m; ++i) {
                double abs_row = 0;
                for (int64_t l = 0; l < k; ++l)
                  abs_row += std::fabs(ta ? pr.a[l * pr.lda + i] : pr.a[i * pr.lda + l]);
                ASSERT_LE(std::fabs(double{sum_s[i]} - sum_r[i]), kRtol * abs_row + 1e-6)
                    << where << ": sum_a[" << i << "]";
                for (int64_t j = 0; j < pr.ldc; ++j) {
                  const int64_t q = i * pr.ldc + j;
                  if (j >= n) {
                    ASSERT_TRUE(same_bits(cs[q], c0[q])) << where << ": wrote outside C";
                    continue;
                  }
                  const double bound =
                      kRtol * (pr.mag[q] + (p.beta != 0.0f ? std::fabs(c0[q]) : 0.0) +
                               (p.bias ? std::fabs(bias[i]) : 0.0)) +
                      1e-30;
                  ASSERT_TRUE(std::isfinite(cs[q]) && std::fabs(double{cs[q]} - cr[q]) <= bound)
                      << where << ": C(" << i << ", " << j << ") = " << cs[q] << ", ref "
                      << cr[q];
                }
              }
            }
          }
}

// The fused epilogue gives the same bits as the separate kernels it replaces
// (add_channels_f32, relu_f32, relu_mask_f32) on gemm_f32__small's output.
TEST(GemmSmall, EpilogueIsBitIdenticalToSeparateKernels) {
  Rng rng(45);
  for (const auto& s : {std::vector<int64_t>{16, 1024, 9}, {8, 1024, 16}, {16, 1024, 8}, {7, 33, 5}})
    for (bool ta : {false, true}) {
      const int64_t m = s[0], n = s[1], k = s[2];
      const Problem pr = make_problem(rng, m, n, k, ta, false);
      const int64_t ldc = pr.ldc;
      Vec bias = random_vec(rng, m), mask = random_vec(rng, m * ldc);
      Vec fused(static_cast<size_t>(m * ldc), 0.0f), plain = fused;
      // Forward: bias then ReLU.
      gemm_f32__small(m, n, k, fused.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      {.trans_a = ta, .bias = bias.data(), .relu = true});
      gemm_f32__small(m, n, k, plain.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      {.trans_a = ta});
      for (int64_t i = 0; i < m; ++i) {
        add_channels_f32(1, 1, n, plain.data() + i * ldc, bias.data() + i);
        relu_f32(n, plain.data() + i * ldc, plain.data() + i * ldc);
      }
      EXPECT_EQ(std::memcmp(fused.data(), plain.data(), fused.size() * sizeof(float)), 0)
          << pr.str(1.0f, 0.0f) << " bias+relu";
      // Backward: the mask.
      gemm_f32__small(m, n, k, fused.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      {.trans_a = ta, .mask = mask.data(), .ldm = ldc});
      gemm_f32__small(m, n, k, plain.data(), ldc, pr.a.data(), pr.lda, pr.b.data(), pr.ldb,
                      {.trans_a = ta});
      relu_mask_f32(m * ldc, plain.data(), plain.data(), mask.data());
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          ASSERT_TRUE(same_bits(fused[i * ldc + j], plain[i * ldc + j]))
              << pr.str(1.0f, 0.0f) << " mask at (" << i << ", " << j << ")";
    }
}

}  // namespace
}  // namespace pare::kernels
