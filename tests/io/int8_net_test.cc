// Integer inference from a .pare file equals the fake-quantized float model
// (s8 weights per channel, each weight layer's input on its calibrated u8
// grid) up to float rounding: MLPs with dense and sparse layers, conv nets
// with zero and circular padding and both poolings. Calibration by min-max
// and by percentile.
#include "pare/io/int8_net.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pare/base/rng.h"
#include "pare/io/compress.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"
#include "testing/threads.h"

namespace pare::io {
namespace {

using json = nlohmann::json;

std::unique_ptr<nn::Model> mlp(uint64_t seed) {
  nn::ModelSpec spec;
  spec.name = "mlp";
  spec.input = {20};
  spec.layers = {nn::LayerSpec{.type = "linear", .out = 16}, nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "linear", .out = 12}, nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "linear", .out = 5}};
  auto m = nn::Model::build(spec, seed);
  // The middle layer pruned to 20 % (it runs the sparse int8 product).
  nn::Parameter* w = m->find("linear3.weight");
  w->mask = Tensor::empty(w->value().shape());
  Rng rng(seed + 9);
  for (float& v : w->mask.span_f32()) v = rng.uniform() < 0.2 ? 1.0f : 0.0f;
  w->apply_mask();
  return m;
}

// The file pare compress --int8 --calibrate writes, from x: (n, 20).
format::File int8_file(const nn::Model& m, const std::vector<float>& x, int64_t n) {
  json meta{{"activations", calibrate_activations(m, x.data(), n)}};
  format::File f = to_file(m, meta.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() == 2) quantize_s8_per_channel(t);
  return format::decode(format::encode(f), "mem.pare");
}

// The fake-quantized float model, in double.
std::vector<double> fake_quant_forward(const format::File& f, const float* x, int64_t n) {
  const json acts = json::parse(f.meta_json)["activations"];
  std::vector<double> h(x, x + n * 20);
  int64_t width = 20;
  for (const char* name : {"linear1", "linear3", "linear5"}) {
    const format::Tensor* w = nullptr;
    const format::Tensor* b = nullptr;
    for (const auto& t : f.tensors) {
      if (t.name == std::string(name) + ".weight") w = &t;
      if (t.name == std::string(name) + ".bias") b = &t;
    }
    const float scale = acts[name]["scale"].get<float>();
    const int zp = acts[name]["zero_point"].get<int>();
    for (double& v : h) {  // onto the u8 grid, as quantize_per_tensor_u8 rounds
      const double q = std::clamp(static_cast<double>(std::nearbyint(static_cast<float>(v) / scale)) + zp, 0.0, 255.0);
      v = (q - zp) * scale;
    }
    const int64_t rows = w->dims[0];
    std::vector<double> y(static_cast<size_t>(n * rows));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        float bias;
        std::memcpy(&bias, b->values.data() + r * 4, 4);
        double s = bias;
        for (int64_t c = 0; c < width; ++c) {
          const bool present = w->present.empty() || w->present[static_cast<size_t>(r * width + c)];
          if (present)
            s += static_cast<double>(w->quant.scales[static_cast<size_t>(r)]) *
                 static_cast<int8_t>(w->values[static_cast<size_t>(r * width + c)]) *
                 h[static_cast<size_t>(i * width + c)];
        }
        y[static_cast<size_t>(i * rows + r)] = s;
      }
    h = std::move(y);
    width = rows;
    if (std::string(name) != "linear5")
      for (double& v : h) v = std::max(v, 0.0);
  }
  return h;
}

TEST(Int8Net, EqualsTheFakeQuantizedModel) {
  auto m = mlp(4);
  Rng rng(5);
  const int64_t n = 37;
  std::vector<float> x(static_cast<size_t>(n * 20));
  for (float& v : x) v = rng.normal();
  const format::File f = int8_file(*m, x, n);
  const Int8Net net = Int8Net::from_file(f, "mem.pare");
  EXPECT_EQ(net.inputs(), 20);
  EXPECT_EQ(net.outputs(), 5);
  EXPECT_EQ(net.sparse_layers(), 1);
  std::vector<float> logits(static_cast<size_t>(n * 5));
  net.forward(n, x.data(), logits.data());
  const std::vector<double> want = fake_quant_forward(f, x.data(), n);
  double scale = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(logits[i], want[i], 1e-4 * scale) << i;
  // One sample at a time gives the same logits as the batch.
  for (int64_t i = 0; i < n; i += 9) {
    float one[5];
    net.forward(1, x.data() + i * 20, one);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(one[k], logits[static_cast<size_t>(i * 5 + k)]) << i;
  }
}

TEST(Int8Net, RefusesWhatItCannotRun) {
  auto m = mlp(1);
  std::vector<float> x(20 * 4, 0.5f);
  format::File f = int8_file(*m, x, 4);
  {
    format::File g = f;
    g.meta_json = "{}";
    testing::expect_error([&] { Int8Net::from_file(g, "nometa.pare"); }, {"nometa.pare", "activations"});
  }
  {
    format::File g = to_file(*m, json{{"activations", json::parse(f.meta_json)["activations"]}}.dump());
    testing::expect_error([&] { Int8Net::from_file(g, "float.pare"); }, {"float.pare", "s8 per-channel"});
  }
  {
    format::File g = f;
    g.meta_json = json{{"activations", {{"linear1", {{"scale", -1.0}, {"zero_point", 3}}}}}}.dump();
    testing::expect_error([&] { Int8Net::from_file(g, "bad.pare"); }, {"bad.pare", "linear1", "u8 grid"});
  }
}

TEST(Int8Net, FakeQuantModelTakesAnyInputOfTheRightSize) {
  // An MLP fed images (n, 4, 5) as the data loaders give them: viewed as (n, 20).
  auto m = mlp(3);
  Rng rng(2);
  const int64_t n = 11;
  std::vector<float> x(static_cast<size_t>(n * 20));
  for (float& v : x) v = rng.normal();
  const format::File f = int8_file(*m, x, n);
  FakeQuantModel fq(*m, grids_from_json(json::parse(f.meta_json)["activations"], "mem"));
  Tensor shaped = Tensor::empty({n, 4, 5});
  std::memcpy(shaped.f32(), x.data(), x.size() * sizeof(float));
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  const autograd::Var y = fq.forward(autograd::Var(shaped), ctx);
  ASSERT_EQ(y.numel(), n * 5);
  const std::vector<double> want = fake_quant_forward(f, x.data(), n);
  double scale = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(y.value().f32()[i], want[i], 1e-4 * scale) << i;
}

// ---- Percentile calibration ----------------------------------------------------------------

TEST(Calibration, PercentileClipsAnOutlier) {
  Rng rng(3);
  std::vector<float> x(10000);
  for (float& v : x) v = rng.normal();
  x[1234] = 1000.0f;  // one huge outlier
  const auto [mlo, mhi] = activation_range(x.data(), static_cast<int64_t>(x.size()), {});
  EXPECT_EQ(mhi, 1000.0f);
  const CalibrationOptions pct{.method = "percentile", .percentile = 99.99};
  const auto [plo, phi] = activation_range(x.data(), static_cast<int64_t>(x.size()), pct);
  EXPECT_LT(phi, 6.0f);  // the outlier (and only the one largest value) is cut
  EXPECT_GT(phi, 2.0f);
  EXPECT_LT(plo, -2.0f);
  EXPECT_GE(plo, mlo);
  std::vector<float> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(phi, sorted[sorted.size() - 2]);
  EXPECT_EQ(plo, sorted[1]);
  const ActivationGrid gm = grid_for_range(mlo, mhi), gp = grid_for_range(plo, phi);
  EXPECT_LT(gp.scale * 50, gm.scale);
  // P = 100 is min-max; a lower P cuts more.
  const auto [alo, ahi] = activation_range(x.data(), static_cast<int64_t>(x.size()),
                                           {.method = "percentile", .percentile = 100});
  EXPECT_EQ(alo, mlo);
  EXPECT_EQ(ahi, mhi);
  const auto [blo, bhi] = activation_range(x.data(), static_cast<int64_t>(x.size()),
                                           {.method = "percentile", .percentile = 99});
  EXPECT_LT(bhi, phi);
  EXPECT_GT(blo, plo);
  // The grid covers 0 even for a range that does not.
  const ActivationGrid pos = grid_for_range(2.0f, 4.0f);
  EXPECT_EQ(pos.min, 0.0f);
  EXPECT_EQ(pos.zero_point, 0);
  EXPECT_FLOAT_EQ(pos.scale, 4.0f / 255);
}

TEST(Calibration, BadOptionsAreRefused) {
  const float x[3] = {1, 2, 3};
  for (double p : {0.0, -5.0, 100.5, std::nan("")})
    testing::expect_error(
        [&] { activation_range(x, 3, {.method = "percentile", .percentile = p}); },
        {"--percentile", "(0, 100]"});
  testing::expect_error([&] { activation_range(x, 3, {.method = "median"}); },
                        {"--calibration median", "minmax or percentile"});
  auto m = mlp(1);
  std::vector<float> in(20 * 2, 0.5f);
  testing::expect_error(
      [&] { calibrate_activations(*m, in.data(), 2, {.method = "percentile", .percentile = 0}); },
      {"--percentile"});
}

TEST(Calibration, RecordsItsMethodAndClipsTheFirstLayer) {
  auto m = mlp(2);
  Rng rng(8);
  const int64_t n = 200;
  std::vector<float> x(static_cast<size_t>(n * 20));
  for (float& v : x) v = rng.normal();
  x[77] = 500.0f;
  const json mm = calibrate_activations(*m, x.data(), n);
  const json pc = calibrate_activations(*m, x.data(), n, {.method = "percentile", .percentile = 99.9});
  EXPECT_EQ(mm["method"], "minmax");
  EXPECT_FALSE(mm.contains("percentile"));
  EXPECT_EQ(pc["method"], "percentile");
  EXPECT_DOUBLE_EQ(pc["percentile"].get<double>(), 99.9);
  EXPECT_EQ(mm["linear1"]["max"].get<float>(), 500.0f);
  EXPECT_LT(pc["linear1"]["scale"].get<float>() * 20, mm["linear1"]["scale"].get<float>());
  // Both read back as grids of the three weight layers (the method keys are skipped).
  EXPECT_EQ(grids_from_json(pc, "mem").size(), 3u);
  // And the int8 net runs on the percentile grids.
  format::File f = to_file(*m, json{{"activations", pc}}.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() == 2) quantize_s8_per_channel(t);
  const Int8Net net = Int8Net::from_file(f, "mem.pare");
  EXPECT_EQ(net.outputs(), 5);
}

// ---- Convolutions --------------------------------------------------------------------------

nn::ModelSpec small_cnn() {
  nn::ModelSpec spec;
  spec.name = "cnn";
  spec.input = {2, 9, 9};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1},
                 nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "maxpool", .kernel = 2},
                 nn::LayerSpec{.type = "conv2d", .out = 5, .kernel = 3, .stride = 1, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "tanh"},
                 nn::LayerSpec{.type = "avgpool", .kernel = 2},
                 nn::LayerSpec{.type = "flatten"},
                 nn::LayerSpec{.type = "linear", .out = 6},
                 nn::LayerSpec{.type = "relu"},
                 nn::LayerSpec{.type = "linear", .out = 3}};
  return spec;
}

// The int8 file of a model and its fake-quantized twin's output on x.
struct Twin {
  format::File file;
  std::vector<float> want;
};
Twin int8_twin(nn::Model& m, const std::vector<float>& x, int64_t n, const CalibrationOptions& opt = {}) {
  const json acts = calibrate_activations(m, x.data(), n, opt);
  format::File f = to_file(m, json{{"activations", acts}}.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() >= 2) quantize_s8_per_channel(t);
  Twin twin{format::decode(format::encode(f), "mem.pare"), {}};
  FakeQuantModel fq(m, grids_from_json(acts, "mem"));
  std::vector<int64_t> shape{n};
  for (int64_t d : m.spec().input) shape.push_back(d);
  Tensor in = Tensor::empty(Shape(shape));
  std::memcpy(in.f32(), x.data(), static_cast<size_t>(in.numel()) * sizeof(float));
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  const autograd::Var y = fq.forward(autograd::Var(in), ctx);
  twin.want.assign(y.value().f32(), y.value().f32() + y.numel());
  return twin;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  ASSERT_GT(scale, 0);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], rel * scale) << i;
}

TEST(Int8Net, ConvNetEqualsTheFakeQuantizedModel) {
  for (const char* method : {"minmax", "percentile"}) {
    auto m = nn::Model::build(small_cnn(), 6);
    // The second convolution pruned to about half (it runs the dense product
    // over tap quads) or, with percentile calibration, to a tenth (the CSR
    // product); its zeros stay zeros.
    const double keep = std::string(method) == "minmax" ? 0.5 : 0.1;
    nn::Parameter* w = m->find("conv2d4.weight");
    w->mask = Tensor::empty(w->value().shape());
    Rng rng(10);
    for (float& v : w->mask.span_f32()) v = rng.uniform() < keep ? 1.0f : 0.0f;
    w->apply_mask();
    const int64_t n = 23, in = 2 * 9 * 9;
    std::vector<float> x(static_cast<size_t>(n * in));
    for (float& v : x) v = rng.normal();
    const Twin twin = int8_twin(*m, x, n, {.method = method, .percentile = 99.0});
    const Int8Net net = Int8Net::from_file(twin.file, "mem.pare");
    EXPECT_EQ(net.inputs(), in);
    EXPECT_EQ(net.outputs(), 3);
    EXPECT_EQ(net.conv_layers(), 2);
    std::vector<float> out(static_cast<size_t>(n * 3));
    net.forward(n, x.data(), out.data());
    expect_close(out, twin.want, 1e-4);
    // The fake-quantized model is near the float one (the test compares
    // something that computes the network), but not equal to it.
    autograd::NoGradGuard no_grad;
    nn::ForwardContext ctx{.training = false};
    Tensor t = Tensor::empty({n, 2, 9, 9});
    std::memcpy(t.f32(), x.data(), x.size() * sizeof(float));
    const autograd::Var y = m->forward(autograd::Var(t), ctx);
    std::vector<float> flt(y.value().f32(), y.value().f32() + y.numel());
    expect_close(flt, twin.want, 0.1);
    double diff = 0;
    for (size_t i = 0; i < flt.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(flt[i] - twin.want[i])));
    EXPECT_GT(diff, 0) << method;
    // Batch and one-by-one agree to the bit.
    for (int64_t i = 0; i < n; i += 7) {
      float one[3];
      net.forward(1, x.data() + i * in, one);
      for (int k = 0; k < 3; ++k) EXPECT_EQ(one[k], out[static_cast<size_t>(i * 3 + k)]) << i;
    }
  }
}

TEST(Int8Net, LifeNetWithCircularPaddingAndLeNet5) {
  {
    auto m = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 2, .board = 8}), 3);
    Rng rng(4);
    const int64_t n = 9;
    std::vector<float> x(static_cast<size_t>(n * 64));
    for (float& v : x) v = rng.uniform() < 0.4 ? 1.0f : 0.0f;
    const Twin twin = int8_twin(*m, x, n);
    const Int8Net net = Int8Net::from_file(twin.file, "life.pare");
    EXPECT_EQ(net.conv_layers(), 3);
    std::vector<float> out(static_cast<size_t>(n * 64));
    net.forward(n, x.data(), out.data());
    expect_close(out, twin.want, 1e-4);
  }
  {
    auto m = nn::Model::build(nn::preset("lenet5"), 5);
    Rng rng(5);
    const int64_t n = 6;
    std::vector<float> x(static_cast<size_t>(n * 784));
    for (float& v : x) v = rng.normal();
    const Twin twin = int8_twin(*m, x, n);
    const Int8Net net = Int8Net::from_file(twin.file, "lenet5.pare");
    EXPECT_EQ(net.conv_layers(), 2);
    std::vector<float> out(static_cast<size_t>(n * 10));
    net.forward(n, x.data(), out.data());
    expect_close(out, twin.want, 1e-4);
  }
}

TEST(Int8Net, SameBitsForAnyThreadCount) {
  // 300 samples: five chunks of 64, split over the pool.
  auto m = nn::Model::build(nn::preset("lenet5"), 7);
  Rng rng(7);
  const int64_t n = 300;
  std::vector<float> x(static_cast<size_t>(n * 784));
  for (float& v : x) v = rng.normal();
  const Int8Net net = Int8Net::from_file(int8_twin(*m, x, 50).file, "lenet5.pare");
  std::vector<float> one(static_cast<size_t>(n * 10)), two(one.size());
  {
    testing::ThreadsFor threads(1);
    net.forward(n, x.data(), one.data());
  }
  {
    testing::ThreadsFor threads(2);
    net.forward(n, x.data(), two.data());
  }
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  float last[10];
  net.forward(1, x.data() + (n - 1) * 784, last);
  EXPECT_EQ(std::memcmp(last, one.data() + (n - 1) * 10, sizeof(last)), 0);
}

TEST(Int8Net, RefusesConvFilesItCannotRun) {
  auto m = nn::Model::build(small_cnn(), 1);
  std::vector<float> x(2 * 81 * 3, 0.25f);
  const json acts = calibrate_activations(*m, x.data(), 3);
  {  // float convolution weights
    format::File f = to_file(*m, json{{"activations", acts}}.dump());
    testing::expect_error([&] { Int8Net::from_file(f, "f.pare"); },
                          {"f.pare", "conv2d1.weight", "s8 per-channel", "(4, 2, 3, 3)", "--int8"});
  }
  {  // a convolution without its grid
    json partial = acts;
    partial.erase("conv2d4");
    format::File f = to_file(*m, json{{"activations", partial}}.dump());
    for (format::Tensor& t : f.tensors)
      if (t.dims.size() >= 2) quantize_s8_per_channel(t);
    testing::expect_error([&] { Int8Net::from_file(f, "g.pare"); }, {"g.pare", "no activation grid", "conv2d4"});
    testing::expect_error([&] { FakeQuantModel(*m, grids_from_json(partial, "g")); },
                          {"no activation grid", "conv2d4"});
  }
}

}  // namespace
}  // namespace pare::io
