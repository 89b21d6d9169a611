#include "pare/io/onnx.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "pare/base/error.h"
#include "pare/base/json_number.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"

namespace pare::io {

using json = nlohmann::json;

namespace {

// ---------------------------------------------------------------- export --

// Appends nodes and initializers to a graph, naming values uniquely.
class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto* g) : g_(g) {}

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& output) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(output);
    return n;
  }
  void f32(const std::string& name, const std::vector<int64_t>& dims, const float* v) {
    tensor(name, dims, onnx::TensorProto::FLOAT, v, 4);
  }
  void i64(const std::string& name, const std::vector<int64_t>& v) {
    tensor(name, {static_cast<int64_t>(v.size())}, onnx::TensorProto::INT64, v.data(), 8);
  }
  void tensor(const std::string& name, const std::vector<int64_t>& dims, int type, const void* v,
              size_t elem_bytes) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    int64_t n = 1;
    for (int64_t d : dims) {
      t->add_dims(d);
      n *= d;
    }
    t->set_raw_data(v, static_cast<size_t>(n) * elem_bytes);  // little-endian hosts only
  }

 private:
  onnx::GraphProto* g_;
};

void set_int(onnx::NodeProto* n, const char* name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
void set_ints(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void set_shape(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* s = t->mutable_shape();
  s->add_dim()->set_dim_param("batch");
  for (int64_t d : dims) s->add_dim()->set_dim_value(d);
}

// Circular padding (the Life net's torus) with the opset-13 ops: each spatial
// axis becomes concat(x[-pad:], x, x[:pad]). Pad's "wrap" mode needs opset 19.
std::string wrap_pad(GraphWriter& w, const std::string& x, const std::string& layer, int64_t pad) {
  std::string cur = x;
  w.i64(layer + ".wrap_head_starts", {-pad});
  w.i64(layer + ".wrap_head_ends", {INT64_MAX});
  w.i64(layer + ".wrap_tail_starts", {0});
  w.i64(layer + ".wrap_tail_ends", {pad});
  for (int64_t axis : {2, 3}) {
    const std::string a = layer + ".wrap_axis" + std::to_string(axis);
    w.i64(a, {axis});
    const std::string head = a + ".head", tail = a + ".tail", out = a + ".out";
    w.node("Slice", {cur, layer + ".wrap_head_starts", layer + ".wrap_head_ends", a}, head);
    w.node("Slice", {cur, layer + ".wrap_tail_starts", layer + ".wrap_tail_ends", a}, tail);
    set_int(w.node("Concat", {head, cur, tail}, out), "axis", axis);
    cur = out;
  }
  return cur;
}

const format::Tensor* find_tensor(const format::File& file, const std::string& name) {
  for (const auto& t : file.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace

namespace {

onnx::ModelProto parse_model(std::string_view bytes, const std::string& source) {
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    fail(source, ": ", bytes.size(), " bytes; ONNX files over 2 GiB (external data) are not supported");
  onnx::ModelProto m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail(source, ": not an ONNX model (the bytes do not parse as a ModelProto)");
  return m;
}

// Text from a file, fit for a one-line message or a spec name: printable
// ASCII only, whitespace runs as one space.
std::string printable(const std::string& text, size_t max_bytes = 400) {
  std::string out;
  for (unsigned char ch : text) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    if (ch == '\n' || ch == '\r' || ch == '\t' || ch == ' ') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += ch >= 0x20 && ch < 0x7f ? static_cast<char>(ch) : '?';
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The checker alone: libonnx 1.12's shape inference divides by a zero stride
// (SIGFPE) instead of reporting it, so it runs only on pare's own exports.
void run_checker(const onnx::ModelProto& m, const std::string& source) {
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    fail(source, ": the ONNX checker refuses the model: ", printable(e.what()));
  }
}

// The checker and strict shape inference (which annotates `m`, hence the copy).
void check_strictly(onnx::ModelProto m, const std::string& source) {
  run_checker(m, source);
  try {
    onnx::ShapeInferenceOptions strict{/*check_type=*/true, /*error_mode=*/1,
                                       /*enable_data_propagation=*/false};
    onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(), strict);
  } catch (const std::exception& e) {
    fail(source, ": ONNX shape inference refuses the model: ", printable(e.what()));
  }
}

}  // namespace

void check_onnx(std::string_view bytes, const std::string& source) {
  check_strictly(parse_model(bytes, source), source);
}

OnnxExport to_onnx(const format::File& file, const std::string& source) {
  const std::unique_ptr<nn::Model> model = from_file(file, source);
  const nn::ModelSpec& spec = model->spec();
  json acts = json::object();
  if (!file.meta_json.empty()) {
    const json meta = json::parse(file.meta_json, nullptr, /*allow_exceptions=*/false);
    if (meta.is_object() && meta.contains("activations") && meta["activations"].is_object())
      acts = meta["activations"];
  }

  onnx::ModelProto m;
  m.set_ir_version(kOnnxIrVersion);
  m.set_producer_name("pare");
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name(spec.name.empty() ? "pare" : spec.name);
  GraphWriter w(g);
  OnnxExport out;

  set_shape(g->add_input(), "input", spec.input);
  std::string cur = "input";
  if (spec.input_std > 0) {
    const float mean = spec.input_mean, stdev = spec.input_std;
    w.f32("input_mean", {}, &mean);
    w.f32("input_std", {}, &stdev);
    w.node("Sub", {cur, "input_mean"}, "input.centred");
    cur = w.node("Div", {"input.centred", "input_std"}, "input.standardized")->output(0);
  }

  // The layer's weight, as a float initializer or s8 behind DequantizeLinear;
  // and its input through QuantizeLinear/DequantizeLinear when calibrated.
  auto add_weight = [&](const std::string& layer, const nn::Parameter& p) -> std::string {
    const format::Tensor* t = find_tensor(file, p.name);
    if (t && t->dtype == format::DType::s8 && t->quant.kind == format::QuantKind::channel &&
        t->quant.axis == 0) {
      const int64_t rows = t->dims[0];
      std::vector<int8_t> q(static_cast<size_t>(t->numel()));
      for (size_t i = 0; i < q.size(); ++i)
        q[i] = t->present.empty() || t->present[i] ? static_cast<int8_t>(t->values[i]) : 0;
      const std::vector<int8_t> zeros(static_cast<size_t>(rows), 0);
      w.tensor(p.name + "_quantized", t->dims, onnx::TensorProto::INT8, q.data(), 1);
      w.f32(p.name + "_scale", {rows}, t->quant.scales.data());
      w.tensor(p.name + "_zero_point", {rows}, onnx::TensorProto::INT8, zeros.data(), 1);
      set_int(w.node("DequantizeLinear",
                     {p.name + "_quantized", p.name + "_scale", p.name + "_zero_point"}, p.name),
              "axis", 0);
      ++out.int8_weights;
    } else {
      w.f32(p.name, p.value().shape().vec(), p.value().f32());
    }
    if (acts.contains(layer)) {
      const json& a = acts[layer];
      const float scale = a.value("scale", 0.0f);
      const int zp = static_cast<int>(whole_number_or(a, "zero_point", -1, 0, 255, source + ": META activations." + layer));
      if (!(scale > 0 && std::isfinite(scale)) || zp < 0 || zp > 255)
        fail(source, ": META activations.", layer, " is not a u8 grid (scale > 0, zero point 0..255)");
      const uint8_t zp8 = static_cast<uint8_t>(zp);
      w.f32(layer + ".x_scale", {}, &scale);
      w.tensor(layer + ".x_zero_point", {}, onnx::TensorProto::UINT8, &zp8, 1);
      w.node("QuantizeLinear", {cur, layer + ".x_scale", layer + ".x_zero_point"}, layer + ".x_quantized");
      cur = w.node("DequantizeLinear", {layer + ".x_quantized", layer + ".x_scale", layer + ".x_zero_point"},
                   layer + ".x_dequantized")
                ->output(0);
      ++out.quantized_inputs;
    }
    return p.name;
  };

  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const nn::LayerSpec& l = spec.layers[i];
    const std::string layer = l.type + std::to_string(i + 1);  // the names Model::build gives
    const std::string y = layer + ".out";
    if (l.type == "linear" || l.type == "conv2d") {
      const nn::Parameter* weight = model->find(layer + ".weight");
      const nn::Parameter* bias = model->find(layer + ".bias");
      PARE_CHECK(weight, "no weight for ", layer);
      if (l.type == "conv2d" && l.circular && l.pad > 0) cur = wrap_pad(w, cur, layer, l.pad);
      const std::string wname = add_weight(layer, *weight);
      std::vector<std::string> inputs{cur, wname};
      if (bias) {
        w.f32(bias->name, bias->value().shape().vec(), bias->value().f32());
        inputs.push_back(bias->name);
      }
      if (l.type == "linear") {
        set_int(w.node("Gemm", inputs, y), "transB", 1);
      } else {
        onnx::NodeProto* n = w.node("Conv", inputs, y);
        const int64_t p = l.circular ? 0 : l.pad, s = l.stride ? l.stride : 1;
        set_ints(n, "kernel_shape", {l.kernel, l.kernel});
        set_ints(n, "pads", {p, p, p, p});
        set_ints(n, "strides", {s, s});
      }
    } else if (l.type == "relu" || l.type == "sigmoid" || l.type == "tanh") {
      w.node(l.type == "relu" ? "Relu" : l.type == "sigmoid" ? "Sigmoid" : "Tanh", {cur}, y);
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      onnx::NodeProto* n = w.node(l.type == "maxpool" ? "MaxPool" : "AveragePool", {cur}, y);
      const int64_t s = l.stride ? l.stride : l.kernel;
      set_ints(n, "kernel_shape", {l.kernel, l.kernel});
      set_ints(n, "strides", {s, s});
    } else if (l.type == "flatten") {
      set_int(w.node("Flatten", {cur}, y), "axis", 1);
    } else if (l.type == "dropout") {
      continue;  // identity at inference
    } else {
      fail(source, ": layer ", layer, " (", l.type, ") has no ONNX export");
    }
    cur = y;
  }
  // The last value is the graph's output, "logits".
  if (g->node_size() > 0 && g->node(g->node_size() - 1).output(0) == cur) {
    onnx::NodeProto* last = g->mutable_node(g->node_size() - 1);
    last->set_output(0, "logits");
    last->set_name("logits");
  } else {
    w.node("Identity", {cur}, "logits");
  }
  set_shape(g->add_output(), "logits", model->layer_shapes().back());

  out.nodes = g->node_size();
  check_strictly(m, source + " (ONNX export)");
  if (!m.SerializeToString(&out.bytes)) fail(source, ": the ONNX model does not serialize");
  return out;
}

// ---------------------------------------------------------------- import --

namespace {

// An initializer or Constant, checked and converted.
struct Constant {
  std::vector<int64_t> dims;
  std::vector<float> f;    // FLOAT
  std::vector<int64_t> i;  // INT64 / INT32
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

// Largest initializer read: 2^28 elements (1 GiB of floats), far beyond the
// nets pare trains; a larger count is a corrupt or hostile file.
constexpr int64_t kMaxImportNumel = int64_t{1} << 28;

Constant read_constant(const onnx::TensorProto& t, const std::string& source) {
  const std::string what = source + ": initializer \"" + t.name() + "\"";
  if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
    fail(what, " keeps its data in an external file; pare imports self-contained ONNX files");
  if (t.dims_size() > 8) fail(what, " has ", t.dims_size(), " dims");
  Constant c;
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || d > kMaxImportNumel) fail(what, " has dim ", d);
    n *= d;
    if (n > kMaxImportNumel) fail(what, " has more than ", kMaxImportNumel, " elements");
    c.dims.push_back(d);
  }
  const auto un = static_cast<size_t>(n);
  auto raw = [&](size_t elem) -> const std::string* {
    if (t.raw_data().empty()) return nullptr;
    if (t.raw_data().size() != un * elem)
      fail(what, ": ", t.raw_data().size(), " bytes of raw data for ", n, " elements of ", elem, " bytes");
    return &t.raw_data();
  };
  // Every count is checked before anything is allocated: the dims alone
  // may claim 2^28 elements for a few bytes of data.
  auto typed = [&](int have) {
    if (static_cast<size_t>(have) != un) fail(what, ": ", have, " values for ", n, " elements");
  };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      if (const std::string* r = raw(4)) {
        c.f.resize(un);
        std::memcpy(c.f.data(), r->data(), un * 4);
      } else {
        typed(t.float_data_size());
        c.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case onnx::TensorProto::INT64:
      if (const std::string* r = raw(8)) {
        c.i.resize(un);
        std::memcpy(c.i.data(), r->data(), un * 8);
      } else {
        typed(t.int64_data_size());
        c.i.assign(t.int64_data().begin(), t.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
      if (const std::string* r = raw(4)) {
        std::vector<int32_t> v(un);
        std::memcpy(v.data(), r->data(), un * 4);
        c.i.assign(v.begin(), v.end());
      } else {
        typed(t.int32_data_size());
        c.i.assign(t.int32_data().begin(), t.int32_data().end());
      }
      break;
    default:
      fail(what, " has ONNX data type ", t.data_type(),
           "; pare imports float models (quantized ONNX graphs are not imported)");
  }
  return c;
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t int_attr(const onnx::NodeProto& n, const char* name, int64_t fallback) {
  const onnx::AttributeProto* a = attribute(n, name);
  return a ? a->i() : fallback;
}
float float_attr(const onnx::NodeProto& n, const char* name, float fallback) {
  const onnx::AttributeProto* a = attribute(n, name);
  return a ? a->f() : fallback;
}
std::vector<int64_t> ints_attr(const onnx::NodeProto& n, const char* name) {
  const onnx::AttributeProto* a = attribute(n, name);
  if (!a) return {};
  return {a->ints().begin(), a->ints().end()};
}
std::string string_attr(const onnx::NodeProto& n, const char* name) {
  const onnx::AttributeProto* a = attribute(n, name);
  return a ? a->s() : std::string();
}

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v) p *= d;
  return p;
}

// The sizes a model spec may hold (nn/spec.cc's limits: what pare reads back
// from the .pare file it writes of an import).
constexpr int64_t kMaxInputSize = int64_t{1} << 24, kMaxOut = int64_t{1} << 20, kMaxWindow = 1024;

// Whether a shape (without the batch) has at most nn::kMaxModelElements
// elements; every shape the import follows is checked, so no product of one
// overflows.
bool fits(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v)
    if (d < 0 || __builtin_mul_overflow(p, d, &p) || p > nn::kMaxModelElements) return false;
  return true;
}

std::string dims_str(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

// Reads the node walk's state: the spec being built and the weights by
// parameter name.
class Importer {
 public:
  Importer(const onnx::ModelProto& m, const std::string& source) : m_(m), source_(source) {}

  OnnxImport run() {
    const onnx::GraphProto& g = m_.graph();
    for (const auto& init : g.initializer()) consts_[init.name()] = read_constant(init, source_);
    find_input(g);
    if (g.output_size() != 1)
      fail(source_, ": the graph has ", g.output_size(), " outputs; pare imports one-output networks");
    for (int k = 0; k < g.node_size(); ++k) visit(g.node(k), k + 1 == g.node_size());
    if (cur_ != g.output(0).name())
      fail(source_, ": the graph's output \"", g.output(0).name(),
           "\" is not the end of its chain of layers (\"", cur_, "\")");
    if (spec_.layers.empty()) fail(source_, ": the graph has no layers pare imports");

    OnnxImport out;
    out.model = nn::Model::build(spec_, /*seed=*/0);
    for (nn::Parameter* p : out.model->parameters()) {
      auto it = weights_.find(p->name);
      PARE_CHECK(it != weights_.end(), "no imported value for ", p->name);
      PARE_CHECK(static_cast<int64_t>(it->second.size()) == p->numel(), p->name, " size");
      std::copy(it->second.begin(), it->second.end(), p->value().f32());
    }
    out.notes = std::move(notes_);
    return out;
  }

 private:
  [[noreturn]] void node_fail(const onnx::NodeProto& n, const std::string& why) {
    fail(source_, ": node \"", n.name(), "\" (", n.op_type(), "): ", why);
  }

  const Constant& constant(const onnx::NodeProto& n, int input) {
    if (n.input_size() <= input || n.input(input).empty())
      node_fail(n, "input " + std::to_string(input) + " is missing");
    auto it = consts_.find(n.input(input));
    if (it == consts_.end())
      node_fail(n, "input \"" + n.input(input) +
                       "\" is computed in the graph; pare imports it only as an initializer or Constant");
    return it->second;
  }

  void find_input(const onnx::GraphProto& g) {
    const onnx::ValueInfoProto* in = nullptr;
    for (const auto& v : g.input()) {
      if (consts_.count(v.name())) continue;  // IR < 4 lists initializers as inputs
      if (in) fail(source_, ": the graph has more than one data input (\"", in->name(), "\", \"", v.name(), "\")");
      in = &v;
    }
    if (!in) fail(source_, ": the graph has no data input");
    if (!in->type().has_tensor_type() || in->type().tensor_type().elem_type() != onnx::TensorProto::FLOAT)
      fail(source_, ": input \"", in->name(), "\" is not a float tensor");
    const onnx::TensorShapeProto& s = in->type().tensor_type().shape();
    if (s.dim_size() < 2 || s.dim_size() > 4)
      fail(source_, ": input \"", in->name(), "\" has ", s.dim_size(),
           " dims; pare imports (batch, features) or (batch, channels, height, width)");
    for (int d = 1; d < s.dim_size(); ++d) {
      if (!s.dim(d).has_dim_value() || s.dim(d).dim_value() <= 0)
        fail(source_, ": input \"", in->name(), "\" dim ", d, " has no fixed size");
      if (s.dim(d).dim_value() > kMaxInputSize)
        fail(source_, ": input \"", in->name(), "\" dim ", d, " is ", s.dim(d).dim_value(),
             "; pare's model specs take input sizes up to 2^24");
      spec_.input.push_back(s.dim(d).dim_value());
    }
    if (!fits(spec_.input))
      fail(source_, ": input \"", in->name(), "\" ", dims_str(spec_.input), " has more than 2^32 elements");
    if (spec_.input.size() == 2) fail(source_, ": input \"", in->name(), "\" is 3-D; pare reads 2-D or 4-D inputs");
    cur_ = in->name();
    shape_ = spec_.input;
    // The spec's name: the graph's, in the characters a model name may hold.
    const std::string name = nn::model_name_from(m_.graph().name());
    spec_.name = name.empty() ? "imported" : name;
  }

  void add_layer(nn::LayerSpec l) {
    spec_.layers.push_back(std::move(l));
    pending_matmul_ = false;
  }
  // The shape after a layer, refused past nn::kMaxModelElements.
  void set_shape(const onnx::NodeProto& n, std::vector<int64_t> shape) {
    if (!fits(shape)) node_fail(n, "its output " + dims_str(shape) + " has more than 2^32 elements");
    shape_ = std::move(shape);
  }
  std::string layer_name() const {
    return spec_.layers.back().type + std::to_string(spec_.layers.size());
  }

  void visit(const onnx::NodeProto& n, bool last) {
    const std::string& op = n.op_type();
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      node_fail(n, "operator domain \"" + n.domain() + "\" is not the standard one");
    if (op == "Constant") {
      const onnx::AttributeProto* v = attribute(n, "value");
      if (!v || !v->has_t()) node_fail(n, "only tensor constants are imported");
      onnx::TensorProto t = v->t();
      t.set_name(n.output(0));
      consts_[n.output(0)] = read_constant(t, source_);
      return;
    }
    if (shape_arithmetic(n)) return;
    if (n.input_size() < 1 || n.input(0) != cur_)
      node_fail(n, "its input \"" + (n.input_size() ? n.input(0) : std::string()) +
                       "\" is not the output of the layer before (\"" + cur_ +
                       "\"); pare imports chains of layers, without branches");
    if (n.output_size() < 1) node_fail(n, "no output");
    const std::string out = n.output(0);

    if (op == "Identity" || op == "Dropout") {
      if (op == "Dropout") notes_.push_back("skipped Dropout (identity at inference)");
    } else if (op == "Pad") {
      // torch.onnx.export puts a Pad of zeros before AveragePool.
      const Constant& pads = constant(n, 1);
      bool zeros = !pads.i.empty();
      for (int64_t p : pads.i) zeros = zeros && p == 0;
      if (!zeros) node_fail(n, "only a Pad of zeros is imported (pad in the Conv instead)");
    } else if (op == "Softmax" || op == "LogSoftmax") {
      if (!last) node_fail(n, "a softmax is imported only as the last node");
      notes_.push_back("dropped the final " + op + ": pare's model outputs the logits (same top-1 class)");
    } else if (op == "Sub" || op == "Div" || op == "Mul" || op == "Add") {
      arithmetic(n);
    } else if (op == "Gemm" || op == "MatMul") {
      linear(n);
    } else if (op == "Conv") {
      conv(n);
    } else if (op == "Relu" || op == "Sigmoid" || op == "Tanh") {
      add_layer({.type = op == "Relu" ? "relu" : op == "Sigmoid" ? "sigmoid" : "tanh"});
    } else if (op == "MaxPool" || op == "AveragePool") {
      pool(n);
    } else if (op == "Flatten") {
      if (int_attr(n, "axis", 1) != 1) node_fail(n, "only axis 1 (keep the batch) is imported");
      flatten();
    } else if (op == "Reshape") {
      const std::optional<std::vector<int64_t>> s = ints(n.input_size() > 1 ? n.input(1) : "");
      if (!s) node_fail(n, "the target shape is neither a constant nor computed from the input's shape");
      const bool two = s->size() == 2;
      if (!two || !((*s)[1] == -1 || (*s)[1] == product(shape_)))
        node_fail(n, "only a reshape to (batch, features) is imported, got shape " + shape_str(*s));
      flatten();
    } else {
      node_fail(n, "not imported; pare reads Gemm, MatMul, Add, Conv, Relu, Sigmoid, Tanh, MaxPool, "
                   "AveragePool, Flatten, Reshape, Softmax, Identity, Dropout, Constant and Pad (of zeros)");
    }
    cur_ = out;
  }

  // Integer vectors known at import: constants, and values computed from the
  // data's shape (kBatch for its batch size), as torch writes
  // x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
  static constexpr int64_t kBatch = INT64_MIN;
  std::optional<std::vector<int64_t>> ints(const std::string& name) const {
    if (auto it = shape_values_.find(name); it != shape_values_.end()) return it->second;
    if (auto it = consts_.find(name); it != consts_.end() && it->second.f.empty()) return it->second.i;
    return std::nullopt;
  }
  static std::string shape_str(const std::vector<int64_t>& v) {
    std::string s = "(";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + (v[i] == kBatch ? "batch" : std::to_string(v[i]));
    return s + ")";
  }

  // Evaluates a node of shape arithmetic off the chain of layers; false when
  // `n` is not one.
  bool shape_arithmetic(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    if (n.input_size() < 1 || n.output_size() < 1) return false;
    if (op == "Shape" && n.input(0) == cur_) {
      std::vector<int64_t> v{kBatch};
      v.insert(v.end(), shape_.begin(), shape_.end());
      shape_values_[n.output(0)] = v;
      return true;
    }
    if (op != "Gather" && op != "Unsqueeze" && op != "Squeeze" && op != "Cast" && op != "Concat") return false;
    std::vector<std::vector<int64_t>> in;
    for (const auto& name : n.input()) {
      if (name.empty()) continue;
      auto v = ints(name);
      if (!v) return false;
      in.push_back(std::move(*v));
    }
    std::vector<int64_t> out;
    if (op == "Gather") {
      if (in.size() != 2 || int_attr(n, "axis", 0) != 0) node_fail(n, "only Gather along axis 0 of a shape is imported");
      const auto size = static_cast<int64_t>(in[0].size());
      for (int64_t k : in[1]) {
        if (k < -size || k >= size) node_fail(n, "index " + std::to_string(k) + " is outside the shape");
        out.push_back(in[0][static_cast<size_t>(k < 0 ? k + size : k)]);
      }
    } else if (op == "Concat") {
      for (const auto& v : in) out.insert(out.end(), v.begin(), v.end());
    } else {
      out = in[0];  // Unsqueeze / Squeeze / Cast of a shape vector keep its values
    }
    if (out.size() > 8) node_fail(n, "a shape of more than 8 dims");
    shape_values_[n.output(0)] = std::move(out);
    return true;
  }

  void flatten() {
    if (shape_.size() > 1) {
      add_layer({.type = "flatten"});
      shape_ = {product(shape_)};
    }
  }

  void arithmetic(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    if (n.input_size() != 2) node_fail(n, "expects two inputs");
    if (op == "Add" && pending_matmul_) {
      const Constant& b = constant(n, 1);
      const std::string layer = layer_name();
      const int64_t outs = shape_[0];
      if (b.f.empty() || b.numel() != outs || b.dims.empty() || b.dims.back() != outs)
        node_fail(n, "a bias after MatMul must have " + std::to_string(outs) + " values, has " + dims_str(b.dims));
      spec_.layers.back().bias = true;
      weights_[layer + ".bias"] = b.f;
      pending_matmul_ = false;
      return;
    }
    if (!spec_.layers.empty())
      node_fail(n, "element-wise " + op + " is imported only as the input's standardisation "
                   "(before the first layer) or as a bias after MatMul");
    const Constant& c = constant(n, 1);
    if (c.f.size() != 1) node_fail(n, "the input's standardisation takes one scalar, got " + dims_str(c.dims));
    const float v = c.f[0];
    if (!std::isfinite(v)) node_fail(n, "the constant is not finite");
    // x -> (x - mean) / std: Sub then Div (or Mul by 1/std), each at most once.
    if (op == "Sub" && !have_mean_ && !have_std_) {
      spec_.input_mean = v;
      have_mean_ = true;
      if (spec_.input_std <= 0) spec_.input_std = 1;
    } else if (op == "Add" && !have_mean_ && !have_std_) {
      spec_.input_mean = -v;
      have_mean_ = true;
      if (spec_.input_std <= 0) spec_.input_std = 1;
    } else if ((op == "Div" || op == "Mul") && !have_std_) {
      const float stdev = op == "Div" ? v : 1.0f / v;
      if (!(stdev > 0) || !std::isfinite(stdev))
        node_fail(n, "the input's scale must be positive and finite");
      spec_.input_std = stdev;
      have_std_ = true;
    } else {
      node_fail(n, "the input's standardisation is (x - mean) / std: one subtraction, then one division");
    }
  }

  void linear(const onnx::NodeProto& n) {
    if (shape_.size() != 1) node_fail(n, "its input is " + dims_str(shape_) + "; flatten it first");
    const int64_t in = shape_[0];
    const Constant& b = constant(n, 1);
    if (b.f.empty() || b.dims.size() != 2) node_fail(n, "the weight must be a 2-D float initializer");
    const bool gemm = n.op_type() == "Gemm";
    if (gemm) {
      if (int_attr(n, "transA", 0) != 0) node_fail(n, "transA is not imported");
      if (float_attr(n, "alpha", 1.0f) != 1.0f || float_attr(n, "beta", 1.0f) != 1.0f)
        node_fail(n, "alpha and beta other than 1 are not imported");
    }
    const bool trans_b = gemm && int_attr(n, "transB", 0) != 0;
    const int64_t k = trans_b ? b.dims[1] : b.dims[0], outs = trans_b ? b.dims[0] : b.dims[1];
    if (k != in) node_fail(n, "the weight " + dims_str(b.dims) + " does not take " + std::to_string(in) + " inputs");
    if (outs > kMaxOut) node_fail(n, "more than 2^20 outputs (pare's limit)");
    // pare keeps a linear weight as (out, in).
    std::vector<float> w(static_cast<size_t>(outs * in));
    for (int64_t o = 0; o < outs; ++o)
      for (int64_t i = 0; i < in; ++i)
        w[static_cast<size_t>(o * in + i)] = trans_b ? b.f[static_cast<size_t>(o * in + i)]
                                                     : b.f[static_cast<size_t>(i * outs + o)];
    const bool has_bias = gemm && n.input_size() > 2 && !n.input(2).empty();
    add_layer({.type = "linear", .out = outs, .bias = has_bias});
    const std::string layer = layer_name();
    weights_[layer + ".weight"] = std::move(w);
    if (has_bias) {
      const Constant& c = constant(n, 2);
      if (c.f.empty() || c.numel() != outs)
        node_fail(n, "the bias must have " + std::to_string(outs) + " values, has " + dims_str(c.dims));
      weights_[layer + ".bias"] = c.f;
    }
    pending_matmul_ = !gemm;
    set_shape(n, {outs});
  }

  // Square windows, equal strides, the same padding on every side.
  struct Window {
    int64_t kernel, stride, pad;
  };
  Window window(const onnx::NodeProto& n, std::vector<int64_t> kernel, int64_t default_stride) {
    const std::string auto_pad = string_attr(n, "auto_pad");
    if (!auto_pad.empty() && auto_pad != "NOTSET" && auto_pad != "VALID")
      node_fail(n, "auto_pad " + auto_pad + " is not imported; export with explicit pads");
    if (kernel.size() != 2 || kernel[0] != kernel[1] || kernel[0] <= 0)
      node_fail(n, "only square 2-D windows are imported, got " + dims_str(kernel));
    if (kernel[0] > kMaxWindow) node_fail(n, "the window " + dims_str(kernel) + " is over 1024 (pare's limit)");
    std::vector<int64_t> strides = ints_attr(n, "strides"), pads = ints_attr(n, "pads"),
                         dil = ints_attr(n, "dilations");
    if (strides.empty()) strides = {default_stride, default_stride};
    if (pads.empty()) pads = {0, 0, 0, 0};
    if (strides.size() != 2 || strides[0] != strides[1] || strides[0] <= 0)
      node_fail(n, "only equal strides are imported, got " + dims_str(strides));
    if (pads.size() != 4 || pads[0] != pads[1] || pads[0] != pads[2] || pads[0] != pads[3] || pads[0] < 0)
      node_fail(n, "only the same padding on every side is imported, got " + dims_str(pads));
    for (int64_t d : dil)
      if (d != 1) node_fail(n, "dilations are not imported");
    if (strides[0] > kMaxWindow || pads[0] > kMaxWindow)
      node_fail(n, "strides and pads over 1024 are not imported (pare's limit)");
    return {kernel[0], strides[0], pads[0]};
  }

  void conv(const onnx::NodeProto& n) {
    if (shape_.size() != 3) node_fail(n, "its input is " + dims_str(shape_) + ", not (channels, height, width)");
    if (int_attr(n, "group", 1) != 1) node_fail(n, "grouped convolutions are not imported");
    const Constant& wt = constant(n, 1);
    if (wt.f.empty() || wt.dims.size() != 4) node_fail(n, "the weight must be a 4-D float initializer");
    if (wt.dims[0] > kMaxOut) node_fail(n, "more than 2^20 output channels (pare's limit)");
    if (wt.dims[1] != shape_[0])
      node_fail(n, "the weight " + dims_str(wt.dims) + " does not take " + std::to_string(shape_[0]) + " channels");
    std::vector<int64_t> kernel = ints_attr(n, "kernel_shape");
    if (kernel.empty()) kernel = {wt.dims[2], wt.dims[3]};
    if (kernel.size() != 2 || kernel[0] != wt.dims[2] || kernel[1] != wt.dims[3])
      node_fail(n, "kernel_shape " + dims_str(kernel) + " does not match the weight " + dims_str(wt.dims));
    const Window win = window(n, kernel, 1);
    const int64_t oh = (shape_[1] + 2 * win.pad - win.kernel) / win.stride + 1,
                  ow = (shape_[2] + 2 * win.pad - win.kernel) / win.stride + 1;
    if (shape_[1] + 2 * win.pad < win.kernel || shape_[2] + 2 * win.pad < win.kernel)
      node_fail(n, "the window does not fit the input " + dims_str(shape_));
    const bool has_bias = n.input_size() > 2 && !n.input(2).empty();
    add_layer({.type = "conv2d", .out = wt.dims[0], .kernel = win.kernel, .stride = win.stride,
               .pad = win.pad, .bias = has_bias});
    const std::string layer = layer_name();
    weights_[layer + ".weight"] = wt.f;
    if (has_bias) {
      const Constant& c = constant(n, 2);
      if (c.f.empty() || c.numel() != wt.dims[0])
        node_fail(n, "the bias must have " + std::to_string(wt.dims[0]) + " values, has " + dims_str(c.dims));
      weights_[layer + ".bias"] = c.f;
    }
    set_shape(n, {wt.dims[0], oh, ow});
  }

  void pool(const onnx::NodeProto& n) {
    if (shape_.size() != 3) node_fail(n, "its input is " + dims_str(shape_) + ", not (channels, height, width)");
    if (int_attr(n, "ceil_mode", 0) != 0) node_fail(n, "ceil_mode is not imported");
    if (int_attr(n, "storage_order", 0) != 0) node_fail(n, "storage_order 1 is not imported");
    if (n.output_size() > 1 && !n.output(1).empty()) node_fail(n, "the indices output is not imported");
    const Window win = window(n, ints_attr(n, "kernel_shape"), 1);
    if (win.pad != 0) node_fail(n, "padded pooling is not imported");
    if (shape_[1] < win.kernel || shape_[2] < win.kernel)
      node_fail(n, "the window does not fit the input " + dims_str(shape_));
    add_layer({.type = n.op_type() == "MaxPool" ? "maxpool" : "avgpool", .kernel = win.kernel,
               .stride = win.stride});
    shape_ = {shape_[0], (shape_[1] - win.kernel) / win.stride + 1, (shape_[2] - win.kernel) / win.stride + 1};
  }

  const onnx::ModelProto& m_;
  const std::string& source_;
  std::map<std::string, Constant> consts_;
  std::map<std::string, std::vector<float>> weights_;
  std::map<std::string, std::vector<int64_t>> shape_values_;
  nn::ModelSpec spec_;
  std::vector<int64_t> shape_;  // of cur_, without the batch
  std::string cur_;
  std::vector<std::string> notes_;
  bool pending_matmul_ = false;  // the last layer is a MatMul whose bias may follow as Add
  bool have_mean_ = false, have_std_ = false;
};

}  // namespace

OnnxImport from_onnx(std::string_view bytes, const std::string& source) {
  const onnx::ModelProto m = parse_model(bytes, source);
  // Before the checker, which would look for external data files on disk.
  for (const auto& t : m.graph().initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
      fail(source, ": initializer \"", t.name(),
           "\" keeps its data in an external file; pare imports self-contained ONNX files");
  for (const auto& n : m.graph().node())
    for (const auto& a : n.attribute())
      if (a.has_t() && (a.t().data_location() == onnx::TensorProto::EXTERNAL || a.t().external_data_size() > 0))
        fail(source, ": node \"", n.name(), "\" keeps a constant in an external file; pare imports self-contained ONNX files");
  run_checker(m, source);
  for (const auto& o : m.opset_import())
    if ((o.domain().empty() || o.domain() == "ai.onnx") && o.version() > 17)
      fail(source, ": opset ", o.version(), "; pare imports opset 17 and older");
  return Importer(m, source).run();
}

}  // namespace pare::io
