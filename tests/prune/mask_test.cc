// Masks, sparsity reports, score selection and one-shot pruning.
#include <gtest/gtest.h>

#include <cmath>

#include "pare/optim/optimizer.h"
#include "pare/prune/prune.h"
#include "prune/prune_test_util.h"
#include "testing/errors.h"

namespace pare::prune {
namespace {

using pare::testing::expect_error;

// 4 -> 3 -> 2 MLP: weights of 12 and 6 entries, biases of 3 and 2.
std::unique_ptr<nn::Model> tiny_mlp(uint64_t seed = 0) { return testing::relu_mlp({4, 3, 2}, seed); }

Scores scores_from(const nn::Model& m, std::vector<std::vector<float>> v) {
  Scores s;
  auto ps = prunable(m);
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor t = Tensor::empty(ps[i]->value().shape());
    std::copy(v[i].begin(), v[i].end(), t.f32());
    s.push_back(t);
  }
  return s;
}

std::vector<float> mask_of(const nn::Parameter& p) {
  return {p.mask.f32(), p.mask.f32() + p.numel()};
}

TEST(Prunable, IsTheWeightsInModelOrder) {
  auto m = tiny_mlp();
  auto ps = prunable(*m);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0]->numel(), 12);
  EXPECT_EQ(ps[1]->numel(), 6);
  const SparsityReport r = sparsity(*m);
  EXPECT_EQ(r.total, 18);
  EXPECT_EQ(r.kept, 18);
  EXPECT_EQ(r.sparsity(), 0.0);
}

TEST(KeepTopGlobal, KeepsTheHighestScoresAndBreaksTiesByPosition) {
  auto m = tiny_mlp();
  // Layer 0 scores 0..11, layer 1 all 5: keeping 8 takes 11,10,9,8,7,6 from
  // layer 0 (scores above 5), then the two earliest 5s: layer 0's offset 5
  // (parameter 0 comes first), then layer 1's offset 0.
  std::vector<float> a(12), b(6, 5.0f);
  for (int i = 0; i < 12; ++i) a[i] = static_cast<float>(i);
  keep_top_global(*m, scores_from(*m, {a, b}), 8);
  auto ps = prunable(*m);
  EXPECT_EQ(mask_of(*ps[0]), (std::vector<float>{0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(mask_of(*ps[1]), (std::vector<float>{1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(sparsity(*m).kept, 8);
  // Masked values are exactly zero, kept values untouched.
  auto fresh = tiny_mlp();
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(ps[0]->value().f32()[i], i < 5 ? 0.0f : prunable(*fresh)[0]->value().f32()[i]);
}

TEST(KeepTopGlobal, NeverRevivesAPrunedWeight) {
  auto m = tiny_mlp();
  std::vector<float> a(12, 1.0f), b(6, 1.0f);
  a[0] = 100;  // best score, but pruned first below
  keep_top_per_layer(*m, scores_from(*m, {std::vector<float>(12, 0.0f), b}), {11, 6});
  // ties by position: the layer-0 entry pruned is the last one (offset 11)
  EXPECT_EQ(mask_of(*prunable(*m)[0])[11], 0.0f);
  a[11] = 1000;
  keep_top_global(*m, scores_from(*m, {a, b}), 10);
  EXPECT_EQ(mask_of(*prunable(*m)[0])[11], 0.0f);
  EXPECT_EQ(mask_of(*prunable(*m)[0])[0], 1.0f);
  EXPECT_EQ(sparsity(*m).kept, 10);
  expect_error([&] { keep_top_global(*m, scores_from(*m, {a, b}), 11); }, {"10 are alive"});
}

TEST(KeepTopPerLayer, CountsPerLayerAndChecksShapes) {
  auto m = tiny_mlp();
  std::vector<float> a(12), b(6);
  for (int i = 0; i < 12; ++i) a[i] = static_cast<float>(-i);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<float>(i);
  keep_top_per_layer(*m, scores_from(*m, {a, b}), {3, 2});
  auto ps = prunable(*m);
  EXPECT_EQ(mask_of(*ps[0]), (std::vector<float>{1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(mask_of(*ps[1]), (std::vector<float>{0, 0, 0, 0, 1, 1}));
  const SparsityReport r = sparsity(*m);
  EXPECT_EQ(r.layers[0].kept, 3);
  EXPECT_EQ(r.layers[1].kept, 2);
  EXPECT_NEAR(r.sparsity(), 13.0 / 18.0, 1e-12);
  expect_error([&] { keep_top_per_layer(*m, scores_from(*m, {a, b}), {3}); }, {"per-layer keep counts"});
  Scores wrong = {Tensor::empty({2, 2}), Tensor::empty({2, 3})};
  expect_error([&] { keep_top_per_layer(*m, wrong, {1, 1}); }, {"are (2, 2)"});
}

TEST(OneShot, MagnitudeGlobalAndLayerwiseHitTheTarget) {
  nn::ModelSpec s = nn::preset("lenet300");
  for (const char* scope : {"global", "layerwise"}) {
    auto m = nn::Model::build(s, 3);
    one_shot(*m, criterion("magnitude"), 0.9, parse_scope(scope), {});
    const SparsityReport r = sparsity(*m);
    EXPECT_EQ(r.kept, std::llround(0.1 * r.total)) << scope;
    if (std::string(scope) == "layerwise") {
      for (const auto& l : r.layers) EXPECT_EQ(l.kept, std::llround(0.1 * l.total)) << l.name;
    }
    // Magnitude keeps large weights: every kept |w| >= every pruned original |w| (global).
    if (std::string(scope) == "global") {
      auto fresh = nn::Model::build(s, 3);
      float min_kept = INFINITY, max_pruned = 0;
      auto ps = prunable(*m), fs = prunable(*fresh);
      for (size_t i = 0; i < ps.size(); ++i)
        for (int64_t j = 0; j < ps[i]->numel(); ++j) {
          const float w = std::fabs(fs[i]->value().f32()[j]);
          if (ps[i]->mask.f32()[j] != 0) min_kept = std::min(min_kept, w);
          else max_pruned = std::max(max_pruned, w);
        }
      EXPECT_GE(min_kept, max_pruned);
    }
  }
  auto m = nn::Model::build(s, 3);
  expect_error([&] { one_shot(*m, criterion("magnitude"), 1.0, Scope::global, {}); }, {"--sparsity must be in [0, 1)"});
  expect_error([&] { one_shot(*m, criterion("snip"), 0.5, Scope::global, {}); }, {"needs data"});
  expect_error([&] { parse_scope("local"); }, {"global or layerwise"});
  one_shot(*m, criterion("magnitude"), 0.5, Scope::global, {});
  expect_error([&] { one_shot(*m, criterion("magnitude"), 0.2, Scope::global, {}); }, {"already"});
}

// The masked weights and their optimizer state stay exactly 0 through many
// steps of Adam with L2 weight decay and of AdamW, under large gradients.
TEST(Masks, StayExactThroughManyOptimizerSteps) {
  for (const char* name : {"adam", "adamw", "sgd"}) {
    auto m = tiny_mlp(7);
    std::vector<float> a(12), b(6);
    for (int i = 0; i < 12; ++i) a[i] = static_cast<float>(i % 5);
    for (int i = 0; i < 6; ++i) b[i] = static_cast<float>(i % 2);
    keep_top_per_layer(*m, scores_from(*m, {a, b}), {5, 3});
    optim::OptimizerConfig oc{.name = name, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.01f};
    auto opt = optim::make_optimizer(oc, m->parameters());
    Rng r(11);
    for (int step = 0; step < 500; ++step) {
      for (float& g : m->store().grads().span_f32()) g = r.uniform(-10.0f, 10.0f);
      opt->step(oc.lr);
    }
    for (nn::Parameter* p : prunable(*m)) {
      int64_t nonzero = 0;
      for (int64_t j = 0; j < p->numel(); ++j) {
        if (p->mask.f32()[j] == 0.0f) {
          EXPECT_EQ(p->value().f32()[j], 0.0f) << name << " " << p->name << "[" << j << "]";
        } else {
          nonzero += p->value().f32()[j] != 0.0f;
        }
      }
      EXPECT_GT(nonzero, 0) << name;  // the kept weights did train
    }
    // State is per parameter, named "<param>.<kind>".
    int checked = 0;
    for (auto& [state_name, t] : opt->state()) {
      for (nn::Parameter* p : prunable(*m)) {
        if (state_name.rfind(p->name + ".", 0) != 0) continue;
        ASSERT_EQ(t->numel(), p->numel());
        for (int64_t j = 0; j < p->numel(); ++j)
          if (p->mask.f32()[j] == 0.0f) {
            EXPECT_EQ(t->f32()[j], 0.0f) << name << " " << state_name;
          }
        ++checked;
      }
    }
    EXPECT_GE(checked, 2) << name;
  }
}

}  // namespace
}  // namespace pare::prune
