// Numerical-fault helpers (train/numerics.h) against hand values.
#include "pare/train/numerics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "pare/base/error.h"

namespace pare::train {
namespace {

TEST(Numerics, SumOfSquaresMatchesAPlainDoubleSum) {
  for (int64_t n : {0, 1, 7, 8, 9, 1000, 1003}) {
    std::vector<float> x(static_cast<size_t>(n));
    double want = 0;
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)) * 3.0);
      want += static_cast<double>(x[static_cast<size_t>(i)]) * x[static_cast<size_t>(i)];
    }
    EXPECT_NEAR(sum_of_squares(x.data(), n), want, 1e-12 * (1 + want)) << n;
  }
  const float three_four[] = {3.0f, 4.0f};
  EXPECT_EQ(sum_of_squares(three_four, 2), 25.0);
}

TEST(Numerics, ANanOrInfinityAnywhereMakesTheSumNonFinite) {
  std::vector<float> x(100, 1.0f);
  for (size_t at : {size_t{0}, size_t{7}, size_t{64}, size_t{99}}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      std::vector<float> y = x;
      y[at] = bad;
      EXPECT_FALSE(std::isfinite(sum_of_squares(y.data(), 100))) << at << " " << bad;
    }
  }
  // Finite but huge values overflow float, not the double sum.
  std::vector<float> big(16, 3e38f);
  EXPECT_TRUE(std::isfinite(sum_of_squares(big.data(), 16)));
}

TEST(Numerics, SpikesAreReportedOnlyAfterTheWarmupAndAboveTheFactor) {
  GradientSpikes spikes(10);
  // The warm-up: 8 norms enter the average, even a large one.
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(spikes.observe(i == 3 ? 50.0 : 1.0)) << i;
  const double typical = spikes.typical();
  EXPECT_GT(typical, 1.0);
  EXPECT_FALSE(spikes.observe(9.0 * typical));
  EXPECT_TRUE(spikes.observe(10.5 * spikes.typical()));
  // A spike does not enter the average.
  const double before = spikes.typical();
  EXPECT_TRUE(spikes.observe(1000 * before));
  EXPECT_EQ(spikes.typical(), before);
  // Non-finite norms are the NaN check's business, not a spike.
  EXPECT_FALSE(spikes.observe(std::numeric_limits<double>::infinity()));
  GradientSpikes off(0);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(off.observe(i < 10 ? 1.0 : 1e9));
}

TEST(Numerics, OnNanNamesAreChecked) {
  EXPECT_EQ(parse_on_nan("stop"), OnNan::stop);
  EXPECT_EQ(parse_on_nan("skip"), OnNan::skip);
  EXPECT_EQ(parse_on_nan("rollback"), OnNan::rollback);
  try {
    parse_on_nan("ignore");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--on-nan ignore"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("stop, skip or rollback"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pare::train
