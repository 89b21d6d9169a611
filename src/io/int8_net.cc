// Integer MLP inference from a .pare file (see int8_net.h).
#include "pare/io/int8_net.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "pare/base/error.h"
#include "pare/kernels/kernels.h"
#include "pare/kernels/quant.h"
#include "pare/tensor/ops.h"

namespace pare::io {

using json = nlohmann::json;

namespace {

bool is_mlp_layer(const std::string& type) {
  return type == "linear" || type == "relu" || type == "flatten" || type == "dropout";
}

// The prefix of a parameter name: "linear1.weight" -> "linear1".
std::string layer_of(const std::string& param) { return param.substr(0, param.rfind('.')); }

}  // namespace

json calibrate_activations(const nn::Model& model, const float* x, int64_t samples) {
  for (const nn::LayerSpec& l : model.spec().layers)
    if (!is_mlp_layer(l.type))
      fail("int8 calibration: layer type ", l.type, " is not supported (linear, relu, flatten)");
  json out = json::object();
  std::vector<float> h;
  int64_t width = 1;
  for (int64_t d : model.layer_shapes()[0]) width *= d;
  h.assign(x, x + samples * width);
  const auto& params = model.parameters();
  size_t next = 0;  // the next parameter (weights and biases in layer order)
  for (const nn::LayerSpec& l : model.spec().layers) {
    if (l.type == "relu") {
      for (float& v : h) v = v > 0.0f ? v : 0.0f;
      continue;
    }
    if (l.type != "linear") continue;  // flatten, dropout (inference): identity
    const nn::Parameter& w = *params[next++];
    const nn::Parameter* b = l.bias ? params[next++] : nullptr;
    float lo = 0.0f, hi = 0.0f;  // the range always includes 0
    for (float v : h) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const float scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    const int32_t zp = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / scale), 0.0f, 255.0f));
    out[layer_of(w.name)] = {{"scale", scale}, {"zero_point", zp}, {"min", lo}, {"max", hi}};
    const int64_t rows = w.value().dim(0), cols = w.value().dim(1);
    std::vector<float> y(static_cast<size_t>(samples * rows));
    ops::gemm(samples, rows, cols, y.data(), rows, h.data(), cols, w.value().f32(), cols,
              {.trans_b = true});
    if (b) kernels::add_rows_f32(samples, rows, y.data(), b->value().f32());
    h = std::move(y);
  }
  return out;
}

Int8Net Int8Net::from_file(const format::File& file, const std::string& source) {
  const nn::ModelSpec spec = nn::parse_model_spec(file.spec_json, source + ": SPEC");
  json meta = file.meta_json.empty() ? json::object() : json::parse(file.meta_json);
  if (!meta.contains("activations") || !meta["activations"].is_object())
    fail(source, ": META has no \"activations\" (write the file with pare compress --int8 --calibrate)");
  std::map<std::string, const format::Tensor*> tensors;
  for (const format::Tensor& t : file.tensors) tensors[t.name] = &t;
  Int8Net net;
  int64_t width = 1;
  for (int64_t d : spec.input) width *= d;
  net.inputs_ = width;
  int index = 0;
  for (const nn::LayerSpec& l : spec.layers) {
    ++index;
    if (!is_mlp_layer(l.type))
      fail(source, ": int8 inference runs linear, relu and flatten layers, not ", l.type);
    if (l.type == "relu") {
      Layer relu;
      relu.relu = true;
      net.layers_.push_back(relu);
      continue;
    }
    if (l.type != "linear") continue;
    const std::string name = "linear" + std::to_string(index);
    auto wt = tensors.find(name + ".weight");
    if (wt == tensors.end()) fail(source, ": TTAB: no tensor ", name, ".weight");
    const format::Tensor& w = *wt->second;
    if (w.dtype != format::DType::s8 || w.quant.kind != format::QuantKind::channel ||
        w.quant.axis != 0 || w.dims.size() != 2 || w.dims[1] != width || w.dims[0] != l.out)
      fail(source, ": TTAB: ", w.name, " is not an s8 per-channel (", l.out, ", ", width,
           ") weight (write it with pare compress --int8)");
    const json& act = meta["activations"].contains(name) ? meta["activations"][name] : json();
    if (!act.is_object() || !act.contains("scale") || !act.contains("zero_point"))
      fail(source, ": META: no activation grid for ", name);
    Layer layer;
    layer.rows = w.dims[0];
    layer.cols = w.dims[1];
    layer.x_scale = act["scale"].get<float>();
    layer.x_zero_point = act["zero_point"].get<int32_t>();
    if (!(layer.x_scale > 0 && std::isfinite(layer.x_scale)) || layer.x_zero_point < 0 ||
        layer.x_zero_point > 255)
      fail(source, ": META: the activation grid of ", name, " is not a u8 grid");
    layer.w_scales = w.quant.scales;
    std::vector<int8_t> dense(w.values.size());
    std::memcpy(dense.data(), w.values.data(), dense.size());
    const int64_t kept = w.present_count();
    // Sparse where it is sparse: below a third of the weights the CSR product
    // does less work than the dense one (kernels/quant.h's benchmarks).
    layer.sparse = kept * 3 < layer.rows * layer.cols;
    layer.row_sums.resize(static_cast<size_t>(layer.rows));
    if (layer.sparse) {
      std::vector<float> mask(static_cast<size_t>(layer.rows * layer.cols), 1.0f);
      for (size_t i = 0; i < mask.size() && !w.present.empty(); ++i) mask[i] = w.present[i] ? 1.0f : 0.0f;
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
      kernels::sum_rows_s8(layer.rows, layer.cols, layer.row_sums.data(), layer.w.data(), layer.cols);
    }
    layer.bias.assign(static_cast<size_t>(layer.rows), 0.0f);
    if (l.bias) {
      auto bt = tensors.find(name + ".bias");
      if (bt == tensors.end() || bt->second->dtype != format::DType::f32 ||
          bt->second->numel() != layer.rows)
        fail(source, ": TTAB: ", name, ".bias is not an f32 (", layer.rows, ") tensor");
      std::memcpy(layer.bias.data(), bt->second->values.data(), layer.bias.size() * 4);
    }
    width = layer.rows;
    net.layers_.push_back(std::move(layer));
  }
  net.outputs_ = width;
  return net;
}

void Int8Net::forward(int64_t batch, const float* x, float* logits) const {
  std::vector<float> h(x, x + batch * inputs_);
  int64_t width = inputs_;
  std::vector<uint8_t> q, qt;
  std::vector<int32_t> acc, acct;
  for (const Layer& l : layers_) {
    if (l.relu) {
      for (float& v : h) v = v > 0.0f ? v : 0.0f;
      continue;
    }
    q.resize(static_cast<size_t>(batch * l.cols));
    kernels::quantize_per_tensor_u8(batch * l.cols, q.data(), h.data(), l.x_scale, l.x_zero_point);
    acc.resize(static_cast<size_t>(batch * l.rows));
    if (l.sparse) {
      const kernels::CsrS8 w{l.rows, l.cols, l.row_ptr.data(), l.col_idx.data(), l.w.data()};
      // Feature-major for the CSR product: x^T (cols, batch) -> acc^T (rows, batch).
      qt.resize(q.size());
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t j = 0; j < l.cols; ++j) qt[static_cast<size_t>(j * batch + i)] = q[static_cast<size_t>(i * l.cols + j)];
      acct.resize(acc.size());
      kernels::spmm_u8s8_s32(batch, acct.data(), batch, w, qt.data(), batch, l.row_sums.data(),
                             l.x_zero_point);
      for (int64_t r = 0; r < l.rows; ++r)
        for (int64_t i = 0; i < batch; ++i) acc[static_cast<size_t>(i * l.rows + r)] = acct[static_cast<size_t>(r * batch + i)];
    } else {
      kernels::qgemm_u8s8_s32(batch, l.rows, l.cols, acc.data(), l.rows, q.data(), l.cols, l.w.data(),
                              l.cols, l.row_sums.data(), l.x_zero_point);
    }
    h.resize(static_cast<size_t>(batch * l.rows));
    kernels::dequantize_s32_to_f32(batch, l.rows, h.data(), l.rows, acc.data(), l.rows,
                                   l.w_scales.data(), l.x_scale, l.bias.data());
    width = l.rows;
  }
  PARE_CHECK(width == outputs_, "int8 forward width");
  std::memcpy(logits, h.data(), static_cast<size_t>(batch * outputs_) * sizeof(float));
}

int Int8Net::sparse_layers() const {
  int n = 0;
  for (const Layer& l : layers_) n += !l.relu && l.sparse;
  return n;
}

}  // namespace pare::io
