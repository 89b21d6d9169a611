// JSON model specs: parsing, validation messages, round trip, build errors.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/nn_test_util.h"
#include "pare/kernels/kernels.h"
#include "pare/nn/module.h"
#include "pare/nn/spec.h"

namespace pare::nn {
namespace {

using autograd::Var;
using testing::expect_error;
using testing::random_labels;
using testing::random_tensor;

constexpr const char* kTiny = R"({"name": "tiny", "input": [1, 8, 8],
  "layers": [{"type": "conv2d", "out": 4, "kernel": 3, "pad": 1}, {"type": "relu"},
             {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
             {"type": "linear", "out": 10, "bias": false}],
  "loss": "softmax_cross_entropy", "init": "kaiming_uniform"})";

TEST(Spec, ParsesValidSpec) {
  ModelSpec s = parse_model_spec(kTiny, "tiny.json");
  EXPECT_EQ(s.name, "tiny");
  EXPECT_EQ(s.input, (std::vector<int64_t>{1, 8, 8}));
  ASSERT_EQ(s.layers.size(), 5u);
  EXPECT_EQ(s.layers[0].type, "conv2d");
  EXPECT_EQ(s.layers[0].out, 4);
  EXPECT_EQ(s.layers[0].kernel, 3);
  EXPECT_EQ(s.layers[0].pad, 1);
  EXPECT_TRUE(s.layers[0].bias);
  EXPECT_EQ(s.layers[2].kernel, 2);
  EXPECT_EQ(s.layers[4].out, 10);
  EXPECT_FALSE(s.layers[4].bias);
  EXPECT_EQ(s.init, "kaiming_uniform");
}

TEST(Spec, DefaultsForOptionalFields) {
  ModelSpec s = parse_model_spec(R"({"input": [4], "layers": [{"type": "linear", "out": 2}]})", "x");
  EXPECT_EQ(s.name, "custom");
  EXPECT_EQ(s.loss, "softmax_cross_entropy");
  EXPECT_EQ(s.init, "default");
}

TEST(Spec, ValidSpecBuildsAndTrainsOneStep) {
  auto m = Model::build(parse_model_spec(kTiny, "tiny.json"), 3);
  // conv 4x1x3x3 + 4, linear 4*4*4 -> 10 without bias
  EXPECT_EQ(m->num_parameters(), 36 + 4 + 64 * 10);
  Tensor x = random_tensor({16, 1, 8, 8}, 10);
  Tensor y = random_labels(16, 10, 11);
  ForwardContext ctx;
  auto loss_at = [&] {
    autograd::NoGradGuard no_grad;
    return m->loss(m->forward(Var(x), ctx), y).value().f32()[0];
  };
  const float before = loss_at();
  ASSERT_TRUE(std::isfinite(before));
  m->store().zero_grad();
  Var loss = m->loss(m->forward(Var(x), ctx), y);
  EXPECT_FLOAT_EQ(loss.value().f32()[0], before);
  loss.backward();
  // Every parameter received some gradient.
  for (Parameter* p : m->parameters()) {
    double norm = 0;
    for (float g : p->grad().span_f32()) norm += double(g) * g;
    EXPECT_GT(norm, 0.0) << p->name;
  }
  // One plain SGD step over the contiguous store: w -= lr * g.
  Tensor& w = m->store().values();
  kernels::axpy_f32(w.numel(), w.f32(), m->store().grads().f32(), -0.05f);
  const float after = loss_at();
  EXPECT_LT(after, before) << "one gradient step should lower the loss on its own batch";
}

TEST(Spec, UnknownLayerTypeNamesItAndListsKnown) {
  expect_error(
      [] {
        parse_model_spec(R"({"input": [4], "layers": [{"type": "lstm", "out": 3}]})", "net.json");
      },
      {"net.json", "\"lstm\"", "layers[0]", "linear", "conv2d", "relu", "maxpool", "dropout"});
  // Also when the spec is built directly from C++.
  ModelSpec s{.name = "c", .input = {4}, .layers = {LayerSpec{.type = "gru"}}};
  expect_error([&] { Model::build(s, 0); }, {"\"gru\""});
}

TEST(Spec, MissingOut) {
  expect_error(
      [] {
        parse_model_spec(R"({"input": [4], "layers": [{"type": "relu"}, {"type": "linear"}]})",
                         "m.json");
      },
      {"m.json", "layers[1]", "linear", "\"out\""});
  expect_error(
      [] { parse_model_spec(R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "kernel": 3}]})", "m"); },
      {"conv2d", "\"out\""});
  expect_error(
      [] { parse_model_spec(R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "out": 3}]})", "m"); },
      {"conv2d", "\"kernel\""});
}

TEST(Spec, BadJson) {
  expect_error([] { parse_model_spec(R"({"input": [4], "layers": [)", "bad.json"); },
               {"bad.json", "not valid JSON"});
  expect_error([] { parse_model_spec("[1, 2]", "arr.json"); }, {"arr.json", "object"});
  expect_error([] { parse_model_spec("", "empty.json"); }, {"empty.json"});
}

TEST(Spec, UnknownFields) {
  expect_error(
      [] { parse_model_spec(R"({"input": [4], "layers": [{"type": "relu"}], "lr": 0.1})", "u.json"); },
      {"u.json", "unknown field \"lr\"", "layers"});
  expect_error(
      [] {
        parse_model_spec(R"({"input": [4], "layers": [{"type": "linear", "out": 2, "units": 3}]})",
                         "u.json");
      },
      {"u.json", "layers[0]", "unknown field \"units\""});
}

TEST(Spec, WrongTypes) {
  // Each of these must raise pare::Error naming the source, never a raw json exception.
  const char* bad[] = {
      R"({"input": "784", "layers": [{"type": "relu"}]})",
      R"({"input": [784.5], "layers": [{"type": "relu"}]})",
      R"({"input": [-1], "layers": [{"type": "relu"}]})",
      R"({"input": [], "layers": [{"type": "relu"}]})",
      R"({"input": [4], "layers": {"type": "relu"}})",
      R"({"input": [4], "layers": []})",
      R"({"input": [4]})",
      R"({"layers": [{"type": "relu"}]})",
      R"({"input": [4], "layers": [{"type": 3}]})",
      R"({"input": [4], "layers": ["relu"]})",
      R"({"input": [4], "layers": [{"type": "linear", "out": "ten"}]})",
      R"({"input": [4], "layers": [{"type": "linear", "out": 0}]})",
      R"({"input": [4], "layers": [{"type": "linear", "out": 2, "bias": "yes"}]})",
      R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "out": 2, "kernel": 3, "circular": 1}]})",
      R"({"input": [4], "layers": [{"type": "dropout", "p": "half"}]})",
      R"({"name": 5, "input": [4], "layers": [{"type": "relu"}]})",
      R"({"input": [4], "layers": [{"type": "relu"}], "loss": 3})",
      R"({"input": [4], "layers": [{"type": "relu"}], "loss": "hinge"})",
      R"({"input": [4], "layers": [{"type": "relu"}], "init": "orthogonal"})",
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    try {
      parse_model_spec(text, "typed.json");
      ADD_FAILURE() << "accepted";
    } catch (const pare::Error& e) {
      EXPECT_NE(std::string(e.what()).find("typed.json"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "raised a non-pare exception: " << e.what();
    }
  }
  expect_error([] { parse_model_spec(R"({"input": [4], "layers": [{"type": "relu"}], "loss": "hinge"})", "l"); },
               {"hinge", "softmax_cross_entropy", "bce_with_logits", "mse"});
  expect_error([] { parse_model_spec(R"({"input": [4], "layers": [{"type": "linear", "out": "ten"}]})", "l"); },
               {"\"out\"", "integer"});
}

TEST(Spec, JsonRoundTrip) {
  std::vector<ModelSpec> specs = {preset("lenet300"), preset("lenet5"), preset("conv2"),
                                  preset("life", {.life_steps = 2, .width = 3, .board = 16}),
                                  parse_model_spec(kTiny, "tiny")};
  ModelSpec drop{.name = "drop", .input = {10},
                 .layers = {LayerSpec{.type = "dropout", .p = 0.25f},
                            LayerSpec{.type = "linear", .out = 3, .bias = false},
                            LayerSpec{.type = "tanh"}},
                 .loss = "mse", .init = "glorot_normal"};
  specs.push_back(drop);
  for (const ModelSpec& s : specs) {
    SCOPED_TRACE(s.name);
    const std::string j = model_spec_to_json(s);
    ModelSpec r = parse_model_spec(j, "roundtrip");
    EXPECT_EQ(r.name, s.name);
    EXPECT_EQ(r.input, s.input);
    EXPECT_EQ(r.loss, s.loss);
    EXPECT_EQ(r.init, s.init);
    ASSERT_EQ(r.layers.size(), s.layers.size());
    for (size_t i = 0; i < s.layers.size(); ++i) {
      const LayerSpec &a = s.layers[i], &b = r.layers[i];
      EXPECT_EQ(a.type, b.type) << i;
      EXPECT_EQ(a.out, b.out) << i;
      EXPECT_EQ(a.kernel, b.kernel) << i;
      EXPECT_EQ(a.stride, b.stride) << i;
      EXPECT_EQ(a.pad, b.pad) << i;
      EXPECT_EQ(a.circular, b.circular) << i;
      EXPECT_EQ(a.bias, b.bias) << i;
      EXPECT_EQ(a.p, b.p) << i;
    }
    EXPECT_EQ(model_spec_to_json(r), j);  // canonical: a second trip is identical
    EXPECT_EQ(Model::build(r, 0)->num_parameters(), Model::build(s, 0)->num_parameters());
  }
}

TEST(Spec, ShapeMismatchNamesTheLayer) {
  // A conv after flatten: layer 3 gets a flat input.
  ModelSpec conv_after_flatten = parse_model_spec(
      R"({"input": [1, 8, 8], "layers": [{"type": "flatten"}, {"type": "relu"},
          {"type": "conv2d", "out": 2, "kernel": 3}]})", "s");
  expect_error([&] { Model::build(conv_after_flatten, 0); }, {"layer 3", "conv2d", "(64)"});
  // A kernel larger than its input.
  ModelSpec big_kernel = parse_model_spec(
      R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "out": 2, "kernel": 5}]})", "s");
  expect_error([&] { Model::build(big_kernel, 0); }, {"conv2d1", "(1, 4, 4)"});
  // Channel count is inferred, so a conv2d always fits its input channels; but
  // pooling past the spatial size does not fit.
  ModelSpec pool_too_big = parse_model_spec(
      R"({"input": [1, 4, 4], "layers": [{"type": "maxpool", "kernel": 8}]})", "s");
  expect_error([&] { Model::build(pool_too_big, 0); }, {"(1, 4, 4)"});
}

// Regression: a linear layer on an unflattened input used to build and then
// fail inside forward without naming the layer.
TEST(Spec, LinearOnUnflattenedInputFailsAtBuildNamingTheLayer) {
  // A linear layer straight after a conv (no flatten): the builder must
  // reject it and name the linear layer, not fail later inside forward.
  ModelSpec s = parse_model_spec(
      R"({"input": [1, 6, 6], "layers": [{"type": "conv2d", "out": 2, "kernel": 3},
          {"type": "linear", "out": 5}]})", "s");
  std::unique_ptr<Model> m;
  try {
    m = Model::build(s, 0);
  } catch (const pare::Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear2"), std::string::npos) << e.what();
    return;
  }
  // If the builder accepts it, forward must work (an implicit flatten).
  ForwardContext ctx{.training = false};
  Var y = m->forward(Var(random_tensor({2, 1, 6, 6}, 1)), ctx);
  EXPECT_EQ(y.shape(), Shape({2, 5}));
}

TEST(Spec, BuildRejectsBadValues) {
  ModelSpec no_input{.name = "n", .input = {}, .layers = {LayerSpec{.type = "relu"}}};
  expect_error([&] { Model::build(no_input, 0); }, {"input"});
  ModelSpec neg{.name = "n", .input = {0, 3}, .layers = {LayerSpec{.type = "relu"}}};
  expect_error([&] { Model::build(neg, 0); }, {"non-positive"});
  ModelSpec bad_p{.name = "n", .input = {4}, .layers = {LayerSpec{.type = "dropout", .p = 1.0f}}};
  expect_error([&] { Model::build(bad_p, 0); }, {"dropout", "\"p\""});
  ModelSpec bad_init{.name = "n", .input = {4}, .layers = {LayerSpec{.type = "linear", .out = 2}},
                     .init = "zeros"};
  expect_error([&] { Model::build(bad_init, 0); }, {"zeros"});
}

// parameter_shapes / parameter_count: what build() allocates, from the spec
// alone, and specs whose sizes pass 2^32 elements refused before any
// allocation (found by fuzzing: a flatten of 2^72 inputs overflowed int64,
// a 2^24 x 2^20 linear layer asked for 64 TiB).
TEST(Spec, ParameterShapesMatchTheBuiltModel) {
  for (const std::string& name : preset_names()) {
    const ModelSpec spec = preset(name);
    auto m = Model::build(spec, 0);
    const std::vector<ParameterShape> shapes = parameter_shapes(spec);
    ASSERT_EQ(shapes.size(), m->parameters().size()) << name;
    for (size_t i = 0; i < shapes.size(); ++i) {
      EXPECT_EQ(shapes[i].name, m->parameters()[i]->name) << name;
      EXPECT_EQ(shapes[i].dims, m->parameters()[i]->value().shape().vec()) << name;
    }
    EXPECT_EQ(parameter_count(spec), m->num_parameters()) << name;
  }
}

TEST(Spec, SizesPast2To32ElementsAreRefusedBeforeAllocating) {
  const ModelSpec wide = parse_model_spec(
      R"({"input": [16777216, 16777216, 16777216], "layers": [{"type": "flatten"}, {"type": "linear", "out": 2}]})",
      "s");
  expect_error([&] { parameter_count(wide); }, {"input", "2^32"});
  expect_error([&] { Model::build(wide, 0); }, {"input", "2^32"});
  const ModelSpec heavy = parse_model_spec(
      R"({"input": [16777216], "layers": [{"type": "linear", "out": 1048576}]})", "s");
  expect_error([&] { Model::build(heavy, 0); }, {"linear1", "weight", "2^32"});
  const ModelSpec blowup = parse_model_spec(
      R"({"input": [1, 65536, 65536], "layers": [{"type": "conv2d", "out": 2, "kernel": 1}]})", "s");
  expect_error([&] { Model::build(blowup, 0); }, {"conv2d1", "output", "2^32"});
}

TEST(Spec, RegistriesListNames) {
  EXPECT_EQ(layer_types().size(), 9u);
  EXPECT_EQ(loss_names(), (std::vector<std::string>{"softmax_cross_entropy", "bce_with_logits", "mse"}));
  EXPECT_EQ(init_names().front(), "default");
}

}  // namespace
}  // namespace pare::nn
