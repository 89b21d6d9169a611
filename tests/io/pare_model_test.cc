// A model to a .pare file and back: values, masks and spec survive; quantized
// tensors dequantize as docs/format.md says; files that do not match the
// spec are refused naming the tensor.
#include "pare/io/pare_model.h"

#include <gtest/gtest.h>

#include <cstring>

#include "pare/base/rng.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"
#include "testing/masks.h"

namespace pare::io {
namespace {

using testing::expect_error;

std::unique_ptr<nn::Model> masked_lenet5(uint64_t seed) {
  auto model = nn::Model::build(nn::preset("lenet5"), seed);
  Rng rng(seed + 100);
  testing::mask_weights_at_random(*model, 0.2f, rng);
  return model;
}

TEST(PareModel, RoundTripKeepsValuesMasksAndSpec) {
  auto model = masked_lenet5(3);
  const std::string bytes = [&] {
    format::File f = to_file(*model, R"({"note": "test"})");
    return format::encode(f);
  }();
  const format::File back_file = format::decode(bytes, "mem.pare");
  EXPECT_EQ(back_file.meta_json, R"({"note": "test"})");
  auto back = from_file(back_file, "mem.pare");
  EXPECT_EQ(nn::model_spec_to_json(back->spec()), nn::model_spec_to_json(model->spec()));
  ASSERT_EQ(back->parameters().size(), model->parameters().size());
  for (size_t i = 0; i < model->parameters().size(); ++i) {
    const nn::Parameter& a = *model->parameters()[i];
    const nn::Parameter& b = *back->parameters()[i];
    EXPECT_EQ(a.name, b.name);
    // Equal values (a pruned weight may have been -0 before and is +0 after).
    int differ = 0;
    for (int64_t k = 0; k < a.numel(); ++k) differ += a.value().f32()[k] != b.value().f32()[k];
    EXPECT_EQ(differ, 0) << a.name;
    ASSERT_EQ(a.mask.defined(), b.mask.defined()) << a.name;
    if (a.mask.defined()) {
      EXPECT_EQ(std::memcmp(a.mask.f32(), b.mask.f32(), a.mask.nbytes()), 0) << a.name;
    }
  }
  // The pruned weights are stored sparse: the file is far smaller than the
  // dense fp32 weights.
  EXPECT_LT(static_cast<int64_t>(bytes.size()), 4 * model->num_parameters() / 3);
}

// One (2, 3) weight of a tiny linear net, stored quantized, loaded as floats.
TEST(PareModel, QuantizedTensorsDequantize) {
  nn::ModelSpec spec;
  spec.name = "tiny";
  spec.input = {3};
  spec.layers.push_back(nn::LayerSpec{.type = "linear", .out = 2, .bias = false});
  auto model = nn::Model::build(spec, 0);
  auto file_with = [&](format::Tensor t) {
    format::File f;
    f.spec_json = nn::model_spec_to_json(spec);
    t.name = "linear1.weight";
    t.dims = {2, 3};
    f.tensors.push_back(std::move(t));
    return f;
  };
  const std::vector<uint8_t> q = {0, 1, 2, 253, 254, 255};
  {
    format::Tensor t;
    t.dtype = format::DType::u8;
    t.quant.kind = format::QuantKind::affine;
    t.quant.scale = 0.5f;
    t.quant.zero_point = 128;
    t.values = q;
    auto m = from_file(file_with(t), "affine.pare");
    const float* w = m->parameters()[0]->value().f32();
    for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(w[i], 0.5f * (static_cast<float>(q[i]) - 128.0f));
  }
  {
    format::Tensor t;
    t.dtype = format::DType::s8;
    t.quant.kind = format::QuantKind::channel;
    t.quant.axis = 0;
    t.quant.scales = {0.25f, 2.0f};
    t.values = q;  // as s8: 0, 1, 2, -3, -2, -1
    auto m = from_file(file_with(t), "channel.pare");
    const float* w = m->parameters()[0]->value().f32();
    const float want[6] = {0.0f, 0.25f, 0.5f, -6.0f, -4.0f, -2.0f};
    for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(w[i], want[i]);
  }
  {
    format::Tensor t;
    t.dtype = format::DType::code;
    t.quant.kind = format::QuantKind::codebook;
    t.quant.bits = 2;
    t.quant.centroids = {-1.0f, 0.0f, 0.5f, 3.0f};
    t.values = {3, 2, 1, 0, 3, 2};
    t.present = {1, 1, 0, 1, 1, 1};  // position 2 pruned
    auto m = from_file(file_with(t), "codebook.pare");
    const nn::Parameter& p = *m->parameters()[0];
    const float want[6] = {3.0f, 0.5f, 0.0f, -1.0f, 3.0f, 0.5f};
    for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(p.value().f32()[i], want[i]);
    ASSERT_TRUE(p.mask.defined());
    EXPECT_EQ(p.mask.f32()[2], 0.0f);
    EXPECT_EQ(p.mask.f32()[0], 1.0f);
  }
}

TEST(PareModel, FilesThatDoNotMatchTheSpecAreRefused) {
  auto model = masked_lenet5(1);
  {
    format::File f = to_file(*model, "");
    f.tensors.erase(f.tensors.begin() + 1);
    expect_error([&] { from_file(f, "missing.pare"); }, {"missing.pare", "missing"});
  }
  {
    format::File f = to_file(*model, "");
    f.tensors[0].dims = {1, 2, 3};
    expect_error([&] { from_file(f, "shape.pare"); }, {"shape.pare", f.tensors[0].name, "shape"});
  }
  {
    format::File f = to_file(*model, "");
    format::Tensor extra = f.tensors[1];
    extra.name = "extra.weight";
    f.tensors.push_back(extra);
    expect_error([&] { from_file(f, "extra.pare"); }, {"extra.weight", "not a parameter"});
  }
  {
    format::File f = to_file(*model, "");
    f.spec_json = R"({"name": "x", "input": [4], "layers": [{"type": "warp"}]})";
    expect_error([&] { from_file(f, "spec.pare"); }, {"warp"});
  }
  EXPECT_TRUE(is_pare_path("a/b.pare"));
  EXPECT_FALSE(is_pare_path("a/model.bin"));
  EXPECT_FALSE(is_pare_path("pare"));
}

}  // namespace
}  // namespace pare::io
