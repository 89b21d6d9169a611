#include "pare/codegen/program.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/codegen/runtime/pare_runtime.h"
#include "pare/io/int8_net.h"
#include "pare/io/pare_model.h"
#include "pare/kernels/quant.h"
#include "pare/nn/spec.h"

namespace pare::codegen {

using json = nlohmann::json;

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::dense: return "dense";
    case OpKind::csr: return "csr";
    case OpKind::conv2d: return "conv2d";
    case OpKind::maxpool: return "maxpool";
    case OpKind::avgpool: return "avgpool";
    case OpKind::relu: return "relu";
  }
  return "?";
}

int64_t Op::constant_bytes() const {
  return static_cast<int64_t>(weights.size() + codes.size() + lut.size() + 2 * row_ptr.size() + steps.size() +
                              4 * (bias.size() + mult.size()) + shift.size());
}
std::string kernel_name(const Op& op) {
  std::string name = op_kind_name(op.kind);
  if ((op.kind == OpKind::dense || op.kind == OpKind::csr) && op.bits < 8) name += "_codes";
  return name;
}

int64_t Program::constant_bytes() const {
  int64_t n = 0;
  for (const Op& op : ops) n += op.constant_bytes();
  return n;
}
int64_t Program::macs() const {
  int64_t n = 0;
  for (const Op& op : ops) n += op.macs;
  return n;
}

Grid grid_from_u8(float scale, int32_t zero_point_u8) { return {scale, zero_point_u8 - 128}; }

void fixed_point_multiplier(double m, int32_t* mult, int8_t* shift) {
  if (!(m >= 0) || !std::isfinite(m)) fail("requantization multiplier ", m, " is not a finite non-negative number");
  if (m == 0) {
    *mult = 0;
    *shift = 1;
    return;
  }
  int e = 0;
  const double f = std::frexp(m, &e);  // m = f * 2^e, f in [0.5, 1)
  auto q = static_cast<int64_t>(std::llround(f * 2147483648.0));
  if (q == (int64_t{1} << 31)) {
    q >>= 1;
    ++e;
  }
  int s = 31 - e;
  if (s < 1) fail("requantization multiplier ", m, " is too large (the grids are inconsistent)");
  if (s > 62) {  // tiny: keep the shift in range, dropping bits of mult (rounded)
    const int drop = s - 62;
    q = drop >= 63 ? 0 : (q + (int64_t{1} << (drop - 1))) >> drop;
    s = 62;
  }
  *mult = static_cast<int32_t>(q);
  *shift = static_cast<int8_t>(s);
}

namespace {

const format::Tensor* find_tensor(const format::File& file, const std::string& name) {
  for (const auto& t : file.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

// A weight layer's weights as int8 with per-output-channel scales, and, for
// a shared-weight (codebook) tensor, each position's code into `lut` (the
// centroids as int8 on one scale for the whole tensor; absent positions get
// the code of 0, a code added when the codebook has none).
struct Int8Weights {
  std::vector<int8_t> values;  // absent positions 0
  std::vector<float> scales;   // per output channel
  int bits = 0;                // codebook: bits per code; 0: plain s8
  std::vector<int32_t> codes;  // codebook: per position
  std::vector<int8_t> lut;
};

Int8Weights int8_weights(const format::File& file, const std::string& layer, const std::string& source) {
  const format::Tensor* t = find_tensor(file, layer + ".weight");
  if (!t) fail(source, ": no tensor ", layer, ".weight");
  Int8Weights w;
  const auto n = static_cast<size_t>(t->numel());
  w.values.assign(n, 0);
  const bool channel = t->dtype == format::DType::s8 && t->quant.kind == format::QuantKind::channel && t->quant.axis == 0;
  const bool codebook = t->dtype == format::DType::code && t->quant.kind == format::QuantKind::codebook;
  if (channel) {
    for (size_t i = 0; i < n; ++i)
      if (t->present.empty() || t->present[i]) w.values[i] = static_cast<int8_t>(t->values[i]);
    w.scales = t->quant.scales;
    return w;
  }
  if (!codebook)
    fail(source, ": ", layer, ".weight is ", format::dtype_name(t->dtype),
         ", not s8 per output channel or shared-weight codes; write the file with pare compress --int8 --calibrate "
         "(or --share-bits K --calibrate)");
  float top = 0;
  for (float c : t->quant.centroids) top = std::max(top, std::fabs(c));
  const float scale = top > 0 ? top / 127.0f : 1.0f;
  for (float c : t->quant.centroids)
    w.lut.push_back(static_cast<int8_t>(std::clamp(std::nearbyint(c / scale), -127.0f, 127.0f)));
  bool any_absent = false;
  for (size_t i = 0; i < n && !any_absent; ++i) any_absent = !t->present.empty() && !t->present[i];
  int32_t zero_code = -1;
  for (size_t j = 0; j < w.lut.size() && zero_code < 0; ++j)
    if (w.lut[j] == 0) zero_code = static_cast<int32_t>(j);
  if (any_absent && zero_code < 0) {
    zero_code = static_cast<int32_t>(w.lut.size());
    w.lut.push_back(0);
  }
  w.bits = 1;
  while ((size_t{1} << w.bits) < w.lut.size()) ++w.bits;
  w.codes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const bool present = t->present.empty() || t->present[i];
    w.codes[i] = present ? t->values[i] : zero_code;
    w.values[i] = w.lut[static_cast<size_t>(w.codes[i])];
  }
  w.scales.assign(static_cast<size_t>(t->dims[0]), scale);
  return w;
}

// Codes of `bits` each packed least significant bit first, plus the spare
// byte pare_code reads.
std::vector<uint8_t> pack_codes(const std::vector<int32_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * static_cast<size_t>(bits) + 7) / 8 + 1, 0);
  size_t bit = 0;
  for (int32_t c : codes)
    for (int b = 0; b < bits; ++b, ++bit)
      if ((c >> b) & 1) out[bit >> 3] = static_cast<uint8_t>(out[bit >> 3] | (1u << (bit & 7)));
  return out;
}

// A linear layer's weights (rows, cols) in the encoding whose constants take
// the fewest bytes among those `sparse` allows: dense or CSR (column steps of
// one byte), int8 values or codes.
void encode_linear(Op& op, const Int8Weights& w, const std::string& sparse) {
  const int64_t rows = op.rows, cols = op.c;
  std::vector<int8_t> kept;
  std::vector<int32_t> kept_codes;
  std::vector<uint16_t> row_ptr{0};
  std::vector<uint8_t> steps;
  bool csr_fits = true;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t prev = -1;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      if (w.values[i] == 0) continue;
      for (int64_t gap = c - prev; gap > 0;) {
        if (gap > 255) {
          steps.push_back(0);
          gap -= 255;
        } else {
          steps.push_back(static_cast<uint8_t>(gap));
          gap = 0;
        }
      }
      prev = c;
      kept.push_back(w.values[i]);
      if (w.bits) kept_codes.push_back(w.codes[i]);
    }
    csr_fits = csr_fits && kept.size() <= 65535;
    row_ptr.push_back(static_cast<uint16_t>(std::min<size_t>(kept.size(), 65535)));
  }
  struct Choice {
    bool csr, codes;
    int64_t bytes;
  };
  std::vector<Choice> choices;
  const int64_t csr_index = 2 * (rows + 1) + static_cast<int64_t>(steps.size());
  const auto code_bytes = [&](int64_t n) { return (n * w.bits + 7) / 8 + 1 + static_cast<int64_t>(w.lut.size()); };
  if (sparse != "on") choices.push_back({false, false, rows * cols});
  if (sparse != "off" && csr_fits) choices.push_back({true, false, csr_index + static_cast<int64_t>(kept.size())});
  if (w.bits && sparse != "on") choices.push_back({false, true, code_bytes(rows * cols)});
  if (w.bits && sparse != "off" && csr_fits)
    choices.push_back({true, true, csr_index + code_bytes(static_cast<int64_t>(kept.size()))});
  if (choices.empty())
    fail(op.layer, " has ", kept.size(), " nonzero weights; the CSR kernel takes at most 65535 (use --sparse auto or off)");
  const Choice best = *std::min_element(choices.begin(), choices.end(),
                                        [](const Choice& a, const Choice& b) { return a.bytes < b.bytes; });
  op.kind = best.csr ? OpKind::csr : OpKind::dense;
  op.macs = best.csr ? static_cast<int64_t>(kept.size()) : rows * cols;
  if (best.csr) {
    op.row_ptr = std::move(row_ptr);
    op.steps = std::move(steps);
  }
  if (best.codes) {
    op.bits = w.bits;
    op.lut = w.lut;
    op.codes = pack_codes(best.csr ? kept_codes : w.codes, w.bits);
    op.weights.clear();
  } else {
    op.weights = best.csr ? std::move(kept) : w.values;
  }
}

std::vector<float> float_tensor(const format::File& file, const std::string& name) {
  const format::Tensor* t = find_tensor(file, name);
  if (!t) return {};
  std::vector<float> v(static_cast<size_t>(t->numel()), 0.0f);
  for (size_t i = 0; i < v.size(); ++i)
    if (t->present.empty() || t->present[i]) v[i] = io::real_value(*t, static_cast<int64_t>(i));
  return v;
}

// Per output channel: the bias in accumulator units, and the fixed-point
// multiplier from accumulator units to the output grid.
void requantization(Op& op, const std::vector<float>& w_scales, const std::vector<float>& bias, float x_scale,
                    const Grid& y) {
  const auto n = static_cast<size_t>(op.rows);
  op.mult.resize(n);
  op.shift.resize(n);
  if (!bias.empty()) op.bias.resize(n);
  for (size_t j = 0; j < n; ++j) {
    // A channel whose weights are all zero (scale 0) keeps only its bias:
    // any unit works, take the input's.
    const double unit = static_cast<double>(x_scale) * (w_scales[j] > 0 ? w_scales[j] : 1.0f);
    fixed_point_multiplier(unit / y.scale, &op.mult[j], &op.shift[j]);
    if (!bias.empty()) {
      const double b = std::nearbyint(bias[j] / unit);
      op.bias[j] = static_cast<int32_t>(std::clamp(b, -2147483648.0, 2147483647.0));
    }
  }
}

}  // namespace

Program plan(const format::File& file, const std::string& source, const PlanOptions& options) {
  if (options.sparse != "auto" && options.sparse != "on" && options.sparse != "off")
    fail("--sparse ", options.sparse, ": expected auto, on or off");
  const auto model = io::from_file(file, source);
  const nn::ModelSpec& spec = model->spec();
  // Each spec layer's input shape, then the output (Model::layer_shapes()
  // counts a ReLU fused into a convolution as part of it).
  std::vector<std::vector<int64_t>> shapes{spec.input};
  for (const nn::LayerSpec& l : spec.layers) {
    std::vector<int64_t> s = shapes.back();
    if (l.type == "linear") {
      s = {l.out};
    } else if (l.type == "conv2d") {
      const int64_t st = l.stride ? l.stride : 1;
      s = {l.out, (s[1] + 2 * l.pad - l.kernel) / st + 1, (s[2] + 2 * l.pad - l.kernel) / st + 1};
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      const int64_t st = l.stride ? l.stride : l.kernel;
      s = {s[0], (s[1] - l.kernel) / st + 1, (s[2] - l.kernel) / st + 1};
    } else if (l.type == "flatten") {
      int64_t n = 1;
      for (int64_t d : s) n *= d;
      s = {n};
    }
    shapes.push_back(s);
  }
  PARE_CHECK(shapes.back() == model->layer_shapes().back(), "codegen: the spec's output shape");
  json acts = json::object();
  if (!file.meta_json.empty()) {
    const json meta = json::parse(file.meta_json, nullptr, false);
    if (meta.is_object() && meta.contains("activations") && meta["activations"].is_object())
      acts = meta["activations"];
  }
  if (acts.empty())
    fail(source, ": META has no \"activations\" (write the file with pare compress --int8 --calibrate)");
  const io::ActivationGrids grids = io::grids_from_json(acts, source);
  auto grid_of = [&](const std::string& name) -> Grid {
    auto it = grids.find(name);
    if (it == grids.end()) fail(source, ": META activations has no grid for ", name);
    return grid_from_u8(it->second.scale, it->second.zero_point);
  };

  Program p;
  p.name = spec.name;
  p.input_shape = spec.input;
  p.input_size = 1;
  for (int64_t d : spec.input) p.input_size *= d;
  p.input_mean = spec.input_mean;
  p.input_std = spec.input_std;
  p.binary_output = spec.loss == "bce_with_logits";
  if (options.output) {
    p.output = *options.output;
  } else if (grids.count("output")) {
    p.output = grid_of("output");
  } else {
    fail(source, ": no grid for the network's output: calibrate it (pare export --target c --data ...)");
  }

  // Weight layers in order: each one's output goes onto the next one's input grid.
  std::vector<size_t> weight_layers;
  for (size_t i = 0; i < spec.layers.size(); ++i)
    if (spec.layers[i].type == "linear" || spec.layers[i].type == "conv2d") weight_layers.push_back(i);
  if (weight_layers.empty()) fail(source, ": the network has no linear or conv2d layer");

  // The grid the tensor after spec layer i is on until the next weight layer
  // takes it: that layer's input grid (or the output's). A weight layer with
  // an average pool before the next one outputs on a grid of its own instead
  // (META "<layer>.output", else the next grid widened by the window's area,
  // which cannot saturate since a mean never exceeds the values it averages),
  // and the pool requantizes onto the next grid.
  auto next_grid = [&](size_t i) -> Grid {
    const auto next = std::find_if(weight_layers.begin(), weight_layers.end(), [&](size_t w) { return w > i; });
    return next == weight_layers.end() ? p.output : grid_of(spec.layers[*next].type + std::to_string(*next + 1));
  };
  auto avgpool_before_next_weight = [&](size_t i) -> const nn::LayerSpec* {
    for (size_t j = i + 1; j < spec.layers.size(); ++j) {
      if (spec.layers[j].type == "linear" || spec.layers[j].type == "conv2d") return nullptr;
      if (spec.layers[j].type == "avgpool") return &spec.layers[j];
    }
    return nullptr;
  };
  bool have_grid = false;  // the current tensor is int8 on some grid
  Grid cur;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const nn::LayerSpec& l = spec.layers[i];
    const std::string layer = l.type + std::to_string(i + 1);
    const std::vector<int64_t>& in = shapes[i];
    const std::vector<int64_t>& out = shapes[i + 1];
    int64_t in_n = 1, out_n = 1;
    for (int64_t d : in) in_n *= d;
    for (int64_t d : out) out_n *= d;
    if (l.type == "flatten" || l.type == "dropout") continue;
    if (l.type == "linear" || l.type == "conv2d") {
      const Grid x = grid_of(layer);
      if (!have_grid) p.input = x;
      have_grid = true;
      Grid y = next_grid(i);
      if (const nn::LayerSpec* pool = avgpool_before_next_weight(i)) {
        if (grids.count(layer + ".output")) {
          y = grid_of(layer + ".output");
        } else {
          y.scale *= static_cast<float>(pool->kernel * pool->kernel);
        }
      }
      cur = y;
      Op op;
      op.layer = layer;
      op.x_zp = x.zero_point;
      op.y_zp = y.zero_point;
      const bool relu_next = i + 1 < spec.layers.size() && spec.layers[i + 1].type == "relu";
      op.y_min = relu_next ? y.zero_point : -128;
      const Int8Weights w = int8_weights(file, layer, source);
      const std::vector<float> bias = float_tensor(file, layer + ".bias");
      int64_t nnz = 0;
      for (int8_t v : w.values) nnz += v != 0;
      if (l.type == "linear") {
        op.rows = static_cast<int32_t>(l.out);
        op.c = static_cast<int32_t>(in_n);
        encode_linear(op, w, options.sparse);
      } else {
        op.kind = OpKind::conv2d;
        op.weights = w.values;
        op.c = static_cast<int32_t>(in[0]);
        op.h = static_cast<int32_t>(in[1]);
        op.w = static_cast<int32_t>(in[2]);
        op.rows = static_cast<int32_t>(l.out);
        op.k = static_cast<int32_t>(l.kernel);
        op.stride = static_cast<int32_t>(l.stride ? l.stride : 1);
        op.pad = static_cast<int32_t>(l.pad);
        op.circular = l.circular;
        if (op.circular && (op.stride != 1 || 2 * op.pad != op.k - 1))
          fail(source, ": ", layer, ": circular padding is exported for stride 1 and pad (kernel - 1) / 2");
        op.macs = (out_n / op.rows) * nnz;  // every output position uses each kept weight (zero padding aside)
      }
      requantization(op, w.scales, bias, x.scale, y);
      op.in_bytes = in_n;
      op.out_bytes = out_n;
      if (relu_next) ++i;  // fused
      p.ops.push_back(std::move(op));
      continue;
    }
    if (!have_grid)
      fail(source, ": layer ", layer, " (", l.type, ") comes before the first weight layer; "
           "the integer program starts at a linear or conv2d layer");
    if (l.type == "relu") {
      Op op;
      op.kind = OpKind::relu;
      op.layer = layer;
      op.c = static_cast<int32_t>(in_n);
      op.y_zp = cur.zero_point;
      op.in_bytes = op.out_bytes = in_n;
      p.ops.push_back(std::move(op));
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      Op op;
      op.kind = l.type == "maxpool" ? OpKind::maxpool : OpKind::avgpool;
      op.layer = layer;
      op.c = static_cast<int32_t>(in[0]);
      op.h = static_cast<int32_t>(in[1]);
      op.w = static_cast<int32_t>(in[2]);
      op.k = static_cast<int32_t>(l.kernel);
      op.stride = static_cast<int32_t>(l.stride ? l.stride : l.kernel);
      op.in_bytes = in_n;
      op.out_bytes = out_n;
      if (op.kind == OpKind::avgpool) {
        // The window's sum of (q - zero point) onto the next grid: a real
        // multiplier of in_scale / (k * k * out_scale).
        const Grid y = next_grid(i);
        op.x_zp = cur.zero_point;
        op.y_zp = y.zero_point;
        op.mult.resize(1);
        op.shift.resize(1);
        fixed_point_multiplier(static_cast<double>(cur.scale) / (static_cast<double>(op.k) * op.k * y.scale),
                               &op.mult[0], &op.shift[0]);
        cur = y;
      }
      p.ops.push_back(std::move(op));
    } else if ((l.type == "sigmoid" || l.type == "tanh") && i + 1 == spec.layers.size()) {
      continue;  // monotone: the output stays the logits, the decision is the same
    } else {
      fail(source, ": layer ", layer, " (", l.type, ") has no integer form",
           l.type == "sigmoid" || l.type == "tanh" ? " except as the last layer" : "");
    }
  }
  p.output_size = 1;
  for (int64_t d : shapes.back()) p.output_size *= d;

  // Arena: the first op reads the model's input, the last writes its output;
  // in between, outputs alternate between the low and the high end. A ReLU
  // works in place (unless it is the last op, which writes the output).
  const size_t n = p.ops.size();
  std::vector<bool> high(n, false);
  bool side_high = false;
  for (size_t k = 0; k + 1 < n; ++k) {
    const bool in_place = p.ops[k].kind == OpKind::relu && k > 0;
    if (in_place) {
      high[k] = high[k - 1];
    } else {
      high[k] = side_high;
      side_high = !side_high;
    }
  }
  int64_t arena = 0;
  for (size_t k = 0; k < n; ++k) {
    const int64_t in = k > 0 ? p.ops[k].in_bytes : 0;
    const int64_t out = k + 1 < n ? p.ops[k].out_bytes : 0;
    const bool in_place = p.ops[k].kind == OpKind::relu && k > 0 && k + 1 < n;
    arena = std::max(arena, in_place ? in : in + out);
  }
  p.arena_bytes = arena;
  for (size_t k = 0; k < n; ++k) {
    Op& op = p.ops[k];
    if (k > 0) op.in_offset = p.ops[k - 1].out_offset;
    if (k + 1 < n) op.out_offset = high[k] ? arena - op.out_bytes : 0;
  }
  return p;
}

io::ActivationGrid calibrate_output(nn::Model& model, const float* x, int64_t samples,
                                    const io::CalibrationOptions& options) {
  if (samples < 1) fail("calibrating the output needs at least one sample");
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  std::vector<int64_t> dims{samples};
  dims.insert(dims.end(), model.spec().input.begin(), model.spec().input.end());
  Tensor in = Tensor::empty(Shape(std::span<const int64_t>(dims)));
  std::copy(x, x + in.numel(), in.f32());
  const autograd::Var out = model.forward(autograd::Var(in), ctx);
  const auto [lo, hi] = io::activation_range(out.value().f32(), out.numel(), options);
  return io::grid_for_range(lo, hi);
}

void run(const Program& p, const int8_t* input, int8_t* output, int8_t* arena) {
  for (const Op& op : p.ops) {
    const int8_t* x = op.in_offset < 0 ? input : arena + op.in_offset;
    int8_t* y = op.out_offset < 0 ? output : arena + op.out_offset;
    const pare_out_grid g{op.y_zp, op.y_min, op.y_max};
    const int32_t* bias = op.bias.empty() ? nullptr : op.bias.data();
    switch (op.kind) {
      case OpKind::dense:
        if (op.bits < 8)
          pare_dense_codes_s8(x, op.x_zp, op.codes.data(), op.bits, op.lut.data(), bias, op.mult.data(),
                              op.shift.data(), g, op.rows, op.c, y);
        else
          pare_dense_s8(x, op.x_zp, op.weights.data(), bias, op.mult.data(), op.shift.data(), g, op.rows, op.c, y);
        break;
      case OpKind::csr:
        if (op.bits < 8)
          pare_csr_codes_s8(x, op.x_zp, op.row_ptr.data(), op.steps.data(), op.codes.data(), op.bits, op.lut.data(),
                            bias, op.mult.data(), op.shift.data(), g, op.rows, y);
        else
          pare_csr_s8(x, op.x_zp, op.row_ptr.data(), op.steps.data(), op.weights.data(), bias, op.mult.data(),
                      op.shift.data(), g, op.rows, y);
        break;
      case OpKind::conv2d:
        pare_conv2d_s8(x, op.x_zp, op.c, op.h, op.w, op.weights.data(), bias, op.mult.data(), op.shift.data(), g,
                       op.rows, op.k, op.stride, op.pad, op.circular ? 1 : 0, y);
        break;
      case OpKind::maxpool: pare_maxpool_s8(x, op.c, op.h, op.w, op.k, op.stride, y); break;
      case OpKind::avgpool:
        pare_avgpool_s8(x, op.x_zp, op.c, op.h, op.w, op.k, op.stride, op.mult[0], op.shift[0], op.y_zp, y);
        break;
      case OpKind::relu: pare_relu_s8(x, op.y_zp, op.c, y); break;
    }
  }
}

void run_batch(const Program& p, int64_t n, const float* x, int8_t* out) {
  std::vector<int8_t> q(static_cast<size_t>(p.input_size));
  std::vector<int8_t> arena(static_cast<size_t>(std::max<int64_t>(p.arena_bytes, 1)));
  for (int64_t i = 0; i < n; ++i) {
    quantize_input(p, x + i * p.input_size, q.data(), /*standardized=*/true);
    run(p, q.data(), out + i * p.output_size, arena.data());
  }
}

void quantize_input(const Program& p, const float* x, int8_t* q, bool standardized) {
  if (standardized || p.input_std <= 0) {
    kernels::quantize_per_tensor_s8(p.input_size, q, x, p.input.scale, p.input.zero_point);
    return;
  }
  std::vector<float> v(x, x + p.input_size);
  for (float& e : v) e = (e - p.input_mean) / p.input_std;
  kernels::quantize_per_tensor_s8(p.input_size, q, v.data(), p.input.scale, p.input.zero_point);
}

}  // namespace pare::codegen
