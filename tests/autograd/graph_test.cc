// Graph behaviour: shape errors name their op, NoGradGuard records nothing,
// gradients accumulate across backward calls and along shared inputs, and a
// training step is bit-reproducible for a fixed thread count.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "testing/errors.h"
#include "pare/autograd/ops.h"
#include "pare/base/thread_pool.h"

namespace pare::autograd {
namespace {

using testing::random_normal;

// Expects fn to raise a one-line pare::Error whose message names `op`.
void expect_error(const char* op, const std::function<void()>& fn) {
  pare::testing::expect_error(fn, {op});
}

Var leaf(const Shape& s, bool requires_grad = true, float value = 0.5f) {
  return Var(Tensor::full(s, value), requires_grad);
}

TEST(ShapeErrors, NameTheOp) {
  Var a = leaf({2, 3}), b = leaf({3, 2});
  expect_error("add", [&] { add(a, b); });
  expect_error("mul", [&] { mul(a, b); });
  expect_error("linear", [&] { linear(a, leaf({4, 2}), Var()); });
  expect_error("linear", [&] { linear(a, leaf({4, 3}), leaf({3})); });
  expect_error("matmul", [&] { matmul(a, leaf({2, 3})); });
  expect_error("matmul", [&] { matmul(leaf({2, 3, 1}), b); });
  expect_error("dropout", [] {
    Rng rng(1);
    dropout(leaf({2}), 1.0f, rng, true);
  });

  Var x = leaf({2, 3, 8, 8}), w = leaf({4, 3, 3, 3});
  expect_error("conv2d", [&] { conv2d(x, leaf({4, 2, 3, 3}), Var(), {}); });      // channels
  expect_error("conv2d", [&] { conv2d(leaf({3, 8, 8}), w, Var(), {}); });         // input rank
  expect_error("conv2d", [&] { conv2d(x, leaf({4, 3, 3}), Var(), {}); });         // weight rank
  expect_error("conv2d", [&] { conv2d(x, w, leaf({3}), {}); });                   // bias
  expect_error("conv2d", [&] { conv2d(x, w, Var(), {.stride = 0}); });
  expect_error("conv2d", [&] { conv2d(x, w, Var(), {.pad = -1}); });
  expect_error("conv2d", [&] { conv2d(x, leaf({4, 3, 11, 3}), Var(), {.pad = 1}); });  // too big
  expect_error("conv2d", [&] { conv2d(x, leaf({4, 3, 3, 9}), Var(), {}); });
  expect_error("conv2d", [&] { conv2d(x, w, Var(), {.pad = 8, .circular = true}); });
  expect_error("conv2d", [&] {
    conv2d(leaf({1, 3, 8, 2}), leaf({1, 3, 3, 3}), Var(), {.pad = 2, .circular = true});
  });

  expect_error("max_pool2d", [&] { max_pool2d(x, 9); });
  expect_error("max_pool2d", [&] { max_pool2d(x, 0); });
  expect_error("max_pool2d", [&] { max_pool2d(x, 2, -1); });
  expect_error("max_pool2d", [&] { max_pool2d(leaf({8, 8}), 2); });
  expect_error("avg_pool2d", [&] { avg_pool2d(leaf({1, 1, 8, 3}), 4); });
  expect_error("avg_pool2d", [&] { avg_pool2d(leaf({1, 8, 8}), 2); });

  expect_error("reshape", [&] { reshape(a, {4, 2}); });
  expect_error("softmax_cross_entropy", [&] {
    softmax_cross_entropy(a, Tensor::from_i32({2}, std::vector<int32_t>{0, 3}));
  });
  expect_error("softmax_cross_entropy", [&] {
    softmax_cross_entropy(a, Tensor::from_i32({3}, std::vector<int32_t>{0, 1, 2}));
  });
  expect_error("softmax_cross_entropy",
               [&] { softmax_cross_entropy(leaf({6}), Tensor::zeros({6}, DType::i32)); });
  expect_error("bce_with_logits", [&] { bce_with_logits(a, Tensor::zeros({5})); });
  expect_error("mse", [&] { mse(a, Tensor::zeros({2, 2})); });
}

TEST(NoGradGuard, RecordsNoGraph) {
  Var x = leaf({2, 3, 6, 6}), w = leaf({2, 3, 3, 3}), b = leaf({2});
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Var y = conv2d(x, w, b, {.pad = 1});
    Var z = mse(flatten(max_pool2d(relu(y), 2)), Tensor::zeros({2 * 2 * 3 * 3}));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(z.requires_grad());
    EXPECT_TRUE(z.node()->inputs.empty());
    EXPECT_FALSE(z.node()->backward);
    EXPECT_THROW(z.backward(), Error);
  }
  EXPECT_TRUE(grad_enabled());
  Var y = conv2d(x, w, b, {.pad = 1});
  EXPECT_TRUE(y.requires_grad());
  EXPECT_EQ(y.node()->inputs.size(), 3u);
  // Constants alone record nothing either.
  Var c = conv2d(leaf({1, 3, 6, 6}, false), leaf({2, 3, 3, 3}, false), Var(), {});
  EXPECT_FALSE(c.requires_grad());
}

TEST(Backward, AccumulatesIntoLeafAcrossCalls) {
  Rng rng(31);
  Var x(random_normal({3, 4}, rng));
  Var w(random_normal({2, 4}, rng), true);
  Tensor target = random_normal({3, 2}, rng);
  mse(linear(x, w, Var()), target).backward();
  Tensor once = w.grad().clone();
  mse(linear(x, w, Var()), target).backward();
  for (int64_t i = 0; i < once.numel(); ++i) EXPECT_FLOAT_EQ(w.grad().f32()[i], 2 * once.f32()[i]);

  // A bound external buffer is accumulated into, not replaced.
  Tensor blob = Tensor::full(w.shape(), 1.0f);
  w.bind_grad(blob);
  mse(linear(x, w, Var()), target).backward();
  for (int64_t i = 0; i < once.numel(); ++i) EXPECT_FLOAT_EQ(blob.f32()[i], 1.0f + once.f32()[i]);
}

TEST(Backward, DiamondSumsBothPaths) {
  Rng rng(32);
  Tensor xv = random_normal({5}, rng);
  Var x(xv, true);
  // y = sigmoid(x) + tanh(x): x feeds two branches that meet again.
  Var y = add(sigmoid(x), tanh(x));
  y.backward(Tensor::full(y.shape(), 1.0f));
  for (int64_t i = 0; i < 5; ++i) {
    const double v = xv.f32()[i], s = 1 / (1 + std::exp(-v)), t = std::tanh(v);
    EXPECT_NEAR(x.grad().f32()[i], s * (1 - s) + (1 - t * t), 1e-6);
  }
  // mul(x, x): both inputs are the same node; d(x^2) = 2x.
  Var x2(xv, true);
  Var sq = mul(x2, x2);
  sq.backward(Tensor::full(sq.shape(), 1.0f));
  for (int64_t i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(x2.grad().f32()[i], 2 * xv.f32()[i]);
  // A deeper diamond through conv: the shared input feeds conv and a skip add.
  EXPECT_TRUE(testing::gradcheck(
      [](const auto& in) {
        return add(conv2d(in[0], in[1], Var(), {.pad = 1, .circular = true}), relu(in[0]));
      },
      {testing::away_from_zero({2, 2, 5, 5}, rng), random_normal({2, 2, 3, 3}, rng)}));
}

// One forward and backward through a small LeNet-like net at sizes where
// every op takes its threaded path. Returns the loss and all gradients.
std::vector<Tensor> training_step() {
  Rng rng(33);
  const int64_t batch = 16;
  Var x(random_normal({batch, 3, 20, 20}, rng));
  Var w1(random_normal({8, 3, 5, 5}, rng, 0.2f), true), b1(random_normal({8}, rng), true);
  Var w2(random_normal({16, 8, 3, 3}, rng, 0.2f), true), b2(random_normal({16}, rng), true);
  Var w3(random_normal({16, 16, 1, 1}, rng, 0.2f), true);
  Var w4(random_normal({10, 16 * 5 * 5}, rng, 0.1f), true), b4(random_normal({10}, rng), true);
  std::vector<int32_t> lab(batch);
  for (int64_t i = 0; i < batch; ++i) lab[i] = static_cast<int32_t>(i % 10);
  Tensor labels = Tensor::from_i32({batch}, lab);
  Var h = relu(conv2d(x, w1, b1, {.pad = 2}));                           // (16, 8, 20, 20)
  h = max_pool2d(h, 2);                                                  // (16, 8, 10, 10)
  h = tanh(conv2d(h, w2, b2, {.pad = 1, .circular = true}));             // (16, 16, 10, 10)
  h = avg_pool2d(conv2d(h, w3, Var(), {}), 2);                           // (16, 16, 5, 5)
  Var loss = softmax_cross_entropy(linear(flatten(h), w4, b4), labels);
  loss.backward();
  std::vector<Tensor> out = {loss.value().clone()};
  for (Var* p : {&w1, &b1, &w2, &b2, &w3, &w4, &b4}) out.push_back(p->grad().clone());
  return out;
}

bool bit_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() || std::memcmp(a[i].f32(), b[i].f32(), a[i].nbytes()) != 0)
      return false;
  return true;
}

TEST(Determinism, SameThreadsSameBits) {
  const int saved = num_threads();
  set_num_threads(1);
  std::vector<Tensor> one_a = training_step(), one_b = training_step();
  EXPECT_TRUE(bit_identical(one_a, one_b)) << "1 thread, two runs differ";
  set_num_threads(2);
  std::vector<Tensor> two_a = training_step(), two_b = training_step();
  EXPECT_TRUE(bit_identical(two_a, two_b)) << "2 threads, two runs differ";
  // Across thread counts only the rounding may differ.
  for (size_t i = 0; i < one_a.size(); ++i)
    for (int64_t j = 0; j < one_a[i].numel(); ++j)
      ASSERT_NEAR(one_a[i].f32()[j], two_a[i].f32()[j],
                  1e-4f * (1.0f + std::fabs(one_a[i].f32()[j])))
          << "tensor " << i << " element " << j;
  set_num_threads(saved);
}

}  // namespace
}  // namespace pare::autograd
