// Integer MLP inference from a .pare file equals the fake-quantized float
// model (s8 weights per channel, each linear input on its calibrated u8 grid)
// up to float rounding, dense and sparse layers alike.
#include "pare/io/int8_net.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pare/base/rng.h"
#include "pare/io/compress.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"

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
  auto cnn = nn::Model::build(nn::preset("lenet5"), 0);
  testing::expect_error([&] { calibrate_activations(*cnn, x.data(), 1); }, {"conv2d"});
}

}  // namespace
}  // namespace pare::io
