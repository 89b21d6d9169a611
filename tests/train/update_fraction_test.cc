// Sparse fine-tuning (TrainConfig::update_fraction): only the chosen fraction
// of each weight trains, every other weight keeps its starting value to the
// bit (weight decay included), pruned weights stay 0, and a run resumed from a
// checkpoint freezes the same weights and ends with the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pare/data/dataset.h"
#include "pare/train/trainer.h"
#include "train/train_helpers.h"

namespace pare::train {
namespace {

using testing::mlp_spec;
using testing::plane_dataset;
using testing::TempDirTest;

TrainConfig config() {
  TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 32;
  cfg.seed = 3;
  cfg.optimizer.name = "adam";
  cfg.optimizer.lr = 0.01f;
  cfg.optimizer.weight_decay = 1e-3f;  // would move frozen weights if they were updated
  cfg.update_fraction = 0.05;
  cfg.update_batches = 4;
  return cfg;
}

std::vector<Tensor> values_of(const nn::Model& m) {
  std::vector<Tensor> v;
  for (const nn::Parameter* p : m.parameters()) v.push_back(p->value().clone());
  return v;
}

class UpdateFractionTest : public TempDirTest {};

TEST_F(UpdateFractionTest, OnlyTheChosenFractionOfEachWeightChanges) {
  const data::Dataset train = plane_dataset(512, 1), test = plane_dataset(128, 2);
  auto model = nn::Model::build(mlp_spec(64), 5);
  nn::Parameter* w1 = model->parameters()[0];
  w1->mask = Tensor::empty(w1->value().shape());
  for (int64_t j = 0; j < w1->numel(); ++j) w1->mask.f32()[j] = j % 3 == 0 ? 0.0f : 1.0f;
  w1->apply_mask();
  const auto before = values_of(*model);
  fit(*model, train, test, config());
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    const nn::Parameter& p = *model->parameters()[i];
    int64_t changed = 0, alive = 0;
    for (int64_t j = 0; j < p.numel(); ++j) {
      const bool kept = !p.mask.defined() || p.mask.f32()[j] > 0.0f;
      alive += kept;
      changed += std::memcmp(&p.value().f32()[j], &before[i].f32()[j], 4) != 0;
      if (!kept) {
        EXPECT_EQ(p.value().f32()[j], 0.0f) << p.name;
      }
    }
    if (p.is_weight) {
      EXPECT_GT(changed, 0) << p.name << ": the chosen weights train";
      EXPECT_LE(changed, std::llround(0.05 * static_cast<double>(alive))) << p.name;
    } else {
      EXPECT_GT(changed, 0) << p.name << ": biases train";
    }
  }
}

TEST_F(UpdateFractionTest, ResumeFreezesTheSameWeights) {
  const data::Dataset train = plane_dataset(512, 1), test = plane_dataset(128, 2);
  TrainConfig straight = config();
  straight.out_dir = path("straight");
  auto a = nn::Model::build(mlp_spec(64), 5);
  fit(*a, train, test, straight);
  TrainConfig part = config();
  part.out_dir = path("resumed");
  part.max_steps = 21;  // stops mid-epoch 2 with a checkpoint
  auto b = nn::Model::build(mlp_spec(64), 5);
  fit(*b, train, test, part);
  part.max_steps = 0;
  part.resume = true;
  auto c = nn::Model::build(mlp_spec(64), 5);
  fit(*c, train, test, part);
  for (size_t i = 0; i < a->parameters().size(); ++i)
    EXPECT_EQ(std::memcmp(a->parameters()[i]->value().f32(), c->parameters()[i]->value().f32(),
                          a->parameters()[i]->value().nbytes()), 0)
        << a->parameters()[i]->name;
}

TEST(SelectClasses, KeepsTheSamplesOfTheGivenClasses) {
  const data::Dataset d = plane_dataset(200, 3);
  const data::Dataset one = data::select_classes(d, {1});
  ASSERT_GT(one.size(), 0);
  ASSERT_LT(one.size(), d.size());
  for (int64_t i = 0; i < one.size(); ++i) EXPECT_EQ(one.targets.data<int32_t>()[i], 1);
  // Rows are copied whole and in order.
  int64_t k = 0;
  const int64_t row = d.inputs.numel() / d.size();
  for (int64_t i = 0; i < d.size(); ++i)
    if (d.targets.data<int32_t>()[i] == 1) {
      EXPECT_EQ(std::memcmp(one.inputs.f32() + k * row, d.inputs.f32() + i * row, row * 4), 0);
      ++k;
    }
  EXPECT_EQ(k, one.size());
  testing::expect_error([&] { data::select_classes(d, {7}); }, {"class 7"});
}

}  // namespace
}  // namespace pare::train
