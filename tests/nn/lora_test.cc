// LoRA's merge and gradients (nn/lora.h) against plain loops in double: the
// merge mask * (W0 + scale B A) for a linear weight (out, in) and a
// convolution weight (out, in, kh, kw) taken as (out, in*kh*kw), in place or
// into another tensor; the factors' gradients against the loops and against
// central differences of L = sum(G0 * merged); and the shape checks.
#include "pare/nn/lora.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/rng.h"
#include "testing/errors.h"

namespace pare::nn {
namespace {

using pare::testing::expect_error;

Tensor random_tensor(const Shape& shape, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t.f32()[j] = rng.uniform(lo, hi);
  return t;
}

// About a third of the entries 0, the rest 1.
Tensor random_mask(const Shape& shape, Rng& rng) {
  Tensor m = Tensor::empty(shape);
  for (int64_t j = 0; j < m.numel(); ++j) m.f32()[j] = rng.uniform() < 0.35f ? 0.0f : 1.0f;
  return m;
}

// mask * (base + scale * b a) in double; base (out, K) as a flat matrix.
std::vector<double> naive_merge(const Tensor& base, const Tensor& b, const Tensor& a, float scale,
                                const Tensor& mask) {
  const int64_t rows = base.dim(0), cols = base.numel() / rows, rank = a.dim(0);
  std::vector<double> out(static_cast<size_t>(base.numel()));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t r = 0; r < rank; ++r)
        s +=
            static_cast<double>(b.f32()[i * rank + r]) * static_cast<double>(a.f32()[r * cols + j]);
      double w = static_cast<double>(base.f32()[i * cols + j]) + static_cast<double>(scale) * s;
      if (mask.defined() && mask.f32()[i * cols + j] == 0.0f) w = 0;
      out[static_cast<size_t>(i * cols + j)] = w;
    }
  return out;
}

// g' = mask * g; grad_b = scale g' a^T (out, r); grad_a = scale b^T g' (r, K).
void naive_backward(const Tensor& g, const Tensor& b, const Tensor& a, float scale,
                    const Tensor& mask, std::vector<double>& grad_b, std::vector<double>& grad_a) {
  const int64_t rows = g.dim(0), cols = g.numel() / rows, rank = a.dim(0);
  auto gm = [&](int64_t i, int64_t j) {
    if (mask.defined() && mask.f32()[i * cols + j] == 0.0f) return 0.0;
    return static_cast<double>(g.f32()[i * cols + j]);
  };
  grad_b.assign(static_cast<size_t>(rows * rank), 0.0);
  grad_a.assign(static_cast<size_t>(rank * cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t r = 0; r < rank; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += gm(i, j) * static_cast<double>(a.f32()[r * cols + j]);
      grad_b[static_cast<size_t>(i * rank + r)] = static_cast<double>(scale) * s;
    }
  for (int64_t r = 0; r < rank; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (int64_t i = 0; i < rows; ++i) s += static_cast<double>(b.f32()[i * rank + r]) * gm(i, j);
      grad_a[static_cast<size_t>(r * cols + j)] = static_cast<double>(scale) * s;
    }
}

// Every entry within `rel` of the reference, relative to max(1, |want|).
void expect_close(const float* got, const std::vector<double>& want, double rel, const char* what) {
  int bad = 0;
  for (size_t j = 0; j < want.size(); ++j) {
    const double tol = rel * std::max(1.0, std::fabs(want[j]));
    if (std::fabs(static_cast<double>(got[j]) - want[j]) > tol && ++bad <= 5)
      ADD_FAILURE() << what << "[" << j << "]: " << got[j] << ", want " << want[j];
  }
  EXPECT_EQ(bad, 0) << what;
}

// Every masked entry of w is exactly 0.
void expect_zero_where_masked(const Tensor& w, const Tensor& mask) {
  int64_t masked = 0;
  for (int64_t j = 0; j < w.numel(); ++j)
    if (mask.f32()[j] == 0.0f) {
      ++masked;
      EXPECT_EQ(w.f32()[j], 0.0f) << "entry " << j;
    }
  EXPECT_GT(masked, 0) << "the test mask should prune something";
}

struct MergeCase {
  const char* name;
  Shape shape;
  int64_t rank;
  float scale;
};

void PrintTo(const MergeCase& c, std::ostream* os) {
  *os << c.name << " " << c.shape.str() << " rank " << c.rank;
}

class LoraKernelTest : public ::testing::TestWithParam<MergeCase> {};

TEST_P(LoraKernelTest, MatchesNaiveLoopsIntoAnotherTensorAndLeavesBaseAlone) {
  const MergeCase& c = GetParam();
  Rng rng(11);
  const auto [out, k] = lora_matrix_dims(c.shape);
  const Tensor base = random_tensor(c.shape, rng);
  const Tensor a = random_tensor({c.rank, k}, rng);
  const Tensor b = random_tensor({out, c.rank}, rng);
  const Tensor base_before = base.clone();
  Tensor merged = Tensor::full(c.shape, 99.0f);
  lora_merge(merged, base, b, a, c.scale, Tensor());
  expect_close(merged.f32(), naive_merge(base, b, a, c.scale, Tensor()), 1e-5, "merged");
  EXPECT_EQ(std::memcmp(base.f32(), base_before.f32(), base.nbytes()), 0)
      << "base is an input only";
}

TEST_P(LoraKernelTest, MatchesNaiveLoopsInPlaceWithAMask) {
  const MergeCase& c = GetParam();
  Rng rng(12);
  const auto [out, k] = lora_matrix_dims(c.shape);
  Tensor w = random_tensor(c.shape, rng);
  const Tensor base = w.clone();
  const Tensor mask = random_mask(c.shape, rng);
  const Tensor a = random_tensor({c.rank, k}, rng);
  const Tensor b = random_tensor({out, c.rank}, rng);
  lora_merge(w, w, b, a, c.scale, mask);  // out aliases base
  expect_close(w.f32(), naive_merge(base, b, a, c.scale, mask), 1e-5, "merged in place");
  expect_zero_where_masked(w, mask);
}

TEST_P(LoraKernelTest, BackwardMatchesNaiveLoopsWithAndWithoutAMask) {
  const MergeCase& c = GetParam();
  Rng rng(13);
  const auto [out, k] = lora_matrix_dims(c.shape);
  const Tensor g = random_tensor(c.shape, rng);
  const Tensor mask = random_mask(c.shape, rng);
  const Tensor a = random_tensor({c.rank, k}, rng);
  const Tensor b = random_tensor({out, c.rank}, rng);
  for (const bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "with a mask" : "without a mask");
    const Tensor m = masked ? mask : Tensor();
    // Stale values in the outputs: the gradients are overwritten, not added to.
    Tensor grad_b = Tensor::full({out, c.rank}, 5.0f);
    Tensor grad_a = Tensor::full({c.rank, k}, -5.0f);
    Tensor scratch = Tensor::empty({g.numel()});
    const Tensor g_before = g.clone();
    lora_backward(grad_b, grad_a, g, b, a, c.scale, m, scratch);
    std::vector<double> want_b, want_a;
    naive_backward(g, b, a, c.scale, m, want_b, want_a);
    expect_close(grad_b.f32(), want_b, 1e-5, "grad_b");
    expect_close(grad_a.f32(), want_a, 1e-5, "grad_a");
    EXPECT_EQ(std::memcmp(g.f32(), g_before.f32(), g.nbytes()), 0) << "g is an input only";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LoraKernelTest,
    ::testing::Values(MergeCase{"linear", Shape{7, 13}, 3, 0.5f},  // (out, in)
                      MergeCase{"linear_rank1", Shape{5, 4}, 1, 2.0f},
                      MergeCase{"conv", Shape{6, 3, 3, 3}, 2, 1.5f},  // (out, in, kh, kw)
                      MergeCase{"conv_rank_over_out", Shape{2, 2, 3, 3}, 4, 1.0f}),
    [](const ::testing::TestParamInfo<MergeCase>& info) { return std::string(info.param.name); });

TEST(LoraMatrixDims, TakesAWeightAsItsFirstDimensionByTheRest) {
  EXPECT_EQ(lora_matrix_dims(Shape{7, 13}), (std::pair<int64_t, int64_t>{7, 13}));
  EXPECT_EQ(lora_matrix_dims(Shape{6, 3, 5, 2}), (std::pair<int64_t, int64_t>{6, 30}));
  EXPECT_THROW(lora_matrix_dims(Shape{}), Error);
}

// L(A, B) = sum(G0 * mask * (W0 + scale B A)) in double; its gradient with
// respect to A and B is what lora_backward gives for g = G0.
double loss(const Tensor& w0, const Tensor& b, const Tensor& a, float scale, const Tensor& mask,
            const Tensor& g0) {
  Tensor merged = Tensor::empty(w0.shape());
  lora_merge(merged, w0, b, a, scale, mask);
  double l = 0;
  for (int64_t j = 0; j < merged.numel(); ++j)
    l += static_cast<double>(g0.f32()[j]) * static_cast<double>(merged.f32()[j]);
  return l;
}

TEST(LoraBackward, MatchesFiniteDifferencesOfTheMergedWeightsLoss) {
  Rng rng(21);
  const Shape shape{5, 2, 2, 2};  // a convolution weight, K = 8
  const int64_t rank = 3;
  const float scale = 0.75f;
  const auto [out, k] = lora_matrix_dims(shape);
  // W0 small so that the merged values' rounding stays far below the
  // difference quotients.
  const Tensor w0 = random_tensor(shape, rng, -0.1f, 0.1f);
  const Tensor g0 = random_tensor(shape, rng);
  const Tensor mask = random_mask(shape, rng);
  Tensor a = random_tensor({rank, k}, rng);
  Tensor b = random_tensor({out, rank}, rng);
  for (const bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "with a mask" : "without a mask");
    const Tensor m = masked ? mask : Tensor();
    Tensor grad_b = Tensor::empty({out, rank}), grad_a = Tensor::empty({rank, k});
    Tensor scratch = Tensor::empty({g0.numel()});
    lora_backward(grad_b, grad_a, g0, b, a, scale, m, scratch);
    const float eps = 1e-2f;
    for (Tensor* factor : {&a, &b}) {
      const Tensor& grad = factor == &a ? grad_a : grad_b;
      for (int64_t j = 0; j < factor->numel(); ++j) {
        const float keep = factor->f32()[j];
        factor->f32()[j] = keep + eps;
        const double up = loss(w0, b, a, scale, m, g0);
        factor->f32()[j] = keep - eps;
        const double down = loss(w0, b, a, scale, m, g0);
        factor->f32()[j] = keep;
        const double fd = (up - down) / (2.0 * static_cast<double>(eps));
        EXPECT_NEAR(grad.f32()[j], fd, 1e-3 * std::max(1.0, std::fabs(fd)))
            << (factor == &a ? "dL/dA[" : "dL/dB[") << j << "]";
      }
    }
  }
}

TEST(LoraBackward, AMaskedEntryOfTheGradientDoesNotReachTheFactors) {
  // Only masked entries of g are nonzero: both gradients must be exactly 0.
  Rng rng(22);
  const Shape shape{4, 6};
  const Tensor mask = random_mask(shape, rng);
  Tensor g = Tensor::zeros(shape);
  for (int64_t j = 0; j < g.numel(); ++j)
    if (mask.f32()[j] == 0.0f) g.f32()[j] = rng.uniform(1.0f, 2.0f);
  const Tensor a = random_tensor({2, 6}, rng), b = random_tensor({4, 2}, rng);
  Tensor grad_b = Tensor::full({4, 2}, 1.0f), grad_a = Tensor::full({2, 6}, 1.0f);
  Tensor scratch = Tensor::empty({g.numel()});
  lora_backward(grad_b, grad_a, g, b, a, 1.0f, mask, scratch);
  for (int64_t j = 0; j < grad_b.numel(); ++j) EXPECT_EQ(grad_b.f32()[j], 0.0f) << "grad_b " << j;
  for (int64_t j = 0; j < grad_a.numel(); ++j) EXPECT_EQ(grad_a.f32()[j], 0.0f) << "grad_a " << j;
}

TEST(LoraBackward, RefusesAScratchSmallerThanTheGradientWhenMasked) {
  Rng rng(23);
  const Shape shape{4, 6};
  const Tensor g = random_tensor(shape, rng), mask = random_mask(shape, rng);
  const Tensor a = random_tensor({2, 6}, rng), b = random_tensor({4, 2}, rng);
  Tensor grad_b = Tensor::empty({4, 2}), grad_a = Tensor::empty({2, 6});
  Tensor small = Tensor::empty({g.numel() - 1});
  expect_error([&] { lora_backward(grad_b, grad_a, g, b, a, 1.0f, mask, small); }, {"scratch"});
}

TEST(CheckLoraFactors, AcceptsFactorsThatFitAndRefusesEveryMismatch) {
  const Shape conv{6, 3, 2, 2};  // (out 6, K 12)
  auto t = [](Shape s) { return Tensor::zeros(s); };
  EXPECT_NO_THROW(check_lora_factors(conv, t({2, 12}), t({6, 2}), "w"));
  EXPECT_NO_THROW(check_lora_factors(Shape{6, 12}, t({1, 12}), t({6, 1}), "w"));
  // A's columns are not K.
  expect_error(
      [&] {
        check_lora_factors(conv, t({2, 3}), t({6, 2}), "conv1.weight");
      },
      {"conv1.weight", "(6, 3, 2, 2)", "(r, 12)", "(6, r)"});
  // B's rows are not the weight's rows.
  expect_error([&] { check_lora_factors(conv, t({2, 12}), t({5, 2}), "w"); }, {"(5, 2)"});
  // The ranks of A and B differ.
  expect_error(
      [&] {
        check_lora_factors(conv, t({2, 12}), t({6, 3}), "w");
      },
      {"(2, 12)", "(6, 3)"});
  // Rank 0.
  expect_error([&] { check_lora_factors(conv, t({0, 12}), t({6, 0}), "w"); }, {"w"});
  // Factors that are not matrices.
  expect_error([&] { check_lora_factors(conv, t({24}), t({6, 2}), "w"); }, {"w"});
  expect_error([&] { check_lora_factors(conv, t({2, 12}), t({6, 2, 1}), "w"); }, {"w"});
  // A (K, r) and B (r, out) swapped.
  expect_error([&] { check_lora_factors(Shape{6, 12}, t({12, 2}), t({2, 6}), "w"); }, {"w"});
}

TEST(LoraMerge, RefusesFactorsThatDoNotFitTheWeight) {
  Tensor w = Tensor::zeros({4, 5});
  expect_error(
      [&] {
        lora_merge(w, w, Tensor::zeros({4, 2}), Tensor::zeros({2, 4}), 1.0f, Tensor());
      },
      {"lora_merge"});
  Tensor gb = Tensor::zeros({4, 2}), ga = Tensor::zeros({2, 5}), scratch;
  expect_error(
      [&] {
        lora_backward(gb, ga, w, Tensor::zeros({3, 2}), Tensor::zeros({2, 5}), 1.0f, Tensor(),
                      scratch);
      },
      {"lora_backward"});
}

// A weight packed at its mask's nonzeros (a layer that runs sparse) is merged
// there to the same bits as the dense merge, and its factors' gradients from
// the nonzeros' gradient are those of the masked dense gradient.
TEST(LoraPacked, MergeHasTheDenseMergesBitsAndBackwardItsGradients) {
  Rng rng(41);
  for (const Shape& shape : {Shape{7, 13}, Shape{6, 3, 3, 3}, Shape{1, 40}}) {
    for (int64_t rank : {1, 3}) {
      SCOPED_TRACE(shape.str() + " rank " + std::to_string(rank));
      const int64_t rows = shape[0], cols = shape.numel() / rows;
      const Tensor base = random_tensor(shape, rng);
      const Tensor a = random_tensor({rank, cols}, rng), b = random_tensor({rows, rank}, rng);
      Tensor mask = random_mask(shape, rng);
      mask.f32()[0] = 0.0f;  // an empty row start and a full row elsewhere
      for (int64_t k = 0; k < cols; ++k) mask.f32()[(rows - 1) * cols + k] = 1.0f;
      const float scale = 0.75f;
      Tensor dense = Tensor::empty(shape);
      lora_merge(dense, base, b, a, scale, mask);
      const CsrPattern pattern = CsrPattern::from_mask(rows, cols, mask.f32());
      std::vector<float> packed(static_cast<size_t>(pattern.nnz()), -1.0f);
      lora_merge_packed(packed.data(), pattern, base, b, a, scale);
      for (int64_t e = 0; e < pattern.nnz(); ++e)
        EXPECT_EQ(std::memcmp(&packed[static_cast<size_t>(e)], &dense.f32()[pattern.pos[static_cast<size_t>(e)]], 4), 0)
            << "entry " << e << ": " << packed[static_cast<size_t>(e)] << " against "
            << dense.f32()[pattern.pos[static_cast<size_t>(e)]];

      const Tensor g = random_tensor(shape, rng);
      std::vector<float> g_packed(static_cast<size_t>(pattern.nnz()));
      for (int64_t e = 0; e < pattern.nnz(); ++e)
        g_packed[static_cast<size_t>(e)] = g.f32()[pattern.pos[static_cast<size_t>(e)]];
      Tensor gb = Tensor::full({rows, rank}, 9.0f), ga = Tensor::full({rank, cols}, 9.0f);  // overwritten
      lora_backward_packed(gb, ga, g_packed.data(), pattern, b, a, scale);
      std::vector<double> want_b, want_a;
      naive_backward(g, b, a, scale, mask, want_b, want_a);
      expect_close(gb.f32(), want_b, 1e-5, "grad_b");
      expect_close(ga.f32(), want_a, 1e-5, "grad_a");
    }
  }
}

TEST(LoraPacked, RefusesAPatternOfAnotherShape) {
  const Tensor base = Tensor::zeros({4, 5});
  const Tensor mask = Tensor::full({5, 4}, 1.0f);
  const CsrPattern pattern = CsrPattern::from_mask(5, 4, mask.f32());
  std::vector<float> values(static_cast<size_t>(pattern.nnz()));
  expect_error([&] { lora_merge_packed(values.data(), pattern, base, Tensor::zeros({4, 1}), Tensor::zeros({1, 5}), 1.0f); },
               {"lora_merge_packed", "5x4"});
}

}  // namespace
}  // namespace pare::nn
