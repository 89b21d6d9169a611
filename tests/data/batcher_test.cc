// Batcher: every sample once per epoch, correct partial batches, buffer
// reuse, and bit-identical resumption after seek.
#include "pare/data/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "data/temp_dir.h"

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

TEST(Batcher, InvalidArguments) {
  expect_error([] { Batcher b(indexed(4), 0, true); }, {"indexed", "batch size", "got 0"});
  Dataset bad = indexed(4);
  bad.targets = Tensor::empty({3}, DType::i32);
  expect_error([&] { Batcher b(bad, 2, true); }, {"4 inputs but 3 targets"});
  Batcher b(indexed(4), 2, true);
  Tensor x, y;
  EXPECT_THROW(b.next(x, y), pare::Error) << "next() before start_epoch()";
}

}  // namespace
}  // namespace pare::data
