// Initialisation: deterministic per seed, PyTorch's default bounds, other schemes.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/nn_test_util.h"
#include "pare/nn/module.h"

namespace pare::nn {
namespace {

using testing::values_of;

// fan_in of the layer a parameter belongs to: a weight's own, a bias's from
// the weight before it (Linear (out, in), Conv (OC, C, K, K)).
std::vector<double> fan_ins(Model& m) {
  std::vector<double> out;
  const Parameter* last_weight = nullptr;
  for (Parameter* p : m.parameters()) {
    if (p->is_weight) last_weight = p;
    const Shape& s = last_weight->value().shape();
    double fan = static_cast<double>(s[1]);
    for (int d = 2; d < s.ndim(); ++d) fan *= static_cast<double>(s[d]);
    out.push_back(fan);
  }
  return out;
}

TEST(Init, DeterministicPerSeed) {
  for (const char* name : {"lenet300", "lenet5", "life"}) {
    auto a = Model::build(preset(name), 7), b = Model::build(preset(name), 7);
    EXPECT_EQ(values_of(*a), values_of(*b)) << name;
  }
}

TEST(Init, DiffersAcrossSeeds) {
  auto a = Model::build(preset("lenet300"), 1), b = Model::build(preset("lenet300"), 2);
  auto va = values_of(*a), vb = values_of(*b);
  ASSERT_EQ(va.size(), vb.size());
  size_t same = 0;
  for (size_t i = 0; i < va.size(); ++i) same += va[i] == vb[i];
  EXPECT_LT(same, va.size() / 1000) << "two seeds gave mostly equal weights";
}

TEST(Init, ReinitializeMatchesBuild) {
  auto a = Model::build(preset("lenet5"), 5);
  auto b = Model::build(preset("lenet5"), 9);
  b->initialize(5);
  EXPECT_EQ(values_of(*a), values_of(*b));
}

TEST(Init, ParametersUseDistinctStreams) {
  // Two parameters of the same shape must not get the same values.
  auto m = Model::build(preset("life", {.life_steps = 2, .width = 1}), 3);
  // Layers: conv2d1 (2,1,3,3) ... conv2d5 (2,1,3,3).
  Parameter* a = m->find("conv2d1.weight");
  Parameter* b = m->find("conv2d5.weight");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->value().shape(), b->value().shape());
  auto sa = a->value().span_f32(), sb = b->value().span_f32();
  EXPECT_FALSE(std::equal(sa.begin(), sa.end(), sb.begin()));
}

TEST(Init, AppendingALayerKeepsEarlierParameters) {
  ModelSpec s = preset("lenet300");
  auto a = Model::build(s, 11);
  s.layers.push_back(LayerSpec{.type = "relu"});
  s.layers.push_back(LayerSpec{.type = "linear", .out = 4});
  auto b = Model::build(s, 11);
  auto va = values_of(*a), vb = values_of(*b);
  ASSERT_GT(vb.size(), va.size());
  EXPECT_TRUE(std::equal(va.begin(), va.end(), vb.begin()));
}

TEST(Init, DefaultBoundsAreOneOverSqrtFanIn) {
  for (const char* name : {"lenet300", "lenet5", "life"}) {
    auto m = Model::build(preset(name), 4);
    auto fans = fan_ins(*m);
    for (size_t i = 0; i < m->parameters().size(); ++i) {
      Parameter* p = m->parameters()[i];
      const float bound = static_cast<float>(1.0 / std::sqrt(fans[i]));
      float max_abs = 0;
      double sum = 0;
      for (float v : p->value().span_f32()) {
        ASSERT_LE(std::abs(v), bound) << name << " " << p->name;
        max_abs = std::max(max_abs, std::abs(v));
        sum += v;
      }
      // Uniform over the whole interval: large parameters reach near the bound
      // and are centred on zero.
      if (p->numel() >= 1000) {
        EXPECT_GT(max_abs, 0.95f * bound) << name << " " << p->name;
        EXPECT_LT(std::abs(sum / p->numel()), 0.05 * bound) << name << " " << p->name;
      }
    }
  }
}

TEST(Init, OtherSchemesZeroBiasesAndScaleWeights) {
  struct Case {
    const char* init;
    bool normal;
    double (*scale)(double fan_in, double fan_out);  // bound or sd
  };
  const Case cases[] = {
      {"kaiming_uniform", false, [](double fi, double) { return std::sqrt(6.0 / fi); }},
      {"kaiming_normal", true, [](double fi, double) { return std::sqrt(2.0 / fi); }},
      {"glorot_uniform", false, [](double fi, double fo) { return std::sqrt(6.0 / (fi + fo)); }},
      {"glorot_normal", true, [](double fi, double fo) { return std::sqrt(2.0 / (fi + fo)); }},
  };
  for (const Case& c : cases) {
    ModelSpec s = preset("lenet300");
    s.init = c.init;
    auto m = Model::build(s, 6);
    for (Parameter* p : m->parameters()) {
      auto v = p->value().span_f32();
      if (!p->is_weight) {
        for (float x : v) ASSERT_EQ(x, 0.0f) << c.init << " " << p->name;
        continue;
      }
      const Shape& sh = p->value().shape();
      const double want = c.scale(static_cast<double>(sh[1]), static_cast<double>(sh[0]));
      double sq = 0, max_abs = 0;
      for (float x : v) {
        sq += double(x) * x;
        max_abs = std::max(max_abs, double(std::abs(x)));
      }
      const double sd = std::sqrt(sq / v.size());
      if (c.normal) {
        EXPECT_NEAR(sd, want, 0.1 * want) << c.init << " " << p->name;
      } else {
        EXPECT_LE(max_abs, want * (1 + 1e-6)) << c.init << " " << p->name;
        EXPECT_NEAR(sd, want / std::sqrt(3.0), 0.1 * want) << c.init << " " << p->name;
      }
    }
  }
}

}  // namespace
}  // namespace pare::nn
