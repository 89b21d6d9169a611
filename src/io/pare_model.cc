// Model <-> .pare File (see pare_model.h).
#include "pare/io/pare_model.h"

#include <cstring>
#include <map>

#include "pare/base/error.h"

namespace pare::io {

format::File to_file(const nn::Model& model, const std::string& meta_json) {
  format::File f;
  f.spec_json = nn::model_spec_to_json(model.spec());
  f.meta_json = meta_json;
  for (const nn::Parameter* p : model.parameters()) {
    format::Tensor t;
    t.name = p->name;
    t.dtype = format::DType::f32;
    const Shape& s = p->value().shape();
    for (int d = 0; d < s.ndim(); ++d) t.dims.push_back(s[d]);
    const int64_t n = p->numel();
    t.values.resize(static_cast<size_t>(n) * 4);
    std::memcpy(t.values.data(), p->value().f32(), t.values.size());
    if (p->mask.defined()) {
      // Masked-out weights are absent (stored as +0 where an encoding keeps
      // them). A mask that keeps every weight is written as an all-present
      // tensor, which loads unmasked: the same network.
      t.present.resize(static_cast<size_t>(n));
      const float* m = p->mask.f32();
      for (int64_t i = 0; i < n; ++i) {
        t.present[static_cast<size_t>(i)] = m[i] > 0.0f;
        if (!(m[i] > 0.0f)) std::memset(t.values.data() + i * 4, 0, 4);
      }
    }
    f.tensors.push_back(std::move(t));
  }
  return f;
}

float real_value(const format::Tensor& t, int64_t i) {
  using format::QuantKind;
  const uint8_t* v = t.values.data();
  switch (t.quant.kind) {
    case QuantKind::none: {
      float x;
      std::memcpy(&x, v + i * 4, 4);
      return x;
    }
    case QuantKind::affine: {
      const int32_t q = t.dtype == format::DType::s8 ? static_cast<int8_t>(v[i]) : v[i];
      return t.quant.scale * static_cast<float>(q - t.quant.zero_point);
    }
    case QuantKind::channel: {
      int64_t inner = 1;
      for (size_t d = t.quant.axis + 1; d < t.dims.size(); ++d) inner *= t.dims[d];
      const int64_t c = (i / inner) % t.dims[t.quant.axis];
      const int32_t q = t.dtype == format::DType::s8 ? static_cast<int8_t>(v[i]) : v[i];
      return t.quant.scales[static_cast<size_t>(c)] * static_cast<float>(q);
    }
    case QuantKind::codebook:
      return t.quant.centroids[v[i]];
  }
  return 0.0f;
}

std::unique_ptr<nn::Model> from_file(const format::File& file, const std::string& source) {
  const nn::ModelSpec spec = nn::parse_model_spec(file.spec_json, source + ": SPEC");
  std::map<std::string, const format::Tensor*> by_name;
  for (const format::Tensor& t : file.tensors) by_name[t.name] = &t;
  // Every parameter the spec describes, against the file's tensors, before
  // building: the spec alone may describe any network, the tensors (decoded
  // within DecodeOptions' limits) bound what a valid file allocates.
  for (const nn::ParameterShape& p : nn::parameter_shapes(spec)) {
    auto it = by_name.find(p.name);
    if (it == by_name.end()) fail(source, ": TTAB: the spec's parameter ", p.name, " is missing");
    if (it->second->dims != p.dims)
      fail(source, ": TTAB: tensor ", p.name, " does not have the spec's shape ",
           Shape(std::span<const int64_t>(p.dims)).str());
  }
  auto model = nn::Model::build(spec, 0);
  for (nn::Parameter* p : model->parameters()) {
    auto it = by_name.find(p->name);
    const Shape& s = p->value().shape();
    PARE_CHECK(it != by_name.end() && it->second->dims == s.vec(), p->name, ": not as nn::parameter_shapes said");
    const format::Tensor& t = *it->second;
    float* w = p->value().f32();
    const int64_t n = p->numel();
    for (int64_t i = 0; i < n; ++i) {
      const bool present = t.present.empty() || t.present[static_cast<size_t>(i)];
      w[i] = present ? real_value(t, i) : 0.0f;
    }
    if (!t.present.empty()) {
      p->mask = Tensor::empty(s);
      float* m = p->mask.f32();
      for (int64_t i = 0; i < n; ++i) m[i] = t.present[static_cast<size_t>(i)] ? 1.0f : 0.0f;
    }
    by_name.erase(it);
  }
  if (!by_name.empty())
    fail(source, ": TTAB: tensor ", by_name.begin()->first, " is not a parameter of the spec");
  return model;
}

void save_pare(const nn::Model& model, const std::string& path, const std::string& meta_json,
               const format::WriteOptions& options) {
  format::File f = to_file(model, meta_json);
  format::write_file(path, f, options);
}

std::unique_ptr<nn::Model> load_pare(const std::string& path) {
  return from_file(format::read_file(path), path);
}

std::vector<format::SafeTensor> to_safetensors(const nn::Model& model) {
  std::vector<format::SafeTensor> out;
  for (const nn::Parameter* p : model.parameters()) {
    format::SafeTensor t;
    t.name = p->name;
    t.dtype = "F32";
    const Shape& s = p->value().shape();
    for (int d = 0; d < s.ndim(); ++d) t.shape.push_back(s[d]);
    t.bytes.resize(static_cast<size_t>(p->numel()) * 4);
    std::memcpy(t.bytes.data(), p->value().f32(), t.bytes.size());
    out.push_back(std::move(t));
    if (p->mask.defined()) {
      format::SafeTensor m;
      m.name = p->name + ".mask";
      m.dtype = "U8";
      m.shape = out.back().shape;
      m.bytes.resize(static_cast<size_t>(p->numel()));
      for (int64_t i = 0; i < p->numel(); ++i) m.bytes[static_cast<size_t>(i)] = p->mask.f32()[i] > 0.0f;
      out.push_back(std::move(m));
    }
  }
  return out;
}

bool is_pare_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".pare") == 0;
}

}  // namespace pare::io
