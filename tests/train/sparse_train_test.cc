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

#include <cstring>
#include <stdexcept>

#include "pare/base/thread_pool.h"
#include "pare/data/life.h"
#include "pare/nn/sparse_dispatch.h"
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

class SparseTrainTest : public testing::PlaneDataTest {};

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

// ---- packed storage: TrainConfig.parallel = "ops" makes the sparse layers
// train on Parameter::packed (trainer.cc), whatever the model's size ----

TrainConfig ops_config(int64_t epochs) {
  TrainConfig cfg = small_config(epochs);
  cfg.parallel = "ops";
  cfg.sparse_kernels = "on";
  return cfg;
}

// Largest |a - b| / max |b| per tensor, over every parameter.
double max_rel_diff(const nn::Model& a, const nn::Model& b) {
  auto pa = a.parameters(), pb = b.parameters();
  double worst = 0;
  for (size_t k = 0; k < pa.size(); ++k) {
    const float* x = pa[k]->value().f32();
    const float* y = pb[k]->value().f32();
    double scale = 0;
    for (int64_t i = 0; i < pa[k]->numel(); ++i) scale = std::max(scale, std::fabs(static_cast<double>(y[i])));
    for (int64_t i = 0; i < pa[k]->numel(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(x[i]) - y[i]) / std::max(scale, 1e-30));
  }
  return worst;
}

// Counts the steps on which some weight trained packed, and checks each
// packed weight's storage against its mask (length = alive count).
struct PackedWatch {
  int64_t steps = 0, packed_steps = 0, bad_lengths = 0;
  void on_step(const nn::Model& m) {
    ++steps;
    bool any = false;
    for (nn::Parameter* p : m.parameters())
      if (p->packed.defined()) {
        any = true;
        bad_lengths += !p->sparse || p->packed.numel() != p->sparse->nnz() ||
                       (p->mask.defined() && p->packed.numel() != alive(*p));
      }
    packed_steps += any;
  }
};

// A tiny conv net on 8x8 Life boards with masks on both 3x3 convolutions.
nn::ModelSpec conv_spec() {
  nn::ModelSpec spec;
  spec.name = "convpacked";
  spec.input = {1, 8, 8};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 6, .kernel = 3, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "conv2d", .out = 6, .kernel = 3, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "relu"}, nn::LayerSpec{.type = "conv2d", .out = 1, .kernel = 1}};
  spec.loss = "bce_with_logits";
  return spec;
}
std::unique_ptr<nn::Model> masked_conv() {
  auto model = nn::Model::build(conv_spec(), 5);
  Rng r(98);
  auto w = weights(*model);
  EXPECT_EQ(w.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    w[i]->mask = Tensor::empty(w[i]->value().shape());
    for (float& m : w[i]->mask.span_f32()) m = r.uniform() < 0.4 ? 1.0f : 0.0f;
    w[i]->apply_mask();
  }
  return model;
}
data::Dataset life_data(int64_t n, uint64_t seed) {
  data::LifeConfig lc{.size = 8, .steps = 1};
  Rng rng(seed);
  return data::life_boards(n, lc, rng);
}

// (a) Packed training ends where the masked-dense run does (the same sums in
// other orders), on the MLP and on the conv net; every step trained packed.
TEST_F(SparseTrainTest, PackedTrainingMatchesTheMaskedDenseRun) {
  struct Net {
    const char* name;
    std::unique_ptr<nn::Model> (*make)();
    bool conv;
  };
  for (const Net& net : {Net{"mlp", masked_mlp, false}, Net{"conv", masked_conv, true}}) {
    SCOPED_TRACE(net.name);
    const data::Dataset train = net.conv ? life_data(96, 3) : train_;
    const data::Dataset test = net.conv ? life_data(32, 4) : test_;
    auto on = net.make(), off = net.make();
    TrainConfig cfg = ops_config(3);
    if (net.conv) cfg.batch = 16;
    cfg.out_dir = path(std::string(net.name) + "_on");
    PackedWatch watch;
    Observer obs;
    obs.on_step = [&](int64_t, int64_t, int64_t, double) { watch.on_step(*on); };
    const TrainResult r_on = fit(*on, train, test, cfg, obs);
    cfg.sparse_kernels = "off";
    cfg.out_dir = path(std::string(net.name) + "_off");
    const TrainResult r_off = fit(*off, train, test, cfg);
    ASSERT_EQ(r_on.steps, r_off.steps);
    EXPECT_EQ(watch.packed_steps, r_on.steps) << "not every step trained packed";
    EXPECT_EQ(watch.bad_lengths, 0);
    const double worst = max_rel_diff(*on, *off);
    std::printf("%s, packed (ops, on) vs masked dense (ops, off) after %lld steps: "
                "max |on - off| / max |off| per tensor = %.3g\n",
                net.name, static_cast<long long>(r_on.steps), worst);
    EXPECT_LE(worst, 1e-4);
    EXPECT_FALSE(testing::blob(*on) == testing::blob(*net.make())) << "the weights did not move";
    for (nn::Parameter* p : weights(*on))
      if (p->mask.defined()) {
        EXPECT_EQ(nonzero_pruned(*p), 0) << p->name;
      }
    EXPECT_NEAR(r_on.final_test.loss, r_off.final_test.loss, 1e-3 * std::fabs(r_off.final_test.loss));
  }
}

// (b) The reproducibility contract on the packed path: stopped by max_steps
// mid-epoch (checkpoint), or crashed after a checkpoint, then resumed, the
// run ends with the same bits as an uninterrupted one.
TEST_F(SparseTrainTest, PackedRunResumedMidEpochMatchesTheStraightRunBitForBit) {
  auto run = [&](const std::string& dir, int64_t max_steps, bool resume, int64_t crash_at) {
    auto model = masked_mlp();
    TrainConfig cfg = ops_config(3);  // 16 batches per epoch, 48 steps
    cfg.checkpoint_every = 7;
    cfg.out_dir = path(dir);
    cfg.max_steps = max_steps;
    cfg.resume = resume;
    PackedWatch watch;
    Observer obs;
    obs.on_step = [&](int64_t, int64_t, int64_t, double) {
      watch.on_step(*model);
      if (crash_at > 0 && watch.steps == crash_at) throw std::runtime_error("simulated crash");
    };
    if (crash_at > 0) {
      EXPECT_THROW(fit(*model, train_, test_, cfg, obs), std::runtime_error);
      for (nn::Parameter* p : model->parameters())
        EXPECT_FALSE(p->packed.defined()) << p->name << ": packed storage outlived a throwing fit";
      return std::string();
    }
    const TrainResult r = fit(*model, train_, test_, cfg, obs);
    EXPECT_EQ(watch.packed_steps, watch.steps) << dir;
    EXPECT_EQ(r.resumed, resume) << dir;
    EXPECT_EQ(r.steps, max_steps > 0 ? max_steps : 48) << dir;
    return testing::blob(*model);
  };
  const std::string straight = run("A", 0, false, 0);
  run("B", 20, false, 0);  // step 20: batch 4 of epoch 2
  const std::string resumed = run("B", 0, true, 0);
  EXPECT_TRUE(straight == resumed) << "resumed (max_steps 20) packed run differs from the straight run";
  run("C", 0, false, 30);  // last checkpoint at step 28
  const std::string after_crash = run("C", 0, true, 0);
  EXPECT_TRUE(straight == after_crash) << "resumed (crash at 30) packed run differs from the straight run";
  // Not vacuous: a different seed ends elsewhere.
  EXPECT_FALSE(straight == testing::blob(*masked_mlp()));
}

// (c) RigL and GMP on packed storage: per-layer alive counts constant (RigL)
// or falling to the target (GMP), masks change, pruned weights exactly 0,
// packed storage always as long as the mask's alive count, the loss falls.
TEST_F(SparseTrainTest, RigLAndGmpOnPackedStorage) {
  for (const char* method : {"rigl", "gmp"}) {
    SCOPED_TRACE(method);
    const bool rigl = std::string(method) == "rigl";
    auto model = nn::Model::build(mlp_spec(64), 7);
    TrainConfig cfg = ops_config(4);  // 64 steps
    cfg.sparse.method = method;
    cfg.sparse.sparsity = 0.7;
    cfg.sparse.distribution = "uniform";
    cfg.sparse.interval = 5;
    cfg.out_dir = path(method);
    std::vector<int64_t> counts, previous;
    std::vector<std::vector<float>> masks0;
    int64_t bad_counts = 0, bad_zeros = 0, growing = 0;
    PackedWatch watch;
    Observer obs;
    obs.on_step = [&](int64_t, int64_t, int64_t, double) {
      watch.on_step(*model);
      auto w = weights(*model);
      if (counts.empty())
        for (nn::Parameter* p : w) {
          counts.push_back(p->mask.defined() ? alive(*p) : p->numel());
          masks0.emplace_back(p->mask.span_f32().begin(), p->mask.span_f32().end());
        }
      if (previous.empty()) previous = counts;
      for (size_t i = 0; i < w.size(); ++i) {
        const int64_t a = alive(*w[i]);
        if (rigl) bad_counts += a != counts[i];
        growing += a > previous[i];
        previous[i] = a;
        bad_zeros += nonzero_pruned(*w[i]);
      }
    };
    const TrainResult r = fit(*model, train_, test_, cfg, obs);
    ASSERT_EQ(r.steps, 64);
    EXPECT_EQ(watch.bad_lengths, 0) << "packed storage did not match the mask";
    EXPECT_GT(watch.packed_steps, 32) << "the packed path was hardly used";
    EXPECT_EQ(bad_counts, 0) << "a layer's alive count changed under RigL";
    EXPECT_EQ(growing, 0) << "GMP grew a layer";
    EXPECT_EQ(bad_zeros, 0) << "a pruned weight was nonzero after a step";
    auto w = weights(*model);
    int64_t moved = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      EXPECT_NEAR(static_cast<double>(alive(*w[i])) / static_cast<double>(w[i]->numel()), 0.3, 0.02)
          << w[i]->name;
      EXPECT_EQ(nonzero_pruned(*w[i]), 0) << w[i]->name;
      EXPECT_FALSE(w[i]->sparse) << w[i]->name;
      EXPECT_FALSE(w[i]->packed.defined()) << w[i]->name;
      const float* m = w[i]->mask.f32();
      for (int64_t j = 0; j < w[i]->numel(); ++j)
        moved += masks0[i].empty() ? m[j] == 0.0f : m[j] != masks0[i][static_cast<size_t>(j)];
    }
    EXPECT_GT(moved, 0) << "the masks never changed";
    EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
    EXPECT_GT(r.final_test.accuracy, 0.75);
  }
}

// (d) When fit returns no parameter keeps packed storage or a pattern, and
// the dense values are the trained (packed) ones: bit for bit the packed
// values after the last step, and the final evaluation (run packed inside
// fit) gives the same loss bits after packing the returned model again.
TEST_F(SparseTrainTest, AfterFitTheDenseValuesAreTheTrainedPackedOnes) {
  auto model = masked_mlp();
  TrainConfig cfg = ops_config(2);
  cfg.out_dir = path("d");
  std::vector<std::pair<std::shared_ptr<const CsrPattern>, Tensor>> last;  // per weight
  Observer obs;
  obs.on_step = [&](int64_t, int64_t, int64_t, double) {
    last.clear();
    for (nn::Parameter* p : weights(*model))
      last.emplace_back(p->sparse, p->packed.defined() ? p->packed.value().clone() : Tensor());
  };
  const TrainResult r = fit(*model, train_, test_, cfg, obs);
  ASSERT_EQ(last.size(), 2u);
  for (nn::Parameter* p : model->parameters()) {
    EXPECT_FALSE(p->packed.defined()) << p->name;
    EXPECT_FALSE(p->sparse) << p->name;
  }
  auto w = weights(*model);
  for (size_t i = 0; i < w.size(); ++i) {
    const auto& [pattern, values] = last[i];
    ASSERT_TRUE(pattern && values.defined()) << w[i]->name << ": the last step was not packed";
    Tensor at = Tensor::empty({pattern->nnz()});
    pattern->gather(w[i]->value().f32(), at.f32(), nullptr);
    EXPECT_EQ(0, std::memcmp(at.f32(), values.f32(), values.nbytes()))
        << w[i]->name << ": the dense weight is not the last packed values";
    EXPECT_EQ(nonzero_pruned(*w[i]), 0) << w[i]->name;
  }
  // Dense evaluation of the returned model: the same accuracy.
  const EvalResult dense = evaluate(*model, test_, cfg.eval_batch);
  EXPECT_EQ(dense.accuracy, r.final_test.accuracy);
  EXPECT_NEAR(dense.loss, r.final_test.loss, 1e-5 * std::fabs(r.final_test.loss));
  // Packed again (as fit's last evaluation ran): the same bits.
  nn::dispatch_sparse(*model, nn::SparseMode::on, cfg.batch, /*training=*/true, /*packed=*/true);
  const EvalResult packed = evaluate(*model, test_, cfg.eval_batch);
  nn::clear_sparse(*model);
  EXPECT_EQ(packed.loss, r.final_test.loss);
  EXPECT_EQ(packed.accuracy, r.final_test.accuracy);
  // The saved model holds the same values.
  auto loaded = load_model(path("d/model.bin"));
  EXPECT_TRUE(testing::blob(*loaded) == testing::blob(*model)) << "model.bin differs from the returned model";
}

}  // namespace
}  // namespace pare::train
