// Finite-difference gradient checks for every op in ops.h except conv2d
// (conv_test.cc), with inputs kept away from kinks (see gradcheck.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gradcheck.h"
#include "pare/autograd/ops.h"
#include "pare/base/thread_pool.h"

namespace pare::autograd {
namespace {

using testing::away_from_zero;
using testing::distinct_spaced;
using testing::gradcheck;
using testing::GradcheckOptions;
using testing::random_normal;
using testing::random_uniform;

TEST(Gradcheck, Relu) {
  Rng rng(1);
  EXPECT_TRUE(gradcheck([](const auto& in) { return relu(in[0]); },
                        {away_from_zero({3, 7}, rng)}));
}

TEST(Gradcheck, Sigmoid) {
  Rng rng(2);
  EXPECT_TRUE(gradcheck([](const auto& in) { return sigmoid(in[0]); },
                        {random_normal({4, 5}, rng, 2.0f)}));
}

TEST(Gradcheck, Tanh) {
  Rng rng(3);
  EXPECT_TRUE(gradcheck([](const auto& in) { return tanh(in[0]); },
                        {random_normal({4, 5}, rng, 1.5f)}));
}

TEST(Gradcheck, Add) {
  Rng rng(4);
  auto f = [](const auto& in) { return add(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(f, {random_normal({2, 3, 4}, rng), random_normal({2, 3, 4}, rng)}));
  EXPECT_TRUE(gradcheck(f, {random_normal({5}, rng), random_normal({5}, rng)}, {false, true}));
}

TEST(Gradcheck, Mul) {
  Rng rng(5);
  auto f = [](const auto& in) { return mul(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(f, {random_normal({3, 6}, rng), random_normal({3, 6}, rng)}));
  EXPECT_TRUE(gradcheck(f, {random_normal({3, 6}, rng), random_normal({3, 6}, rng)}, {true, false}));
}

TEST(Gradcheck, Dropout) {
  Rng rng(6);
  const float p = 0.3f;
  // A fresh Rng with the same seed per evaluation gives every evaluation the
  // same mask, so the op is linear in x and the finite difference is exact.
  auto f = [p](const auto& in) {
    Rng drop(99);
    return dropout(in[0], p, drop, true);
  };
  EXPECT_TRUE(gradcheck(f, {random_normal({4, 8}, rng)}));

  // The gradient of sum(y) is the mask itself: 0 or 1/(1-p), and y = x * mask.
  Var x(away_from_zero({16, 16}, rng), true);
  Rng drop(99);
  Var y = dropout(x, p, drop, true);
  y.backward(Tensor::full(y.shape(), 1.0f));
  const float scale = 1.0f / (1.0f - p);
  int zeros = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float m = x.grad().f32()[i];
    ASSERT_TRUE(m == 0.0f || m == scale) << "mask value " << m << " at " << i;
    EXPECT_EQ(y.value().f32()[i], x.value().f32()[i] * m);
    zeros += m == 0.0f;
  }
  EXPECT_NEAR(zeros / 256.0, p, 0.1);

  // Evaluation mode and p == 0 are the identity.
  Var same = dropout(x, p, drop, false);
  EXPECT_EQ(same.node(), x.node());
  EXPECT_EQ(dropout(x, 0.0f, drop, true).node(), x.node());
}

TEST(Gradcheck, Linear) {
  Rng rng(7);
  auto with_bias = [](const auto& in) { return linear(in[0], in[1], in[2]); };
  auto no_bias = [](const auto& in) { return linear(in[0], in[1], Var()); };
  Tensor x = random_normal({5, 4}, rng), w = random_normal({3, 4}, rng), b = random_normal({3}, rng);
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}));
  EXPECT_TRUE(gradcheck(no_bias, {x, w}));
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {true, false, false}));  // input grad only
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {false, true, false}));  // weight grad only
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {false, false, true}));  // bias grad only
  // Big enough for the threaded GEMM split (extent >= 16 per thread).
  EXPECT_TRUE(gradcheck(with_bias, {random_normal({40, 24}, rng, 0.3f),
                                    random_normal({33, 24}, rng, 0.3f), random_normal({33}, rng)}));
}

TEST(Gradcheck, Matmul) {
  Rng rng(8);
  auto f = [](const auto& in) { return matmul(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(f, {random_normal({3, 5}, rng), random_normal({5, 2}, rng)}));
  EXPECT_TRUE(gradcheck(f, {random_normal({1, 7}, rng), random_normal({7, 4}, rng)}, {false, true}));
  EXPECT_TRUE(gradcheck(f, {random_normal({6, 7}, rng), random_normal({7, 1}, rng)}, {true, false}));
}

TEST(Gradcheck, MaxPool) {
  // Values 0.05 apart reach |x| = 0.025 n; eps is chosen so that the largest
  // step, eps * 0.025 n, stays below half the spacing (no argmax flips).
  Rng rng(9);
  const GradcheckOptions small_step{.eps = 1e-3};
  EXPECT_TRUE(gradcheck([](const auto& in) { return max_pool2d(in[0], 2); },
                        {distinct_spaced({2, 3, 6, 8}, rng)}, {}, small_step));
  EXPECT_TRUE(gradcheck([](const auto& in) { return max_pool2d(in[0], 3, 2); },  // overlapping
                        {distinct_spaced({2, 2, 7, 9}, rng)}, {}, small_step));
  EXPECT_TRUE(gradcheck([](const auto& in) { return max_pool2d(in[0], 2, 3); },  // gaps
                        {distinct_spaced({1, 2, 8, 7}, rng)}, {}, small_step));
  EXPECT_TRUE(gradcheck([](const auto& in) { return max_pool2d(in[0], 2); },
                        {distinct_spaced({4, 16, 8, 8}, rng)}, {}, {.eps = 1e-4}));
}

// Pooling splits B*C planes across threads and each plane is computed by the
// same kernel either way, so the threaded forward and backward must equal the
// single-threaded ones bit for bit (the gradchecks above run below the split).
TEST(Gradcheck, PoolingSplitMatchesSerial) {
  Rng rng(16);
  Tensor x = distinct_spaced({8, 16, 16, 16}, rng);  // 128 planes: above the split threshold
  Tensor seed = random_normal({8, 16, 8, 8}, rng);
  auto run = [&](int threads, bool max) {
    set_num_threads(threads);
    Var in(x, true);
    Var y = max ? max_pool2d(in, 2) : avg_pool2d(in, 2);
    y.backward(seed);
    return std::pair<Tensor, Tensor>{y.value().clone(), in.grad().clone()};
  };
  const int saved = num_threads();
  for (bool max : {true, false}) {
    auto [y1, g1] = run(1, max);
    auto [y2, g2] = run(2, max);
    EXPECT_EQ(std::memcmp(y1.f32(), y2.f32(), y1.nbytes()), 0) << (max ? "max" : "avg");
    EXPECT_EQ(std::memcmp(g1.f32(), g2.f32(), g1.nbytes()), 0) << (max ? "max" : "avg");
  }
  set_num_threads(saved);
}

TEST(Gradcheck, AvgPool) {
  Rng rng(10);
  EXPECT_TRUE(gradcheck([](const auto& in) { return avg_pool2d(in[0], 2); },
                        {random_normal({2, 3, 6, 8}, rng)}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return avg_pool2d(in[0], 3, 2); },
                        {random_normal({2, 2, 7, 9}, rng)}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return avg_pool2d(in[0], 2, 1); },
                        {random_normal({4, 16, 8, 8}, rng)}));
}

TEST(Gradcheck, ReshapeAndFlatten) {
  Rng rng(11);
  EXPECT_TRUE(gradcheck([](const auto& in) { return reshape(in[0], {4, -1}); },
                        {random_normal({2, 3, 4}, rng)}));
  EXPECT_TRUE(gradcheck([](const auto& in) { return flatten(in[0]); },
                        {random_normal({2, 3, 2, 2}, rng)}));
  // Through a following op, so the reshaped gradient is not just the seed.
  EXPECT_TRUE(gradcheck([](const auto& in) { return tanh(flatten(mul(in[0], in[0]))); },
                        {random_normal({3, 2, 2}, rng)}));
}

TEST(Gradcheck, SoftmaxCrossEntropy) {
  Rng rng(12);
  Tensor labels = Tensor::from_i32({6}, std::vector<int32_t>{0, 4, 2, 2, 1, 3});
  EXPECT_TRUE(gradcheck([&](const auto& in) { return softmax_cross_entropy(in[0], labels); },
                        {random_normal({6, 5}, rng, 2.0f)}, {}, {.four_point = true}));
}

TEST(Gradcheck, BceWithLogits) {
  Rng rng(13);
  Tensor targets = random_uniform({4, 3}, rng, 0.0f, 1.0f);
  targets.f32()[0] = 0.0f;
  targets.f32()[1] = 1.0f;
  EXPECT_TRUE(gradcheck([&](const auto& in) { return bce_with_logits(in[0], targets); },
                        {random_normal({4, 3}, rng, 3.0f)}, {}, {.four_point = true}));
}

TEST(Gradcheck, Mse) {
  Rng rng(14);
  Tensor target = random_normal({5, 2}, rng);
  EXPECT_TRUE(gradcheck([&](const auto& in) { return mse(in[0], target); },
                        {random_normal({5, 2}, rng)}));
}

TEST(Gradcheck, SmallNetComposition) {
  // conv -> relu -> pool -> flatten -> linear -> loss, all inputs at once.
  Rng rng(15);
  Tensor labels = Tensor::from_i32({2}, std::vector<int32_t>{1, 2});
  auto f = [&](const auto& in) {
    Var h = conv2d(in[0], in[1], in[2], {.stride = 1, .pad = 1});
    h = avg_pool2d(tanh(h), 2);
    return softmax_cross_entropy(linear(flatten(h), in[3], in[4]), labels);
  };
  EXPECT_TRUE(gradcheck(f, {random_normal({2, 2, 4, 4}, rng), random_normal({3, 2, 3, 3}, rng, 0.5f),
                            random_normal({3}, rng), random_normal({3, 12}, rng, 0.5f),
                            random_normal({3}, rng)},
                        {}, {.four_point = true}));
}

}  // namespace
}  // namespace pare::autograd
