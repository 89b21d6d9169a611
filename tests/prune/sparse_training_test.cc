// Gradual magnitude pruning, SET, RigL and ERK densities.
#include "pare/prune/sparse_training.h"

#include <gtest/gtest.h>

#include <cmath>

#include "pare/prune/prune.h"
#include "prune/prune_test_util.h"
#include "testing/errors.h"

namespace pare::prune {
namespace {

using pare::testing::expect_error;

// 20 -> 30 -> 10 -> 4: weights of 600, 300 and 40 entries.
std::unique_ptr<nn::Model> mlp(uint64_t seed = 0) { return testing::relu_mlp({20, 30, 10, 4}, seed); }

std::vector<int64_t> alive_counts(const nn::Model& m) {
  std::vector<int64_t> out;
  for (nn::Parameter* p : prunable(m)) out.push_back(alive(*p));
  return out;
}

void random_grads(nn::Model& m, uint64_t seed) {
  Rng r(seed);
  for (float& g : m.store().grads().span_f32()) g = r.uniform(-1.0f, 1.0f);
}

TEST(LayerDensities, ErkKeepsTheBudgetAndFavoursSmallLayers) {
  auto m = mlp();
  const auto d = layer_densities(*m, 0.1, "erk");
  ASSERT_EQ(d.size(), 3u);
  // raw = (in + out) / (in * out): 50/600, 40/300, 14/40. The last would be
  // 0.35 * eps: eps from 0.1 * 940 = eps * (50 + 40 + 14) => eps = 0.9038...,
  // all below 1, so no layer is made dense.
  const double eps = 0.1 * 940 / (50 + 40 + 14);
  EXPECT_NEAR(d[0], eps * 50 / 600, 1e-12);
  EXPECT_NEAR(d[1], eps * 40 / 300, 1e-12);
  EXPECT_NEAR(d[2], eps * 14 / 40, 1e-12);
  EXPECT_NEAR(d[0] * 600 + d[1] * 300 + d[2] * 40, 94.0, 1e-9);
  // At density 0.5 the output layer would pass 1: it is made dense and the
  // rest re-solved: 0.5 * 940 - 40 = eps' * (50 + 40).
  const auto e = layer_densities(*m, 0.5, "erk");
  EXPECT_EQ(e[2], 1.0);
  const double eps2 = (0.5 * 940 - 40) / 90.0;
  EXPECT_NEAR(e[0], eps2 * 50 / 600, 1e-12);
  EXPECT_NEAR(e[1], eps2 * 40 / 300, 1e-12);
  for (double u : layer_densities(*m, 0.3, "uniform")) EXPECT_EQ(u, 0.3);
  expect_error([&] { layer_densities(*m, 0.3, "zipf"); }, {"unknown layer distribution"});
}

TEST(Schedules, CubicAndCosine) {
  EXPECT_EQ(gradual_sparsity(0.9, 0, 10, 110), 0.0);
  EXPECT_EQ(gradual_sparsity(0.9, 10, 10, 110), 0.0);
  EXPECT_NEAR(gradual_sparsity(0.9, 60, 10, 110), 0.9 * (1 - 0.125), 1e-12);
  EXPECT_EQ(gradual_sparsity(0.9, 110, 10, 110), 0.9);
  EXPECT_EQ(gradual_sparsity(0.9, 500, 10, 110), 0.9);
  EXPECT_NEAR(cosine_drop_fraction(0.3, 0, 100), 0.3, 1e-12);
  EXPECT_NEAR(cosine_drop_fraction(0.3, 50, 100), 0.15, 1e-12);
  EXPECT_EQ(cosine_drop_fraction(0.3, 100, 100), 0.0);
}

TEST(SparseTrainingConfig, RejectsBadSettings) {
  SparseTrainingConfig c;
  c.method = "lottery";
  expect_error([&] { c.validate(); }, {"none, gmp, set or rigl"});
  c.method = "rigl";
  expect_error([&] { c.validate(); }, {"--sparsity must be in (0, 1)"});
  c.sparsity = 0.9;
  c.distribution = "global";
  expect_error([&] { c.validate(); }, {"gmp only"});
  c.distribution = "erk";
  c.interval = 0;
  expect_error([&] { c.validate(); }, {"--update-interval"});
  c.interval = 10;
  c.end = 0.0;
  expect_error([&] { c.validate(); }, {"--prune-begin < --prune-end"});
}

// RigL: every update drops and regrows the same number per layer, regrows by
// gradient magnitude, starts grown weights at 0, and stops at `end`.
TEST(SparseTrainer, RigLKeepsEveryLayersCountConstant) {
  auto m = mlp(1);
  SparseTrainingConfig c{.method = "rigl", .sparsity = 0.8, .interval = 10, .drop_fraction = 0.3};
  SparseTrainer t(c, /*total_steps=*/200, /*seed=*/5);
  t.begin(*m);
  const auto dens = layer_densities(*m, 0.2, "erk");
  const auto counts = alive_counts(*m);
  for (size_t i = 0; i < counts.size(); ++i)
    EXPECT_EQ(counts[i], std::llround(dens[i] * prunable(*m)[i]->numel()));
  int changed = 0;
  for (int64_t step = 0; step < 200; ++step) {
    random_grads(*m, 100 + static_cast<uint64_t>(step));
    std::vector<std::vector<float>> before;
    for (nn::Parameter* p : prunable(*m)) before.emplace_back(p->mask.f32(), p->mask.f32() + p->numel());
    const bool updated = t.update(step, *m);
    EXPECT_EQ(updated, step > 0 && step < 150 && step % 10 == 0) << step;
    EXPECT_EQ(alive_counts(*m), counts) << "step " << step;
    if (!updated) continue;
    auto ps = prunable(*m);
    for (size_t i = 0; i < ps.size(); ++i) {
      const float* mask = ps[i]->mask.f32();
      const float* w = ps[i]->value().f32();
      const float* g = ps[i]->grad().f32();
      float min_grown = INFINITY, max_inactive = 0;
      for (int64_t j = 0; j < ps[i]->numel(); ++j) {
        if (mask[j] == 0.0f) {
          EXPECT_EQ(w[j], 0.0f);
          max_inactive = std::max(max_inactive, std::fabs(g[j]));
        } else if (before[i][j] == 0.0f) {
          EXPECT_EQ(w[j], 0.0f);  // grown this step
          min_grown = std::min(min_grown, std::fabs(g[j]));
          ++changed;
        }
      }
      if (min_grown != INFINITY) {
        EXPECT_GE(min_grown, max_inactive) << "layer " << i;
      }
    }
    // Give the alive weights distinct values so the next drop has a ranking.
    Rng r(static_cast<uint64_t>(step));
    for (nn::Parameter* p : ps)
      for (int64_t j = 0; j < p->numel(); ++j)
        if (p->mask.f32()[j] != 0.0f) p->value().f32()[j] = r.uniform(-1.0f, 1.0f);
  }
  EXPECT_GT(changed, 0);
}

TEST(SparseTrainer, SetIsRandomButReproducible) {
  auto run = [](uint64_t seed) {
    auto m = mlp(2);
    SparseTrainingConfig c{.method = "set", .sparsity = 0.7, .distribution = "uniform", .interval = 5};
    SparseTrainer t(c, 100, seed);
    t.begin(*m);
    const auto counts = alive_counts(*m);
    for (int64_t step = 0; step < 100; ++step) {
      random_grads(*m, static_cast<uint64_t>(step));
      t.update(step, *m);
      EXPECT_EQ(alive_counts(*m), counts);
    }
    std::vector<float> masks;
    for (nn::Parameter* p : prunable(*m)) masks.insert(masks.end(), p->mask.f32(), p->mask.f32() + p->numel());
    return masks;
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
}

TEST(SparseTrainer, GradualMagnitudeReachesTheTargetMonotonically) {
  for (const char* dist : {"uniform", "global", "erk"}) {
    auto m = mlp(3);
    SparseTrainingConfig c{.method = "gmp", .sparsity = 0.9, .distribution = dist, .interval = 7,
                           .begin = 0.1, .end = 0.8};
    SparseTrainer t(c, 100, 0);
    t.begin(*m);
    double last = 0;
    for (int64_t step = 0; step < 100; ++step) {
      t.update(step, *m);
      const double s = sparsity(*m).sparsity();
      EXPECT_GE(s, last) << dist << " step " << step;
      last = s;
      if (step < 10) {
        EXPECT_EQ(s, 0.0);
      }
    }
    const SparsityReport r = sparsity(*m);
    EXPECT_NEAR(r.sparsity(), 0.9, 2.0 / r.total) << dist;
    if (std::string(dist) == "uniform") {
      for (const auto& l : r.layers) EXPECT_EQ(l.kept, std::llround(0.1 * l.total)) << l.name;
    }
    for (nn::Parameter* p : prunable(*m))
      for (int64_t j = 0; j < p->numel(); ++j)
        if (p->mask.f32()[j] == 0.0f) {
          EXPECT_EQ(p->value().f32()[j], 0.0f);
        }
  }
}

}  // namespace
}  // namespace pare::prune
