// Training with sparse kernels (TrainConfig::sparse_kernels, --sparse): a
// masked MLP trained with the layers sparse ends where the masked-dense run
// does, pruned weights stay 0, the FLOPs the kernels executed are counted,
// the choice is logged and dropped when fit returns, and RigL's dense-gradient
// steps interleave with sparse ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pare/base/thread_pool.h"
#include "pare/train/trainer.h"
#include "train/train_helpers.h"

namespace pare::train {
namespace {

using testing::expect_error;
using testing::mlp_spec;
using testing::plane_dataset;
using testing::read_lines;
using testing::TempDirTest;

TrainConfig small_config(int64_t epochs) {
  TrainConfig cfg;
  cfg.epochs = epochs;
  cfg.batch = 32;
  cfg.seed = 7;
  cfg.optimizer.name = "adam";
  cfg.optimizer.lr = 0.01f;
  cfg.optimizer.weight_decay = 1e-3f;
  return cfg;
}

std::vector<nn::Parameter*> weights(const nn::Model& m) {
  std::vector<nn::Parameter*> out;
  for (nn::Parameter* p : m.parameters())
    if (p->is_weight) out.push_back(p);
  return out;
}

int64_t alive(const nn::Parameter& p) {
  int64_t n = 0;
  for (float m : p.mask.span_f32()) n += m != 0.0f;
  return n;
}

// Entries of p's value outside its mask that are not exactly 0.
int64_t nonzero_pruned(const nn::Parameter& p) {
  int64_t n = 0;
  const float* v = p.value().f32();
  const float* m = p.mask.f32();
  for (int64_t i = 0; i < p.numel(); ++i) n += m[i] == 0.0f && v[i] != 0.0f;
  return n;
}

// A 64-wide MLP with random masks on both weights (30% and 50% kept).
std::unique_ptr<nn::Model> masked_mlp() {
  auto model = nn::Model::build(mlp_spec(64), 7);
  Rng r(99);
  const double density[] = {0.3, 0.5};
  auto w = weights(*model);
  EXPECT_EQ(w.size(), 2u);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i]->mask = Tensor::empty(w[i]->value().shape());
    for (float& m : w[i]->mask.span_f32()) m = r.uniform() < density[i] ? 1.0f : 0.0f;
    w[i]->apply_mask();
  }
  return model;
}

// The sparse_dispatch events of a run log.
std::vector<nlohmann::json> dispatch_events(const std::string& log) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : read_lines(log)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == "sparse_dispatch") out.push_back(j);
  }
  return out;
}

class SparseTrainTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_num_threads(2);
    train_ = plane_dataset(512, 1);
    test_ = plane_dataset(256, 2);
  }
  data::Dataset train_, test_;
};

TEST_F(SparseTrainTest, SparseKernelsTrainLikeTheMaskedDenseRun) {
  auto on = masked_mlp(), off = masked_mlp();
  TrainConfig cfg = small_config(3);  // 48 steps
  cfg.sparse_kernels = "on";
  cfg.out_dir = path("on");
  const TrainResult r_on = fit(*on, train_, test_, cfg);
  cfg.sparse_kernels = "off";
  cfg.out_dir = path("off");
  const TrainResult r_off = fit(*off, train_, test_, cfg);
  ASSERT_EQ(r_on.steps, 48);
  ASSERT_EQ(r_off.steps, 48);

  // Final weights: equal within float noise (the sums run in other orders).
  auto w_on = on->parameters(), w_off = off->parameters();
  double worst = 0;
  for (size_t k = 0; k < w_on.size(); ++k) {
    const float* a = w_on[k]->value().f32();
    const float* b = w_off[k]->value().f32();
    double scale = 0;
    for (int64_t i = 0; i < w_on[k]->numel(); ++i)
      scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
    for (int64_t i = 0; i < w_on[k]->numel(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) / scale);
  }
  std::printf("sparse on vs off after 48 steps: max |on - off| / max |off| per tensor = %.3g\n",
              worst);
  EXPECT_LE(worst, 1e-4);
  EXPECT_GT(r_on.final_test.accuracy, 0.8) << "the masked net learns";
  EXPECT_NEAR(r_on.final_test.accuracy, r_off.final_test.accuracy, 0.02);
  // The weights moved (the comparison is not vacuous), and pruned ones are 0.
  const auto fresh = masked_mlp();
  EXPECT_FALSE(testing::blob(*on) == testing::blob(*fresh));
  for (nn::Model* m : {on.get(), off.get()})
    for (nn::Parameter* p : weights(*m)) {
      EXPECT_EQ(nonzero_pruned(*p), 0) << p->name;
      EXPECT_FALSE(p->sparse) << p->name << ": the pattern outlived fit";
    }

  // FLOPs: "on" executes the sparse count, "off" the dense one.
  EXPECT_GT(r_on.executed_flops, 0);
  EXPECT_LT(r_on.executed_flops, 0.6 * r_on.dense_flops);
  EXPECT_NEAR(r_on.executed_flops, r_on.flops, 1e-9 * r_on.flops);
  EXPECT_EQ(r_off.executed_flops, r_off.dense_flops);
  EXPECT_DOUBLE_EQ(r_on.dense_flops, r_off.dense_flops);
  EXPECT_DOUBLE_EQ(r_on.flops, r_off.flops) << "the sparse count does not depend on the kernels";

  // The log: one choice at the start, naming each layer's kind and density.
  for (const auto& [dir, kind] : {std::pair{"on", "sparse"}, std::pair{"off", "masked-dense"}}) {
    const auto events = dispatch_events(path(dir) + "/log.jsonl");
    ASSERT_EQ(events.size(), 1u) << dir;
    EXPECT_EQ(events[0]["mode"], dir);
    EXPECT_EQ(events[0]["step"], 0);
    ASSERT_EQ(events[0]["layers"].size(), 2u) << events[0].dump();
    for (const auto& l : events[0]["layers"]) {
      EXPECT_EQ(l["kind"], kind) << events[0].dump();
      EXPECT_GT(l["density"].get<double>(), 0.2);
      EXPECT_LT(l["density"].get<double>(), 0.6);
    }
    // The end event carries the executed FLOPs.
    const auto lines = read_lines(path(dir) + "/log.jsonl");
    const auto end = nlohmann::json::parse(lines.back());
    ASSERT_EQ(end["event"], "end");
    EXPECT_DOUBLE_EQ(end["executed_flops"].get<double>(),
                     dir == std::string("on") ? r_on.executed_flops : r_off.executed_flops);
  }
}

// PARE_SPARSE_CROSSOVER set for one scope, restored after.
class ScopedCrossover {
 public:
  explicit ScopedCrossover(const char* value) {
    if (const char* old = std::getenv("PARE_SPARSE_CROSSOVER")) old_ = old;
    ::setenv("PARE_SPARSE_CROSSOVER", value, 1);
  }
  ~ScopedCrossover() {
    if (old_)
      ::setenv("PARE_SPARSE_CROSSOVER", old_->c_str(), 1);
    else
      ::unsetenv("PARE_SPARSE_CROSSOVER");
  }

 private:
  std::optional<std::string> old_;
};

// With the crossover at 0.4 (forced here), "auto" (the default) runs the 30%
// layer sparse and the 50% one masked-dense.
TEST_F(SparseTrainTest, AutoFollowsTheCrossover) {
  ScopedCrossover crossover("0.4");
  auto model = masked_mlp();  // densities ~0.3 and ~0.5
  TrainConfig cfg = small_config(1);
  cfg.out_dir = path("auto");
  const TrainResult r = fit(*model, train_, test_, cfg);
  const auto events = dispatch_events(path("auto") + "/log.jsonl");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["mode"], "auto");
  ASSERT_EQ(events[0]["layers"].size(), 2u);
  EXPECT_EQ(events[0]["layers"][0]["kind"], "sparse") << events[0].dump();
  EXPECT_EQ(events[0]["layers"][1]["kind"], "masked-dense") << events[0].dump();
  EXPECT_DOUBLE_EQ(events[0]["layers"][0]["crossover"].get<double>(), 0.4);
  EXPECT_LT(r.executed_flops, r.dense_flops);
  EXPECT_GT(r.executed_flops, r.flops) << "the masked-dense layer counts as dense";
}

TEST_F(SparseTrainTest, UnmaskedModelLogsNoDispatchAndExecutesDenseFlops) {
  auto model = nn::Model::build(mlp_spec(16), 7);
  TrainConfig cfg = small_config(1);
  cfg.sparse_kernels = "on";
  cfg.out_dir = path("dense");
  const TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_TRUE(dispatch_events(path("dense") + "/log.jsonl").empty());
  EXPECT_EQ(r.executed_flops, r.dense_flops);
}

TEST_F(SparseTrainTest, RigLWithSparseKernelsKeepsLayerCountsAndLearns) {
  auto model = nn::Model::build(mlp_spec(64), 7);
  TrainConfig cfg = small_config(4);  // 64 steps
  cfg.sparse_kernels = "on";
  cfg.sparse.method = "rigl";
  cfg.sparse.sparsity = 0.7;
  cfg.sparse.distribution = "uniform";
  cfg.sparse.interval = 5;
  cfg.out_dir = path("rigl");
  std::vector<int64_t> counts;             // per layer, at the first step
  std::vector<std::vector<float>> masks0;  // the masks after the first step
  int64_t steps_seen = 0, steps_sparse = 0, bad_counts = 0, bad_zeros = 0;
  Observer obs;
  obs.on_step = [&](int64_t, int64_t, int64_t, double) {
    auto w = weights(*model);
    if (counts.empty())
      for (nn::Parameter* p : w) {
        counts.push_back(alive(*p));
        masks0.emplace_back(p->mask.span_f32().begin(), p->mask.span_f32().end());
      }
    for (size_t i = 0; i < w.size(); ++i) {
      bad_counts += alive(*w[i]) != counts[i];
      bad_zeros += nonzero_pruned(*w[i]);
    }
    ++steps_seen;
    steps_sparse += nn::any_sparse(*model);
  };
  const TrainResult r = fit(*model, train_, test_, cfg, obs);
  ASSERT_EQ(r.steps, 64);
  ASSERT_EQ(steps_seen, 64);
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(bad_counts, 0) << "a layer's alive count changed";
  EXPECT_EQ(bad_zeros, 0) << "a pruned weight was nonzero after a step";
  // The layers ran sparse after every step, the RigL grow steps included
  // (they run dense and are re-dispatched before the update).
  EXPECT_EQ(steps_sparse, 64);
  auto w = weights(*model);
  int64_t moved = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(alive(*w[i]), counts[i]) << w[i]->name;
    EXPECT_NEAR(static_cast<double>(counts[i]) / static_cast<double>(w[i]->numel()), 0.3, 0.02);
    EXPECT_EQ(nonzero_pruned(*w[i]), 0) << w[i]->name;
    EXPECT_FALSE(w[i]->sparse) << w[i]->name;
    const float* m = w[i]->mask.f32();
    for (int64_t j = 0; j < w[i]->numel(); ++j) moved += m[j] != masks0[i][static_cast<size_t>(j)];
  }
  EXPECT_GT(moved, 0) << "RigL never rewired a mask";
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  EXPECT_GT(r.final_test.accuracy, 0.75);
  // Grow steps ran dense: executed between the sparse count and the dense one.
  EXPECT_GT(r.executed_flops, r.flops);
  EXPECT_LT(r.executed_flops, r.dense_flops);
}

TEST_F(SparseTrainTest, BadSparseKernelsValueFailsValidation) {
  TrainConfig cfg = small_config(1);
  cfg.sparse_kernels = "sometimes";
  expect_error([&] { cfg.validate(); }, {"--sparse", "sometimes"});
  auto model = nn::Model::build(mlp_spec(16), 7);
  const std::string before = testing::blob(*model);
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"--sparse"});
  EXPECT_TRUE(testing::blob(*model) == before) << "a rejected config trained anyway";
  for (const char* ok : {"auto", "on", "off"}) {
    cfg.sparse_kernels = ok;
    EXPECT_NO_THROW(cfg.validate()) << ok;
  }
}

}  // namespace
}  // namespace pare::train
