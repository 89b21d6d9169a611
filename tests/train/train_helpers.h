// Shared fixtures for the train tests: a scratch directory per test, a small
// learnable classification problem, and a tiny model spec.
#pragma once

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "pare/base/error.h"
#include "testing/temp_dir.h"
#include "pare/base/file.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/data/dataset.h"
#include "pare/nn/module.h"
#include "pare/nn/spec.h"
#include "pare/train/trainer.h"
#include "testing/masks.h"

namespace pare::train::testing {

using pare::testing::TempDirTest;
using pare::testing::expect_error;

// Two classes separated by a plane through the origin in 8 dimensions (plus
// noise features): a small MLP learns it to well above 90% in a few epochs.
inline data::Dataset plane_dataset(int64_t n, uint64_t seed) {
  constexpr int64_t kFeatures = 8;
  Rng rng(seed);
  data::Dataset d;
  d.inputs = Tensor::empty({n, kFeatures});
  std::vector<int32_t> labels(static_cast<size_t>(n));
  float* x = d.inputs.f32();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < kFeatures; ++j) x[i * kFeatures + j] = rng.uniform(-1.0f, 1.0f);
    const float s = x[i * kFeatures] + 0.5f * x[i * kFeatures + 1] - 0.75f * x[i * kFeatures + 2];
    labels[static_cast<size_t>(i)] = s > 0 ? 1 : 0;
  }
  d.targets = Tensor::from_i32({n}, labels);
  d.num_classes = 2;
  d.name = "plane";
  return d;
}

inline nn::ModelSpec mlp_spec(int64_t hidden = 16) {
  nn::ModelSpec s;
  s.name = "mlp";
  s.input = {8};
  s.layers = {nn::LayerSpec{.type = "linear", .out = hidden}, nn::LayerSpec{.type = "relu"},
              nn::LayerSpec{.type = "linear", .out = 2}};
  return s;
}

// An MLP on the plane problem, trained a little (3 epochs) on `train`, its
// first layer half pruned.
inline std::unique_ptr<nn::Model> pruned_mlp(const data::Dataset& train) {
  auto m = nn::Model::build(mlp_spec(16), 3);
  Rng rng(4);
  pare::testing::mask_at_random(*m->find("linear1.weight"), 0.5f, rng);
  TrainConfig cfg;
  cfg.epochs = 3;
  cfg.batch = 32;
  cfg.optimizer.lr = 1e-2f;
  fit(*m, train, {}, cfg);
  return m;
}

// The parameter blob's bytes.
inline std::string blob(nn::Model& m) {
  const Tensor& v = m.store().values();
  return std::string(static_cast<const char*>(v.raw()), v.nbytes());
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::string all = read_file(path), cur;
  for (char c : all) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

// A run directory per test and the plane problem: 512 training and 256 test
// samples, two threads.
class PlaneDataTest : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_num_threads(2);
    train_ = plane_dataset(512, 1);
    test_ = plane_dataset(256, 2);
  }
  data::Dataset train_, test_;
};

}  // namespace pare::train::testing
