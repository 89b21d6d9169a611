// Weight sharing and int8 storage of .pare tensors: the codebook is the
// k-means fixed point, errors are bounded, pruned positions stay absent, and
// the transformed tensors survive a file round trip.
#include "pare/io/compress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pare/base/rng.h"
#include "testing/errors.h"

namespace pare::io {
namespace {

format::Tensor random_f32(std::vector<int64_t> dims, double density, uint64_t seed) {
  format::Tensor t;
  t.name = std::string(1, 'w');
  t.dims = std::move(dims);
  const int64_t n = t.numel();
  t.values.resize(static_cast<size_t>(n) * 4);
  Rng rng(seed);
  if (density < 1) t.present.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = rng.normal() * 0.1f;
    std::memcpy(t.values.data() + i * 4, &v, 4);
    if (density < 1) t.present[static_cast<size_t>(i)] = rng.uniform() < density;
  }
  return t;
}

float f32(const format::Tensor& t, int64_t i) {
  float v;
  std::memcpy(&v, t.values.data() + i * 4, 4);
  return v;
}

TEST(ShareWeights, CodebookIsTheKMeansFixedPointAndPruningIsKept) {
  for (int bits : {1, 2, 4, 5, 8}) {
    const format::Tensor original = random_f32({30, 40}, 0.3, 7);
    format::Tensor t = original;
    share_weights(t, bits);
    ASSERT_EQ(t.dtype, format::DType::code);
    ASSERT_EQ(t.quant.kind, format::QuantKind::codebook);
    ASSERT_EQ(t.quant.centroids.size(), size_t{1} << bits);
    EXPECT_EQ(t.present, original.present) << "pruned positions stay absent";
    // Every present value sits in its nearest centroid's cluster, and each
    // used centroid is its cluster's mean (Lloyd's fixed point).
    const int k = 1 << bits;
    std::vector<double> sum(static_cast<size_t>(k), 0.0);
    std::vector<int> count(static_cast<size_t>(k), 0);
    for (int64_t i = 0; i < original.numel(); ++i) {
      if (!original.present[static_cast<size_t>(i)]) continue;
      const int c = t.values[static_cast<size_t>(i)];
      ASSERT_LT(c, k);
      const float v = f32(original, i);
      for (int o = 0; o < k; ++o)
        EXPECT_LE(std::fabs(v - t.quant.centroids[static_cast<size_t>(c)]),
                  std::fabs(v - t.quant.centroids[static_cast<size_t>(o)]) + 1e-7)
            << "bits " << bits << " element " << i;
      sum[static_cast<size_t>(c)] += v;
      ++count[static_cast<size_t>(c)];
    }
    for (int c = 0; c < k; ++c) {
      if (count[static_cast<size_t>(c)] > 0) {
        EXPECT_NEAR(t.quant.centroids[static_cast<size_t>(c)],
                    sum[static_cast<size_t>(c)] / count[static_cast<size_t>(c)], 1e-6)
            << "bits " << bits << " centroid " << c;
      }
    }
    // More bits, smaller error; 8 bits within a fraction of the value range.
    if (bits == 8) {
      EXPECT_LT(max_abs_error(original, t), 0.01);
    }
    // Deterministic.
    format::Tensor again = original;
    share_weights(again, bits);
    EXPECT_EQ(again.values, t.values);
    EXPECT_EQ(again.quant.centroids, t.quant.centroids);
    // And it is a valid .pare tensor that comes back unchanged.
    format::File f;
    f.spec_json = "{}";
    f.tensors.push_back(t);
    const format::File back = format::decode(format::encode(f), "mem.pare");
    EXPECT_EQ(back.tensors[0].quant.centroids, t.quant.centroids);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (t.present[static_cast<size_t>(i)]) {
        EXPECT_EQ(back.tensors[0].values[static_cast<size_t>(i)], t.values[static_cast<size_t>(i)]);
      }
    }
  }
  format::Tensor t = random_f32({4, 4}, 1.0, 1);
  testing::expect_error([&] { share_weights(t, 9); }, {"1 to 8"});
}

TEST(QuantizeS8PerChannel, ErrorWithinHalfAStepPerRow) {
  const format::Tensor original = random_f32({12, 50}, 0.5, 3);
  format::Tensor t = original;
  quantize_s8_per_channel(t);
  ASSERT_EQ(t.dtype, format::DType::s8);
  ASSERT_EQ(t.quant.kind, format::QuantKind::channel);
  ASSERT_EQ(t.quant.scales.size(), 12u);
  EXPECT_EQ(t.present, original.present);
  for (int64_t r = 0; r < 12; ++r) {
    float row_max = 0;
    for (int64_t c = 0; c < 50; ++c)
      if (original.present[static_cast<size_t>(r * 50 + c)]) row_max = std::max(row_max, std::fabs(f32(original, r * 50 + c)));
    EXPECT_NEAR(t.quant.scales[static_cast<size_t>(r)], row_max / 127, 1e-9);
    for (int64_t c = 0; c < 50; ++c) {
      const int64_t i = r * 50 + c;
      if (!original.present[static_cast<size_t>(i)]) continue;
      const double real = t.quant.scales[static_cast<size_t>(r)] * static_cast<int8_t>(t.values[static_cast<size_t>(i)]);
      EXPECT_LE(std::fabs(real - f32(original, i)), t.quant.scales[static_cast<size_t>(r)] / 2 + 1e-7) << i;
    }
  }
  EXPECT_LE(max_abs_error(original, t), 0.5 * 0.5 / 127 * 10);
  format::File f;
  f.spec_json = "{}";
  f.tensors.push_back(t);
  EXPECT_NO_THROW(format::decode(format::encode(f), "mem.pare"));
}

}  // namespace
}  // namespace pare::io
