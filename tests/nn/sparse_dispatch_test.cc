// nn/sparse_dispatch.h: parsing --sparse, the per-layer choice (off / on /
// auto against the crossover; unmasked weights stay dense), the measured
// crossover with its file cache under $PARE_CACHE_DIR, the
// PARE_SPARSE_CROSSOVER override, and a masked model's forward pass with the
// dispatch on against off.
//
// ctest sets PARE_SPARSE_CROSSOVER=0.3 for every test; the tests here set or
// unset it themselves (restored afterwards), so they also hold when the binary
// is run by hand. Crossovers are cached in memory for the life of the process
// under a key holding the shape, so each measuring test uses shapes of its own.
#include "pare/nn/sparse_dispatch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nn/nn_test_util.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/nn/spec.h"
#include "testing/temp_dir.h"

namespace pare::nn {
namespace {

using autograd::Var;
using json = nlohmann::json;
using testing::expect_error;
using testing::random_tensor;

// Sets (or, with nullopt, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The weights (2-D, prunable) of a model, in order.
std::vector<Parameter*> weights(const Model& m) {
  std::vector<Parameter*> out;
  for (Parameter* p : m.parameters())
    if (p->is_weight && p->value().ndim() == 2) out.push_back(p);
  return out;
}

// A random 0/1 mask of about `density` on p, and p's value masked.
void random_mask(Parameter& p, double density, uint64_t seed) {
  Rng r(seed);
  p.mask = Tensor::empty(p.value().shape());
  for (float& m : p.mask.span_f32()) m = r.uniform() < density ? 1.0f : 0.0f;
  p.apply_mask();
}

int64_t alive(const Parameter& p) {
  int64_t n = 0;
  for (float m : p.mask.span_f32()) n += m != 0.0f;
  return n;
}

// LeNet-300-100 (init seed `seed`) with random masks on its first two weights:
// about 10 % and 20 % kept (mask seeds 10 seed + 1 and + 2).
std::unique_ptr<Model> lenet300_with_two_masks(uint64_t seed) {
  auto model = Model::build(preset("lenet300"), seed);
  auto w = weights(*model);
  random_mask(*w[0], 0.1, 10 * seed + 1);
  random_mask(*w[1], 0.2, 10 * seed + 2);
  return model;
}

class SparseDispatchTest : public pare::testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_num_threads(2);
  }
};

TEST(SparseMode, ParsesTheThreeNamesAndRejectsOthers) {
  EXPECT_EQ(parse_sparse_mode("off"), SparseMode::off);
  EXPECT_EQ(parse_sparse_mode("on"), SparseMode::on);
  EXPECT_EQ(parse_sparse_mode("auto"), SparseMode::automatic);
  for (SparseMode m : {SparseMode::off, SparseMode::on, SparseMode::automatic})
    EXPECT_EQ(parse_sparse_mode(sparse_mode_name(m)), m);
  for (const char* bad : {"", "ON", "sparse", "automatic", "yes"})
    expect_error([&] { parse_sparse_mode(bad); }, {"--sparse", "auto", "on", "off"});
}

TEST_F(SparseDispatchTest, ChoosesPerLayerAndSetsTheParameterPattern) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  auto model = Model::build(preset("lenet300"), 1);
  auto w = weights(*model);
  ASSERT_EQ(w.size(), 3u);
  random_mask(*w[0], 0.1, 1);  // below the crossover
  random_mask(*w[1], 0.5, 2);  // above it
  // w[2]: no mask

  auto on = dispatch_sparse(*model, SparseMode::on, 16, true);
  ASSERT_EQ(on.size(), 3u);
  EXPECT_EQ(on[0].kind, "sparse");
  EXPECT_EQ(on[1].kind, "sparse");
  EXPECT_EQ(on[2].kind, "dense");
  EXPECT_EQ(on[0].name, w[0]->name);
  EXPECT_EQ(on[0].rows, 300);
  EXPECT_EQ(on[0].cols, 784);
  EXPECT_DOUBLE_EQ(on[0].density, static_cast<double>(alive(*w[0])) / (300.0 * 784.0));
  EXPECT_NEAR(on[0].density, 0.1, 0.01);
  EXPECT_EQ(on[0].crossover, -1) << "on does not measure";
  EXPECT_TRUE(any_sparse(*model));
  for (int i : {0, 1}) {
    // The pattern is the mask's: pos lists exactly the alive entries, in order.
    ASSERT_TRUE(w[i]->sparse) << w[i]->name;
    const CsrPattern& p = *w[i]->sparse;
    EXPECT_EQ(p.rows, w[i]->value().dim(0));
    EXPECT_EQ(p.cols, w[i]->value().dim(1));
    ASSERT_EQ(p.nnz(), alive(*w[i]));
    const float* m = w[i]->mask.f32();
    int64_t k = 0;
    for (int64_t j = 0; j < w[i]->numel(); ++j)
      if (m[j] != 0.0f) {
        ASSERT_EQ(p.pos[static_cast<size_t>(k++)], j) << w[i]->name;
      }
  }
  EXPECT_FALSE(w[2]->sparse);
  for (Parameter* p : model->parameters())
    if (!p->is_weight) {
      EXPECT_FALSE(p->sparse) << p->name;
    }

  // auto: sparse below the crossover only, which is recorded.
  auto au = dispatch_sparse(*model, SparseMode::automatic, 16, true);
  EXPECT_EQ(au[0].kind, "sparse");
  EXPECT_EQ(au[1].kind, "masked-dense");
  EXPECT_EQ(au[2].kind, "dense");
  EXPECT_DOUBLE_EQ(au[0].crossover, 0.3);
  EXPECT_DOUBLE_EQ(au[1].crossover, 0.3);
  EXPECT_EQ(au[2].crossover, -1);
  EXPECT_TRUE(w[0]->sparse);
  EXPECT_FALSE(w[1]->sparse) << "a stale pattern from `on` was left";
  EXPECT_FALSE(w[2]->sparse);
  const std::string text = describe(au);
  EXPECT_NE(text.find(w[0]->name + " 300x784"), std::string::npos) << text;
  EXPECT_NE(text.find("-> sparse"), std::string::npos) << text;
  EXPECT_NE(text.find("-> masked-dense"), std::string::npos) << text;

  // off: every masked layer runs masked-dense, every pattern is cleared.
  auto off = dispatch_sparse(*model, SparseMode::off, 16, true);
  EXPECT_EQ(off[0].kind, "masked-dense");
  EXPECT_EQ(off[1].kind, "masked-dense");
  EXPECT_EQ(off[2].kind, "dense");
  EXPECT_FALSE(any_sparse(*model));

  // A new mask is picked up by the next dispatch; clear_sparse drops all.
  random_mask(*w[1], 0.05, 3);
  au = dispatch_sparse(*model, SparseMode::automatic, 16, true);
  EXPECT_EQ(au[1].kind, "sparse");
  ASSERT_TRUE(w[1]->sparse);
  EXPECT_EQ(w[1]->sparse->nnz(), alive(*w[1]));
  clear_sparse(*model);
  EXPECT_FALSE(any_sparse(*model));
}

// Convolutions are dispatched too: the filter bank as an (OC, C*KH*KW)
// matrix, and LeNet-5's output with every layer sparse equals the dense one.
TEST_F(SparseDispatchTest, ConvolutionWeightsRunSparseAsFilterMatrices) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  auto model = Model::build(preset("lenet5"), 1);
  int seed = 20;
  for (Parameter* p : model->parameters())
    if (p->is_weight) random_mask(*p, 0.4, seed++);
  const Tensor x = random_tensor({3, 1, 28, 28}, 6);
  ForwardContext ctx{.training = false};
  dispatch_sparse(*model, SparseMode::off, 3, false);
  const Tensor dense = model->forward(Var(x), ctx).value().clone();
  auto layers = dispatch_sparse(*model, SparseMode::on, 3, false);
  ASSERT_EQ(layers.size(), 5u) << "two convolutions and three linear layers";
  for (const auto& d : layers) EXPECT_EQ(d.kind, "sparse") << d.name;
  for (Parameter* p : model->parameters())
    if (p->value().ndim() == 4) {
      ASSERT_TRUE(p->sparse) << p->name;
      EXPECT_EQ(p->sparse->rows, p->value().dim(0)) << p->name;
      EXPECT_EQ(p->sparse->cols, p->numel() / p->value().dim(0)) << p->name;
    }
  const Tensor sparse = model->forward(Var(x), ctx).value().clone();
  float scale = 0;
  for (int64_t i = 0; i < dense.numel(); ++i) scale = std::max(scale, std::fabs(dense.f32()[i]));
  for (int64_t i = 0; i < dense.numel(); ++i)
    EXPECT_NEAR(sparse.f32()[i], dense.f32()[i], 1e-5f * scale) << i;
}

// The masked model's output with dispatch on equals dispatch off, over
// densities that include a fully dense mask and a fully pruned layer.
TEST_F(SparseDispatchTest, MaskedModelForwardMatchesDenseDispatch) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  const double densities[][3] = {{0.1, 0.3, 1.0}, {0.02, 0.5, 0.0}, {1.0, 1.0, 1.0}};
  for (const auto& dens : densities) {
    auto model = Model::build(preset("lenet300"), 7);
    auto w = weights(*model);
    for (int i = 0; i < 3; ++i) random_mask(*w[i], dens[i], 10 + i);
    const Tensor x = random_tensor({13, 784}, 5);
    ForwardContext ctx{.training = false};
    dispatch_sparse(*model, SparseMode::off, 13, false);
    ASSERT_FALSE(any_sparse(*model));
    const Tensor dense = model->forward(Var(x), ctx).value().clone();
    const auto layers = dispatch_sparse(*model, SparseMode::on, 13, false);
    for (const auto& d : layers) ASSERT_EQ(d.kind, "sparse") << d.name;
    const Tensor sparse = model->forward(Var(x), ctx).value().clone();
    ASSERT_EQ(sparse.shape(), dense.shape());
    // Relative to the output's scale (its largest magnitude): the two sum the
    // same products in different orders, so an output near 0 by cancellation
    // carries an error relative to the terms, not to itself.
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < dense.numel(); ++i)
      scale = std::max(scale, std::fabs(static_cast<double>(dense.f32()[i])));
    for (int64_t i = 0; i < dense.numel(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(sparse.f32()[i]) - dense.f32()[i]) /
                                  std::max(scale, 1e-30));
    EXPECT_LE(worst, 1e-5) << "densities " << dens[0] << " " << dens[1] << " " << dens[2];
    std::printf("densities %g %g %g: max |sparse - dense| / max |dense| = %.3g\n", dens[0], dens[1],
                dens[2], worst);
    if (dens[2] == 0.0) {
      // The last layer is fully pruned: the output is its bias, in both.
      ASSERT_FALSE(model->parameters().back()->is_weight);
      const Tensor& bias = model->parameters().back()->value();
      for (int64_t r = 0; r < 13; ++r)
        for (int64_t c = 0; c < 10; ++c) EXPECT_EQ(sparse.f32()[r * 10 + c], bias.f32()[c]);
    } else {
      EXPECT_GT(scale, 1e-3) << "the outputs are not all zero";
    }
    clear_sparse(*model);
  }
}

TEST_F(SparseDispatchTest, OverrideMustBeADensity) {
  {
    ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.42");
    EXPECT_DOUBLE_EQ(sparse_crossover(3, 5, 1, true), 0.42);
    auto model = Model::build(preset("lenet300"), 1);
    auto w = weights(*model);
    random_mask(*w[0], 0.4, 1);   // below 0.42
    random_mask(*w[1], 0.45, 2);  // above
    auto au = dispatch_sparse(*model, SparseMode::automatic, 8, true);
    EXPECT_EQ(au[0].kind, "sparse");
    EXPECT_EQ(au[1].kind, "masked-dense");
    clear_sparse(*model);
  }
  for (const char* bad : {"abc", "1.5", "-0.1", "0.3x", "nan", " "}) {
    ScopedEnv crossover("PARE_SPARSE_CROSSOVER", bad);
    expect_error([] { sparse_crossover(3, 5, 1, true); }, {"PARE_SPARSE_CROSSOVER", bad});
    // dispatch in auto mode reports it too (on/off never read it).
    auto model = Model::build(preset("lenet300"), 1);
    random_mask(*weights(*model)[0], 0.1, 1);
    expect_error([&] { dispatch_sparse(*model, SparseMode::automatic, 8, true); },
                 {"PARE_SPARSE_CROSSOVER"});
    EXPECT_NO_THROW(dispatch_sparse(*model, SparseMode::on, 8, true));
    clear_sparse(*model);
  }
}

// crossover_density on hand-made timings: dense 10 s against sparse points.
TEST(CrossoverDensity, InterpolatesBetweenTheMeasuredPoints) {
  // Linear in the density: sparse(d) = 20 d; dense 10 meets it at 0.5.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 1}, {0.3, 6}, {0.7, 14}}), 0.5);
  // Between the first two points: 0.05 + (10 - 2) * 0.25 / (12 - 2) = 0.25.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 2}, {0.3, 12}, {0.7, 20}}), 0.25);
  // The first crossing when the times are not monotone.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 2}, {0.3, 12}, {0.7, 9}}), 0.25);
  // Slower already at the first point: proportional below it, 0.05 * 10 / 40.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 40}, {0.3, 60}, {0.7, 90}}), 0.0125);
  // Faster at every point: the last segment's slope continues,
  // 0.7 + (10 - 7) / ((7 - 3) / 0.4) = 1.0 (and beyond that, clamped to 1).
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 1}, {0.3, 3}, {0.7, 7}}), 1.0);
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 1}, {0.3, 2}, {0.7, 6}}), 1.0);
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 1}, {0.3, 8}, {0.7, 9}}), 1.0);
  // A flat or falling last segment never reaches dense: 1.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.05, 1}, {0.3, 5}, {0.7, 5}}), 1.0);
  // Order of the points does not matter; a repeated density (a tiny weight's
  // patterns) is measured once.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.7, 14}, {0.05, 1}, {0.3, 6}}), 0.5);
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.25, 5}, {0.25, 50}, {0.75, 15}}), 0.5);
  // One point, faster: 1; slower: proportional.
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.5, 4}}), 1.0);
  EXPECT_DOUBLE_EQ(crossover_density(10, {{0.5, 20}}), 0.25);
}

TEST_F(SparseDispatchTest, CachePathFollowsTheEnvironment) {
  {
    ScopedEnv a("PARE_CACHE_DIR", "/tmp/pc"), b("XDG_CACHE_HOME", "/tmp/xdg"), c("HOME", "/tmp/h");
    EXPECT_EQ(sparse_crossover_cache_path(), "/tmp/pc/sparse_crossover.json");
  }
  {
    ScopedEnv a("PARE_CACHE_DIR", std::nullopt), b("XDG_CACHE_HOME", "/tmp/xdg"),
        c("HOME", "/tmp/h");
    EXPECT_EQ(sparse_crossover_cache_path(), "/tmp/xdg/pare/sparse_crossover.json");
  }
  {
    ScopedEnv a("PARE_CACHE_DIR", ""), b("XDG_CACHE_HOME", std::nullopt), c("HOME", "/tmp/h");
    EXPECT_EQ(sparse_crossover_cache_path(), "/tmp/h/.cache/pare/sparse_crossover.json");
  }
  {
    ScopedEnv a("PARE_CACHE_DIR", std::nullopt), b("XDG_CACHE_HOME", std::nullopt),
        c("HOME", std::nullopt);
    EXPECT_EQ(sparse_crossover_cache_path(), "");
  }
}

// The key the cache file holds for `shape` ("...| 24x40 batch 4 infer"), found
// in `file` by its suffix.
std::string key_ending(const json& file, const std::string& suffix) {
  for (auto it = file.begin(); it != file.end(); ++it) {
    const std::string& k = it.key();
    if (k.size() >= suffix.size() &&
        k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0)
      return k;
  }
  return "";
}

std::string replace_suffix(const std::string& key, const std::string& from, const std::string& to) {
  return key.substr(0, key.size() - from.size()) + to;
}

// Measures an inference crossover into the cache file and returns the
// prefix of its key ("<cpu> | <isa> kernels rN | threads T | "; "" if
// missing), which tests reuse to plant values for other shapes. Each call
// measures a shape of its own (27 x 43+), so that it writes the file even
// when the whole binary runs in one process (crossovers are kept in memory).
std::string learn_key_prefix(const std::string& file_path) {
  static int calls = 0;
  const int64_t cols = 43 + calls++;
  sparse_crossover(27, cols, 2, false);
  const std::string suffix = "27x" + std::to_string(cols) + " batch 2 infer";
  const std::string key = key_ending(json::parse(read_file(file_path)), "| " + suffix);
  return key.empty() ? key : key.substr(0, key.size() - suffix.size());
}

TEST_F(SparseDispatchTest, MeasuresOnceWritesTheCacheFileAndReusesIt) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", std::nullopt);
  ScopedEnv cache_dir("PARE_CACHE_DIR", path("cache"));
  const std::string file_path = path("cache") + "/sparse_crossover.json";
  ASSERT_EQ(sparse_crossover_cache_path(), file_path);
  ASSERT_FALSE(file_exists(file_path));

  const double d = sparse_crossover(24, 40, 4, false);
  EXPECT_GE(d, 0.0);
  EXPECT_LE(d, 1.0);
  ASSERT_TRUE(file_exists(file_path)) << "the measurement was not cached in a file";
  json file = json::parse(read_file(file_path));
  ASSERT_TRUE(file.is_object());
  const std::string key = key_ending(file, "| 24x40 batch 4 infer");
  ASSERT_FALSE(key.empty()) << file.dump();
  EXPECT_NE(key.find("threads 2"), std::string::npos) << key;
  EXPECT_DOUBLE_EQ(file[key].get<double>(), d);
  // The same question again: the same answer (memory), without measuring.
  EXPECT_DOUBLE_EQ(sparse_crossover(24, 40, 4, false), d);

  // A value planted in the file for a shape not yet asked about is used as is
  // (so it was read, not measured), and training is a key of its own.
  const std::string planted = replace_suffix(key, "24x40 batch 4 infer", "25x41 batch 4 infer");
  file[planted] = 0.123;
  file[replace_suffix(key, "24x40 batch 4 infer", "24x40 batch 4 train")] = 0.987;
  write_file_atomic(file_path, file.dump());
  EXPECT_DOUBLE_EQ(sparse_crossover(25, 41, 4, false), 0.123);
  EXPECT_DOUBLE_EQ(sparse_crossover(24, 40, 4, true), 0.987);
  // The planted entry survives later writes of other shapes.
  const double e = sparse_crossover(26, 42, 4, false);
  EXPECT_GE(e, 0.0);
  EXPECT_LE(e, 1.0);
  file = json::parse(read_file(file_path));
  EXPECT_DOUBLE_EQ(file.value(planted, -1.0), 0.123);
  EXPECT_FALSE(key_ending(file, "| 26x42 batch 4 infer").empty()) << file.dump();
}

// The first weight layer is fed the data, whose gradient training never
// needs: auto reads its crossover under a key of its own ("train, no input
// gradient"), later layers under "train". Planted values decide here.
TEST_F(SparseDispatchTest, FirstLayerHasItsOwnTrainingCrossover) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", std::nullopt);
  ScopedEnv cache_dir("PARE_CACHE_DIR", path("cache"));
  const std::string file_path = path("cache") + "/sparse_crossover.json";
  const std::string prefix = learn_key_prefix(file_path);
  ASSERT_FALSE(prefix.empty());
  json file = json::parse(read_file(file_path));
  file[prefix + "300x784 batch 8 train, no input gradient"] = 0.9;
  file[prefix + "300x784 batch 8 train"] = 0.1;
  file[prefix + "100x300 batch 8 train, no input gradient"] = 0.9;
  file[prefix + "100x300 batch 8 train"] = 0.1;
  write_file_atomic(file_path, file.dump());
  auto model = Model::build(preset("lenet300"), 1);
  auto w = weights(*model);
  random_mask(*w[0], 0.5, 1);
  random_mask(*w[1], 0.5, 2);
  auto au = dispatch_sparse(*model, SparseMode::automatic, 8, /*training=*/true);
  EXPECT_DOUBLE_EQ(au[0].crossover, 0.9);
  EXPECT_EQ(au[0].kind, "sparse");
  EXPECT_DOUBLE_EQ(au[1].crossover, 0.1);
  EXPECT_EQ(au[1].kind, "masked-dense");
  clear_sparse(*model);
  // Measured, a first layer's key is written as such.
  const double d = sparse_crossover(30, 46, 2, true, /*input_grad=*/false);
  file = json::parse(read_file(file_path));
  EXPECT_DOUBLE_EQ(file[key_ending(file, "| 30x46 batch 2 train, no input gradient")].get<double>(), d);
}

TEST_F(SparseDispatchTest, OutOfRangeCachedValueIsMeasuredAgain) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", std::nullopt);
  ScopedEnv cache_dir("PARE_CACHE_DIR", path("cache"));
  const std::string file_path = path("cache") + "/sparse_crossover.json";
  const std::string prefix = learn_key_prefix(file_path);
  ASSERT_FALSE(prefix.empty());
  json file = json::parse(read_file(file_path));
  file[prefix + "28x44 batch 2 infer"] = 7.0;
  file[prefix + "29x45 batch 2 infer"] = "0.5";
  write_file_atomic(file_path, file.dump());
  const double a = sparse_crossover(28, 44, 2, false);
  const double b = sparse_crossover(29, 45, 2, false);
  EXPECT_TRUE(a >= 0 && a <= 1) << a;
  EXPECT_TRUE(b >= 0 && b <= 1) << b;
  // Both were measured and the file now holds numbers in range for them.
  file = json::parse(read_file(file_path));
  EXPECT_DOUBLE_EQ(file[key_ending(file, "| 28x44 batch 2 infer")].get<double>(), a);
  EXPECT_DOUBLE_EQ(file[key_ending(file, "| 29x45 batch 2 infer")].get<double>(), b);
}

TEST_F(SparseDispatchTest, DamagedCacheFileIsToleratedAndReplaced) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", std::nullopt);
  ScopedEnv cache_dir("PARE_CACHE_DIR", path("cache"));
  const std::string file_path = path("cache") + "/sparse_crossover.json";
  for (const char* damage : {"{\"truncated", "[1, 2, 3]", ""}) {
    make_dirs(path("cache"));
    write_file_atomic(file_path, damage);
    static int64_t rows = 30;  // a fresh shape each time (the memory cache)
    ++rows;
    double d = -1;
    EXPECT_NO_THROW(d = sparse_crossover(rows, 17, 3, false)) << "damage: " << damage;
    EXPECT_TRUE(d >= 0 && d <= 1) << d;
    // Rewritten as a valid cache holding the new measurement.
    json file;
    ASSERT_NO_THROW(file = json::parse(read_file(file_path))) << "damage: " << damage;
    ASSERT_TRUE(file.is_object());
    const std::string key = key_ending(file, "| " + std::to_string(rows) + "x17 batch 3 infer");
    ASSERT_FALSE(key.empty()) << file.dump();
    EXPECT_DOUBLE_EQ(file[key].get<double>(), d);
  }
}

TEST_F(SparseDispatchTest, UnwritableCacheOnlyCostsAMeasurement) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", std::nullopt);
  // A regular file where the cache directory should be.
  write("not_a_dir", "x");
  ScopedEnv cache_dir("PARE_CACHE_DIR", path("not_a_dir"));
  double d = -1;
  EXPECT_NO_THROW(d = sparse_crossover(23, 39, 5, true));
  EXPECT_TRUE(d >= 0 && d <= 1) << d;
  EXPECT_EQ(read_file(path("not_a_dir")), "x");
}

// ---- packed storage (dispatch_sparse(..., packed = true)) ----

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.numel() == b.numel() &&
         std::memcmp(a.f32(), b.f32(), a.nbytes()) == 0;
}

// p's dense value at its pattern's positions.
Tensor dense_at_pattern(const Parameter& p) {
  Tensor v = Tensor::empty({p.sparse->nnz()});
  p.sparse->gather(p.value().f32(), v.f32(), nullptr);
  return v;
}

// Packed storage on the sparse layers only (linear and conv), of the right
// length, equal to the dense weight at pos, with a zero gradient; none for
// masked-dense or unmasked weights, biases, or without `packed`; the packed
// forward equals the dense-storage sparse forward bit for bit.
TEST_F(SparseDispatchTest, PackedDispatchGathersTheDenseValuesAtThePattern) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  for (const char* preset_name : {"lenet300", "lenet5"}) {
    SCOPED_TRACE(preset_name);
    auto model = Model::build(preset(preset_name), 3);
    std::vector<Parameter*> w;
    for (Parameter* p : model->parameters())
      if (p->is_weight) w.push_back(p);
    ASSERT_GE(w.size(), 3u);
    for (size_t i = 0; i + 1 < w.size(); ++i) random_mask(*w[i], i == 1 ? 0.5 : 0.1, 30 + i);
    // the last weight: no mask
    const Shape in_shape = std::string(preset_name) == "lenet5" ? Shape{4, 1, 28, 28} : Shape{4, 784};
    const Tensor x = random_tensor(in_shape, 9);
    ForwardContext ctx{.training = false};

    dispatch_sparse(*model, SparseMode::on, 4, true, /*packed=*/false);
    for (Parameter* p : model->parameters()) EXPECT_FALSE(p->packed.defined()) << p->name;
    const Tensor unpacked = model->forward(Var(x), ctx).value().clone();

    auto layers = dispatch_sparse(*model, SparseMode::automatic, 4, true, /*packed=*/true);
    for (size_t i = 0; i < w.size(); ++i) {
      Parameter& p = *w[i];
      const bool want_sparse = i + 1 < w.size() && i != 1;  // 0.5 is above the crossover
      ASSERT_EQ(static_cast<bool>(p.sparse), want_sparse) << p.name << " " << layers[i].kind;
      ASSERT_EQ(p.packed.defined(), want_sparse) << p.name;
      if (!want_sparse) continue;
      EXPECT_EQ(p.packed.value().shape(), Shape({alive(p)})) << p.name;
      EXPECT_EQ(p.packed.numel(), p.sparse->nnz()) << p.name;
      EXPECT_TRUE(p.packed.requires_grad()) << p.name;
      EXPECT_TRUE(same_bits(p.packed.value(), dense_at_pattern(p))) << p.name;
      ASSERT_TRUE(p.packed.grad().defined()) << p.name;
      ASSERT_EQ(p.packed.grad().numel(), p.sparse->nnz()) << p.name;
      for (float g : p.packed.grad().span_f32()) ASSERT_EQ(g, 0.0f) << p.name;
      EXPECT_NE(p.packed.value().f32(), p.value().f32()) << p.name << ": packed aliases the dense weight";
    }
    for (Parameter* p : model->parameters())
      if (!p->is_weight) {
        EXPECT_FALSE(p->packed.defined()) << p->name;
      }

    dispatch_sparse(*model, SparseMode::on, 4, true, /*packed=*/true);
    for (size_t i = 0; i + 1 < w.size(); ++i) ASSERT_TRUE(w[i]->packed.defined()) << w[i]->name;
    const Tensor packed = model->forward(Var(x), ctx).value().clone();
    EXPECT_TRUE(same_bits(packed, unpacked)) << "packed forward differs from dense-storage sparse";

    dispatch_sparse(*model, SparseMode::off, 4, true, /*packed=*/true);
    for (Parameter* p : model->parameters()) {
      EXPECT_FALSE(p->packed.defined()) << p->name << ": off left packed storage";
      EXPECT_FALSE(p->sparse) << p->name;
    }
  }
}

// sync_sparse_to_dense writes the packed values at pos (nothing else) and
// keeps the packed storage; a second dispatch drops packed values WITHOUT
// writing them back (sparse_dispatch.h's contract: pruning may change the
// dense values in between); clear_sparse syncs, then drops everything.
TEST_F(SparseDispatchTest, SyncWritesPackedValuesBackAndRedispatchDropsThem) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  auto model = lenet300_with_two_masks(4);
  auto w = weights(*model);
  dispatch_sparse(*model, SparseMode::on, 8, true, /*packed=*/true);
  auto bump = [&](float by) {
    for (int i : {0, 1})
      for (float& v : w[i]->packed.value().span_f32()) v += by;
  };
  std::vector<Tensor> before;
  for (int i : {0, 1}) before.push_back(w[i]->value().clone());

  // Modified packed values leave the dense weights stale until synced.
  bump(1.0f);
  for (int i : {0, 1}) EXPECT_TRUE(same_bits(w[i]->value(), before[i])) << w[i]->name;
  sync_sparse_to_dense(*model);
  for (int i : {0, 1}) {
    const Parameter& p = *w[i];
    ASSERT_TRUE(p.packed.defined()) << p.name << ": sync dropped the packed storage";
    ASSERT_TRUE(p.sparse) << p.name;
    EXPECT_TRUE(same_bits(dense_at_pattern(p), p.packed.value())) << p.name;
    int64_t changed = 0, outside = 0;
    for (int64_t j = 0; j < p.numel(); ++j) {
      const float a = p.value().f32()[j], b = before[static_cast<size_t>(i)].f32()[j];
      if (p.mask.f32()[j] != 0.0f) {
        changed += a == b + 1.0f;
      } else {
        outside += std::memcmp(&a, &b, 4) != 0;
      }
    }
    EXPECT_EQ(changed, alive(p)) << p.name;
    EXPECT_EQ(outside, 0) << p.name << ": sync wrote outside the pattern";
  }
  std::vector<Tensor> synced;
  for (int i : {0, 1}) synced.push_back(w[i]->value().clone());

  // Modified again, then dispatched again: the new values are dropped.
  bump(5.0f);
  dispatch_sparse(*model, SparseMode::on, 8, true, /*packed=*/true);
  for (int i : {0, 1}) {
    const Parameter& p = *w[i];
    EXPECT_TRUE(same_bits(p.value(), synced[static_cast<size_t>(i)]))
        << p.name << ": a second dispatch wrote the old packed values back";
    ASSERT_TRUE(p.packed.defined()) << p.name;
    EXPECT_TRUE(same_bits(p.packed.value(), dense_at_pattern(p)))
        << p.name << ": the new packed values are not the dense ones";
  }

  // clear_sparse: syncs, then drops.
  bump(2.0f);
  std::vector<Tensor> last;
  for (int i : {0, 1}) last.push_back(w[i]->packed.value().clone());
  std::vector<std::shared_ptr<const CsrPattern>> patterns{w[0]->sparse, w[1]->sparse};
  clear_sparse(*model);
  EXPECT_FALSE(any_sparse(*model));
  for (Parameter* p : model->parameters()) {
    EXPECT_FALSE(p->packed.defined()) << p->name;
    EXPECT_FALSE(p->sparse) << p->name;
  }
  for (int i : {0, 1}) {
    Tensor at = Tensor::empty({patterns[static_cast<size_t>(i)]->nnz()});
    patterns[static_cast<size_t>(i)]->gather(w[i]->value().f32(), at.f32(), nullptr);
    EXPECT_TRUE(same_bits(at, last[static_cast<size_t>(i)])) << w[i]->name << ": clear did not sync";
    for (int64_t j = 0; j < w[i]->numel(); ++j)
      if (w[i]->mask.f32()[j] == 0.0f) {
        ASSERT_EQ(w[i]->value().f32()[j], 0.0f) << w[i]->name << " pruned entry " << j;
      }
  }
  // Syncing or clearing with nothing packed is a no-op.
  const Tensor all = model->store().values().clone();
  sync_sparse_to_dense(*model);
  clear_sparse(*model);
  EXPECT_TRUE(same_bits(model->store().values(), all));
}

// Dispatch may run between a backward pass and its update (the trainer
// re-dispatches when masks change), so the gradient moves with the storage:
// packing gathers the dense gradient at the pattern and leaves the dense one
// 0; unpacking (a second dispatch, clear_sparse) adds the packed one back.
// zero_grad zeroes the packed gradient and relies on that 0.
TEST_F(SparseDispatchTest, GradientsMoveWithTheStorageAndZeroGradClearsBoth) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  auto model = lenet300_with_two_masks(5);
  auto w = weights(*model);
  Tensor& grads = model->store().grads();
  grads.copy_from(random_tensor(grads.shape(), 53));
  const Tensor dense_grads = grads.clone();
  dispatch_sparse(*model, SparseMode::on, 8, true, /*packed=*/true);
  for (int i : {0, 1}) {
    Parameter& p = *w[i];
    ASSERT_TRUE(p.packed.defined()) << p.name;
    Tensor want = Tensor::empty({p.sparse->nnz()});
    p.sparse->gather(dense_grads.f32() + (p.grad().f32() - grads.f32()), want.f32(), nullptr);
    EXPECT_TRUE(same_bits(p.packed.grad(), want)) << p.name << ": the gradient did not move into the packed one";
    for (float g : p.grad().span_f32()) ASSERT_EQ(g, 0.0f) << p.name << ": dense gradient left while packed";
  }
  for (Parameter* p : model->parameters()) {
    if (p->packed.defined()) continue;
    const int64_t offset = p->grad().f32() - grads.f32();
    const Tensor before = dense_grads.slice_rows(offset, offset + p->numel());
    EXPECT_TRUE(same_bits(p->grad().reshape({p->numel()}), before)) << p->name << ": unpacked gradient changed";
  }

  // Packed gradients back into dense ones, through a second dispatch (off).
  std::vector<Tensor> packed_grads;
  for (int i : {0, 1}) packed_grads.push_back(w[i]->packed.grad().clone());
  std::vector<std::shared_ptr<const CsrPattern>> patterns{w[0]->sparse, w[1]->sparse};
  dispatch_sparse(*model, SparseMode::off, 8, true, /*packed=*/true);
  for (int i : {0, 1}) {
    Parameter& p = *w[i];
    ASSERT_FALSE(p.packed.defined()) << p.name;
    Tensor at = Tensor::empty({patterns[static_cast<size_t>(i)]->nnz()});
    patterns[static_cast<size_t>(i)]->gather(p.grad().f32(), at.f32(), nullptr);
    EXPECT_TRUE(same_bits(at, packed_grads[static_cast<size_t>(i)])) << p.name << ": the packed gradient was lost";
    int64_t outside = 0;
    for (int64_t j = 0; j < p.numel(); ++j) outside += p.mask.f32()[j] == 0.0f && p.grad().f32()[j] != 0.0f;
    EXPECT_EQ(outside, 0) << p.name << ": gradient outside the pattern";
  }

  // And through clear_sparse; then zero_grad on packed storage clears all.
  dispatch_sparse(*model, SparseMode::on, 8, true, /*packed=*/true);
  for (float& g : w[0]->packed.grad().span_f32()) g += 1.0f;
  const Tensor bumped = w[0]->packed.grad().clone();
  clear_sparse(*model);
  Tensor at = Tensor::empty({patterns[0]->nnz()});
  patterns[0]->gather(w[0]->grad().f32(), at.f32(), nullptr);
  EXPECT_TRUE(same_bits(at, bumped)) << "clear_sparse lost the packed gradient";
  dispatch_sparse(*model, SparseMode::on, 8, true, /*packed=*/true);  // unpacked weights keep values
  model->store().zero_grad();
  for (float g : grads.span_f32()) ASSERT_EQ(g, 0.0f) << "zero_grad left a dense gradient";
  for (int i : {0, 1})
    for (float g : w[i]->packed.grad().span_f32()) ASSERT_EQ(g, 0.0f) << w[i]->name << ": packed gradient left";
}

}  // namespace
}  // namespace pare::nn

namespace pare::nn {
namespace {

// An inference dispatch gives sparse Linear weights the SELL layout, and a
// one-sample forward pass without gradients runs through it with the same
// output as the packed CSR product; with gradients on, the packed path runs.
TEST(SparseDispatchSell, OneSampleInferenceUsesSellAndMatchesCsr) {
  ScopedEnv crossover("PARE_SPARSE_CROSSOVER", "0.3");
  auto model = Model::build(preset("lenet300"), 3);
  std::vector<Parameter*> w;
  for (Parameter* p : model->parameters())
    if (p->is_weight) w.push_back(p);
  random_mask(*w[0], 0.1, 31);
  random_mask(*w[1], 0.2, 32);
  random_mask(*w[2], 0.5, 33);  // above the crossover: masked-dense, no SELL
  const Tensor x = random_tensor({1, 784}, 8);
  ForwardContext ctx{.training = false};
  dispatch_sparse(*model, SparseMode::automatic, 1, /*training=*/false, /*packed=*/false);
  for (Parameter* p : w) EXPECT_FALSE(p->sell) << p->name << ": only packed dispatches build SELL";
  Tensor csr;
  {
    autograd::NoGradGuard no_grad;
    csr = model->forward(Var(x), ctx).value().clone();
  }
  dispatch_sparse(*model, SparseMode::automatic, 1, /*training=*/false, /*packed=*/true);
#if !defined(__AVX512F__)
  for (Parameter* p : w) EXPECT_FALSE(p->sell) << p->name << ": SELL is built only with AVX-512";
  GTEST_SKIP() << "the SELL path needs AVX-512";
#endif
  ASSERT_TRUE(w[0]->sell && w[1]->sell);
  EXPECT_FALSE(w[2]->sell);
  EXPECT_EQ(w[0]->sell->rows, 300);
  EXPECT_EQ(w[0]->sell->cols, 784);
  Tensor sell;
  {
    autograd::NoGradGuard no_grad;
    sell = model->forward(Var(x), ctx).value().clone();
  }
  float scale = 0;
  for (int64_t i = 0; i < csr.numel(); ++i) scale = std::max(scale, std::fabs(csr.f32()[i]));
  ASSERT_GT(scale, 0.0f);
  for (int64_t i = 0; i < csr.numel(); ++i) EXPECT_NEAR(sell.f32()[i], csr.f32()[i], 1e-5f * scale);
  // Training dispatches never build it.
  dispatch_sparse(*model, SparseMode::automatic, 1, /*training=*/true, /*packed=*/true);
  for (Parameter* p : w) EXPECT_FALSE(p->sell) << p->name;
  clear_sparse(*model);
}

TEST(SparseDispatchSell, SellLinearRefusesToRecordAGradient) {
  const std::vector<float> mask(6 * 4, 1.0f);
  const CsrPattern pattern = CsrPattern::from_mask(6, 4, mask.data());
  const std::vector<float> values(24, 0.5f);
  auto sell = std::make_shared<const SellMatrix>(SellMatrix::from_csr(pattern, values.data()));
  Var x(random_tensor({1, 4}, 2), /*requires_grad=*/true);
  expect_error([&] { autograd::sell_linear(x, sell, Var()); }, {"inference only"});
  autograd::NoGradGuard no_grad;
  Var y = autograd::sell_linear(x, sell, Var());
  float sum = 0;
  for (int64_t j = 0; j < 4; ++j) sum += 0.5f * x.value().f32()[j];
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(y.value().f32()[i], sum, 1e-6f);
  expect_error([&] { autograd::sell_linear(Var(random_tensor({2, 4}, 3)), sell, Var()); },
               {"sell_linear: input"});
}

}  // namespace
}  // namespace pare::nn
