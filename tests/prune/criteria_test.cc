// Pruning criteria (prune/criteria.cc): SNIP, GraSP and SynFlow against
// scores worked out by hand on a 2-2-1 ReLU net, magnitude and random basics,
// SynFlow's conservation law and its rescaling of deep nets, the registry, and
// that scoring leaves the model exactly as it found it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/prune/prune.h"
#include "testing/errors.h"

namespace pare::prune {
namespace {

using nn::LayerSpec;
using nn::Model;
using nn::ModelSpec;
using pare::testing::expect_error;

constexpr float kInf = std::numeric_limits<float>::infinity();

void set_values(nn::Parameter& p, std::vector<float> v) {
  ASSERT_EQ(static_cast<int64_t>(v.size()), p.numel()) << p.name;
  std::copy(v.begin(), v.end(), p.value().f32());
}

std::vector<float> values(const Tensor& t) { return {t.f32(), t.f32() + t.numel()}; }

// The hand-worked net: x (2) -> linear1 (2, bias) -> relu -> [dropout] ->
// linear (1, bias), mse loss, with
//   W1 = [[1, -1], [0.5, 1]], b1 = (0, 0.5), W2 = [[1, 2]], b2 = -1.
// The optional dropout (p = 0.5) must not matter: criteria run in eval mode;
// nor must the optional input normalisation (applied to data, not by forward).
std::unique_ptr<Model> tiny_model(bool dropout = false, float input_mean = 0, float input_std = 0) {
  ModelSpec s;
  s.name = "tiny";
  s.input_mean = input_mean;
  s.input_std = input_std;
  s.input = {2};
  s.layers = {LayerSpec{.type = "linear", .out = 2}, LayerSpec{.type = "relu"}};
  if (dropout) s.layers.push_back(LayerSpec{.type = "dropout", .p = 0.5f});
  s.layers.push_back(LayerSpec{.type = "linear", .out = 1});
  s.loss = "mse";
  auto m = Model::build(s, 1);
  const auto& ps = m->parameters();  // W1, b1, W2, b2
  set_values(*ps[0], {1, -1, 0.5f, 1});
  set_values(*ps[1], {0, 0.5f});
  set_values(*ps[2], {1, 2});
  set_values(*ps[3], {-1});
  return m;
}

// One sample x = (1, 2) with target y.
std::pair<Tensor, Tensor> sample(float y) {
  return {Tensor::from({1, 2}, std::vector<float>{1, 2}), Tensor::from({1, 1}, std::vector<float>{y})};
}

// Forward pass of the tiny net at x = (1, 2):
//   z = W1 x + b1 = (1 - 2 + 0, 0.5 + 2 + 0.5) = (-1, 3),  h = relu(z) = (0, 3)
//   out = W2 h + b2 = 0 + 6 - 1 = 5
// With y = 3: e = out - y = 2, L = e^2 = 4, dL/dout = 2e = 4.
//   dL/dW2 = 4 h = (0, 12)
//   dL/dh = 4 W2 = (4, 8), dL/dz = (0, 8) (unit 1 is off)
//   dL/dW1 = dL/dz x^T = [[0, 0], [8, 16]]
// With y = 5: e = 0 and every gradient is 0.
ScoreInput seeded(uint64_t seed) { return {.batches = {}, .seed = seed}; }
ScoreInput one_batch() { return {.batches = {sample(3)}}; }
ScoreInput two_batches() { return {.batches = {sample(3), sample(5)}}; }

void expect_scores(const Scores& s, const std::vector<std::vector<float>>& want, double rel_tol) {
  ASSERT_EQ(s.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(s[i].numel(), static_cast<int64_t>(want[i].size())) << "parameter " << i;
    for (size_t j = 0; j < want[i].size(); ++j) {
      const float got = s[i].f32()[j], w = want[i][j];
      if (std::isinf(w)) {
        EXPECT_EQ(got, w) << "parameter " << i << " entry " << j;
      } else {
        EXPECT_NEAR(got, w, rel_tol * std::max(1.0f, std::fabs(w))) << "parameter " << i << " entry " << j;
      }
    }
  }
}

TEST(Criteria, RegistryListsBuiltins) {
  const auto names = criterion_names();
  ASSERT_GE(names.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 5),
            (std::vector<std::string>{"magnitude", "random", "snip", "grasp", "synflow"}));
  EXPECT_FALSE(criterion("magnitude").needs_data);
  EXPECT_FALSE(criterion("random").needs_data);
  EXPECT_TRUE(criterion("snip").needs_data);
  EXPECT_TRUE(criterion("grasp").needs_data);
  EXPECT_FALSE(criterion("synflow").needs_data);
  EXPECT_EQ(criterion("synflow").iterations, 100);
  EXPECT_EQ(criterion("snip").iterations, 1);
  for (const auto& n : names) {
    EXPECT_EQ(criterion(n).name, n);
    EXPECT_FALSE(criterion(n).summary.empty()) << n;
  }
}

TEST(Criteria, UnknownNameListsTheNames) {
  expect_error([] { criterion("snipp"); },
               {"unknown pruning criterion \"snipp\"", "magnitude, random, snip, grasp, synflow"});
}

TEST(Criteria, RegisterCustom) {
  const Criterion& magnitude = criterion("magnitude");
  register_criterion({.name = "test_ones", .summary = "every weight scores 1",
                      .score = [](Model& m, const ScoreInput&) {
                        Scores s;
                        for (nn::Parameter* p : prunable(m)) s.push_back(Tensor::full(p->value().shape(), 1));
                        return s;
                      }});
  EXPECT_EQ(criterion_names().back(), "test_ones");
  auto m = tiny_model();
  EXPECT_EQ(values(criterion("test_ones").score(*m, {})[1]), (std::vector<float>{1, 1}));
  EXPECT_EQ(&criterion("magnitude"), &magnitude) << "registering moved an existing entry";
  expect_error([] { register_criterion({.name = "snip", .summary = "", .score = criterion("magnitude").score}); },
               {"\"snip\" already exists"});
  expect_error([] { register_criterion({.name = "", .summary = "", .score = criterion("magnitude").score}); }, {"needs a name"});
  expect_error([] { register_criterion({.name = "no_fn", .summary = "", .score = nullptr}); }, {"\"no_fn\" has no score function"});
}

TEST(Criteria, MagnitudeIsAbsAndDeadIsMinusInfinity) {
  auto m = tiny_model();
  ensure_masks(*m);
  m->parameters()[0]->mask.f32()[1] = 0;  // W1[0][1]
  apply_masks(*m);
  expect_scores(criterion("magnitude").score(*m, {}), {{1, -kInf, 0.5f, 1}, {1, 2}}, 0);
}

TEST(Criteria, RandomIsSeededUniformAndIgnoresMasks) {
  auto m = tiny_model();
  const Criterion& c = criterion("random");
  const Scores a = c.score(*m, seeded(4)), b = c.score(*m, seeded(4)), other = c.score(*m, seeded(5));
  ASSERT_EQ(a.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(values(a[i]), values(b[i]));
    EXPECT_NE(values(a[i]), values(other[i]));
    for (float v : a[i].span_f32()) {
      EXPECT_GE(v, 0.0f);
      EXPECT_LT(v, 1.0f);
    }
  }
  // Masking an entry makes it -inf and leaves the others' draws alone.
  ensure_masks(*m);
  m->parameters()[0]->mask.f32()[2] = 0;
  apply_masks(*m);
  const Scores masked = c.score(*m, seeded(4));
  std::vector<float> want = values(a[0]);
  want[2] = -kInf;
  EXPECT_EQ(values(masked[0]), want);
  EXPECT_EQ(values(masked[1]), values(a[1]));
}

// SNIP = |dL/dw * w| (gradients above):
//   W1: |[[0*1, 0*-1], [8*0.5, 16*1]]| = [[0, 0], [4, 16]]
//   W2: |(0*1, 12*2)| = (0, 24)
TEST(Criteria, SnipByHand) {
  auto m = tiny_model();
  expect_scores(criterion("snip").score(*m, one_batch()), {{0, 0, 4, 16}, {0, 24}}, 1e-6);
}

// Averaging over batches: the y = 5 batch has zero gradient, so the mean
// gradient and the scores halve. Dropout is off (eval mode).
TEST(Criteria, SnipAveragesBatchesInEvalMode) {
  auto m = tiny_model(/*dropout=*/true);
  expect_scores(criterion("snip").score(*m, two_batches()), {{0, 0, 2, 8}, {0, 12}}, 1e-6);
}

TEST(Criteria, DataCriteriaNeedBatches) {
  auto m = tiny_model();
  expect_error([&] { criterion("snip").score(*m, {}); }, {"snip needs data"});
  expect_error([&] { criterion("grasp").score(*m, {}); }, {"grasp needs data"});
}

// GraSP keeps the largest w * Hg, H the Hessian over the six weights.
// Unit 1 is off (z1 = -1) and stays off under the small perturbation, so
// locally out = a (u . x + b1[1]) + b2 with a = W2[1] and u = W1 row 2; W1
// row 1 and W2[0] enter nothing (h1 = 0, relu'(z1) = 0), so their rows and
// columns of H are 0. With L = e^2:
//   Hg = 2 (grad(out) . g) grad(out) + 2e Hess(out) g
//   grad(out): d/da = h2 = 3, d/du = a x = (2, 4)
//   g:         g_a = 12,      g_u = (8, 16)
//   grad(out) . g = 3*12 + 2*8 + 4*16 = 116
//   Hess(out) g: only d2out/da du_k = x_k is non-zero, so
//     (Hess g)_a = x . g_u = 8 + 32 = 40, (Hess g)_u = g_a x = (12, 24)
//   Hg_a = 2*116*3 + 4*40 = 856
//   Hg_u = 2*116*(2, 4) + 4*(12, 24) = (512, 1024)
// Scores w * Hg: W1 = [[0, 0], [0.5*512, 1*1024]] = [[0, 0], [256, 1024]],
// W2 = (0, 2*856) = (0, 1712). The central difference is exact up to float32
// rounding and its ε^2 truncation, well within 1e-3 relative.
TEST(Criteria, GraspMatchesExactHessianGradientProduct) {
  auto m = tiny_model();
  expect_scores(criterion("grasp").score(*m, one_batch()), {{0, 0, 256, 1024}, {0, 1712}}, 1e-3);
}

// Two batches: g is the mean gradient (g/2 from above) and H the mean Hessian
// (H1 + H2)/2 with H1 = 2 grad grad^T + 2e Hess(out) (e = 2) and
// H2 = 2 grad grad^T (e = 0), so H = 2 grad grad^T + 2 Hess(out) and
//   H (g/2) = (grad . g) grad + Hess(out) g
//   _a = 116*3 + 40 = 388,  _u = 116*(2, 4) + (12, 24) = (244, 488)
// Scores: W1 row 2 = (0.5*244, 488) = (122, 488), W2[1] = 2*388 = 776.
// Masking W2[0] (which reads the dead unit) changes nothing but its score.
TEST(Criteria, GraspAveragesBatchesAndRespectsMasks) {
  auto m = tiny_model();
  ensure_masks(*m);
  m->parameters()[2]->mask.f32()[0] = 0;
  apply_masks(*m);
  expect_scores(criterion("grasp").score(*m, two_batches()), {{0, 0, 122, 488}, {-kInf, 776}}, 1e-3);
}

// GraSP on a ReLU net with a pre-activation that a live central difference
// would move across its kink, against Hg computed exactly in
// double with the ReLU pattern fixed (what double-backward gives). Net:
// x (4) -> linear 8 -> relu -> linear 3, mse over N = 16 samples, K = 3:
//   z = W1 x + b1, m = [z > 0], h = m z, o = W2 h + b2, r = 2 (o - y) / (N K)
//   g:  dW2 = sum_n r h^T,  dW1 = sum_n (m (W2^T r)) x^T
//   along D = (D1, D2) = g:  z' = D1 x, h' = m z', o' = D2 h + W2 h', r' = 2 o' / (N K)
//   Hg: dW2' = sum_n (r' h^T + r h'^T),  dW1' = sum_n (m (D2^T r + W2^T r')) x^T
TEST(Criteria, GraspMatchesExactHgThroughRelu) {
  constexpr int N = 16, I = 4, H = 8, K = 3;
  ModelSpec s;
  s.name = "relu_mlp";
  s.input = {I};
  s.layers = {LayerSpec{.type = "linear", .out = H}, LayerSpec{.type = "relu"}, LayerSpec{.type = "linear", .out = K}};
  s.loss = "mse";
  auto m = Model::build(s, 11);
  Rng r(12);
  Tensor x = Tensor::empty({N, I}), y = Tensor::empty({N, K});
  for (float& v : x.span_f32()) v = r.uniform(-1, 1);
  for (float& v : y.span_f32()) v = r.uniform(-1, 1);
  // Put sample 0's unit 0 just above its kink (z = 1e-5), well inside the
  // finite-difference step: a live ReLU would switch off at w - εd.
  {
    float* bias = m->parameters()[1]->value().f32();
    double z00 = 0;
    for (int i = 0; i < I; ++i) z00 += m->parameters()[0]->value().f32()[i] * double(x.f32()[i]);
    bias[0] = static_cast<float>(1e-5 - z00);
  }
  const float* W1 = m->parameters()[0]->value().f32();
  const float* b1 = m->parameters()[1]->value().f32();
  const float* W2 = m->parameters()[2]->value().f32();
  const float* b2 = m->parameters()[3]->value().f32();
  double z[N][H], msk[N][H], h[N][H], res[N][K];
  double g1[H][I] = {}, g2[K][H] = {};
  for (int n = 0; n < N; ++n) {
    for (int j = 0; j < H; ++j) {
      z[n][j] = b1[j];
      for (int i = 0; i < I; ++i) z[n][j] += W1[j * I + i] * double(x.f32()[n * I + i]);
      msk[n][j] = z[n][j] > 0;
      h[n][j] = msk[n][j] * z[n][j];
    }
    for (int k = 0; k < K; ++k) {
      double o = b2[k];
      for (int j = 0; j < H; ++j) o += W2[k * H + j] * h[n][j];
      res[n][k] = 2 * (o - y.f32()[n * K + k]) / (N * K);
      for (int j = 0; j < H; ++j) g2[k][j] += res[n][k] * h[n][j];
    }
    for (int j = 0; j < H; ++j) {
      double dh = 0;
      for (int k = 0; k < K; ++k) dh += W2[k * H + j] * res[n][k];
      for (int i = 0; i < I; ++i) g1[j][i] += msk[n][j] * dh * x.f32()[n * I + i];
    }
  }
  double hg1[H][I] = {}, hg2[K][H] = {};
  for (int n = 0; n < N; ++n) {
    double hd[H], rd[K];
    for (int j = 0; j < H; ++j) {
      double zd = 0;
      for (int i = 0; i < I; ++i) zd += g1[j][i] * x.f32()[n * I + i];
      hd[j] = msk[n][j] * zd;
    }
    for (int k = 0; k < K; ++k) {
      double od = 0;
      for (int j = 0; j < H; ++j) od += g2[k][j] * h[n][j] + W2[k * H + j] * hd[j];
      rd[k] = 2 * od / (N * K);
      for (int j = 0; j < H; ++j) hg2[k][j] += rd[k] * h[n][j] + res[n][k] * hd[j];
    }
    for (int j = 0; j < H; ++j) {
      double back = 0;
      for (int k = 0; k < K; ++k) back += g2[k][j] * res[n][k] + W2[k * H + j] * rd[k];
      for (int i = 0; i < I; ++i) hg1[j][i] += msk[n][j] * back * x.f32()[n * I + i];
    }
  }
  const Scores sc = criterion("grasp").score(*m, {.batches = {{x, y}}});
  double scale = 0;
  for (int j = 0; j < H; ++j)
    for (int i = 0; i < I; ++i) scale = std::max(scale, std::fabs(W1[j * I + i] * hg1[j][i]));
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < H; ++j) scale = std::max(scale, std::fabs(W2[k * H + j] * hg2[k][j]));
  ASSERT_GT(scale, 0);
  for (int j = 0; j < H; ++j)
    for (int i = 0; i < I; ++i)
      EXPECT_NEAR(sc[0].f32()[j * I + i], W1[j * I + i] * hg1[j][i], 1e-3 * scale) << "W1 " << j << "," << i;
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < H; ++j)
      EXPECT_NEAR(sc[1].f32()[k * H + j], W2[k * H + j] * hg2[k][j], 1e-3 * scale) << "W2 " << k << "," << j;
}

// GraSP's frozen-pattern walk reproduces Model::forward on a conv net with
// circular padding, fused ReLUs, max- and average pooling (it checks itself
// and raises otherwise); the scores are finite and the model untouched.
TEST(Criteria, GraspRunsOnConvNets) {
  ModelSpec s;
  s.name = "conv";
  s.input = {2, 8, 8};
  s.layers = {LayerSpec{.type = "conv2d", .out = 3, .kernel = 3, .pad = 1, .circular = true},
              LayerSpec{.type = "relu"},
              LayerSpec{.type = "maxpool", .kernel = 2},
              LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .stride = 1, .pad = 1},
              LayerSpec{.type = "relu"},
              LayerSpec{.type = "maxpool", .kernel = 3, .stride = 1},
              LayerSpec{.type = "avgpool", .kernel = 2},
              LayerSpec{.type = "flatten"},
              LayerSpec{.type = "linear", .out = 5}};
  auto m = Model::build(s, 4);
  Rng r(5);
  Tensor x = Tensor::empty({6, 2, 8, 8});
  for (float& v : x.span_f32()) v = r.uniform(-1, 1);
  const Tensor labels = Tensor::from_i32({6}, std::vector<int32_t>{0, 1, 2, 3, 4, 0});
  const std::vector<float> v0 = values(m->store().values());
  const Scores sc = criterion("grasp").score(*m, {.batches = {{x, labels}, {x, labels}}});
  ASSERT_EQ(sc.size(), 3u);
  double nonzero = 0;
  for (const Tensor& t : sc)
    for (float v : t.span_f32()) {
      EXPECT_TRUE(std::isfinite(v));
      nonzero += v != 0;
    }
  EXPECT_GT(nonzero, 0);
  EXPECT_EQ(values(m->store().values()), v0);
}

// SynFlow on |params| with a ones input (1, 1):
//   |W1| = [[1, 1], [0.5, 1]], |b1| = (0, 0.5): z = (1+1+0, 0.5+1+0.5) = (2, 2), h = (2, 2)
//   |W2| = (1, 2), |b2| = 1: R = 2 + 4 + 1 = 7
//   dR/dW2 = h = (2, 2)            -> scores (1*2, 2*2) = (2, 4)
//   dR/dz = |W2| = (1, 2) (both on) -> dR/dW1 = [[1, 1], [2, 2]]
//                                   -> scores [[1*1, 1*1], [0.5*2, 1*2]] = [[1, 1], [1, 2]]
// The spec's input normalisation is not applied by Model::forward, so giving
// the spec one must not change the scores; dropout is off in eval mode.
TEST(Criteria, SynflowByHand) {
  auto m = tiny_model(/*dropout=*/true);
  expect_scores(criterion("synflow").score(*m, {}), {{1, 1, 1, 2}, {2, 4}}, 1e-6);
  auto normalised = tiny_model(/*dropout=*/false, /*input_mean=*/0.5f, /*input_std=*/0.25f);
  expect_scores(criterion("synflow").score(*normalised, {}), {{1, 1, 1, 2}, {2, 4}}, 1e-6);
}

// Masking W1[0][0] (value 0): z1 = 0 + 1 + 0 = 1, h = (1, 2), R = 1 + 4 + 1 = 6
//   W2 scores (1*1, 2*2) = (1, 4); W1 row 1 = (-inf, 1*1), row 2 = (0.5*2, 1*2) = (1, 2)
TEST(Criteria, SynflowRespectsMasks) {
  auto m = tiny_model();
  ensure_masks(*m);
  m->parameters()[0]->mask.f32()[0] = 0;
  apply_masks(*m);
  expect_scores(criterion("synflow").score(*m, {}), {{-kInf, 1, 1, 2}, {1, 4}}, 1e-6);
}

ModelSpec mlp_spec(int64_t in, std::vector<int64_t> widths, bool bias) {
  ModelSpec s;
  s.name = "mlp";
  s.input = {in};
  for (size_t i = 0; i < widths.size(); ++i) {
    if (i) s.layers.push_back(LayerSpec{.type = "relu"});
    s.layers.push_back(LayerSpec{.type = "linear", .out = widths[i], .bias = bias});
  }
  return s;
}

// Tanaka et al.'s conservation law: in a bias-free ReLU net the SynFlow scores
// of every layer sum to the same R.
TEST(Criteria, SynflowLayerSumsAreEqualWithoutBiases) {
  auto m = Model::build(mlp_spec(8, {16, 12, 4}, /*bias=*/false), 3);
  const Scores s = criterion("synflow").score(*m, {});
  ASSERT_EQ(s.size(), 3u);
  std::vector<double> sums;
  for (const Tensor& t : s) {
    double sum = 0;
    for (float v : t.span_f32()) sum += v;
    sums.push_back(sum);
  }
  EXPECT_GT(sums[0], 0);
  EXPECT_NEAR(sums[1], sums[0], 1e-5 * sums[0]);
  EXPECT_NEAR(sums[2], sums[0], 1e-5 * sums[0]);
}

// 40 bias-free layers of width 16 with |w| = 2^e: R = (16 * 2^e)^40, which
// overflows float32 for e = 0 (2^160) and underflows for e = -8 (2^-160).
// Every weight of a hidden layer lies on R/256 of the paths and every weight
// of the 16 -> 1 output layer on R/16, so whatever common power of two the
// rescaling applies, all scores are finite, equal within a layer, and the
// output layer's are exactly 16 times the others.
TEST(Criteria, SynflowRescalesDeepNets) {
  for (int e : {0, -8}) {
    SCOPED_TRACE("weights 2^" + std::to_string(e));
    std::vector<int64_t> widths(39, 16);
    widths.push_back(1);
    auto m = Model::build(mlp_spec(16, widths, /*bias=*/false), 5);
    Rng signs(9);
    for (nn::Parameter* p : m->parameters())
      for (float& v : p->value().span_f32()) v = std::ldexp(signs.uniform() < 0.5f ? -1.0f : 1.0f, e);
    const std::vector<float> before = values(m->store().values());
    const Scores s = criterion("synflow").score(*m, {});
    EXPECT_EQ(values(m->store().values()), before);
    ASSERT_EQ(s.size(), 40u);
    const float hidden = s[0].f32()[0];
    EXPECT_TRUE(std::isfinite(hidden) && hidden > 0) << hidden;
    for (size_t i = 0; i + 1 < s.size(); ++i)
      for (float v : s[i].span_f32()) ASSERT_EQ(v, hidden) << "layer " << i;
    for (float v : s.back().span_f32()) EXPECT_EQ(v, 16 * hidden);
  }
}

// A bias-free net with a fully masked layer has no flow at any scale: every
// alive weight scores 0 rather than the criterion failing.
TEST(Criteria, SynflowOfADisconnectedNetIsZero) {
  auto m = Model::build(mlp_spec(4, {4, 4, 2}, /*bias=*/false), 2);
  ensure_masks(*m);
  m->parameters()[1]->mask.fill(0);
  apply_masks(*m);
  const Scores s = criterion("synflow").score(*m, {});
  for (size_t i : {0u, 2u})
    for (float v : s[i].span_f32()) EXPECT_EQ(v, 0.0f);
  for (float v : s[1].span_f32()) EXPECT_EQ(v, -kInf);
}

// Every criterion leaves values, gradients and masks bit for bit as they were
// (the gradient blob holds a pattern that scoring must not clear).
TEST(Criteria, ScoringLeavesNoTrace) {
  ModelSpec s = mlp_spec(6, {8, 3}, /*bias=*/true);
  s.layers.insert(s.layers.begin() + 1, LayerSpec{.type = "dropout", .p = 0.3f});
  auto m = Model::build(s, 7);
  ensure_masks(*m);
  m->parameters()[0]->mask.f32()[5] = 0;
  m->parameters()[2]->mask.f32()[1] = 0;
  apply_masks(*m);
  Rng r(3);
  for (float& v : m->store().grads().span_f32()) v = r.uniform(-1, 1);
  Tensor x = Tensor::empty({5, 6});
  for (float& v : x.span_f32()) v = r.uniform(-1, 1);
  const ScoreInput input{.batches = {{x, Tensor::from_i32({5}, std::vector<int32_t>{0, 1, 2, 1, 0})}}};
  const std::vector<float> v0 = values(m->store().values()), g0 = values(m->store().grads());
  const std::vector<float> mask0 = values(m->parameters()[0]->mask);
  for (const char* name : {"magnitude", "random", "snip", "grasp", "synflow"}) {
    SCOPED_TRACE(name);
    const Scores sc = criterion(name).score(*m, input);
    ASSERT_EQ(sc.size(), 2u);
    EXPECT_EQ(sc[0].shape(), m->parameters()[0]->value().shape());
    EXPECT_EQ(sc[1].shape(), m->parameters()[2]->value().shape());
    EXPECT_EQ(sc[0].f32()[5], -kInf);
    EXPECT_EQ(sc[1].f32()[1], -kInf);
    EXPECT_EQ(values(m->store().values()), v0);
    EXPECT_EQ(values(m->store().grads()), g0);
    EXPECT_EQ(values(m->parameters()[0]->mask), mask0);
  }
  // Also when the forward pass raises (a batch of the wrong width).
  const ScoreInput bad{.batches = {{Tensor::zeros({5, 7}), input.batches[0].second}}};
  expect_error([&] { criterion("grasp").score(*m, bad); }, {"does not match"});
  EXPECT_EQ(values(m->store().values()), v0);
  EXPECT_EQ(values(m->store().grads()), g0);
}

TEST(Criteria, GradientCriteriaRefuseNoGradMode) {
  auto m = tiny_model();
  autograd::NoGradGuard no_grad;
  expect_error([&] { criterion("snip").score(*m, one_batch()); }, {"outside a NoGradGuard"});
}

// Linear (3, 2) weight with one masked entry: rows |.|-summed over alive entries.
// Conv (2, 1, 2, 2): one norm per filter.
TEST(Criteria, UnitL1Norms) {
  auto m = Model::build(mlp_spec(2, {3, 1}, /*bias=*/true), 1);
  nn::Parameter& w = *m->parameters()[0];
  set_values(w, {1, -2, 0.5f, 0.25f, -3, 4});
  ensure_masks(*m);
  w.mask.f32()[3] = 0;  // entry (1, 1) = 0.25 is dead; left unmasked in the value on purpose
  EXPECT_EQ(unit_l1_norms(w), (std::vector<double>{3, 0.5, 7}));

  ModelSpec cs;
  cs.name = "conv";
  cs.input = {1, 3, 3};
  cs.layers = {LayerSpec{.type = "conv2d", .out = 2, .kernel = 2}};
  cs.loss = "mse";
  auto c = Model::build(cs, 1);
  nn::Parameter& k = *c->parameters()[0];
  set_values(k, {1, -1, 2, -2, 0.5f, 0.5f, -0.5f, 0});
  EXPECT_EQ(unit_l1_norms(k), (std::vector<double>{6, 1.5}));

  expect_error([&] { unit_l1_norms(*m->parameters()[1]); }, {"linear1.bias", "expects a linear"});
}

}  // namespace
}  // namespace pare::prune
