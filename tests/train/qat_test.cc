// Quantization-aware fine-tuning (train/qat.h through io::FakeQuantModel): it
// trains (the loss falls), keeps pruned weights at exactly zero, is
// reproducible to the bit, and afterwards the int8 file's integer inference
// agrees with the fake-quantized model it was tuned as, with fixed and with
// EMA-tracked activation ranges.
#include "pare/train/qat.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pare/base/rng.h"
#include "pare/io/compress.h"
#include "pare/io/int8_net.h"
#include "pare/io/pare_model.h"
#include "testing/errors.h"

namespace pare::train {
namespace {

using json = nlohmann::json;

nn::ModelSpec cnn() {
  nn::ModelSpec spec;
  spec.name = "qat_cnn";
  spec.input = {1, 8, 8};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1},
                 nn::LayerSpec{.type = "relu"}, nn::LayerSpec{.type = "maxpool", .kernel = 2},
                 nn::LayerSpec{.type = "flatten"}, nn::LayerSpec{.type = "linear", .out = 4}};
  return spec;
}

// 8x8 images whose class is the brightest quadrant.
data::Dataset quadrants(int64_t n, uint64_t seed) {
  data::Dataset d;
  d.inputs = Tensor::empty({n, 1, 8, 8});
  d.targets = Tensor::empty({n}, DType::i32);
  d.num_classes = 4;
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    float* x = d.inputs.f32() + i * 64;
    const int c = static_cast<int>(rng.below(4));
    for (int64_t p = 0; p < 64; ++p) {
      const int quad = (p / 8 >= 4 ? 2 : 0) + (p % 8 >= 4 ? 1 : 0);
      x[p] = rng.normal() + (quad == c ? 1.5f : 0.0f);
    }
    d.targets.data<int32_t>()[i] = c;
  }
  return d;
}

std::unique_ptr<nn::Model> pruned_cnn() {
  auto m = nn::Model::build(cnn(), 2);
  Rng rng(3);
  for (const char* name : {"conv2d1.weight", "linear5.weight"}) {
    nn::Parameter* w = m->find(name);
    w->mask = Tensor::empty(w->value().shape());
    for (float& v : w->mask.span_f32()) v = rng.uniform() < 0.5 ? 1.0f : 0.0f;
    w->apply_mask();
  }
  return m;
}

struct Tuned {
  std::unique_ptr<nn::Model> model;
  io::ActivationGrids grids, calibrated;
  QatResult result;
};

Tuned tune(const data::Dataset& d, float ema) {
  Tuned t{pruned_cnn(), {}, {}, {}};
  const json acts = io::calibrate_activations(*t.model, d.inputs.f32(), 64);
  t.calibrated = io::grids_from_json(acts, "calibration");
  io::FakeQuantModel fq(*t.model, t.calibrated, ema);
  const QatConfig cfg{
      .epochs = 4, .batch = 16, .optimizer = {.name = "adam", .lr = 1e-2f}, .seed = 5};
  t.result = qat_finetune(*t.model, d, cfg, [&](const autograd::Var& x, nn::ForwardContext& ctx) {
    return fq.forward(x, ctx);
  });
  t.grids = fq.grids();
  return t;
}

// Integer inference on the int8 file of the tuned model and its fake-quantized
// forward agree on x: (n, 1, 8, 8).
void expect_int8_agrees(nn::Model& m, const io::ActivationGrids& grids, const Tensor& x) {
  format::File f =
      io::to_file(m, json{{"activations", io::grids_to_json(grids, json::object())}}.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() >= 2) io::quantize_s8_per_channel(t);
  const io::Int8Net net =
      io::Int8Net::from_file(format::decode(format::encode(f), "qat.pare"), "qat.pare");
  const int64_t n = x.dim(0);
  std::vector<float> got(static_cast<size_t>(n * 4));
  net.forward(n, x.f32(), got.data());
  io::FakeQuantModel fq(m, grids);
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  const autograd::Var want = fq.forward(autograd::Var(x), ctx);
  double scale = 0;
  for (int64_t i = 0; i < want.numel(); ++i)
    scale = std::max(scale, static_cast<double>(std::fabs(want.value().f32()[i])));
  ASSERT_GT(scale, 0);
  for (int64_t i = 0; i < want.numel(); ++i)
    EXPECT_NEAR(got[static_cast<size_t>(i)], want.value().f32()[i], 1e-4 * scale) << i;
}

TEST(Qat, TrainsKeepsMasksAndTheInt8FileAgrees) {
  const data::Dataset d = quadrants(320, 7);
  for (float ema : {0.0f, 0.1f}) {
    const auto before = pruned_cnn();
    Tuned t = tune(d, ema);
    EXPECT_EQ(t.result.steps, 4 * 20);
    EXPECT_LT(t.result.last_epoch_loss, t.result.first_epoch_loss * 0.9) << ema;
    int64_t changed = 0;
    for (const char* name : {"conv2d1.weight", "linear5.weight"}) {
      const nn::Parameter& w = *t.model->find(name);
      const nn::Parameter& w0 = *before->find(name);
      for (int64_t i = 0; i < w.numel(); ++i) {
        if (w.mask.f32()[i] == 0.0f) {
          EXPECT_EQ(w.value().f32()[i], 0.0f) << name << " " << i;
        }
        changed += w.value().f32()[i] != w0.value().f32()[i];
      }
    }
    EXPECT_GT(changed, 50);
    // Fixed ranges stay the calibrated grids; EMA ranges move.
    bool moved = false;
    for (const auto& [name, g] : t.grids)
      moved |= g.scale != t.calibrated.at(name).scale ||
               g.zero_point != t.calibrated.at(name).zero_point;
    EXPECT_EQ(moved, ema > 0) << ema;
    Tensor x = Tensor::empty({40, 1, 8, 8});
    std::memcpy(x.f32(), d.inputs.f32(), static_cast<size_t>(x.numel()) * sizeof(float));
    expect_int8_agrees(*t.model, t.grids, x);
  }
}

TEST(Qat, SameSeedSameBits) {
  const data::Dataset d = quadrants(96, 8);
  Tuned a = tune(d, 0.05f), b = tune(d, 0.05f);
  for (const nn::Parameter* p : a.model->parameters()) {
    const nn::Parameter& q = *b.model->find(p->name);
    EXPECT_EQ(std::memcmp(p->value().f32(), q.value().f32(), static_cast<size_t>(p->numel()) * 4),
              0)
        << p->name;
  }
  EXPECT_EQ(a.result.last_epoch_loss, b.result.last_epoch_loss);
}

TEST(Qat, BadSettingsAreRefused) {
  auto m = pruned_cnn();
  const data::Dataset d = quadrants(8, 1);
  ForwardFn f = [&](const autograd::Var& x, nn::ForwardContext& ctx) { return m->forward(x, ctx); };
  testing::expect_error([&] { qat_finetune(*m, d, {.epochs = 0}, f); }, {"--qat-epochs"});
  testing::expect_error([&] { qat_finetune(*m, d, {.batch = 0}, f); }, {"--qat-batch"});
  testing::expect_error([&] { qat_finetune(*m, d, {.optimizer = {.lr = -1}}, f); }, {"--qat-lr"});
  testing::expect_error([&] { io::FakeQuantModel(*m, {}, 0.0f); },
                        {"no activation grid", "conv2d1"});
  const json acts = io::calibrate_activations(*m, d.inputs.f32(), 8);
  testing::expect_error([&] { io::FakeQuantModel(*m, io::grids_from_json(acts, "x"), 1.0f); },
                        {"--qat-ema"});
}

}  // namespace
}  // namespace pare::train
