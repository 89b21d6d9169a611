// Batcher: every sample once per epoch, correct partial batches, buffer
// reuse, and bit-identical resumption after seek.
#include "pare/data/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "testing/temp_dir.h"

namespace pare::data {
namespace {

using testing::expect_error;

// Row i of the inputs is (i, i + 0.5, i + 0.25); target i is i.
Dataset indexed(int64_t n) {
  Dataset d;
  d.inputs = Tensor::empty({n, 3});
  d.targets = Tensor::empty({n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) {
    d.inputs.f32()[3 * i] = static_cast<float>(i);
    d.inputs.f32()[3 * i + 1] = static_cast<float>(i) + 0.5f;
    d.inputs.f32()[3 * i + 2] = static_cast<float>(i) + 0.25f;
    d.targets.data<int32_t>()[i] = static_cast<int32_t>(i);
  }
  d.num_classes = n;
  d.name = "indexed";
  return d;
}

// Runs the rest of an epoch and returns the sample index of every row seen,
// checking that inputs and targets stayed paired.
std::vector<std::vector<int32_t>> drain(Batcher& b) {
  std::vector<std::vector<int32_t>> batches;
  Tensor x, y;
  while (b.next(x, y)) {
    EXPECT_EQ(x.ndim(), 2);
    EXPECT_EQ(x.dim(1), 3);
    EXPECT_EQ(y.shape(), Shape({x.dim(0)}));
    std::vector<int32_t> ids;
    for (int64_t r = 0; r < x.dim(0); ++r) {
      const int32_t id = y.data<int32_t>()[r];
      EXPECT_EQ(x.f32()[3 * r], static_cast<float>(id));
      EXPECT_EQ(x.f32()[3 * r + 1], static_cast<float>(id) + 0.5f);
      EXPECT_EQ(x.f32()[3 * r + 2], static_cast<float>(id) + 0.25f);
      ids.push_back(id);
    }
    batches.push_back(ids);
  }
  return batches;
}

TEST(Batcher, EverySampleOncePerEpochWithPartialLastBatch) {
  Batcher b(indexed(10), 3, /*shuffle=*/true);
  EXPECT_EQ(b.batches_per_epoch(), 4);
  Rng rng(5);
  std::vector<int32_t> previous;
  for (int epoch = 0; epoch < 3; ++epoch) {
    b.start_epoch(rng);
    auto batches = drain(b);
    ASSERT_EQ(batches.size(), 4u);
    EXPECT_EQ(batches[0].size(), 3u);
    EXPECT_EQ(batches[3].size(), 1u);
    std::vector<int32_t> all;
    for (auto& ids : batches) all.insert(all.end(), ids.begin(), ids.end());
    std::vector<int32_t> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
    EXPECT_NE(all, previous) << "each epoch draws a fresh order";
    previous = all;
    EXPECT_EQ(b.position(), 4);
  }
  EXPECT_EQ(rng.counter(), 3u) << "one draw per epoch";
}

TEST(Batcher, DropLastAndUnshuffled) {
  Batcher b(indexed(10), 4, /*shuffle=*/false, /*drop_last=*/true);
  EXPECT_EQ(b.batches_per_epoch(), 2);
  Rng rng(0);
  b.start_epoch(rng);
  auto batches = drain(b);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0], (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(batches[1], (std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_EQ(rng.counter(), 1u) << "advances the stream even without shuffling";

  Batcher small(indexed(2), 8, true);  // batch larger than the dataset
  EXPECT_EQ(small.batches_per_epoch(), 1);
  small.start_epoch(rng);
  EXPECT_EQ(drain(small)[0].size(), 2u);
  Batcher tiny(indexed(2), 8, true, /*drop_last=*/true);
  EXPECT_EQ(tiny.batches_per_epoch(), 0);
  tiny.start_epoch(rng);
  EXPECT_TRUE(drain(tiny).empty());
}

TEST(Batcher, ReusesItsBuffers) {
  Batcher b(indexed(10), 3, true);
  Rng rng(1);
  b.start_epoch(rng);
  Tensor x0, y0, x, y;
  ASSERT_TRUE(b.next(x0, y0));
  const float* px = x0.f32();
  while (b.next(x, y)) {
    EXPECT_TRUE(x.shares_storage_with(x0));
    EXPECT_TRUE(y.shares_storage_with(y0));
    EXPECT_EQ(x.f32(), px);
  }
  EXPECT_EQ(x.shape(), Shape({1, 3})) << "last partial batch is a correctly-shaped view";
}

TEST(Batcher, SeekResumesWithTheSamePermutation) {
  const Dataset d = indexed(23);
  Rng rng(99);
  rng.next_u64();  // some earlier use of the stream
  const Rng saved = rng;

  Batcher a(d, 5, true);
  a.start_epoch(rng);
  const auto full = drain(a);
  ASSERT_EQ(full.size(), 5u);

  for (int64_t resume_at : {0, 2, 4, 5}) {
    Rng restored = saved;  // the state checkpointed before start_epoch
    Batcher b(d, 5, true);
    b.start_epoch(restored);
    b.seek(resume_at);
    EXPECT_EQ(b.position(), resume_at);
    const auto rest = drain(b);
    ASSERT_EQ(rest.size(), full.size() - resume_at);
    for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], full[resume_at + i]);
    EXPECT_EQ(b.order(), a.order());
  }
  expect_error([&] { a.seek(6); }, {"seek", "batch 6", "[0, 5]"});
  expect_error([&] { a.seek(-1); }, {"seek"});
}

TEST(Batcher, MultiDimensionalF32Targets) {
  Dataset d;
  d.inputs = Tensor::empty({4, 1, 2, 2});
  d.targets = Tensor::empty({4, 1, 2, 2});
  for (int64_t i = 0; i < 16; ++i) {
    d.inputs.f32()[i] = static_cast<float>(i);
    d.targets.f32()[i] = static_cast<float>(-i);
  }
  Batcher b(d, 3, true);
  Rng rng(3);
  b.start_epoch(rng);
  Tensor x, y;
  int64_t seen = 0;
  while (b.next(x, y)) {
    EXPECT_EQ(x.shape(), Shape({x.dim(0), 1, 2, 2}));
    EXPECT_EQ(y.shape(), x.shape());
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y.f32()[i], -x.f32()[i]);
    seen += x.dim(0);
  }
  EXPECT_EQ(seen, 4);
}

// Row i of the u8 inputs is (i, i + 1, ..., i + 255) mod 256, so every value
// appears in every row; target i is the u8 row (i, 255 - i).
Dataset bytes_dataset(int64_t n, double scale) {
  Dataset d;
  d.inputs = Tensor::empty({n, 1, 16, 16}, DType::u8);
  d.targets = Tensor::empty({n, 2}, DType::u8);
  d.input_scale = scale;
  auto* x = d.inputs.data<uint8_t>();
  auto* y = d.targets.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < 256; ++j) x[i * 256 + j] = static_cast<uint8_t>(i + j);
    y[2 * i] = static_cast<uint8_t>(i);
    y[2 * i + 1] = static_cast<uint8_t>(255 - i);
  }
  d.name = "bytes";
  return d;
}

TEST(Batcher, ConvertsU8InputsWithTheScaleAndU8Targets) {
  for (double scale : {1.0, 1.0 / 255.0, 0.5, -3.0}) {
    SCOPED_TRACE(scale);
    const Dataset d = bytes_dataset(7, scale);
    EXPECT_NO_THROW(validate(d));
    Batcher b(d, 3, /*shuffle=*/true);
    Rng rng(8);
    b.start_epoch(rng);
    Tensor x, y, x0, y0;
    int64_t seen = 0;
    for (bool first = true; b.next(x, y); first = false) {
      if (first) x0 = x, y0 = y;
      ASSERT_EQ(x.dtype(), DType::f32);
      ASSERT_EQ(y.dtype(), DType::f32);
      EXPECT_EQ(x.shape(), Shape({x.dim(0), 1, 16, 16}));
      EXPECT_EQ(y.shape(), Shape({x.dim(0), 2}));
      EXPECT_TRUE(x.shares_storage_with(x0)) << "the f32 buffers are reused";
      EXPECT_TRUE(y.shares_storage_with(y0));
      for (int64_t r = 0; r < x.dim(0); ++r) {
        const float target = y.f32()[2 * r];  // unscaled: the sample index
        ASSERT_EQ(y.f32()[2 * r + 1], 255.0f - target);
        const auto i = static_cast<int64_t>(target);
        for (int64_t j = 0; j < 256; ++j) {
          const auto v = static_cast<uint8_t>(i + j);
          const float want = static_cast<float>(static_cast<double>(v) * scale);
          ASSERT_EQ(x.f32()[r * 256 + j], want) << "value " << int{v};
        }
      }
      seen += x.dim(0);
    }
    EXPECT_EQ(seen, 7);
    EXPECT_EQ(x.shape(), Shape({1, 1, 16, 16})) << "last partial batch";
  }
}

// The 1/255 scale reproduces the old f32 images, float(v) / 255.0f, bit for
// bit; a float scale, v * (1 / 255.f), would differ for 126 of the 256 values.
TEST(Batcher, ImageScaleIsBitIdenticalToDividingBy255) {
  const Dataset d = bytes_dataset(1, 1.0 / 255.0);
  Batcher b(d, 1, false);
  Rng rng(0);
  b.start_epoch(rng);
  Tensor x, y;
  ASSERT_TRUE(b.next(x, y));
  int float_scale_differs = 0;
  for (int v = 0; v < 256; ++v) {
    const float old = static_cast<float>(v) / 255.0f;
    ASSERT_EQ(std::memcmp(&x.f32()[v], &old, 4), 0) << "value " << v;
    float_scale_differs += static_cast<float>(v) * (1.0f / 255.0f) != old;
  }
  EXPECT_GT(float_scale_differs, 0) << "the double scale is what makes this exact";
}

// Whichever loop U8ToF32 picks, the bits are those of the double product,
// for every byte, at any alignment and length (vector body and tail).
TEST(U8ToF32, EveryByteMatchesTheDoubleProduct) {
  std::vector<uint8_t> src(1000 + 64);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 151 + 7);
  for (double scale : {1.0, 1.0 / 255.0, 1.0 / 3.0, 0.1, 1e-3, 2.0, -1.0 / 7.0, 0.0, 1e300}) {
    SCOPED_TRACE(scale);
    const U8ToF32 convert(scale);
    for (size_t offset : {0, 1, 3}) {
      for (int64_t n : {0, 1, 7, 16, 17, 63, 784, 1000}) {
        std::vector<float> dst(static_cast<size_t>(n) + 1, -42.0f);
        convert(src.data() + offset, dst.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const float want = static_cast<float>(static_cast<double>(src[offset + i]) * scale);
          ASSERT_EQ(std::memcmp(&dst[i], &want, 4), 0) << "n " << n << " i " << i;
        }
        EXPECT_EQ(dst[n], -42.0f) << "wrote past n";
      }
    }
  }
}

// With an offset (standardised inputs), a byte converts to the same bits
// alone (the loop's scalar tail or the table) as inside a long run (its vector
// body), at any alignment, and within an ulp of the exact value.
TEST(U8ToF32, WithAnOffsetEveryByteConvertsAloneAsInBulk) {
  std::vector<uint8_t> src(1000 + 64);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 151 + 7);
  const std::pair<double, double> cases[] = {
      {1.0 / (255.0 * 0.353), -0.286 / 0.353}, {1.0 / 255.0, -0.5}, {2.0, 1.0}, {0.1, 1e-9}, {-3.0, 7.0}};
  for (const auto& [scale, shift] : cases) {
    SCOPED_TRACE(::testing::Message() << "scale " << scale << " offset " << shift);
    const U8ToF32 convert(scale, shift);
    float alone[256];
    for (int v = 0; v < 256; ++v) {
      const auto byte = static_cast<uint8_t>(v);
      convert(&byte, &alone[v], 1);
      const long double exact = static_cast<long double>(v) * scale + shift;
      const float below = std::nextafter(static_cast<float>(exact), -INFINITY);
      const float above = std::nextafter(static_cast<float>(exact), INFINITY);
      ASSERT_TRUE(alone[v] >= below && alone[v] <= above) << "byte " << v << ": " << alone[v];
    }
    for (size_t offset : {0, 1, 3}) {
      for (int64_t n : {2, 7, 16, 17, 63, 784, 1000}) {
        std::vector<float> dst(static_cast<size_t>(n) + 1, -42.0f);
        convert(src.data() + offset, dst.data(), n);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(std::memcmp(&dst[i], &alone[src[offset + i]], 4), 0) << "n " << n << " i " << i;
        EXPECT_EQ(dst[n], -42.0f) << "wrote past n";
      }
    }
  }
}

TEST(Batcher, U8InputsWithI32LabelsAndF32Passthrough) {
  Dataset d = bytes_dataset(5, 2.0);
  d.targets = Tensor::empty({5}, DType::i32);
  for (int32_t i = 0; i < 5; ++i) d.targets.data<int32_t>()[i] = i;
  d.num_classes = 5;
  EXPECT_NO_THROW(validate(d));
  Batcher b(d, 2, false);
  Rng rng(0);
  b.start_epoch(rng);
  Tensor x, y;
  ASSERT_TRUE(b.next(x, y));
  ASSERT_EQ(y.dtype(), DType::i32);
  EXPECT_EQ(y.data<int32_t>()[1], 1);
  EXPECT_EQ(x.f32()[256 + 3], 8.0f);  // row 1, value 4, times 2
}

TEST(Dataset, ValidateAcceptsTheStorageTypesAndRejectsOthers) {
  EXPECT_NO_THROW(validate(indexed(4)));
  EXPECT_NO_THROW(validate(bytes_dataset(4, 1.0 / 255.0)));
  Dataset d = bytes_dataset(4, 1.0);
  d.targets = Tensor::empty({4, 2});  // f32 targets with u8 inputs
  EXPECT_NO_THROW(validate(d));

  Dataset bad = indexed(4);
  bad.inputs = Tensor::empty({4, 3}, DType::i8);
  expect_error([&] { validate(bad); }, {"indexed", "inputs must be f32 or u8", "i8"});
  expect_error([&] { Batcher b(bad, 2, true); }, {"indexed", "f32 or u8"});
  bad = indexed(4);
  bad.input_scale = 0.5;
  expect_error([&] { validate(bad); }, {"indexed", "input_scale", "u8 inputs"});
  bad = bytes_dataset(4, std::nan(""));
  expect_error([&] { validate(bad); }, {"bytes", "input_scale", "finite"});
  bad = bytes_dataset(4, 1.0);
  bad.targets = Tensor::empty({4}, DType::i32);  // i32 without num_classes
  expect_error([&] { validate(bad); }, {"bytes", "targets must be f32 or u8", "i32"});
  bad.targets = Tensor::empty({4}, DType::i8);
  expect_error([&] { Batcher b(bad, 2, true); }, {"bytes", "targets", "i8"});
  bad = bytes_dataset(4, 1.0);
  bad.num_classes = 3;  // u8 class labels: must be i32
  expect_error([&] { validate(bad); }, {"bytes", "class labels", "i32"});
}

TEST(Batcher, InvalidArguments) {
  expect_error([] { Batcher b(indexed(4), 0, true); }, {"indexed", "batch size", "got 0"});
  Dataset bad = indexed(4);
  bad.targets = Tensor::empty({3}, DType::i32);
  expect_error([&] { Batcher b(bad, 2, true); }, {"4 inputs but 3 targets"});
  Batcher b(indexed(4), 2, true);
  Tensor x, y;
  EXPECT_THROW(b.next(x, y), pare::Error) << "next() before start_epoch()";
}

// split_last (dataset.h): the held-out tail is the last n samples, the rest
// trains; both share the data; n must leave at least one sample on each side.
TEST(SplitLast, HoldsOutTheLastSamples) {
  const Dataset d = indexed(10);
  const TrainTest s = split_last(d, 3);
  ASSERT_EQ(7, s.train.size());
  ASSERT_EQ(3, s.test.size());
  for (int64_t i = 0; i < 7; ++i) {
    EXPECT_EQ(i, s.train.targets.data<int32_t>()[i]);
    EXPECT_EQ(static_cast<float>(i) + 0.5f, s.train.inputs.f32()[3 * i + 1]);
  }
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(7 + i, s.test.targets.data<int32_t>()[i]);
    EXPECT_EQ(static_cast<float>(7 + i) + 0.25f, s.test.inputs.f32()[3 * i + 2]);
  }
  EXPECT_EQ(d.inputs.f32(), s.train.inputs.f32());  // shared, not copied
  EXPECT_EQ(10, s.test.num_classes);
  EXPECT_EQ("indexed/holdout", s.test.name);
  for (int64_t bad : {0, -1, 10, 11})
    expect_error([&] { split_last(d, bad); }, {"indexed", "cannot hold out", "of its 10"});
}

}  // namespace
}  // namespace pare::data
