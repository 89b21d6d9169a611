// Presets: parameter counts, forward shapes and summaries.
#include <gtest/gtest.h>

#include "nn/nn_test_util.h"
#include "pare/nn/module.h"

namespace pare::nn {
namespace {

using autograd::Var;
using testing::expect_error;
using testing::random_tensor;

TEST(Presets, Lenet300ParameterCount) {
  auto m = Model::build(preset("lenet300"), 0);
  // 784*300+300 + 300*100+100 + 100*10+10
  EXPECT_EQ(m->num_parameters(), 266610);
  EXPECT_EQ(m->parameters().size(), 6u);
  EXPECT_EQ(m->spec().loss, "softmax_cross_entropy");
}

TEST(Presets, Lenet5ParameterCount) {
  auto m = Model::build(preset("lenet5"), 0);
  // conv 6x1x5x5+6, conv 16x6x5x5+16, fc 400->120, 120->84, 84->10
  EXPECT_EQ(m->num_parameters(), 61706);
}

TEST(Presets, LifeParameterCounts) {
  // 23n + 2 parameters at m = 1 (Springer & Kenyon 2020).
  auto m11 = Model::build(preset("life", {.life_steps = 1, .width = 1}), 0);
  EXPECT_EQ(m11->num_parameters(), 25);
  auto m21 = Model::build(preset("life", {.life_steps = 2, .width = 1}), 0);
  EXPECT_EQ(m21->num_parameters(), 48);
  // n = 1, m = 8: conv 1->16 3x3 (144 + 16), conv 16->8 1x1 (128 + 8), conv 8->1 1x1 (8 + 1).
  auto m18 = Model::build(preset("life", {.life_steps = 1, .width = 8}), 0);
  EXPECT_EQ(m18->num_parameters(), 160 + 136 + 9);
  EXPECT_EQ(m18->spec().name, "life_n1_m8");
  EXPECT_EQ(m18->spec().loss, "bce_with_logits");
  // The board size changes shapes, not parameter counts.
  auto big = Model::build(preset("life", {.life_steps = 1, .width = 1, .board = 64}), 0);
  EXPECT_EQ(big->num_parameters(), 25);
  EXPECT_EQ(big->spec().input, (std::vector<int64_t>{1, 64, 64}));
}

TEST(Presets, LifeRejectsBadOptions) {
  expect_error([] { preset("life", {.life_steps = 0}); }, {"life"});
  expect_error([] { preset("life", {.width = 0}); }, {"life"});
  expect_error([] { preset("life", {.board = 2}); }, {"board"});
}

TEST(Presets, Conv2Builds) {
  auto m = Model::build(preset("conv2"), 0);
  // conv 64x1x3x3+64, conv 64x64x3x3+64, fc 64*14*14 -> 256, 256 -> 256, 256 -> 10
  const int64_t want = (576 + 64) + (36864 + 64) + (12544 * 256 + 256) + (256 * 256 + 256) +
                       (256 * 10 + 10);
  EXPECT_EQ(m->num_parameters(), want);
}

TEST(Presets, UnknownPresetListsNames) {
  expect_error([] { preset("resnet50"); }, {"resnet50", "lenet300", "lenet5", "conv2", "life"});
  auto names = preset_names();
  EXPECT_EQ(names.size(), 4u);
  for (const auto& n : names) EXPECT_NO_THROW(preset(n)) << n;
}

TEST(Model, ForwardOutputShapes) {
  ForwardContext ctx{.training = false};
  {
    auto m = Model::build(preset("lenet300"), 1);
    Var y = m->forward(Var(random_tensor({5, 784}, 1)), ctx);
    EXPECT_EQ(y.shape(), Shape({5, 10}));
  }
  {
    auto m = Model::build(preset("lenet5"), 1);
    Var y = m->forward(Var(random_tensor({3, 1, 28, 28}, 2)), ctx);
    EXPECT_EQ(y.shape(), Shape({3, 10}));
    // A flat input of the right size is accepted for a shaped model.
    Var yf = m->forward(Var(random_tensor({3, 784}, 2)), ctx);
    EXPECT_EQ(yf.shape(), Shape({3, 10}));
    // And gives the same numbers as the shaped one.
    for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(yf.value().f32()[i], y.value().f32()[i]);
  }
  {
    auto m = Model::build(preset("conv2"), 1);
    Var y = m->forward(Var(random_tensor({2, 1, 28, 28}, 3)), ctx);
    EXPECT_EQ(y.shape(), Shape({2, 10}));
  }
  {
    auto m = Model::build(preset("life", {.life_steps = 2, .width = 2, .board = 8}), 1);
    Var y = m->forward(Var(random_tensor({4, 1, 8, 8}, 4)), ctx);
    EXPECT_EQ(y.shape(), Shape({4, 1, 8, 8}));
  }
}

TEST(Model, ForwardRejectsWrongInput) {
  auto m = Model::build(preset("lenet300"), 1);
  ForwardContext ctx{.training = false};
  expect_error([&] { m->forward(Var(random_tensor({5, 783}, 1)), ctx); }, {"(5, 783)", "(784)"});
}

TEST(Model, SummaryMentionsLayers) {
  auto m = Model::build(preset("lenet300"), 0);
  const std::string s = m->summary();
  for (const char* frag : {"lenet300", "266610", "linear 784->300", "linear 300->100",
                           "linear 100->10", "relu", "(300)", "(10)", "softmax_cross_entropy"})
    EXPECT_NE(s.find(frag), std::string::npos) << "summary lacks '" << frag << "':\n" << s;
  const std::string c = Model::build(preset("lenet5"), 0)->summary();
  for (const char* frag : {"conv2d 1->6 5x5", "pad 2", "maxpool 2", "flatten", "(6, 28, 28)",
                           "(16, 5, 5)", "[156 params]"})
    EXPECT_NE(c.find(frag), std::string::npos) << "summary lacks '" << frag << "':\n" << c;
}

TEST(Model, ForwardMacs) {
  auto m = Model::build(preset("lenet300"), 0);
  EXPECT_EQ(m->forward_macs(), 784 * 300 + 300 * 100 + 100 * 10);
}

TEST(Model, FindParameterByName) {
  auto m = Model::build(preset("lenet300"), 0);
  Parameter* w = m->find("linear1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->value().shape(), Shape({300, 784}));
  EXPECT_TRUE(w->is_weight);
  Parameter* b = m->find("linear1.bias");
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->is_weight);
  EXPECT_EQ(m->find("nope"), nullptr);
}

}  // namespace
}  // namespace pare::nn
