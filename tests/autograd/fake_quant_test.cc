// Fake quantization (fake_quant.cc): the forward lands exactly on the int8
// grids of kernels/quant.h, and the straight-through backward passes the
// gradient inside the grid's range and nothing where the activation is
// clipped; through a ReLU and a linear layer, the tape carries both.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/kernels/quant.h"
#include "testing/errors.h"

namespace pare::autograd {
namespace {

TEST(FakeQuant, ActivationsLandOnTheGridAndClip) {
  // scale 0.1, zero point 20: the grid covers [-2.0, 23.5].
  const std::vector<float> xs = {-3.0f,  -2.0f,   -0.04f, 0.0f,  0.05f,
                                 0.149f, 1.2345f, 23.5f,  23.6f, 100.0f};
  Tensor t = Tensor::empty({static_cast<int64_t>(xs.size())});
  for (size_t i = 0; i < xs.size(); ++i) t.f32()[i] = xs[i];
  Var x(t, /*requires_grad=*/true);
  Var y = fake_quant_u8(x, 0.1f, 20);
  for (size_t i = 0; i < xs.size(); ++i) {
    // An independent rounding: nearest code (half to even), clamped to the range.
    double code = std::nearbyint(static_cast<double>(static_cast<float>(xs[i] / 0.1f))) + 20;
    code = std::fmin(std::fmax(code, 0.0), 255.0);
    EXPECT_EQ(y.value().f32()[i], static_cast<float>(code - 20) * 0.1f) << xs[i];
  }
  EXPECT_EQ(y.value().f32()[0], static_cast<float>(-20) * 0.1f);  // clipped low
  EXPECT_EQ(y.value().f32()[9], static_cast<float>(235) * 0.1f);  // clipped high
  // Straight-through: an upstream gradient g_i passes inside [-2.0, 23.5] only.
  Tensor seed = Tensor::empty(t.shape());
  for (size_t i = 0; i < xs.size(); ++i) seed.f32()[i] = static_cast<float>(i + 1);
  y.backward(seed);
  const float lo = -20 * 0.1f, hi = 235 * 0.1f;
  for (size_t i = 0; i < xs.size(); ++i) {
    const bool inside = xs[i] >= lo && xs[i] <= hi;
    EXPECT_EQ(x.grad().f32()[i], inside ? static_cast<float>(i + 1) : 0.0f) << xs[i];
  }
  EXPECT_EQ(x.grad().f32()[0], 0.0f);      // -3: clipped
  EXPECT_EQ(x.grad().f32()[1], 1.0f * 2);  // -2.0: the range's edge passes
  EXPECT_EQ(x.grad().f32()[8], 0.0f);      // 23.6: clipped
  EXPECT_EQ(x.grad().f32()[9], 0.0f);
}

TEST(FakeQuant, WeightsPerChannelAreTheInt8WeightsWithIdentityGradient) {
  const int64_t rows = 3, cols = 5;
  Tensor t = Tensor::empty({rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i)
    t.f32()[i] = std::sin(1.7f * static_cast<float>(i)) * (1 + i % 3);
  Var w(t, true);
  Var y = fake_quant_weight_s8(w);
  std::vector<int8_t> q(rows * cols);
  std::vector<float> s(rows), back(rows * cols);
  kernels::quantize_weights_per_channel_s8__ref(rows, cols, q.data(), s.data(), t.f32());
  kernels::dequantize_weights_per_channel_s8__ref(rows, cols, back.data(), q.data(), s.data());
  double err = 0;
  for (int64_t i = 0; i < rows * cols; ++i) {
    EXPECT_EQ(y.value().f32()[i], back[static_cast<size_t>(i)]) << i;
    err = std::fmax(err, std::fabs(y.value().f32()[i] - t.f32()[i]));
    // Within half a step of its row's grid.
    EXPECT_LE(std::fabs(y.value().f32()[i] - t.f32()[i]),
              s[static_cast<size_t>(i / cols)] * 0.5001f);
  }
  EXPECT_GT(err, 0);  // it does round
  Tensor seed = Tensor::empty(t.shape());
  for (int64_t i = 0; i < rows * cols; ++i) seed.f32()[i] = 0.5f * static_cast<float>(i) - 2;
  y.backward(seed);
  for (int64_t i = 0; i < rows * cols; ++i) EXPECT_EQ(w.grad().f32()[i], seed.f32()[i]) << i;
}

TEST(FakeQuant, ChainedThroughALinearLayer) {
  // y = sum(linear(fq_u8(x), fq_s8(w))): dL/dx_i = sum_r fq(w)(r, i) where x_i
  // is inside the grid, 0 where clipped; dL/dw(r, i) = fq(x)_i.
  Tensor xt = Tensor::empty({1, 3});
  xt.f32()[0] = 0.3f;
  xt.f32()[1] = 9.0f;  // clipped (grid [0, 2.55])
  xt.f32()[2] = 1.0f;
  Tensor wt = Tensor::empty({2, 3});
  for (int64_t i = 0; i < 6; ++i) wt.f32()[i] = 0.1f * static_cast<float>(i) - 0.2f;
  Var x(xt, true), w(wt, true);
  Var xq = fake_quant_u8(x, 0.01f, 0);
  Var wq = fake_quant_weight_s8(w);
  Var y = linear(xq, wq, Var());
  Tensor seed = Tensor::empty({1, 2});
  seed.f32()[0] = seed.f32()[1] = 1.0f;
  y.backward(seed);
  for (int64_t i = 0; i < 3; ++i) {
    const float want = i == 1 ? 0.0f : wq.value().f32()[i] + wq.value().f32()[3 + i];
    EXPECT_FLOAT_EQ(x.grad().f32()[i], want) << i;
    for (int64_t r = 0; r < 2; ++r) EXPECT_FLOAT_EQ(w.grad().f32()[r * 3 + i], xq.value().f32()[i]);
  }
  EXPECT_FLOAT_EQ(xq.value().f32()[1], 2.55f);
}

TEST(FakeQuant, BadGridsAreRefused) {
  Var x(Tensor::zeros({2}), true);
  testing::expect_error([&] { fake_quant_u8(x, 0.0f, 0); }, {"fake_quant_u8", "scale"});
  testing::expect_error([&] { fake_quant_u8(x, 0.1f, 256); }, {"zero point", "256"});
  testing::expect_error([&] { fake_quant_u8(x, NAN, 0); }, {"scale"});
}

}  // namespace
}  // namespace pare::autograd
