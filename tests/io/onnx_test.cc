// ONNX export and import (io/onnx.h): every export passes libonnx's checker;
// pare -> ONNX -> pare gives the same network (same outputs, bit for bit);
// an int8 .pare file exports in QDQ form with its own int8 values and grids;
// graphs as torch.onnx.export writes them import (MatMul + Add, Reshape,
// Constant, a final Softmax); what pare cannot import, and damaged bytes, are
// refused with an Error that names the node or initializer, never a crash.
#include "pare/io/onnx.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <map>

#include "pare/base/rng.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"

namespace pare::io {
namespace {

using testing::expect_error;

std::unique_ptr<nn::Model> random_model(const nn::ModelSpec& spec, uint64_t seed, float keep = 1.0f) {
  auto model = nn::Model::build(spec, seed);
  if (keep < 1.0f) {
    Rng rng(seed + 7);
    for (nn::Parameter* p : model->parameters()) {
      if (!p->is_weight) continue;
      p->mask = Tensor::empty(p->value().shape());
      for (float& m : p->mask.span_f32()) m = rng.uniform() < keep ? 1.0f : 0.0f;
      p->apply_mask();
    }
  }
  return model;
}

Tensor random_input(const nn::ModelSpec& spec, int64_t batch, uint64_t seed) {
  std::vector<int64_t> dims{batch};
  dims.insert(dims.end(), spec.input.begin(), spec.input.end());
  Tensor x = Tensor::empty(Shape(std::span<const int64_t>(dims)));
  Rng rng(seed);
  for (float& v : x.span_f32()) v = static_cast<float>(rng.normal());
  return x;
}

std::vector<float> outputs(nn::Model& model, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  autograd::Var out = model.forward(autograd::Var(x), ctx);
  return {out.value().f32(), out.value().f32() + out.numel()};
}

std::string export_model(const nn::Model& model, const std::string& meta = "") {
  return to_onnx(to_file(model, meta), "test.pare").bytes;
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::map<std::string, int> op_counts(const onnx::ModelProto& m) {
  std::map<std::string, int> c;
  for (const auto& n : m.graph().node()) ++c[n.op_type()];
  return c;
}

void expect_same_network(const nn::ModelSpec& spec, float keep) {
  auto model = random_model(spec, 11, keep);
  const std::string bytes = export_model(*model);
  const OnnxImport back = from_onnx(bytes, "m.onnx");
  ASSERT_EQ(back.model->num_parameters(), model->num_parameters());
  EXPECT_EQ(back.model->spec().input, spec.input);
  EXPECT_EQ(back.model->spec().input_mean, spec.input_mean);
  EXPECT_EQ(back.model->spec().input_std, spec.input_std);
  const Tensor x = random_input(spec, 5, 3);
  const std::vector<float> a = outputs(*model, x), b = outputs(*back.model, x);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(Onnx, MlpRoundTripGivesTheSameOutputsAndStandardisation) {
  nn::ModelSpec spec = nn::preset("lenet300");
  spec.input_mean = 0.28f;
  spec.input_std = 0.35f;
  expect_same_network(spec, 0.1f);  // pruned: the zeros travel as zeros
}

TEST(Onnx, CnnRoundTripGivesTheSameOutputs) {
  const nn::ModelSpec spec = nn::parse_model_spec(R"({"name": "cnn", "input": [2, 12, 12],
    "layers": [{"type": "conv2d", "out": 4, "kernel": 3, "pad": 1}, {"type": "relu"},
               {"type": "maxpool", "kernel": 2},
               {"type": "conv2d", "out": 5, "kernel": 3, "stride": 2, "bias": false}, {"type": "tanh"},
               {"type": "avgpool", "kernel": 2, "stride": 1},
               {"type": "flatten"}, {"type": "linear", "out": 7}, {"type": "sigmoid"},
               {"type": "dropout", "p": 0.5}, {"type": "linear", "out": 3}]})",
                                                   "cnn.json");
  expect_same_network(spec, 1.0f);
  expect_same_network(nn::preset("lenet5"), 0.3f);
}

TEST(Onnx, EveryPresetExportsAndPassesTheChecker) {
  for (const std::string& name : nn::preset_names()) {
    auto model = random_model(nn::preset(name), 1);
    const OnnxExport e = to_onnx(to_file(*model, ""), name);
    EXPECT_NO_THROW(check_onnx(e.bytes, name)) << name;
    const onnx::ModelProto m = parse(e.bytes);
    EXPECT_EQ(m.ir_version(), kOnnxIrVersion);
    ASSERT_EQ(m.opset_import_size(), 1);
    EXPECT_EQ(m.opset_import(0).version(), kOnnxOpset);
    EXPECT_EQ(m.graph().input(0).name(), "input");
    EXPECT_EQ(m.graph().output(0).name(), "logits");
  }
}

TEST(Onnx, CircularPaddingExportsAsSlicesAndConcatsWhichImportRefuses) {
  auto model = random_model(nn::preset("life"), 2);
  const std::string bytes = export_model(*model);
  const auto ops = op_counts(parse(bytes));
  EXPECT_EQ(ops.at("Concat"), 2);  // one per spatial axis
  EXPECT_EQ(ops.at("Slice"), 4);
  expect_error([&] { from_onnx(bytes, "life.onnx"); }, {"Slice"});
}

TEST(Onnx, Int8FileExportsInQdqFormWithItsOwnValuesAndGrids) {
  auto model = random_model(nn::preset("lenet300"), 4, 0.2f);
  format::File file = to_file(*model, R"({"activations": {"linear1": {"scale": 0.02, "zero_point": 0},
                                           "linear3": {"scale": 0.05, "zero_point": 3}}})");
  // linear1.weight as s8 per output channel: q = round(w / scale) with one
  // scale per row.
  format::Tensor& t = file.tensors[0];
  ASSERT_EQ(t.name, "linear1.weight");
  const int64_t rows = t.dims[0], cols = t.dims[1];
  const nn::Parameter& w = *model->find("linear1.weight");
  t.dtype = format::DType::s8;
  t.quant.kind = format::QuantKind::channel;
  t.quant.axis = 0;
  t.quant.scales.assign(static_cast<size_t>(rows), 0.001f);
  t.values.assign(static_cast<size_t>(rows * cols), 0);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const long q = std::lround(std::clamp(w.value().f32()[i] / 0.001f, -127.0f, 127.0f));
    t.values[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<int8_t>(q));
  }
  const OnnxExport e = to_onnx(file, "q.pare");
  EXPECT_EQ(e.int8_weights, 1);
  EXPECT_EQ(e.quantized_inputs, 2);
  const onnx::ModelProto m = parse(e.bytes);
  const auto ops = op_counts(m);
  EXPECT_EQ(ops.at("QuantizeLinear"), 2);
  EXPECT_EQ(ops.at("DequantizeLinear"), 3);  // two inputs, one weight
  bool found = false;
  for (const auto& init : m.graph().initializer()) {
    if (init.name() == "linear1.weight_quantized") {
      found = true;
      EXPECT_EQ(init.data_type(), onnx::TensorProto::INT8);
      ASSERT_EQ(init.raw_data().size(), static_cast<size_t>(rows * cols));
      // Stored values, absent (pruned) positions 0.
      for (int64_t i = 0; i < rows * cols; ++i) {
        const bool present = t.present.empty() || t.present[static_cast<size_t>(i)];
        ASSERT_EQ(static_cast<int8_t>(init.raw_data()[static_cast<size_t>(i)]),
                  present ? static_cast<int8_t>(t.values[static_cast<size_t>(i)]) : 0) << i;
      }
    }
    if (init.name() == "linear3.x_zero_point") {
      EXPECT_EQ(init.data_type(), onnx::TensorProto::UINT8);
      EXPECT_EQ(static_cast<uint8_t>(init.raw_data()[0]), 3);
    }
  }
  EXPECT_TRUE(found);

  file.meta_json = R"({"activations": {"linear1": {"scale": -1, "zero_point": 0}}})";
  expect_error([&] { to_onnx(file, "bad.pare"); }, {"activations.linear1"});
}

// ---- graphs written by hand, as torch.onnx.export writes them ----

struct Graph {
  onnx::ModelProto m;
  onnx::GraphProto* g = m.mutable_graph();
  Graph(std::vector<int64_t> input, int opset = 13) {
    m.set_ir_version(7);
    auto* o = m.add_opset_import();
    o->set_version(opset);
    g->set_name("torch_jit");
    value(g->add_input(), "input.1", input);
  }
  static void value(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    auto* s = t->mutable_shape();
    s->add_dim()->set_dim_param("batch_size");
    for (int64_t d : dims) s->add_dim()->set_dim_value(d);
  }
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> in, const std::string& out) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(op + "_" + out);
    for (auto& s : in) n->add_input(s);
    n->add_output(out);
    return n;
  }
  void f32(const std::string& name, std::vector<int64_t> dims, std::vector<float> v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    for (float x : v) t->add_float_data(x);
  }
  void output(const std::string& name, std::vector<int64_t> dims) { value(g->add_output(), name, dims); }
  std::string bytes() const { return m.SerializeAsString(); }
};

TEST(Onnx, ImportsMatMulAddReshapeConstantAndDropsTheFinalSoftmax) {
  Graph t({1, 2, 2});
  // Reshape to (batch, 4) by a Constant shape, MatMul (in, out) + Add bias,
  // Relu, Gemm with transB, Softmax.
  auto* c = t.node("Constant", {}, "shape");
  auto* a = c->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::INT64);
  a->mutable_t()->add_dims(2);
  a->mutable_t()->add_int64_data(-1);
  a->mutable_t()->add_int64_data(4);
  t.node("Reshape", {"input.1", "shape"}, "flat");
  t.f32("W1", {4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});  // (in, out)
  t.f32("b1", {3}, {0.5f, -100.0f, 0.25f});
  t.node("MatMul", {"flat", "W1"}, "mm");
  t.node("Add", {"mm", "b1"}, "fc1");
  t.node("Relu", {"fc1"}, "r1");
  t.f32("W2", {2, 3}, {1, 0, -1, 0.5f, 0.5f, 0.5f});  // (out, in) with transB
  t.f32("b2", {2}, {0, 1});
  auto* gemm = t.node("Gemm", {"r1", "W2", "b2"}, "fc2");
  auto* tb = gemm->add_attribute();
  tb->set_name("transB");
  tb->set_type(onnx::AttributeProto::INT);
  tb->set_i(1);
  t.node("Softmax", {"fc2"}, "probs");
  t.output("probs", {2});

  const OnnxImport im = from_onnx(t.bytes(), "torch.onnx");
  ASSERT_EQ(im.notes.size(), 1u);
  EXPECT_NE(im.notes[0].find("Softmax"), std::string::npos);
  const nn::ModelSpec& spec = im.model->spec();
  ASSERT_EQ(spec.layers.size(), 4u);  // flatten, linear, relu, linear
  EXPECT_EQ(spec.layers[0].type, "flatten");
  EXPECT_TRUE(spec.layers[1].bias);
  // x = (1, 1, 1, 1): fc1 = column sums + b = (22.5, -76, 30.25) -> relu
  // (22.5, 0, 30.25); fc2 = (22.5 - 30.25, 0.5 * 52.75 + 1) = (-7.75, 27.375).
  Tensor x = Tensor::empty({1, 1, 2, 2});
  for (float& v : x.span_f32()) v = 1.0f;
  const std::vector<float> y = outputs(*im.model, x);
  ASSERT_EQ(y.size(), 2u);
  EXPECT_FLOAT_EQ(y[0], -7.75f);
  EXPECT_FLOAT_EQ(y[1], 27.375f);
}

onnx::NodeProto* int_constant(Graph& t, const std::string& out, std::vector<int64_t> v, bool scalar = false) {
  auto* c = t.node("Constant", {}, out);
  auto* a = c->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::INT64);
  if (!scalar) a->mutable_t()->add_dims(static_cast<int64_t>(v.size()));
  for (int64_t x : v) a->mutable_t()->add_int64_data(x);
  return c;
}

// x.view(x.size(0), -1) after an avg_pool2d, as torch 1.13 exports them with
// a dynamic batch: a Pad of zeros, then Shape -> Gather -> Unsqueeze ->
// Concat with -1 -> Reshape.
TEST(Onnx, ImportsTorchsViewIdiomAndItsPadOfZeros) {
  Graph t({2, 4, 4}, 14);
  int_constant(t, "pads", {0, 0, 0, 0, 0, 0, 0, 0});
  t.node("Pad", {"input.1", "pads"}, "padded");
  auto* pool = t.node("AveragePool", {"padded"}, "pooled");
  auto* k = pool->add_attribute();
  k->set_name("kernel_shape");
  k->set_type(onnx::AttributeProto::INTS);
  k->add_ints(2);
  k->add_ints(2);
  auto* st = pool->add_attribute();
  st->set_name("strides");
  st->set_type(onnx::AttributeProto::INTS);
  st->add_ints(2);
  st->add_ints(2);
  t.node("Shape", {"pooled"}, "shape");
  int_constant(t, "zero", {0}, /*scalar=*/true);
  t.node("Gather", {"shape", "zero"}, "batch");
  int_constant(t, "axes", {0});
  t.node("Unsqueeze", {"batch", "axes"}, "batch1");
  int_constant(t, "minus_one", {-1});
  auto* cat = t.node("Concat", {"batch1", "minus_one"}, "target");
  auto* ax = cat->add_attribute();
  ax->set_name("axis");
  ax->set_type(onnx::AttributeProto::INT);
  ax->set_i(0);
  t.node("Reshape", {"pooled", "target"}, "flat");
  t.output("flat", {8});
  const OnnxImport im = from_onnx(t.bytes(), "view.onnx");
  const nn::ModelSpec& spec = im.model->spec();
  ASSERT_EQ(spec.layers.size(), 2u);
  EXPECT_EQ(spec.layers[0].type, "avgpool");
  EXPECT_EQ(spec.layers[1].type, "flatten");
  Tensor x = Tensor::empty({1, 2, 4, 4});
  for (int64_t i = 0; i < 32; ++i) x.f32()[i] = static_cast<float>(i);
  const std::vector<float> y = outputs(*im.model, x);
  ASSERT_EQ(y.size(), 8u);
  EXPECT_FLOAT_EQ(y[0], (0 + 1 + 4 + 5) / 4.0f);
  EXPECT_FLOAT_EQ(y[7], (26 + 27 + 30 + 31) / 4.0f);

  Graph bad({2, 4, 4});
  int_constant(bad, "pads", {0, 0, 1, 1, 0, 0, 1, 1});
  bad.node("Pad", {"input.1", "pads"}, "padded");
  bad.output("padded", {2, 6, 6});
  expect_error([&] { from_onnx(bad.bytes(), "pad.onnx"); }, {"Pad of zeros"});
}

TEST(Onnx, RefusesWhatItCannotImportNamingTheNode) {
  {  // a branch: the second input of Add is not a constant
    Graph t({3});
    t.node("Relu", {"input.1"}, "a");
    t.node("Add", {"a", "input.1"}, "b");
    t.output("b", {3});
    expect_error([&] { from_onnx(t.bytes(), "branch.onnx"); }, {"Add_b", "bias after MatMul"});
  }
  {  // an operator pare has no layer for
    Graph t({3});
    t.node("Exp", {"input.1"}, "e");
    t.output("e", {3});
    expect_error([&] { from_onnx(t.bytes(), "exp.onnx"); }, {"(Exp): not imported"});
  }
  {  // a softmax in the middle
    Graph t({3});
    t.node("Softmax", {"input.1"}, "s");
    t.node("Relu", {"s"}, "r");
    t.output("r", {3});
    expect_error([&] { from_onnx(t.bytes(), "mid.onnx"); }, {"only as the last node"});
  }
  {  // Gemm with transA
    Graph t({2});
    t.f32("W", {2, 2}, {1, 2, 3, 4});
    auto* n = t.node("Gemm", {"input.1", "W"}, "y");
    auto* a = n->add_attribute();
    a->set_name("transA");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(1);
    t.output("y", {2});
    expect_error([&] { from_onnx(t.bytes(), "ta.onnx"); }, {"transA"});
  }
  {  // raw data shorter than the dims say
    Graph t({2});
    auto* w = t.g->add_initializer();
    w->set_name("W");
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(2);
    w->add_dims(2);
    w->set_raw_data(std::string(12, '\0'));
    t.node("MatMul", {"input.1", "W"}, "y");
    t.output("y", {2});
    expect_error([&] { from_onnx(t.bytes(), "short.onnx"); }, {"W"});
  }
  {  // data kept outside the file
    Graph t({2});
    auto* w = t.g->add_initializer();
    w->set_name("W");
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(2);
    w->add_dims(2);
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* kv = w->add_external_data();
    kv->set_key("location");
    kv->set_value("weights.bin");
    t.node("MatMul", {"input.1", "W"}, "y");
    t.output("y", {2});
    expect_error([&] { from_onnx(t.bytes(), "ext.onnx"); }, {"external"});
  }
  {  // a graph that is not sorted: the checker's message comes on one line
    Graph t({2});
    t.node("Relu", {"later"}, "y");
    t.node("Relu", {"input.1"}, "later");
    t.output("y", {2});
    expect_error([&] { from_onnx(t.bytes(), "unsorted.onnx"); }, {"unsorted.onnx", "checker"});
  }
  {  // a graph name that is not UTF-8 becomes a plain spec name
    Graph t({2});
    t.g->set_name(std::string("torch_j\x80t"));
    t.node("Relu", {"input.1"}, "y");
    t.output("y", {2});
    const OnnxImport im = from_onnx(t.bytes(), "name.onnx");
    EXPECT_EQ(im.model->spec().name, "torch_j_t");
    EXPECT_NO_THROW(nn::model_spec_to_json(im.model->spec()));
  }
  {  // a feature dimension without a size
    Graph t({2});
    t.g->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_param("n");
    t.node("Relu", {"input.1"}, "y");
    t.output("y", {2});
    expect_error([&] { from_onnx(t.bytes(), "dyn.onnx"); }, {"no fixed size"});
  }
}

TEST(Onnx, DamagedBytesGiveAnErrorNeverACrash) {
  auto model = random_model(nn::parse_model_spec(R"({"name": "s", "input": [1, 6, 6],
      "layers": [{"type": "conv2d", "out": 2, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
                 {"type": "linear", "out": 3}]})", "s.json"), 5);
  const std::string bytes = export_model(*model);
  ASSERT_NO_THROW(from_onnx(bytes, "good.onnx"));
  // Every truncation is refused.
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(from_onnx(std::string_view(bytes).substr(0, n), "cut.onnx"), Error) << n << " bytes";
  // A changed byte either still makes a model pare can build (a changed
  // weight) or is refused with pare's Error: nothing else escapes.
  int refused = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      try {
        from_onnx(bad, "flip.onnx");
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0);
  expect_error([&] { from_onnx("not an onnx file at all", "text.onnx"); }, {"text.onnx"});
}

}  // namespace
}  // namespace pare::io
