// Codebook fine-tuning (train/codebook_finetune.h) on weights shared by
// io::share_weights: a centroid's gradient is the sum of its weights'
// gradients (by hand and by finite differences) and one SGD step moves it by
// exactly that; after fine-tuning through train::fit every kept weight equals
// its centroid, indices and presence are unchanged, pruned weights are zero
// and the .pare file holds the tuned codebooks; the training loss falls below
// that of the untuned shared model; same seed, same bits; bad settings refused.
#include "pare/train/codebook_finetune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/io/compress.h"
#include "pare/io/pare_model.h"
#include "pare/nn/sparse_dispatch.h"
#include "testing/errors.h"
#include "train_helpers.h"

namespace pare::train {
namespace {

using pare::testing::expect_error;
using testing::plane_dataset;
using testing::pruned_mlp;

TEST(CodebookFinetune, CentroidGradientsSumTheMembersPresent) {
  // Entries 0 and 3 share centroid 0, 1 and 4 centroid 1, 5 centroid 2;
  // entry 2 (index 2) is pruned and must not count.
  const uint8_t index[] = {0, 1, 2, 0, 1, 2};
  const uint8_t present[] = {1, 1, 0, 1, 1, 1};
  const float grad_w[] = {0.5f, -1.0f, 7.0f, 0.25f, 2.0f, -3.0f};
  float grad_c[3] = {9, 9, 9};
  centroid_gradients(6, 3, grad_c, grad_w, index, present);
  EXPECT_EQ(grad_c[0], 0.75f);
  EXPECT_EQ(grad_c[1], 1.0f);
  EXPECT_EQ(grad_c[2], -3.0f);
  centroid_gradients(6, 3, grad_c, grad_w, index, nullptr);  // all present
  EXPECT_EQ(grad_c[2], 4.0f);

  const float centroids[] = {-0.5f, 0.125f, 2.0f};
  float w[6];
  tie_weights(6, w, index, present, centroids);
  const float want[] = {-0.5f, 0.125f, 0.0f, -0.5f, 0.125f, 2.0f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(w[i], want[i]) << i;
}

// The model's weight tensors shared at `bits` by io::share_weights, as the
// CLI hands them over: the .pare tensor's values, present and centroids.
std::vector<SharedWeight> share(const nn::Model& m, int bits, format::File* file = nullptr) {
  format::File f = io::to_file(m, "{}");
  std::vector<SharedWeight> shared;
  for (format::Tensor& t : f.tensors) {
    if (t.dims.size() < 2) continue;
    io::share_weights(t, bits);
    shared.push_back(
        {.name = t.name, .index = t.values, .present = t.present, .centroids = t.quant.centroids});
  }
  if (file) *file = std::move(f);
  return shared;
}

// Mean loss of the model on a batch, recording a graph when `backward`
// (then the gradients are left in the store).
double batch_loss(nn::Model& m, const Tensor& x, const Tensor& y, bool backward) {
  nn::ForwardContext ctx{.training = true};
  if (!backward) {
    autograd::NoGradGuard no_grad;
    return m.loss(m.forward(autograd::Var(x), ctx), y).value().f32()[0];
  }
  m.store().zero_grad();
  autograd::Var loss = m.loss(m.forward(autograd::Var(x), ctx), y);
  loss.backward();
  return loss.value().f32()[0];
}

class CodebookFinetuneTest : public testing::PlaneDataTest {};

TEST_F(CodebookFinetuneTest, OneSgdStepMovesEachCentroidByTheSumOfItsWeightsGradients) {
  auto m = pruned_mlp(train_);
  std::vector<SharedWeight> shared = share(*m, 2);
  ASSERT_EQ(shared.size(), 2u);
  const float lr = 0.05f;
  CodebookTying tying(*m, shared, {.name = "sgd", .lr = lr});
  tying.tie();
  const Tensor x = train_.inputs.slice_rows(0, 64);
  const Tensor y = train_.targets.slice_rows(0, 64);
  batch_loss(*m, x, y, /*backward=*/true);
  // By hand: each centroid's members' gradients, summed.
  std::vector<std::vector<double>> want(shared.size());
  for (size_t s = 0; s < shared.size(); ++s) {
    nn::Parameter* w = m->find(shared[s].name);
    want[s].assign(shared[s].centroids.size(), 0.0);
    int64_t members = 0;
    for (int64_t i = 0; i < w->numel(); ++i) {
      if (!shared[s].present.empty() && !shared[s].present[static_cast<size_t>(i)]) continue;
      want[s][shared[s].index[static_cast<size_t>(i)]] += w->grad().f32()[i];
      ++members;
    }
    EXPECT_GT(members, 0);
  }
  // That sum is the loss's derivative in the centroid (central differences,
  // the centroid moved in all its weights at once).
  for (size_t s = 0; s < shared.size(); ++s) {
    nn::Parameter* w = m->find(shared[s].name);
    for (size_t c = 0; c < shared[s].centroids.size(); ++c) {
      std::vector<float> cb = shared[s].centroids;
      const float h = 1e-3f;
      cb[c] = shared[s].centroids[c] + h;
      tie_weights(w->numel(), w->value().f32(), shared[s].index.data(),
                  shared[s].present.empty() ? nullptr : shared[s].present.data(), cb.data());
      const double up = batch_loss(*m, x, y, false);
      cb[c] = shared[s].centroids[c] - h;
      tie_weights(w->numel(), w->value().f32(), shared[s].index.data(),
                  shared[s].present.empty() ? nullptr : shared[s].present.data(), cb.data());
      const double down = batch_loss(*m, x, y, false);
      EXPECT_NEAR((up - down) / (2 * h), want[s][c], 2e-3 + 0.02 * std::fabs(want[s][c]))
          << shared[s].name << " centroid " << c;
    }
  }
  tying.tie();
  batch_loss(*m, x, y, /*backward=*/true);  // the same gradients again
  std::vector<std::vector<float>> old(shared.size());
  for (size_t s = 0; s < shared.size(); ++s) old[s] = shared[s].centroids;
  const Tensor bias_before = m->find("linear1.bias")->value().clone();
  tying.update(lr);
  for (size_t s = 0; s < shared.size(); ++s) {
    const std::vector<float> g = tying.last_gradient(s);
    nn::Parameter* w = m->find(shared[s].name);
    for (size_t c = 0; c < shared[s].centroids.size(); ++c) {
      EXPECT_EQ(g[c], static_cast<float>(want[s][c])) << shared[s].name << " " << c;
      EXPECT_FLOAT_EQ(shared[s].centroids[c], old[s][c] - lr * static_cast<float>(want[s][c]))
          << shared[s].name << " " << c;
    }
    for (int64_t i = 0; i < w->numel(); ++i) {
      const bool present = shared[s].present.empty() || shared[s].present[static_cast<size_t>(i)];
      EXPECT_EQ(w->value().f32()[i],
                present ? shared[s].centroids[shared[s].index[static_cast<size_t>(i)]] : 0.0f);
    }
  }
  // The tying steps centroids only; the biases are the loop's business.
  EXPECT_EQ(
      std::memcmp(bias_before.raw(), m->find("linear1.bias")->value().raw(), bias_before.nbytes()),
      0);
}

TrainConfig finetune_recipe() {
  TrainConfig cfg;
  cfg.epochs = 3;
  cfg.batch = 32;
  cfg.optimizer.lr = 3e-3f;
  cfg.seed = 7;
  return cfg;
}

TEST_F(CodebookFinetuneTest, KeepsIndicesAndMasksTiesEveryWeightAndTheFileHoldsTheCodebooks) {
  auto m = pruned_mlp(train_);
  format::File file;
  std::vector<SharedWeight> shared = share(*m, 2, &file);
  const std::vector<SharedWeight> before = shared;
  const Tensor bias_before = m->find("linear1.bias")->value().clone();
  const TrainResult r = codebook_finetune(*m, shared, train_, test_, finetune_recipe());
  EXPECT_EQ(r.steps, 3 * 16);
  ASSERT_EQ(shared.size(), before.size());
  for (size_t s = 0; s < shared.size(); ++s) {
    EXPECT_EQ(shared[s].index, before[s].index) << shared[s].name;
    EXPECT_EQ(shared[s].present, before[s].present) << shared[s].name;
    EXPECT_NE(shared[s].centroids, before[s].centroids) << shared[s].name;
    const nn::Parameter& w = *m->find(shared[s].name);
    int64_t pruned = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const bool present = shared[s].present.empty() || shared[s].present[static_cast<size_t>(i)];
      const float v = w.value().f32()[i];
      if (present) {
        EXPECT_EQ(v, shared[s].centroids[shared[s].index[static_cast<size_t>(i)]])
            << shared[s].name << " " << i;
      } else {
        EXPECT_EQ(v, 0.0f) << shared[s].name << " " << i;
        EXPECT_EQ(w.mask.f32()[i], 0.0f);
        ++pruned;
      }
    }
    if (shared[s].name == "linear1.weight") {
      EXPECT_GT(pruned, 30);
    }
  }
  // Biases trained as usual.
  EXPECT_NE(
      std::memcmp(bias_before.raw(), m->find("linear1.bias")->value().raw(), bias_before.nbytes()),
      0);

  // As the CLI writes it: the shared tensors' codebooks replaced, every other
  // tensor from the tuned model. The file's model is the tuned model, bit for
  // bit, and its indices are the ones sharing chose.
  const format::File tuned = io::to_file(*m, "{}");
  size_t next = 0;
  for (size_t i = 0; i < file.tensors.size(); ++i) {
    if (file.tensors[i].quant.kind == format::QuantKind::codebook)
      file.tensors[i].quant.centroids = shared[next++].centroids;
    else
      file.tensors[i] = tuned.tensors[i];
  }
  const format::File back = format::decode(format::encode(file), "tuned.pare");
  next = 0;
  for (const format::Tensor& t : back.tensors) {
    if (t.quant.kind != format::QuantKind::codebook) continue;
    EXPECT_EQ(t.values, before[next].index) << t.name;
    EXPECT_EQ(t.quant.centroids, shared[next].centroids) << t.name;
    ++next;
  }
  EXPECT_EQ(next, shared.size());
  auto loaded = io::from_file(back, "tuned.pare");
  EXPECT_EQ(testing::blob(*loaded), testing::blob(*m));
}

TEST_F(CodebookFinetuneTest, LowersTheTrainingLossOfTheSharedModel) {
  auto m = pruned_mlp(train_);
  std::vector<SharedWeight> shared = share(*m, 2);
  for (const SharedWeight& s : shared) {
    nn::Parameter* w = m->find(s.name);
    tie_weights(w->numel(), w->value().f32(), s.index.data(),
                s.present.empty() ? nullptr : s.present.data(), s.centroids.data());
  }
  const double untuned = evaluate(*m, train_, 512).loss;
  codebook_finetune(*m, shared, train_, {}, finetune_recipe());
  // The network the file describes: each weight its tuned centroid.
  for (const SharedWeight& s : shared) {
    nn::Parameter* w = m->find(s.name);
    tie_weights(w->numel(), w->value().f32(), s.index.data(),
                s.present.empty() ? nullptr : s.present.data(), s.centroids.data());
  }
  const double tuned = evaluate(*m, train_, 512).loss;
  EXPECT_LT(tuned, 0.9 * untuned) << "untuned " << untuned << ", tuned " << tuned;
}

// Pruned layers on the sparse kernels: packed storage (op-parallel steps)
// and the dense weight gathered per call (data-parallel steps) tie and train
// like the dense layers, to float rounding.
TEST_F(CodebookFinetuneTest, TrainsTheSameOnTheSparseKernels) {
  std::vector<std::vector<float>> codebooks;
  for (const auto& [kernels, parallel] : {std::pair{"off", "ops"}, {"on", "ops"}, {"on", "data"}}) {
    auto m = pruned_mlp(train_);
    std::vector<SharedWeight> shared = share(*m, 2);
    const std::vector<SharedWeight> before = shared;
    TrainConfig cfg = finetune_recipe();
    cfg.sparse_kernels = kernels;
    cfg.parallel = parallel;
    codebook_finetune(*m, shared, train_, {}, cfg);
    EXPECT_FALSE(nn::any_sparse(*m)) << "fit leaves the layers dense";
    std::vector<float> all;
    for (size_t s = 0; s < shared.size(); ++s) {
      EXPECT_NE(shared[s].centroids, before[s].centroids) << kernels << " " << parallel;
      const nn::Parameter& w = *m->find(shared[s].name);
      for (int64_t i = 0; i < w.numel(); ++i) {
        const bool present = shared[s].present.empty() || shared[s].present[static_cast<size_t>(i)];
        ASSERT_EQ(w.value().f32()[i],
                  present ? shared[s].centroids[shared[s].index[static_cast<size_t>(i)]] : 0.0f)
            << kernels << " " << parallel << " " << shared[s].name << " " << i;
      }
      all.insert(all.end(), shared[s].centroids.begin(), shared[s].centroids.end());
    }
    codebooks.push_back(all);
  }
  for (size_t run = 1; run < codebooks.size(); ++run)
    for (size_t c = 0; c < codebooks[0].size(); ++c)
      EXPECT_NEAR(codebooks[run][c], codebooks[0][c], 1e-4) << run << " " << c;
}

TEST_F(CodebookFinetuneTest, SameSeedSameBits) {
  std::string blobs[2];
  std::vector<float> codebooks[2];
  for (int run = 0; run < 2; ++run) {
    auto m = pruned_mlp(train_);
    std::vector<SharedWeight> shared = share(*m, 3);
    TrainConfig cfg = finetune_recipe();
    cfg.parallel = "data";  // the batch split across both threads, summed in a fixed order
    codebook_finetune(*m, shared, train_, {}, cfg);
    blobs[run] = testing::blob(*m);
    for (const SharedWeight& s : shared)
      codebooks[run].insert(codebooks[run].end(), s.centroids.begin(), s.centroids.end());
  }
  EXPECT_EQ(blobs[0], blobs[1]);
  EXPECT_EQ(codebooks[0], codebooks[1]);
}

TEST_F(CodebookFinetuneTest, RefusesSettingsItCannotHonour) {
  auto m = pruned_mlp(train_);
  std::vector<SharedWeight> none;
  expect_error([&] { codebook_finetune(*m, none, train_, {}, finetune_recipe()); },
               {"--share-bits"});
  std::vector<SharedWeight> shared = share(*m, 2);
  expect_error([&] { codebook_finetune(*m, shared, data::Dataset{}, {}, finetune_recipe()); },
               {"--data"});
  TrainConfig with_dir = finetune_recipe();
  with_dir.out_dir = dir_;
  expect_error([&] { codebook_finetune(*m, shared, train_, {}, with_dir); }, {"run directory"});
  TrainConfig bad_lr = finetune_recipe();
  bad_lr.optimizer.name = "lion";
  expect_error([&] { codebook_finetune(*m, shared, train_, {}, bad_lr); }, {"lion"});

  const optim::OptimizerConfig sgd{.name = "sgd", .lr = 0.1f};
  std::vector<SharedWeight> wrong = shared;
  wrong[0].name = "linear9.weight";
  expect_error([&] { CodebookTying(*m, wrong, sgd); }, {"linear9.weight"});
  wrong = shared;
  wrong[1] = wrong[0];
  expect_error([&] { CodebookTying(*m, wrong, sgd); }, {"linear1.weight", "twice"});
  wrong = shared;
  wrong[0].index.pop_back();
  expect_error([&] { CodebookTying(*m, wrong, sgd); }, {"linear1.weight", "indices"});
  wrong = shared;
  size_t kept = 0;
  while (!wrong[0].present[kept]) ++kept;
  wrong[0].index[kept] = 4;  // 2 bits: centroids 0..3
  expect_error([&] { CodebookTying(*m, wrong, sgd); }, {"linear1.weight", "centroid 4"});
  wrong = shared;
  size_t pruned = 0;
  while (wrong[0].present[pruned]) ++pruned;
  wrong[0].present[pruned] = 1;  // would revive a pruned weight
  expect_error([&] { CodebookTying(*m, wrong, sgd); },
               {"linear1.weight", "pruned by the weight's mask"});
}

}  // namespace
}  // namespace pare::train
