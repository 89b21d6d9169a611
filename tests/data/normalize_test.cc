// Normalisation statistics and their application, and the Dataset checks.
#include "pare/data/normalize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "testing/temp_dir.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/data/batcher.h"
#include "pare/data/dataset.h"

namespace pare::data {
namespace {

using testing::expect_error;

TEST(Normalize, KnownValues) {
  Tensor t = Tensor::from({2, 2}, std::vector<float>{1, 3, 5, 7});
  Normalization n = compute_normalization(t);
  EXPECT_FLOAT_EQ(n.mean, 4.0f);
  EXPECT_FLOAT_EQ(n.std, std::sqrt(5.0f));  // population std
  normalize(t, n);
  EXPECT_FLOAT_EQ(t.f32()[0], -3.0f / std::sqrt(5.0f));
  EXPECT_FLOAT_EQ(t.f32()[3], 3.0f / std::sqrt(5.0f));
}

TEST(Normalize, LargeTensorBecomesStandardAndThreadIndependent) {
  Rng rng(11);
  Tensor t = Tensor::empty({300001});
  for (float& v : t.span_f32()) v = 3.0f + 2.0f * rng.normal();
  const int saved = num_threads();
  set_num_threads(1);
  Normalization one = compute_normalization(t);
  set_num_threads(2);
  Normalization two = compute_normalization(t);
  set_num_threads(saved);
  EXPECT_EQ(one.mean, two.mean);
  EXPECT_EQ(one.std, two.std);
  EXPECT_NEAR(one.mean, 3.0f, 0.02f);
  EXPECT_NEAR(one.std, 2.0f, 0.02f);
  normalize(t, one);
  Normalization after = compute_normalization(t);
  EXPECT_NEAR(after.mean, 0.0f, 1e-5f);
  EXPECT_NEAR(after.std, 1.0f, 1e-5f);
}

TEST(Normalize, Errors) {
  expect_error([] { compute_normalization(Tensor::empty({0, 3})); }, {"empty"});
  Tensor bad = Tensor::from({2}, std::vector<float>{1, std::numeric_limits<float>::quiet_NaN()});
  expect_error([&] { compute_normalization(bad); }, {"NaN"});
  Tensor constant = Tensor::full({4}, 2.0f);
  Normalization n = compute_normalization(constant);
  EXPECT_EQ(n.std, 0.0f);
  expect_error([&] { normalize(constant, n); }, {"positive std", "constant"});
}

TEST(Dataset, Validate) {
  Dataset d;
  d.name = "toy";
  expect_error([&] { validate(d); }, {"toy", "inputs"});
  d.inputs = Tensor::zeros({3, 2});
  d.targets = Tensor::from_i32({3}, std::vector<int32_t>{0, 2, 1});
  d.num_classes = 3;
  EXPECT_EQ(d.size(), 3);
  EXPECT_NO_THROW(validate(d));
  d.num_classes = 2;
  expect_error([&] { validate(d); }, {"toy", "label 2", "sample 1", "[0, 2)"});
  d.targets = Tensor::from_i32({2}, std::vector<int32_t>{0, 1});
  expect_error([&] { validate(d); }, {"3 inputs but 2 targets"});
  EXPECT_EQ(Dataset{}.size(), 0);
}

}  // namespace
}  // namespace pare::data

namespace pare::data {
namespace {

// Standardising u8 data folds the statistics into the byte conversion: the
// batches come out with mean 0 and std 1, the bytes are untouched, and a test
// split gets the training split's statistics.
TEST(Standardize, U8FoldsIntoScaleAndOffset) {
  TrainTest tt;
  const int64_t n = 400, d = 25;
  for (Dataset* ds : {&tt.train, &tt.test}) {
    ds->inputs = Tensor::empty({n, d}, DType::u8);
    ds->targets = Tensor::zeros({n}, DType::i32);
    ds->num_classes = 1;
    ds->input_scale = 1.0 / 255.0;
    uint8_t* p = ds->inputs.data<uint8_t>();
    for (int64_t i = 0; i < n * d; ++i) p[i] = static_cast<uint8_t>((i * 37 + (ds == &tt.test)) % 256);
  }
  const uint8_t first = tt.train.inputs.data<uint8_t>()[0];
  Normalization stats = standardize(tt);
  EXPECT_EQ(tt.train.inputs.data<uint8_t>()[0], first);
  EXPECT_NEAR(stats.mean, 0.5, 0.05);

  Batcher batcher(tt.train, n, /*shuffle=*/false);
  Rng rng(0);
  batcher.start_epoch(rng);
  Tensor x, y;
  ASSERT_TRUE(batcher.next(x, y));
  double sum = 0, sq = 0;
  for (float v : x.span_f32()) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double mean = sum / static_cast<double>(x.numel());
  EXPECT_NEAR(mean, 0.0, 1e-5);
  EXPECT_NEAR(sq / static_cast<double>(x.numel()) - mean * mean, 1.0, 1e-4);

  // The test split was standardised with the training statistics.
  Dataset again = tt.test;
  again.input_scale = 1.0 / 255.0;
  again.input_offset = 0.0;
  standardize_with(again, stats);
  EXPECT_DOUBLE_EQ(again.input_scale, tt.test.input_scale);
  EXPECT_DOUBLE_EQ(again.input_offset, tt.test.input_offset);
}

}  // namespace
}  // namespace pare::data
