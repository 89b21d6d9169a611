// Structured pruning (prune/shrink.h): the shrunk dense model has the
// reduced widths and computes what the unit-masked model computes.
#include "pare/prune/shrink.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "testing/errors.h"

namespace pare::prune {
namespace {

using autograd::Var;
using nn::LayerSpec;
using nn::Model;
using nn::ModelSpec;
using pare::testing::expect_error;

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  Rng r(seed);
  Tensor t = Tensor::empty(shape);
  for (float& v : t.span_f32()) v = r.uniform(-1.0f, 1.0f);
  return t;
}

Tensor forward(Model& m, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  return m.forward(Var(x), ctx).value();
}

// Max |a - b| over two same-shaped tensors.
double max_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    d = std::max(d, double(std::fabs(a.f32()[i] - b.f32()[i])));
  return d;
}

// Masks `model` to the selection, shrinks it, and checks the shrunk model
// computes the masked model's outputs on random inputs of `input` shape.
std::unique_ptr<Model> check_shrink_matches(Model& model, double keep, const Shape& input) {
  const UnitSelection units = select_units_l1(model, keep);
  auto small = shrink(model, units);
  mask_units(model, units);
  const Tensor x = random_tensor(input, 7);
  const Tensor big_out = forward(model, x), small_out = forward(*small, x);
  EXPECT_LT(max_diff(big_out, small_out), 1e-5);
  return small;
}

ModelSpec small_conv_spec() {
  ModelSpec s;
  s.name = "small_conv";
  s.input = {2, 8, 6};  // not square, so H and W cannot be swapped unnoticed
  s.layers = {LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1},
              LayerSpec{.type = "relu"},
              LayerSpec{.type = "conv2d", .out = 6, .kernel = 3, .pad = 1, .circular = true},
              LayerSpec{.type = "relu"},
              LayerSpec{.type = "maxpool", .kernel = 2},
              LayerSpec{.type = "flatten"},
              LayerSpec{.type = "linear", .out = 5}};
  return s;
}

TEST(Shrink, Lenet300HalfMatchesMaskedModel) {
  auto model = Model::build(nn::preset("lenet300"), 3);
  const Tensor x = random_tensor({16, 784}, 11);
  const Tensor dense_out = forward(*model, x);
  auto small = check_shrink_matches(*model, 0.5, {16, 784});
  EXPECT_EQ(small->find("linear1.weight")->value().shape(), Shape({150, 784}));
  EXPECT_EQ(small->find("linear1.bias")->value().shape(), Shape({150}));
  EXPECT_EQ(small->find("linear3.weight")->value().shape(), Shape({50, 150}));
  EXPECT_EQ(small->find("linear5.weight")->value().shape(), Shape({10, 50}));
  // 784*150 + 150 + 150*50 + 50 + 50*10 + 10
  EXPECT_EQ(small->num_parameters(), 125810);
  EXPECT_EQ(small->spec().layers[0].out, 150);
  EXPECT_EQ(small->spec().layers[2].out, 50);
  EXPECT_EQ(small->spec().layers[4].out, 10);
  // Pruning half the units does change the function (the check above is not vacuous).
  EXPECT_GT(max_diff(dense_out, forward(*model, x)), 1e-3);
  // Nothing was unstructured-pruned, so the shrunk model is plain dense.
  for (nn::Parameter* p : small->parameters()) EXPECT_FALSE(p->mask.defined()) << p->name;
}

TEST(Shrink, Lenet5HalfMatchesMaskedModel) {
  auto model = Model::build(nn::preset("lenet5"), 4);
  auto small = check_shrink_matches(*model, 0.5, {6, 1, 28, 28});
  EXPECT_EQ(small->find("conv2d1.weight")->value().shape(), Shape({3, 1, 5, 5}));
  EXPECT_EQ(small->find("conv2d4.weight")->value().shape(), Shape({8, 3, 5, 5}));
  // The flatten: 8 channels of 5x5.
  EXPECT_EQ(small->find("linear8.weight")->value().shape(), Shape({60, 200}));
  EXPECT_EQ(small->find("linear10.weight")->value().shape(), Shape({42, 60}));
  EXPECT_EQ(small->find("linear12.weight")->value().shape(), Shape({10, 42}));
  // conv 3*25+3, conv 8*3*25+8, fc 60*200+60, fc 42*60+42, fc 10*42+10
  EXPECT_EQ(small->num_parameters(), 78 + 608 + 12060 + 2562 + 430);
}

TEST(Shrink, SmallConvNetThroughFlatten) {
  auto model = Model::build(small_conv_spec(), 5);
  auto small = check_shrink_matches(*model, 0.5, {3, 2, 8, 6});
  EXPECT_EQ(small->find("conv2d1.weight")->value().shape(), Shape({2, 2, 3, 3}));
  EXPECT_EQ(small->find("conv2d3.weight")->value().shape(), Shape({3, 2, 3, 3}));
  // 3 channels of 4x3 after the pool.
  EXPECT_EQ(small->find("linear7.weight")->value().shape(), Shape({5, 36}));
  EXPECT_EQ(small->num_parameters(), (2 * 2 * 9 + 2) + (3 * 2 * 9 + 3) + (5 * 36 + 5));
}

TEST(Shrink, FlattenColumnsFollowTheKeptChannels) {
  // Channel c of the conv feeds linear columns c*H*W .. (c+1)*H*W: keep
  // channels {1, 3} and check the copied columns by value.
  auto model = Model::build(small_conv_spec(), 6);
  const UnitSelection units{{{0, 1, 2, 3}, {1, 3}, {0, 1, 2, 3, 4}}};
  auto small = shrink(*model, units);
  const int64_t hw = 4 * 3;
  const Tensor& big = model->find("linear7.weight")->value();
  const Tensor& got = small->find("linear7.weight")->value();
  ASSERT_EQ(got.shape(), Shape({5, 2 * hw}));
  for (int64_t o = 0; o < 5; ++o)
    for (int64_t k = 0; k < 2; ++k)
      for (int64_t j = 0; j < hw; ++j)
        EXPECT_EQ(got.f32()[o * 2 * hw + k * hw + j], big.f32()[o * 6 * hw + (2 * k + 1) * hw + j]);
}

TEST(Shrink, SigmoidDropoutAndNoBias) {
  // A removed unit's sigmoid is 0.5, not 0: equivalence relies on the next
  // layer's masked columns, not on the activation.
  ModelSpec s;
  s.name = "mlp";
  s.input = {12};
  s.layers = {LayerSpec{.type = "linear", .out = 9, .bias = false},
              LayerSpec{.type = "sigmoid"},
              LayerSpec{.type = "dropout", .p = 0.5f},
              LayerSpec{.type = "linear", .out = 7},
              LayerSpec{.type = "tanh"},
              LayerSpec{.type = "linear", .out = 3}};
  auto model = Model::build(s, 8);
  auto small = check_shrink_matches(*model, 0.4, {10, 12});
  EXPECT_EQ(small->find("linear1.weight")->value().shape(), Shape({4, 12}));
  EXPECT_EQ(small->find("linear1.bias"), nullptr);
  EXPECT_EQ(small->find("linear4.weight")->value().shape(), Shape({3, 4}));
}

TEST(Shrink, KeepsSpecFieldsAndInitialValues) {
  ModelSpec s = nn::preset("lenet300");
  s.input_mean = 0.25f;
  s.input_std = 0.5f;
  s.init = "kaiming_normal";
  s.loss = "mse";
  auto model = Model::build(s, 9);
  const UnitSelection units = select_units_l1(*model, 0.5);
  auto small = shrink(*model, units);
  EXPECT_EQ(small->spec().name, "lenet300");
  EXPECT_EQ(small->spec().input_mean, 0.25f);
  EXPECT_EQ(small->spec().input_std, 0.5f);
  EXPECT_EQ(small->spec().init, "kaiming_normal");
  EXPECT_EQ(small->spec().loss, "mse");
  // Rewinding the shrunk model gives the kept part of the source's initial values.
  model->find("linear1.weight")->value().zero();
  small->store().values().zero();
  small->store().rewind();
  const Tensor& init = model->find("linear1.weight")->initial;
  const Tensor& got = small->find("linear1.weight")->value();
  for (size_t r = 0; r < units.keep[0].size(); ++r)
    for (int64_t c = 0; c < 784; ++c)
      ASSERT_EQ(got.f32()[int64_t(r) * 784 + c], init.f32()[units.keep[0][r] * 784 + c]);
}

TEST(Shrink, CarriesUnstructuredMasks) {
  auto model = Model::build(nn::preset("lenet300"), 10);
  // Unstructured pruning first: every third weight of every layer.
  for (nn::Parameter* p : model->parameters()) {
    if (!p->is_weight) continue;
    p->mask = Tensor::full(p->value().shape(), 1.0f);
    for (int64_t i = 0; i < p->numel(); i += 3) p->mask.f32()[i] = 0.0f;
    p->apply_mask();
  }
  auto small = check_shrink_matches(*model, 0.5, {8, 784});
  for (const char* name : {"linear1.weight", "linear3.weight", "linear5.weight"}) {
    nn::Parameter* p = small->find(name);
    ASSERT_TRUE(p->mask.defined()) << name;
    for (int64_t i = 0; i < p->numel(); ++i)
      if (p->mask.f32()[i] == 0.0f) {
        EXPECT_EQ(p->value().f32()[i], 0.0f) << name << " " << i;
      }
  }
  // The first layer keeps whole rows, so its mask is the kept rows of the source's.
  const UnitSelection units = select_units_l1(*model, 0.5);
  const Tensor& src = model->find("linear1.weight")->mask;
  const Tensor& got = small->find("linear1.weight")->mask;
  for (size_t r = 0; r < units.keep[0].size(); ++r)
    for (int64_t c = 0; c < 784; ++c)
      ASSERT_EQ(got.f32()[int64_t(r) * 784 + c], src.f32()[units.keep[0][r] * 784 + c]);
  // Biases were never masked, and the shrunk ones carry no mask.
  EXPECT_FALSE(small->find("linear1.bias")->mask.defined());
}

TEST(MaskUnits, ZeroesRowsBiasesAndNextColumns) {
  auto model = Model::build(nn::preset("lenet300"), 12);
  UnitSelection units = select_units_l1(*model, 1.0);
  units.keep[0] = {0, 2, 5};
  units.keep[1] = {1};
  mask_units(*model, units);
  const Tensor& w1 = model->find("linear1.weight")->value();
  const Tensor& b1 = model->find("linear1.bias")->value();
  const Tensor& w3 = model->find("linear3.weight")->value();
  const Tensor& w5 = model->find("linear5.weight")->value();
  auto kept1 = [](int64_t u) { return u == 0 || u == 2 || u == 5; };
  for (int64_t r = 0; r < 300; ++r) {
    EXPECT_EQ(b1.f32()[r] != 0.0f, kept1(r)) << r;
    EXPECT_EQ(w1.f32()[r * 784 + 7] != 0.0f, kept1(r)) << r;
  }
  for (int64_t r = 0; r < 100; ++r)
    for (int64_t c = 0; c < 300; ++c)
      ASSERT_EQ(w3.f32()[r * 300 + c] != 0.0f, r == 1 && kept1(c)) << r << "," << c;
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t c = 0; c < 100; ++c) ASSERT_EQ(w5.f32()[r * 100 + c] != 0.0f, c == 1);
  // Masks are there for the optimizers; the output bias lost nothing and has none.
  EXPECT_TRUE(model->find("linear1.bias")->mask.defined());
  EXPECT_TRUE(model->find("linear5.weight")->mask.defined());
  EXPECT_FALSE(model->find("linear5.bias")->mask.defined());
}

TEST(MaskUnits, NeverRevivesMaskedWeights) {
  auto model = Model::build(nn::preset("lenet300"), 13);
  nn::Parameter* w = model->find("linear1.weight");
  w->mask = Tensor::full(w->value().shape(), 1.0f);
  w->mask.f32()[0] = 0.0f;  // unit 0, input 0
  w->apply_mask();
  mask_units(*model, select_units_l1(*model, 1.0));
  EXPECT_EQ(w->mask.f32()[0], 0.0f);
  EXPECT_EQ(w->value().f32()[0], 0.0f);
}

// A 4-3-2 network with hand-set first-layer rows.
std::unique_ptr<Model> hand_built(const std::vector<float>& w1) {
  ModelSpec s;
  s.name = "hand";
  s.input = {4};
  s.layers = {LayerSpec{.type = "linear", .out = 3}, LayerSpec{.type = "relu"},
              LayerSpec{.type = "linear", .out = 2}};
  auto m = Model::build(s, 0);
  m->find("linear1.weight")->value().copy_from(Tensor::from({3, 4}, w1));
  return m;
}

TEST(SelectUnitsL1, PicksLargestL1Rows) {
  // Row L1 norms 4, 10, 6: keep 0.5 of 3 -> ceil(1.5) = 2 units, rows 1 and 2.
  auto m = hand_built({1, -1, 1, -1, /**/ 0, -10, 0, 0, /**/ 3, 0, -3, 0});
  const UnitSelection sel = select_units_l1(*m, 0.5);
  ASSERT_EQ(sel.keep.size(), 2u);
  EXPECT_EQ(sel.keep[0], (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(sel.keep[1], (std::vector<int64_t>{0, 1}));  // the output keeps all
  EXPECT_EQ(select_units_l1(*m, 0.2).keep[0], (std::vector<int64_t>{1}));
  EXPECT_EQ(select_units_l1(*m, 1.0).keep[0], (std::vector<int64_t>{0, 1, 2}));
}

TEST(SelectUnitsL1, CountsOnlyAliveWeightsAndBreaksTiesByIndex) {
  // Row 1 would be largest, but its big entry is masked: norms 4, 1, 4 ->
  // one unit kept, the tie between rows 0 and 2 going to the lower index.
  auto m = hand_built({1, 1, 1, 1, /**/ 1, 50, 0, 0, /**/ 2, 2, 0, 0});
  nn::Parameter* w = m->find("linear1.weight");
  w->mask = Tensor::full({3, 4}, 1.0f);
  w->mask.f32()[5] = 0.0f;  // row 1 keeps its value but the entry is dead
  EXPECT_EQ(select_units_l1(*m, 0.34).keep[0], (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(select_units_l1(*m, 0.3).keep[0], (std::vector<int64_t>{0}));
}

TEST(SelectUnitsL1, ExactFractionsDoNotRoundUp) {
  // 0.3 * 10 is 3.0000000000000004 in doubles; that is 3 units, not 4.
  ModelSpec s;
  s.name = "ten";
  s.input = {5};
  s.layers = {LayerSpec{.type = "linear", .out = 10}, LayerSpec{.type = "linear", .out = 2}};
  auto m = Model::build(s, 1);
  EXPECT_EQ(select_units_l1(*m, 0.3).keep[0].size(), 3u);
  EXPECT_EQ(select_units_l1(*m, 0.31).keep[0].size(), 4u);
  EXPECT_EQ(select_units_l1(*m, 0.01).keep[0].size(), 1u);  // never zero units
}

TEST(SelectUnitsL1, BadFractionIsAnError) {
  auto m = Model::build(nn::preset("lenet300"), 0);
  for (double f : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()})
    expect_error([&] { select_units_l1(*m, f); }, {"keep_fraction", "(0, 1]"});
}

TEST(Shrink, BadSelectionsAreErrorsNamingTheLayer) {
  auto m = Model::build(nn::preset("lenet300"), 0);
  const UnitSelection good = select_units_l1(*m, 0.5);
  UnitSelection s = good;
  s.keep[2].pop_back();
  expect_error([&] { shrink(*m, s); }, {"linear5", "output layer", "all its units"});
  s = good;
  s.keep[1] = {};
  expect_error([&] { mask_units(*m, s); }, {"linear3", "no units"});
  s = good;
  s.keep[0].back() = 300;
  expect_error([&] { shrink(*m, s); }, {"linear1", "300", "out of range"});
  s = good;
  std::swap(s.keep[1][0], s.keep[1][1]);
  expect_error([&] { shrink(*m, s); }, {"linear3", "ascending"});
  s = good;
  s.keep.pop_back();
  expect_error([&] { shrink(*m, s); }, {"2 layers", "3 weight layers"});
}

}  // namespace
}  // namespace pare::prune
