// LoRA fine-tuning in fit (TrainConfig::lora, train/lora.h): biases keep
// their bits, every weight (linear or convolution, in every step mode) ends
// as mask * (W0 + scale B A) with the factors the saved model carries, pruned
// weights stay 0, the factors learn, a run resumed mid-epoch ends with the
// same bits as a straight one and a checkpoint of another LoRA setting is
// refused, bad settings are refused, and the saved model loads as an
// ordinary one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "pare/base/file.h"
#include "pare/data/dataset.h"
#include "pare/data/life.h"
#include "pare/nn/lora.h"
#include "pare/train/archive.h"
#include "pare/train/lora.h"
#include "pare/train/trainer.h"
#include "train/train_helpers.h"

namespace pare::train {
namespace {

using testing::expect_error;
using testing::mlp_spec;

TrainConfig lora_config() {
  TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 32;
  cfg.seed = 3;
  cfg.optimizer.name = "adam";
  cfg.optimizer.lr = 0.02f;
  cfg.optimizer.weight_decay = 1e-3f;  // would move the biases if they were in the optimizer
  cfg.lora.rank = 2;
  cfg.lora.alpha = 4;  // scale 2
  return cfg;
}

std::vector<Tensor> values_of(const nn::Model& m) {
  std::vector<Tensor> v;
  for (const nn::Parameter* p : m.parameters()) v.push_back(p->value().clone());
  return v;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

std::map<std::string, const nn::LoraFactors*> by_name(const SavedLora& s) {
  std::map<std::string, const nn::LoraFactors*> m;
  for (const nn::LoraFactors& f : s.factors) m[f.name] = &f;
  return m;
}

// Checks that each weight of `model` is lora_merge(its value in `before`, the
// saved factors) to the bit and each bias kept its bits.
void expect_merged_from_saved_factors(const nn::Model& model, const std::vector<Tensor>& before,
                                      const SavedLora& saved) {
  const auto factors = by_name(saved);
  int weights = 0;
  for (size_t i = 0; i < model.parameters().size(); ++i) {
    const nn::Parameter& p = *model.parameters()[i];
    if (!p.is_weight) {
      EXPECT_TRUE(same_bits(p.value(), before[i])) << p.name << ": biases stay frozen";
      EXPECT_EQ(factors.count(p.name), 0u) << p.name << ": a bias has no factors";
      continue;
    }
    ++weights;
    EXPECT_FALSE(same_bits(p.value(), before[i])) << p.name << ": the weights train";
    const auto it = factors.find(p.name);
    ASSERT_NE(it, factors.end()) << p.name << " has no saved factors";
    EXPECT_EQ(it->second->a.shape(), Shape({saved.rank, p.numel() / p.value().dim(0)})) << p.name;
    EXPECT_EQ(it->second->b.shape(), Shape({p.value().dim(0), saved.rank})) << p.name;
    Tensor merged = Tensor::empty(p.value().shape());
    nn::lora_merge(merged, before[i], it->second->b, it->second->a, saved.scale, p.mask);
    EXPECT_TRUE(same_bits(merged, p.value()))
        << p.name << ": W0 + scale B A from the saved factors";
  }
  EXPECT_EQ(static_cast<size_t>(weights), saved.factors.size()) << "one pair of factors per weight";
}

class LoraTrainTest : public testing::PlaneDataTest {};

TEST_F(LoraTrainTest, BiasesKeepTheirBitsAndWeightsAreTheMergeOfTheSavedFactors) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  const auto before = values_of(*model);
  TrainConfig cfg = lora_config();
  cfg.out_dir = path("run");
  fit(*model, train_, test_, cfg);
  const SavedLora saved = read_lora(path("run/model.bin"));
  EXPECT_EQ(saved.rank, 2);
  EXPECT_EQ(saved.alpha, 4.0);
  EXPECT_EQ(saved.scale, 2.0f);
  ASSERT_EQ(saved.factors.size(), 2u);
  expect_merged_from_saved_factors(*model, before, saved);
}

TEST_F(LoraTrainTest, AlphaZeroMeansScaleOne) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  const auto before = values_of(*model);
  TrainConfig cfg = lora_config();
  cfg.epochs = 1;
  cfg.lora.alpha = 0;
  cfg.out_dir = path("run");
  fit(*model, train_, test_, cfg);
  const SavedLora saved = read_lora(path("run/model.bin"));
  EXPECT_EQ(saved.alpha, 2.0) << "alpha 0 stands for the rank";
  EXPECT_EQ(saved.scale, 1.0f);
  expect_merged_from_saved_factors(*model, before, saved);
}

TEST_F(LoraTrainTest, EveryStepModeLeavesTheMergeOfTheSavedFactors) {
  // The factors' gradients come from the weights' summed gradient however
  // the step runs: threads over the batch, threads inside the ops, or fixed
  // shards.
  for (const char* mode : {"data", "ops", "shards"}) {
    SCOPED_TRACE(mode);
    auto model = nn::Model::build(mlp_spec(16), 5);
    const auto before = values_of(*model);
    TrainConfig cfg = lora_config();
    cfg.epochs = 1;
    if (std::string(mode) == "shards")
      cfg.shards = 2;
    else
      cfg.parallel = mode;
    cfg.out_dir = path(std::string("run_") + mode);
    fit(*model, train_, test_, cfg);
    expect_merged_from_saved_factors(*model, before, read_lora(cfg.out_dir + "/model.bin"));
  }
}

// Pruned entries stay 0 and masks stay, whether the pruned layer runs
// masked-dense (its dense gradient masked) or sparse (packed: gradient and
// merge at the nonzeros only); either way the saved weights are the merge of
// the saved factors to the bit.
TEST_F(LoraTrainTest, PrunedWeightsStayZeroAndMasksAreKept) {
  for (const char* kernels : {"off", "on"}) {
    SCOPED_TRACE(std::string("--sparse ") + kernels);
    auto model = nn::Model::build(mlp_spec(16), 5);
    nn::Parameter* w1 = model->parameters()[0];
    ASSERT_TRUE(w1->is_weight);
    w1->mask = Tensor::empty(w1->value().shape());
    for (int64_t j = 0; j < w1->numel(); ++j) w1->mask.f32()[j] = j % 3 == 0 ? 0.0f : 1.0f;
    w1->apply_mask();
    const Tensor mask_before = w1->mask.clone();
    const auto before = values_of(*model);
    TrainConfig cfg = lora_config();
    cfg.sparse_kernels = kernels;
    cfg.out_dir = path(std::string("run-") + kernels);
    fit(*model, train_, test_, cfg);
    ASSERT_TRUE(w1->mask.defined());
    EXPECT_TRUE(same_bits(w1->mask, mask_before)) << "LoRA does not change masks";
    int64_t pruned = 0, kept_changed = 0;
    for (int64_t j = 0; j < w1->numel(); ++j) {
      if (w1->mask.f32()[j] == 0.0f) {
        ++pruned;
        EXPECT_EQ(w1->value().f32()[j], 0.0f) << "pruned entry " << j;
      } else {
        kept_changed += w1->value().f32()[j] != before[0].f32()[j];
      }
    }
    EXPECT_EQ(pruned, (w1->numel() + 2) / 3);
    EXPECT_GT(kept_changed, 0) << "the kept entries train";
    expect_merged_from_saved_factors(*model, before, read_lora(cfg.out_dir + "/model.bin"));
    // The run's log says which kernels the pruned layer ran.
    const std::string log = read_file(cfg.out_dir + "/log.jsonl");
    const bool sparse = log.find("\"kind\":\"sparse\"") != std::string::npos;
    EXPECT_EQ(sparse, std::string(kernels) == "on") << log.substr(0, 2000);
  }
}

// The same run with the pruned layer sparse and masked-dense learns alike
// (the products differ in their order of summation only).
TEST_F(LoraTrainTest, SparseAndMaskedDenseLayersTrainAlike) {
  std::vector<double> losses;
  for (const char* kernels : {"off", "on"}) {
    auto model = nn::Model::build(mlp_spec(16), 5);
    nn::Parameter* w1 = model->parameters()[0];
    w1->mask = Tensor::empty(w1->value().shape());
    for (int64_t j = 0; j < w1->numel(); ++j) w1->mask.f32()[j] = j % 2 == 0 ? 0.0f : 1.0f;
    w1->apply_mask();
    TrainConfig cfg = lora_config();
    cfg.sparse_kernels = kernels;
    losses.push_back(fit(*model, train_, test_, cfg).final_test.loss);
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-3 * std::max(1.0, losses[0]));
}

TEST_F(LoraTrainTest, ConvolutionWeightsTrainAsTheirOutByRestMatrix) {
  // A small conv net on 8x8 Life boards: each (out, in, 3, 3) weight is
  // adapted as (out, in*9); the first one is half pruned.
  nn::ModelSpec spec;
  spec.name = "lora_conv";
  spec.input = {1, 8, 8};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "conv2d", .out = 1, .kernel = 1}};
  spec.loss = "bce_with_logits";
  auto model = nn::Model::build(spec, 5);
  nn::Parameter* w1 = model->parameters()[0];
  ASSERT_EQ(w1->value().ndim(), 4);
  w1->mask = Tensor::empty(w1->value().shape());
  for (int64_t j = 0; j < w1->numel(); ++j) w1->mask.f32()[j] = j % 2 == 0 ? 0.0f : 1.0f;
  w1->apply_mask();
  const auto before = values_of(*model);
  data::LifeConfig lc{.size = 8, .steps = 1};
  Rng rng(9);
  const data::Dataset boards = data::life_boards(64, lc, rng);
  TrainConfig cfg = lora_config();
  cfg.batch = 16;
  cfg.epochs = 1;
  cfg.out_dir = path("run");
  fit(*model, boards, {}, cfg);
  const SavedLora saved = read_lora(path("run/model.bin"));
  ASSERT_EQ(saved.factors.size(), 3u);
  EXPECT_EQ(saved.factors[1].a.shape(), Shape({2, 4 * 9}));
  EXPECT_EQ(saved.factors[1].b.shape(), Shape({4, 2}));
  expect_merged_from_saved_factors(*model, before, saved);
  for (int64_t j = 0; j < w1->numel(); ++j) {
    if (w1->mask.f32()[j] == 0.0f) {
      ASSERT_EQ(w1->value().f32()[j], 0.0f) << "pruned entry " << j;
    }
  }
}

TEST_F(LoraTrainTest, LowersTheLossOfAFreshModel) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  const EvalResult start = evaluate(*model, train_, 256);
  TrainConfig cfg = lora_config();
  cfg.epochs = 4;
  cfg.optimizer.weight_decay = 0;
  fit(*model, train_, test_, cfg);
  const EvalResult end = evaluate(*model, train_, 256);
  const EvalResult held_out = evaluate(*model, test_, 256);
  EXPECT_LT(end.loss, 0.6 * start.loss)
      << "start " << start.loss << " (accuracy " << start.accuracy << ")";
  EXPECT_GT(end.accuracy, start.accuracy + 0.2) << "start " << start.accuracy;
  EXPECT_GT(held_out.accuracy, 0.85);
}

TEST_F(LoraTrainTest, ResumeMidEpochEndsWithTheSameBits) {
  TrainConfig straight = lora_config();
  straight.out_dir = path("straight");
  auto a = nn::Model::build(mlp_spec(16), 5);
  fit(*a, train_, test_, straight);
  TrainConfig part = lora_config();
  part.out_dir = path("resumed");
  part.max_steps = 21;  // 16 batches per epoch: stops mid-epoch 2 with a checkpoint
  auto b = nn::Model::build(mlp_spec(16), 5);
  const TrainResult first = fit(*b, train_, test_, part);
  ASSERT_EQ(first.stopped_because, "max_steps");
  // The checkpoint carries the factors and W0.
  const Archive ckpt = read_archive(path("resumed/checkpoint.bin"));
  for (const char* key :
       {"lora/linear1.weight.a", "lora/linear1.weight.b", "lora/linear1.weight.base"})
    EXPECT_NE(ckpt.find(key), nullptr) << key;
  part.max_steps = 0;
  part.resume = true;
  // A model built from another seed: what it starts from must come from the
  // checkpoint (W0 included), not from its own weights.
  auto c = nn::Model::build(mlp_spec(16), 6);
  const TrainResult rest = fit(*c, train_, test_, part);
  EXPECT_TRUE(rest.resumed);
  for (size_t i = 0; i < a->parameters().size(); ++i)
    EXPECT_TRUE(same_bits(a->parameters()[i]->value(), c->parameters()[i]->value()))
        << a->parameters()[i]->name;
  const SavedLora sa = read_lora(path("straight/model.bin")),
                  sc = read_lora(path("resumed/model.bin"));
  ASSERT_EQ(sa.factors.size(), sc.factors.size());
  for (size_t i = 0; i < sa.factors.size(); ++i) {
    EXPECT_EQ(sa.factors[i].name, sc.factors[i].name);
    EXPECT_TRUE(same_bits(sa.factors[i].a, sc.factors[i].a)) << sa.factors[i].name;
    EXPECT_TRUE(same_bits(sa.factors[i].b, sc.factors[i].b)) << sa.factors[i].name;
  }
}

TEST_F(LoraTrainTest, ResumeRefusesACheckpointOfAnotherLoraSetting) {
  auto stopped_run = [&](const std::string& dir, int64_t rank) {
    TrainConfig cfg = lora_config();
    cfg.lora.rank = rank;
    if (rank == 0) cfg.lora.alpha = 0;
    cfg.max_steps = 5;
    cfg.out_dir = path(dir);
    auto m = nn::Model::build(mlp_spec(16), 5);
    fit(*m, train_, test_, cfg);
    cfg.max_steps = 0;
    cfg.resume = true;
    return cfg;
  };
  const TrainConfig lora2 = stopped_run("lora2", 2);
  const TrainConfig plain = stopped_run("plain", 0);
  for (const auto& [cfg, rank] :
       {std::pair{lora2, int64_t{0}}, std::pair{lora2, int64_t{3}}, std::pair{plain, int64_t{2}}}) {
    SCOPED_TRACE(cfg.out_dir + " resumed with rank " + std::to_string(rank));
    TrainConfig resumed = cfg;
    resumed.lora.rank = rank;
    resumed.lora.alpha = rank == 0 ? 0 : 4;
    auto m = nn::Model::build(mlp_spec(16), 5);
    expect_error([&] { fit(*m, train_, test_, resumed); }, {cfg.out_dir + "/checkpoint.bin", "--lora-rank"});
  }
  // The same rank with another alpha would scale the saved factors otherwise.
  TrainConfig other_alpha = lora2;
  other_alpha.lora.alpha = 8;
  auto m = nn::Model::build(mlp_spec(16), 5);
  expect_error([&] { fit(*m, train_, test_, other_alpha); }, {"--lora-alpha 4", "--lora-alpha 8"});
}

TEST_F(LoraTrainTest, ResumeWithoutLoraOfALoraCheckpointIsRefusedEvenWithStatelessSgd) {
  // Plain SGD keeps no optimizer state whose absence would give it away: the
  // checkpoint itself must say it was a LoRA run.
  TrainConfig cfg = lora_config();
  cfg.optimizer.name = "sgd";
  cfg.optimizer.momentum = 0;
  cfg.optimizer.weight_decay = 0;
  cfg.max_steps = 5;
  cfg.out_dir = path("run");
  auto m = nn::Model::build(mlp_spec(16), 5);
  fit(*m, train_, test_, cfg);
  cfg.max_steps = 0;
  cfg.resume = true;
  cfg.lora.rank = 0;
  cfg.lora.alpha = 0;
  auto r = nn::Model::build(mlp_spec(16), 5);
  expect_error([&] { fit(*r, train_, test_, cfg); }, {"checkpoint.bin", "--lora-rank"});
}

TEST(LoraConfigValidate, RefusesBadRanksAlphasAndCombinations) {
  TrainConfig ok = lora_config();
  EXPECT_NO_THROW(ok.validate());
  TrainConfig off;
  off.lora.rank = 0;
  off.update_fraction = 0.1;  // LoRA off: update_fraction alone is fine
  EXPECT_NO_THROW(off.validate());
  off.lora.alpha = 2;  // but an alpha without a rank is a mistake
  expect_error([&] { off.validate(); }, {"--lora-alpha", "--lora-rank"});

  TrainConfig cfg = lora_config();
  cfg.lora.rank = -1;
  expect_error([&] { cfg.validate(); }, {"--lora-rank", "-1"});
  cfg = lora_config();
  cfg.lora.alpha = -0.5;
  expect_error([&] { cfg.validate(); }, {"--lora-alpha", "-0.5"});
  cfg.lora.alpha = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { cfg.validate(); }, {"--lora-alpha"});
  cfg.lora.alpha = std::numeric_limits<double>::infinity();
  expect_error([&] { cfg.validate(); }, {"--lora-alpha"});
  cfg = lora_config();
  cfg.update_fraction = 0.1;
  expect_error([&] { cfg.validate(); }, {"--lora-rank", "--update-fraction"});
  cfg = lora_config();
  cfg.sparse.method = "gmp";
  cfg.sparse.sparsity = 0.5;
  ASSERT_NO_THROW(cfg.sparse.validate()) << "the sparse settings alone are valid";
  expect_error([&] { cfg.validate(); }, {"--lora-rank", "--sparse-training"});
}

TEST_F(LoraTrainTest, FitRefusesBadSettingsBeforeTraining) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  const auto before = values_of(*model);
  TrainConfig cfg = lora_config();
  cfg.update_fraction = 0.1;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"--update-fraction"});
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(same_bits(before[i], model->parameters()[i]->value()));
}

TEST_F(LoraTrainTest, SavedModelLoadsAsAnOrdinaryModel) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  TrainConfig cfg = lora_config();
  cfg.epochs = 1;
  cfg.out_dir = path("run");
  fit(*model, train_, test_, cfg);
  auto loaded = load_model(path("run/model.bin"));
  ASSERT_EQ(loaded->parameters().size(), model->parameters().size())
      << "the factors are not parameters";
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    EXPECT_EQ(loaded->parameters()[i]->name, model->parameters()[i]->name);
    EXPECT_TRUE(same_bits(loaded->parameters()[i]->value(), model->parameters()[i]->value()))
        << model->parameters()[i]->name;
  }
  EXPECT_EQ(evaluate(*loaded, test_, 128).loss, evaluate(*model, test_, 128).loss);
}

TEST_F(LoraTrainTest, ReadLoraOfAModelWithoutLoraFindsNoFactors) {
  auto model = nn::Model::build(mlp_spec(16), 5);
  save_model(*model, path("plain.bin"));
  const SavedLora none = read_lora(path("plain.bin"));
  EXPECT_TRUE(none.factors.empty());
  EXPECT_EQ(none.rank, 0);
  // Nor does the model.bin of a run without --lora-rank.
  TrainConfig cfg = lora_config();
  cfg.lora.rank = 0;
  cfg.lora.alpha = 0;
  cfg.epochs = 1;
  cfg.out_dir = path("run");
  fit(*model, train_, test_, cfg);
  EXPECT_TRUE(read_lora(path("run/model.bin")).factors.empty());
}

}  // namespace
}  // namespace pare::train
