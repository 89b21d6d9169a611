// Shape, Tensor handles, views and the storage pool.
#include "pare/tensor/tensor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace pare {
namespace {

std::vector<float> iota_values(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

TEST(Shape, NumelStrEquality) {
  Shape s{60, 784};
  EXPECT_EQ(s.ndim(), 2);
  EXPECT_EQ(s.numel(), 60 * 784);
  EXPECT_EQ(s.str(), "(60, 784)");
  EXPECT_EQ(s[1], 784);
  EXPECT_EQ(s.vec(), (std::vector<int64_t>{60, 784}));
  EXPECT_EQ(Shape({}).numel(), 1);  // scalar
  EXPECT_EQ(Shape({}).str(), "()");
  EXPECT_EQ(Shape({3, 0, 2}).numel(), 0);
  EXPECT_EQ(Shape({2, 3}), Shape({2, 3}));
  EXPECT_NE(Shape({2, 3}), Shape({3, 2}));
  EXPECT_NE(Shape({6}), Shape({6, 1}));
  EXPECT_NE(Shape({}), Shape({1}));
}

TEST(Shape, TooManyDimsOrNegativeRejected) {
  EXPECT_THROW(Shape({1, 1, 1, 1, 1, 1, 1}), Error);
  EXPECT_NO_THROW(Shape({1, 1, 1, 1, 1, 1}));
  EXPECT_THROW(Shape({2, -3}), Error);
}

TEST(Tensor, DefaultIsUndefined) {
  Tensor t;
  EXPECT_FALSE(t.defined());
}

TEST(Tensor, ZerosFullFrom) {
  Tensor z = Tensor::zeros({3, 4});
  ASSERT_TRUE(z.defined());
  EXPECT_EQ(z.shape(), Shape({3, 4}));
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_EQ(z.nbytes(), 48u);
  for (float v : z.span_f32()) EXPECT_EQ(v, 0.0f);

  Tensor zi = Tensor::zeros({5}, DType::i32);
  EXPECT_EQ(zi.dtype(), DType::i32);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(zi.data<int32_t>()[i], 0);

  Tensor f = Tensor::full({2, 2}, 1.5f);
  for (float v : f.span_f32()) EXPECT_EQ(v, 1.5f);

  auto vals = iota_values(6);
  Tensor t = Tensor::from({2, 3}, vals);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.f32()[i], static_cast<float>(i));
  EXPECT_EQ(t.dim(-1), 3);
  EXPECT_EQ(t.dim(0), 2);
  EXPECT_THROW(Tensor::from({2, 2}, vals), Error);

  std::vector<int32_t> labels{3, 1, 4};
  Tensor l = Tensor::from_i32({3}, labels);
  EXPECT_EQ(l.dtype(), DType::i32);
  EXPECT_EQ(l.data<int32_t>()[2], 4);
  EXPECT_THROW(Tensor::from_i32({4}, labels), Error);
}

TEST(Tensor, DtypeSizesAndNames) {
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::i32), 4u);
  EXPECT_EQ(dtype_size(DType::i8), 1u);
  EXPECT_EQ(dtype_size(DType::u8), 1u);
  EXPECT_STREQ(dtype_name(DType::f32), "f32");
  EXPECT_STREQ(dtype_name(DType::u8), "u8");
  EXPECT_EQ(Tensor::zeros({7}, DType::u8).nbytes(), 7u);
}

TEST(Tensor, ReshapeSharesDataAndInfersMinusOne) {
  Tensor t = Tensor::from({2, 3, 4}, iota_values(24));
  Tensor r = t.reshape({6, -1});
  EXPECT_EQ(r.shape(), Shape({6, 4}));
  EXPECT_TRUE(r.shares_storage_with(t));
  r.f32()[5] = -1.0f;
  EXPECT_EQ(t.f32()[5], -1.0f);
  EXPECT_EQ(t.reshape({-1}).shape(), Shape({24}));
  EXPECT_EQ(t.reshape({2, -1, 3}).shape(), Shape({2, 4, 3}));
  EXPECT_EQ(t.reshape({24}).shape(), Shape({24}));
}

TEST(Tensor, ReshapeErrors) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_THROW(t.reshape({5, 5}), Error);        // wrong numel
  EXPECT_THROW(t.reshape({-1, -1}), Error);      // two inferred dims
  EXPECT_THROW(t.reshape({5, -1}), Error);       // 24 not divisible by 5
  try {
    t.reshape({7, 3});
    FAIL() << "expected Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("(2, 3, 4)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(7, 3)"), std::string::npos) << msg;
  }
}

TEST(Tensor, SliceRowsSharesData) {
  Tensor t = Tensor::from({4, 3}, iota_values(12));
  Tensor s = t.slice_rows(1, 3);
  EXPECT_EQ(s.shape(), Shape({2, 3}));
  EXPECT_TRUE(s.shares_storage_with(t));
  EXPECT_EQ(s.f32()[0], 3.0f);
  EXPECT_EQ(s.f32()[5], 8.0f);
  s.f32()[0] = 100.0f;
  EXPECT_EQ(t.f32()[3], 100.0f);
  // Slices of slices keep the offset.
  Tensor s2 = s.slice_rows(1, 2);
  EXPECT_EQ(s2.f32()[0], 6.0f);
  // Empty slice and bad ranges.
  EXPECT_EQ(t.slice_rows(2, 2).numel(), 0);
  EXPECT_THROW(t.slice_rows(3, 2), Error);
  EXPECT_THROW(t.slice_rows(0, 5), Error);
  EXPECT_THROW(t.slice_rows(-1, 2), Error);
  // 1-D tensors slice element-wise.
  Tensor v = Tensor::from({5}, iota_values(5));
  EXPECT_EQ(v.slice_rows(2, 4).f32()[1], 3.0f);
}

TEST(Tensor, CloneDoesNotShare) {
  Tensor t = Tensor::from({4, 3}, iota_values(12));
  Tensor s = t.slice_rows(2, 4);
  Tensor c = s.clone();
  EXPECT_FALSE(c.shares_storage_with(t));
  EXPECT_EQ(c.shape(), Shape({2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.f32()[i], static_cast<float>(6 + i));
  c.f32()[0] = -5.0f;
  EXPECT_EQ(t.f32()[6], 6.0f);
  Tensor ci = Tensor::from_i32({2}, std::vector<int32_t>{7, 8}).clone();
  EXPECT_EQ(ci.dtype(), DType::i32);
  EXPECT_EQ(ci.data<int32_t>()[1], 8);
}

TEST(Tensor, CopyFromChecksNumelAndDtype) {
  Tensor dst = Tensor::zeros({2, 3});
  Tensor src = Tensor::from({3, 2}, iota_values(6));
  dst.copy_from(src);  // same numel, different shape: allowed
  for (int i = 0; i < 6; ++i) EXPECT_EQ(dst.f32()[i], static_cast<float>(i));
  EXPECT_EQ(dst.shape(), Shape({2, 3}));
  EXPECT_THROW(dst.copy_from(Tensor::zeros({7})), Error);
  EXPECT_THROW(dst.copy_from(Tensor::zeros({2, 3}, DType::i32)), Error);
  // Into a view: writes land in the parent.
  Tensor big = Tensor::zeros({4, 3});
  big.slice_rows(1, 3).copy_from(src);
  EXPECT_EQ(big.f32()[2], 0.0f);
  EXPECT_EQ(big.f32()[3], 0.0f);
  EXPECT_EQ(big.f32()[8], 5.0f);
  EXPECT_EQ(big.f32()[9], 0.0f);
}

TEST(Tensor, FillAndZeroRespectViews) {
  Tensor t = Tensor::full({3, 2}, 2.0f);
  t.slice_rows(1, 2).zero();
  EXPECT_EQ(t.f32()[1], 2.0f);
  EXPECT_EQ(t.f32()[2], 0.0f);
  EXPECT_EQ(t.f32()[3], 0.0f);
  EXPECT_EQ(t.f32()[4], 2.0f);
  t.slice_rows(2, 3).fill(9.0f);
  EXPECT_EQ(t.f32()[3], 0.0f);
  EXPECT_EQ(t.f32()[4], 9.0f);
  EXPECT_THROW(Tensor::zeros({2}, DType::i32).fill(1.0f), Error);
}

TEST(Tensor, StorageIsAligned64) {
  for (int64_t n : {1, 3, 17, 1000, 4097}) {
    Tensor t = Tensor::empty({n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.f32()) % 64, 0u) << "n=" << n;
    Tensor b = Tensor::empty({n}, DType::u8);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % 64, 0u) << "n=" << n;
  }
}

TEST(StoragePool, ReusesFreedBufferOfSameSize) {
  storage_pool_release();
  EXPECT_EQ(storage_pool_bytes(), 0u);
  // An odd size unlikely to be used elsewhere in this test.
  const Shape shape{1234, 7};
  const void* first_ptr;
  {
    Tensor t = Tensor::empty(shape);
    first_ptr = t.raw();
    EXPECT_EQ(storage_pool_bytes(), 0u);
  }
  const size_t held = storage_pool_bytes();
  EXPECT_GE(held, 1234u * 7u * 4u);  // rounded up to the alignment
  EXPECT_LT(held, 1234u * 7u * 4u + 64u);
  Tensor again = Tensor::empty(shape);
  EXPECT_EQ(again.raw(), first_ptr) << "the pooled buffer should be reused";
  EXPECT_EQ(storage_pool_bytes(), 0u);
  // A different size does not take a pooled buffer of another size.
  {
    Tensor a = Tensor::empty({10});
  }
  const size_t small = storage_pool_bytes();
  EXPECT_GT(small, 0u);
  Tensor other = Tensor::empty({5000});
  EXPECT_EQ(storage_pool_bytes(), small);
  storage_pool_release();
  EXPECT_EQ(storage_pool_bytes(), 0u);
}

TEST(StoragePool, ViewsKeepStorageAlive) {
  storage_pool_release();
  Tensor view;
  {
    Tensor t = Tensor::from({3, 2}, iota_values(6));
    view = t.slice_rows(2, 3);
  }
  EXPECT_EQ(storage_pool_bytes(), 0u);  // still referenced by the view
  EXPECT_EQ(view.f32()[1], 5.0f);
  view = Tensor();
  EXPECT_GT(storage_pool_bytes(), 0u);
  storage_pool_release();
}

}  // namespace
}  // namespace pare
