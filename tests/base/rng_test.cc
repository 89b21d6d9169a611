// Rng: determinism, stream independence and rough distribution checks.
// All draws are seeded, so every bound below is checked against fixed data.
#include "pare/base/rng.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace pare {
namespace {

TEST(Rng, SameSeedSameStream) {
  Rng a(42), b(42);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(a.next_u64(), b.next_u64()) << "draw " << i;
}

TEST(Rng, DifferentSeedsDiffer) {
  Rng a(1), b(2);
  int equal = 0;
  for (int i = 0; i < 1000; ++i) equal += a.next_u64() == b.next_u64();
  EXPECT_EQ(equal, 0);
}

TEST(Rng, StateIsSeedAndCounter) {
  Rng a(7);
  for (int i = 0; i < 10; ++i) a.next_u64();
  EXPECT_EQ(a.seed(), 7u);
  EXPECT_EQ(a.counter(), 10u);
  Rng resumed(a.seed(), a.counter());
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.next_u64(), resumed.next_u64());
}

TEST(Rng, ForkIsDeterministicAndDoesNotAdvanceParent) {
  Rng parent(5);
  const uint64_t before = parent.counter();
  Rng c1 = parent.fork(3), c2 = parent.fork(3);
  EXPECT_EQ(parent.counter(), before);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(c1.next_u64(), c2.next_u64());
}

TEST(Rng, ForkedStreamsAreIndependent) {
  Rng parent(11);
  Rng a = parent.fork(0), b = parent.fork(1);
  Rng p2(11);
  // No equal values at the same position, and the children differ from the parent.
  int same_ab = 0, same_ap = 0;
  for (int i = 0; i < 1000; ++i) {
    uint64_t x = a.next_u64(), y = b.next_u64(), z = p2.next_u64();
    same_ab += x == y;
    same_ap += x == z;
  }
  EXPECT_EQ(same_ab, 0);
  EXPECT_EQ(same_ap, 0);
  // Uniforms from two children are uncorrelated (|r| well under 0.05 for 1e4 pairs).
  Rng u = parent.fork(100), v = parent.fork(101);
  const int n = 10000;
  double sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; ++i) {
    double x = u.uniform(), y = v.uniform();
    sx += x, sy += y, sxy += x * y, sxx += x * x, syy += y * y;
  }
  double cov = sxy / n - (sx / n) * (sy / n);
  double r = cov / std::sqrt((sxx / n - (sx / n) * (sx / n)) * (syy / n - (sy / n) * (sy / n)));
  EXPECT_LT(std::abs(r), 0.05);
}

TEST(Rng, UniformInHalfOpenUnitInterval) {
  Rng r(3);
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
}

TEST(Rng, UniformRangeStaysInside) {
  Rng r(4);
  for (int i = 0; i < 100000; ++i) {
    float u = r.uniform(-0.25f, 0.75f);
    ASSERT_GE(u, -0.25f);
    ASSERT_LE(u, 0.75f);
  }
}

TEST(Rng, BelowInRangeAndRoughlyUniform) {
  for (uint64_t n : {1ull, 2ull, 7ull, 10ull, 1000ull}) {
    Rng r(100 + n);
    std::vector<int64_t> counts(n, 0);
    const int64_t draws = 20000 * static_cast<int64_t>(std::min<uint64_t>(n, 10));
    for (int64_t i = 0; i < draws; ++i) {
      uint64_t x = r.below(n);
      ASSERT_LT(x, n);
      ++counts[x];
    }
    if (n == 1) continue;
    // Chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)).
    // Six standard deviations above the mean is a loose bound that still
    // catches any real bias (e.g. one bucket never or twice as often hit).
    const double expected = static_cast<double>(draws) / static_cast<double>(n);
    double chi2 = 0;
    for (int64_t c : counts) chi2 += (c - expected) * (c - expected) / expected;
    const double dof = static_cast<double>(n - 1);
    EXPECT_LT(chi2, dof + 6 * std::sqrt(2 * dof)) << "n=" << n;
  }
}

TEST(Rng, NormalMomentsOverManyDraws) {
  Rng r(9);
  const int n = 100000;
  double sum = 0, sq = 0;
  int beyond4 = 0;
  for (int i = 0; i < n; ++i) {
    double x = r.normal();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sq += x * x;
    beyond4 += std::abs(x) > 4;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Standard error of the mean is 1/sqrt(1e5) ~ 0.003; of the variance ~ 0.0045.
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(var, 1.0, 0.03);
  EXPECT_LT(beyond4, 30);  // P(|x| > 4) ~ 6.3e-5 -> ~6 expected
}

TEST(Rng, ShuffleIsAPermutationAndDeterministic) {
  std::vector<int> v(1000), w;
  std::iota(v.begin(), v.end(), 0);
  w = v;
  Rng a(21), b(21);
  a.shuffle(std::span<int>(v));
  b.shuffle(std::span<int>(w));
  EXPECT_EQ(v, w);
  std::vector<int> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  int fixed = 0;
  for (int i = 0; i < 1000; ++i) fixed += v[i] == i;
  EXPECT_LT(fixed, 10);  // expected ~1 fixed point for a random permutation
}

TEST(Rng, ShuffleHandlesTinyInputs) {
  Rng r(1);
  std::vector<int> empty;
  r.shuffle(std::span<int>(empty));
  EXPECT_TRUE(empty.empty());
  std::vector<int> one{5};
  r.shuffle(std::span<int>(one));
  EXPECT_EQ(one[0], 5);
}

TEST(Rng, ShuffleIsRoughlyUniformOverSmallPermutations) {
  // All 6 permutations of 3 elements should appear about equally often.
  Rng r(77);
  std::vector<int> counts(6, 0);
  const int trials = 60000;
  for (int t = 0; t < trials; ++t) {
    int v[3] = {0, 1, 2};
    r.shuffle(std::span<int>(v, 3));
    int code = v[0] * 2 + (v[1] > v[2] ? 1 : 0);  // unique per permutation
    ++counts[code];
  }
  for (int c : counts) EXPECT_NEAR(c, trials / 6, 500);
}

}  // namespace
}  // namespace pare
