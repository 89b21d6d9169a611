// Integer inference from a .pare file, its calibration and the fake-quantized
// model it reproduces (see int8_net.h).
#include "pare/io/int8_net.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "pare/autograd/ops.h"
#include "pare/base/error.h"
#include "pare/base/json_number.h"
#include "pare/kernels/kernels.h"
#include "pare/kernels/quant.h"
#include "pare/tensor/ops.h"

namespace pare::io {

using json = nlohmann::json;
using autograd::Var;

namespace {

bool is_supported(const std::string& type) {
  return type == "linear" || type == "conv2d" || type == "relu" || type == "sigmoid" ||
         type == "tanh" || type == "maxpool" || type == "avgpool" || type == "flatten" ||
         type == "dropout";
}

const char* kSupported = "linear, conv2d, relu, sigmoid, tanh, maxpool, avgpool, flatten, dropout";

// The spec's layers on x with the model's parameters, as nn::Model runs them;
// before each weight layer `input(name, x)` may replace its input and
// `weight(w)` its weight (calibration records, fake quantization rounds).
Var walk(const nn::Model& model, const Var& x, nn::ForwardContext& ctx,
         const std::function<Var(const std::string&, const Var&)>& input,
         const std::function<Var(const Var&)>& weight) {
  // Any input of the right size per sample (a flat image for an MLP, say),
  // viewed as (B, input...) as nn::Model::forward does.
  std::vector<int64_t> dims{x.shape().ndim() > 0 ? x.dim(0) : 0};
  for (int64_t d : model.spec().input) dims.push_back(d);
  Var h = x.shape() == Shape(dims) ? x : autograd::reshape(x, Shape(dims));
  int index = 0;
  for (const nn::LayerSpec& l : model.spec().layers) {
    const std::string name = l.type + std::to_string(++index);
    if (!is_supported(l.type))
      fail("int8: layer ", name, " (", l.type, ") is not supported; integer inference runs ",
           kSupported);
    if (l.type == "linear" || l.type == "conv2d") {
      const nn::Parameter* w = model.find(name + ".weight");
      const nn::Parameter* b = l.bias ? model.find(name + ".bias") : nullptr;
      PARE_CHECK(w != nullptr, "int8 walk: no parameter ", name, ".weight");
      const Var xin = input(name, h);
      const Var win = weight(ctx.var(*w));
      const Var bias = b ? ctx.var(*b) : Var();
      if (l.type == "linear")
        h = autograd::linear(xin, win, bias);
      else
        h = autograd::conv2d(
            xin, win, bias,
            {.stride = l.stride ? l.stride : 1, .pad = l.pad, .circular = l.circular});
    } else if (l.type == "relu") {
      h = autograd::relu(h);
    } else if (l.type == "sigmoid") {
      h = autograd::sigmoid(h);
    } else if (l.type == "tanh") {
      h = autograd::tanh(h);
    } else if (l.type == "maxpool") {
      h = autograd::max_pool2d(h, l.kernel, l.stride);
    } else if (l.type == "avgpool") {
      h = autograd::avg_pool2d(h, l.kernel, l.stride);
    } else if (l.type == "flatten") {
      h = autograd::flatten(h);
    } else if (l.type == "dropout") {
      if (ctx.training && ctx.rng) h = autograd::dropout(h, l.p, *ctx.rng, true);
    }
  }
  return h;
}

Var identity(const Var& v) { return v; }

// Below this fraction of weights kept a convolution runs its CSR product.
// LeNet-5's convolutions (one image, 1 thread): dense over quads 4x fewer
// instructions per weight than CSR, so CSR wins only when very sparse.
constexpr double kConvSparseBelow = 0.25;

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

}  // namespace

void CalibrationOptions::validate() const {
  if (method != "minmax" && method != "percentile")
    fail("--calibration ", method, ": choose minmax or percentile");
  if (!(percentile > 0.0 && percentile <= 100.0))
    fail("--percentile ", percentile, ": must be in (0, 100], e.g. 99.99");
}

ActivationGrid grid_for_range(float lo, float hi) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  ActivationGrid g;
  g.min = lo;
  g.max = hi;
  g.scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
  g.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / g.scale), 0.0f, 255.0f));
  return g;
}

std::pair<float, float> activation_range(const float* x, int64_t n,
                                         const CalibrationOptions& options) {
  options.validate();
  PARE_CHECK(n >= 1, "activation_range: no values");
  if (options.method == "minmax" || options.percentile == 100.0) {
    const auto [lo, hi] = std::minmax_element(x, x + n);
    return {*lo, *hi};
  }
  // The P-th percentile is the value of rank ceil(P/100 * n) (1-based), the
  // low one of rank floor((100 - P)/100 * n) + 1: each tail keeps the same
  // count of values beyond the range.
  std::vector<float> v(x, x + n);
  const double tail = (100.0 - options.percentile) / 100.0 * static_cast<double>(n);
  const int64_t cut = std::min<int64_t>(static_cast<int64_t>(std::floor(tail)), n - 1);
  auto at = [&](int64_t rank) {
    std::nth_element(v.begin(), v.begin() + rank, v.end());
    return v[static_cast<size_t>(rank)];
  };
  const float hi = at(n - 1 - cut);
  const float lo = at(cut);
  return {lo, hi};
}

std::vector<std::string> quantized_layers(const nn::ModelSpec& spec) {
  std::vector<std::string> out;
  int index = 0;
  for (const nn::LayerSpec& l : spec.layers) {
    ++index;
    if (l.type == "linear" || l.type == "conv2d") out.push_back(l.type + std::to_string(index));
  }
  return out;
}

json calibrate_activations(const nn::Model& model, const float* x, int64_t samples,
                           const CalibrationOptions& options) {
  options.validate();
  if (samples < 1) fail("int8 calibration: no samples");
  std::vector<int64_t> shape{samples};
  for (int64_t d : model.layer_shapes()[0]) shape.push_back(d);
  Tensor input = Tensor::empty(Shape(shape));
  std::memcpy(input.f32(), x, static_cast<size_t>(input.numel()) * sizeof(float));
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  ActivationGrids grids;
  walk(
      model, Var(input), ctx,
      [&](const std::string& name, const Var& h) {
        const auto [lo, hi] = activation_range(h.value().f32(), h.numel(), options);
        grids[name] = grid_for_range(lo, hi);
        return h;
      },
      identity);
  json method{{"method", options.method}};
  if (options.method == "percentile") method["percentile"] = options.percentile;
  return grids_to_json(grids, method);
}

ActivationGrids grids_from_json(const json& activations, const std::string& source) {
  ActivationGrids out;
  if (!activations.is_object()) fail(source, ": META \"activations\" is not an object");
  for (const auto& [name, g] : activations.items()) {
    if (!g.is_object()) continue;  // "method", "percentile"
    if (!g.contains("scale") || !g["scale"].is_number() || !g.contains("zero_point") ||
        !g["zero_point"].is_number_integer())
      fail(source, ": META: the activation grid of ", name, " lacks a scale or zero_point");
    if ((g.contains("min") && !g["min"].is_number()) || (g.contains("max") && !g["max"].is_number()))
      fail(source, ": META: the activation grid of ", name, " has a min or max that is not a number");
    // The zero point checked as read, before it narrows (4294967296 is not 0).
    const json& zp = g["zero_point"];
    ActivationGrid grid;
    grid.scale = g["scale"].get<float>();
    if (!(grid.scale > 0 && std::isfinite(grid.scale)) || !is_whole_number(zp, 0, 255))
      fail(source, ": META: the activation grid of ", name,
           " is not a u8 grid (scale > 0, zero point 0..255)");
    grid.zero_point = zp.get<int32_t>();
    grid.min = g.value("min", 0.0f);
    grid.max = g.value("max", 0.0f);
    out[name] = grid;
  }
  return out;
}

json grids_to_json(const ActivationGrids& grids, const json& method) {
  json out = method.is_object() ? method : json::object();
  for (const auto& [name, g] : grids)
    out[name] = {{"scale", g.scale}, {"zero_point", g.zero_point}, {"min", g.min}, {"max", g.max}};
  return out;
}

// ---- FakeQuantModel ------------------------------------------------------------------------

FakeQuantModel::FakeQuantModel(nn::Model& model, ActivationGrids grids, float ema)
    : model_(model), grids_(std::move(grids)), ema_(ema) {
  if (!(ema >= 0.0f && ema < 1.0f)) fail("--qat-ema ", ema, ": must be in [0, 1)");
  for (const std::string& name : quantized_layers(model.spec()))
    if (!grids_.count(name)) fail("fake quantization: no activation grid for layer ", name);
}

Var FakeQuantModel::forward(const Var& x, nn::ForwardContext& ctx) {
  return walk(
      model_, x, ctx,
      [&](const std::string& name, const Var& h) {
        ActivationGrid& g = grids_.at(name);
        if (ctx.training && ema_ > 0.0f) {
          const auto [lo, hi] = std::minmax_element(h.value().f32(), h.value().f32() + h.numel());
          g = grid_for_range((1.0f - ema_) * g.min + ema_ * *lo,
                             (1.0f - ema_) * g.max + ema_ * *hi);
        }
        return autograd::fake_quant_u8(h, g.scale, g.zero_point);
      },
      [](const Var& w) { return autograd::fake_quant_weight_s8(w); });
}

// ---- Int8Net --------------------------------------------------------------------------------

Int8Net Int8Net::from_file(const format::File& file, const std::string& source) {
  const nn::ModelSpec spec = nn::parse_model_spec(file.spec_json, source + ": SPEC");
  // The spec's shapes checked (none past nn::kMaxModelElements) before the
  // sizes below are multiplied out.
  nn::parameter_count(spec);
  json meta = file.meta_json.empty() ? json::object() : json::parse(file.meta_json);
  if (!meta.contains("activations") || !meta["activations"].is_object())
    fail(source,
         ": META has no \"activations\" (write the file with pare compress --int8 --calibrate)");
  const ActivationGrids grids = grids_from_json(meta["activations"], source);
  std::map<std::string, const format::Tensor*> tensors;
  for (const format::Tensor& t : file.tensors) tensors[t.name] = &t;
  Int8Net net;
  std::vector<int64_t> shape = spec.input;  // of one sample
  int64_t width = 1;
  for (int64_t d : shape) width *= d;
  net.inputs_ = width;
  int index = 0;
  for (const nn::LayerSpec& l : spec.layers) {
    const std::string name = l.type + std::to_string(++index);
    if (!is_supported(l.type))
      fail(source, ": layer ", name, " (", l.type, "): integer inference runs ", kSupported);
    Layer layer;
    if (l.type == "relu" || l.type == "sigmoid" || l.type == "tanh") {
      layer.kind = l.type == "relu" ? Kind::relu : l.type == "sigmoid" ? Kind::sigmoid : Kind::tanh;
      net.layers_.push_back(layer);
      continue;
    }
    if (l.type == "flatten") {
      shape = {width};
      continue;
    }
    if (l.type == "dropout") continue;  // identity in inference
    if (l.type == "maxpool" || l.type == "avgpool") {
      if (shape.size() != 3) fail(source, ": layer ", name, " needs a (C, H, W) input");
      layer.kind = l.type == "maxpool" ? Kind::maxpool : Kind::avgpool;
      layer.pool = {.c = shape[0],
                    .h = shape[1],
                    .w = shape[2],
                    .k = l.kernel,
                    .stride = l.stride ? l.stride : l.kernel};
      if (l.kernel < 1 || shape[1] < l.kernel || shape[2] < l.kernel)
        fail(source, ": layer ", name, ": window ", l.kernel, " does not fit its input");
      shape = {shape[0], layer.pool.out_h(), layer.pool.out_w()};
      width = shape[0] * shape[1] * shape[2];
      net.layers_.push_back(layer);
      continue;
    }
    // linear or conv2d
    const bool conv = l.type == "conv2d";
    layer.kind = conv ? Kind::conv : Kind::linear;
    auto wt = tensors.find(name + ".weight");
    if (wt == tensors.end()) fail(source, ": TTAB: no tensor ", name, ".weight");
    const format::Tensor& w = *wt->second;
    std::vector<int64_t> want;
    if (conv) {
      if (shape.size() != 3) fail(source, ": layer ", name, " needs a (C, H, W) input");
      layer.conv = {.c = shape[0],
                    .h = shape[1],
                    .w = shape[2],
                    .kh = l.kernel,
                    .kw = l.kernel,
                    .stride = l.stride ? l.stride : 1,
                    .pad = l.pad,
                    .circular = l.circular};
      if (l.kernel < 1 || layer.conv.out_h() < 1 || layer.conv.out_w() < 1)
        fail(source, ": layer ", name, ": kernel ", l.kernel, " does not fit its input");
      want = {l.out, shape[0], l.kernel, l.kernel};
    } else {
      if (shape.size() != 1)
        fail(source, ": layer ", name, " needs a flat input (a flatten layer before it)");
      want = {l.out, width};
    }
    if (w.dtype != format::DType::s8 || w.quant.kind != format::QuantKind::channel ||
        w.quant.axis != 0 || w.dims != want)
      fail(source, ": TTAB: ", w.name, " is not an s8 per-channel ", dims_str(want),
           " weight (write it with pare compress --int8)");
    auto g = grids.find(name);
    if (g == grids.end()) fail(source, ": META: no activation grid for ", name);
    layer.rows = l.out;
    layer.cols = w.numel() / l.out;
    layer.x_scale = g->second.scale;
    layer.x_zero_point = g->second.zero_point;
    layer.w_scales = w.quant.scales;
    std::vector<int8_t> dense(w.values.size());
    std::memcpy(dense.data(), w.values.data(), dense.size());
    const int64_t kept = w.present_count();
    // Sparse where it is sparse: below a third of the weights the CSR product
    // does less work than the dense one (kernels/quant.h's benchmarks). A
    // convolution's dense product takes four taps per instruction
    // (qgemm_s8u8k4_s32), its CSR product one, so it goes sparse only below
    // kConvSparseBelow of its weights.
    layer.sparse = conv ? static_cast<double>(kept) <
                              kConvSparseBelow * static_cast<double>(layer.rows * layer.cols)
                        : kept * 3 < layer.rows * layer.cols;
    layer.row_sums.resize(static_cast<size_t>(layer.rows));
    if (layer.sparse) {
      std::vector<float> mask(static_cast<size_t>(layer.rows * layer.cols), 1.0f);
      for (size_t i = 0; i < mask.size() && !w.present.empty(); ++i)
        mask[i] = w.present[i] ? 1.0f : 0.0f;
      const int64_t nnz = kernels::csr_nnz_f32(layer.rows, layer.cols, mask.data(), layer.cols);
      layer.row_ptr.resize(static_cast<size_t>(layer.rows + 1));
      layer.col_idx.resize(static_cast<size_t>(nnz));
      layer.w.resize(static_cast<size_t>(nnz));
      kernels::csr_from_dense_s8(layer.rows, layer.cols, layer.row_ptr.data(), layer.col_idx.data(),
                                 layer.w.data(), dense.data(), layer.cols, mask.data(), layer.cols);
      const kernels::CsrS8 csr{layer.rows, layer.cols, layer.row_ptr.data(), layer.col_idx.data(),
                               layer.w.data()};
      kernels::csr_row_sums_s8(layer.row_sums.data(), csr);
    } else {
      for (size_t i = 0; i < dense.size() && !w.present.empty(); ++i)
        if (!w.present[i]) dense[i] = 0;
      layer.w = std::move(dense);
      kernels::sum_rows_s8(layer.rows, layer.cols, layer.row_sums.data(), layer.w.data(),
                           layer.cols);
      if (conv) {  // rows padded with zeros to whole quads of taps
        const int64_t k4 = (layer.cols + 3) / 4;
        std::vector<int8_t> padded(static_cast<size_t>(layer.rows * k4 * 4), 0);
        for (int64_t r = 0; r < layer.rows; ++r)
          std::memcpy(padded.data() + r * k4 * 4, layer.w.data() + r * layer.cols,
                      static_cast<size_t>(layer.cols));
        layer.w = std::move(padded);
      }
    }
    layer.bias.assign(static_cast<size_t>(layer.rows), 0.0f);
    if (l.bias) {
      auto bt = tensors.find(name + ".bias");
      if (bt == tensors.end() || bt->second->dtype != format::DType::f32 ||
          bt->second->numel() != layer.rows)
        fail(source, ": TTAB: ", name, ".bias is not an f32 (", layer.rows, ") tensor");
      std::memcpy(layer.bias.data(), bt->second->values.data(), layer.bias.size() * 4);
    }
    net.macs_ += layer.rows * layer.cols * (conv ? layer.conv.out_h() * layer.conv.out_w() : 1);
    if (conv) {
      shape = {l.out, layer.conv.out_h(), layer.conv.out_w()};
      width = shape[0] * shape[1] * shape[2];
    } else {
      shape = {l.out};
      width = l.out;
    }
    net.layers_.push_back(std::move(layer));
  }
  net.outputs_ = width;
  return net;
}

void Int8Net::forward(int64_t batch, const float* x, float* out) const {
  // Samples are independent (fixed grids, per-row products), so the batch runs
  // in chunks whose activations stay in cache, through one set of buffers.
  // The chunks are split over the thread pool; each sample's output does not
  // depend on the chunking, so every thread count gives the same bits.
  constexpr int64_t kChunk = 64;
  const int64_t chunks = (batch + kChunk - 1) / kChunk;
  ops::parallel_range(chunks, 2.0 * static_cast<double>(macs_ * kChunk),
                      [&](int64_t lo, int64_t hi) {
                        Scratch s;
                        for (int64_t c = lo; c < hi; ++c) {
                          const int64_t i = c * kChunk, nb = std::min(kChunk, batch - i);
                          forward_chunk(nb, x + i * inputs_, out + i * outputs_, s);
                        }
                      });
}

void Int8Net::forward_chunk(int64_t batch, const float* x, float* out, Scratch& s) const {
  std::vector<float>& h = s.h;
  std::vector<float>& y = s.y;
  std::vector<uint8_t>& q = s.q;
  std::vector<uint8_t>& rows = s.rows;
  std::vector<uint8_t>& qt = s.qt;
  std::vector<int32_t>& acc = s.acc;
  std::vector<int32_t>& acct = s.acct;
  h.assign(x, x + batch * inputs_);
  int64_t width = inputs_;  // per sample
  for (const Layer& l : layers_) {
    switch (l.kind) {
      case Kind::relu:
        kernels::relu_f32(batch * width, h.data(), h.data());
        continue;
      case Kind::sigmoid:
        kernels::sigmoid_f32(batch * width, h.data(), h.data());
        continue;
      case Kind::tanh:
        kernels::tanh_f32(batch * width, h.data(), h.data());
        continue;
      case Kind::maxpool:
      case Kind::avgpool: {
        const kernels::Pool2dGeometry& g = l.pool;
        const int64_t in = g.c * g.h * g.w, o = g.c * g.out_h() * g.out_w();
        y.resize(static_cast<size_t>(batch * o));
        std::vector<int32_t> argmax(l.kind == Kind::maxpool ? static_cast<size_t>(o) : 0);
        for (int64_t i = 0; i < batch; ++i) {
          if (l.kind == Kind::maxpool)
            kernels::maxpool2d_f32(g, y.data() + i * o, argmax.data(), h.data() + i * in);
          else
            kernels::avgpool2d_f32(g, y.data() + i * o, h.data() + i * in);
        }
        h.swap(y);
        width = o;
        continue;
      }
      case Kind::conv: {
        // Image by image: its u8 patches as a feature-major (K, P) matrix; the
        // filter bank times it into the (OC, P) plane, dense over quads of
        // taps (packed first) or as CSR, both vectorised along P; dequantized
        // as dequantize_s32_to_f32 does (the scale product rounded to float,
        // then one fma with the bias).
        const kernels::Conv2dGeometry& g = l.conv;
        const int64_t in = g.c * g.h * g.w, p = g.out_h() * g.out_w(), k = l.cols, oc = l.rows;
        const kernels::CsrS8 w{oc, k, l.row_ptr.data(), l.col_idx.data(), l.w.data()};
        const int64_t k4 = (k + 3) / 4;
        q.resize(static_cast<size_t>(in));
        rows.resize(static_cast<size_t>(k * p));
        if (!l.sparse) s.x4.resize(static_cast<size_t>(k4 * p * 4));
        acc.resize(static_cast<size_t>(oc * p));
        std::vector<float>& next = s.next;
        next.resize(static_cast<size_t>(batch * oc * p));
        for (int64_t i = 0; i < batch; ++i) {
          kernels::quantize_per_tensor_u8(in, q.data(), h.data() + i * in, l.x_scale,
                                          l.x_zero_point);
          kernels::im2col_u8(g, rows.data(), p, 0, q.data(), static_cast<uint8_t>(l.x_zero_point));
          if (l.sparse) {
            kernels::spmm_u8s8_s32(p, acc.data(), p, w, rows.data(), p, l.row_sums.data(),
                                   l.x_zero_point);
          } else {
            kernels::pack_k4_u8(k, p, s.x4.data(), rows.data(), p);
            kernels::qgemm_s8u8k4_s32(oc, p, k4, acc.data(), p, l.w.data(), k4 * 4, s.x4.data(),
                                      l.row_sums.data(), l.x_zero_point);
          }
          float* out_i = next.data() + i * oc * p;
          for (int64_t r = 0; r < oc; ++r) {
            const float scale = l.x_scale * l.w_scales[static_cast<size_t>(r)];
            const float bias = l.bias[static_cast<size_t>(r)];
            for (int64_t j = 0; j < p; ++j)
              out_i[r * p + j] =
                  std::fma(static_cast<float>(acc[static_cast<size_t>(r * p + j)]), scale, bias);
          }
        }
        h.swap(next);
        width = oc * p;
        continue;
      }
      case Kind::linear:
        break;
    }
    q.resize(static_cast<size_t>(batch * l.cols));
    kernels::quantize_per_tensor_u8(batch * l.cols, q.data(), h.data(), l.x_scale, l.x_zero_point);
    acc.resize(static_cast<size_t>(batch * l.rows));
    if (l.sparse) {
      const kernels::CsrS8 w{l.rows, l.cols, l.row_ptr.data(), l.col_idx.data(), l.w.data()};
      // Feature-major for the CSR product: x^T (cols, batch) -> acc^T (rows, batch).
      qt.resize(q.size());
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t j = 0; j < l.cols; ++j)
          qt[static_cast<size_t>(j * batch + i)] = q[static_cast<size_t>(i * l.cols + j)];
      acct.resize(acc.size());
      kernels::spmm_u8s8_s32(batch, acct.data(), batch, w, qt.data(), batch, l.row_sums.data(),
                             l.x_zero_point);
      for (int64_t r = 0; r < l.rows; ++r)
        for (int64_t i = 0; i < batch; ++i)
          acc[static_cast<size_t>(i * l.rows + r)] = acct[static_cast<size_t>(r * batch + i)];
    } else {
      kernels::qgemm_u8s8_s32(batch, l.rows, l.cols, acc.data(), l.rows, q.data(), l.cols,
                              l.w.data(), l.cols, l.row_sums.data(), l.x_zero_point);
    }
    h.resize(static_cast<size_t>(batch * l.rows));
    kernels::dequantize_s32_to_f32(batch, l.rows, h.data(), l.rows, acc.data(), l.rows,
                                   l.w_scales.data(), l.x_scale, l.bias.data());
    width = l.rows;
  }
  PARE_CHECK(width == outputs_, "int8 forward width");
  std::memcpy(out, h.data(), static_cast<size_t>(batch * outputs_) * sizeof(float));
}

int Int8Net::sparse_layers() const {
  int n = 0;
  for (const Layer& l : layers_) n += l.kind == Kind::linear && l.sparse;
  return n;
}

int Int8Net::conv_layers() const {
  int n = 0;
  for (const Layer& l : layers_) n += l.kind == Kind::conv;
  return n;
}

}  // namespace pare::io
