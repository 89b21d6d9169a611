// Deltas between a base model and a fine-tuned variant (see delta.h).
#include "pare/io/delta.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/io/compress.h"
#include "pare/io/pare_model.h"
#include "pare/nn/spec.h"

namespace pare::io {

using json = nlohmann::json;

namespace {

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool same_mask(const nn::Parameter& a, const nn::Parameter& b) {
  if (a.mask.defined() != b.mask.defined()) return false;
  if (!a.mask.defined()) return true;
  return std::memcmp(a.mask.f32(), b.mask.f32(), a.mask.nbytes()) == 0;
}

}  // namespace

uint64_t weights_fingerprint(const nn::Model& model) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  };
  for (const nn::Parameter* p : model.parameters()) {
    mix(p->name.data(), p->name.size());
    mix(p->value().f32(), p->value().nbytes());
  }
  return h;
}

bool is_mask_tensor(const std::string& name) { return name.size() > 5 && name.ends_with(".mask"); }

format::File make_delta(const nn::Model& base, const nn::Model& tuned, bool int8) {
  if (nn::model_spec_to_json(base.spec()) != nn::model_spec_to_json(tuned.spec()))
    fail("pare delta: the tuned model's spec differs from the base's");
  format::File f;
  f.spec_json = nn::model_spec_to_json(base.spec());
  f.meta_json = json{{"kind", "delta"},
                     {"base_fingerprint", hex64(weights_fingerprint(base))},
                     {"values", int8 ? "differences" : "replacements"}}
                    .dump();
  const auto& bp = base.parameters();
  const auto& tp = tuned.parameters();
  for (size_t i = 0; i < bp.size(); ++i) {
    const nn::Parameter& b = *bp[i];
    const nn::Parameter& t = *tp[i];
    const int64_t n = b.numel();
    format::Tensor d;
    d.name = b.name;
    for (int k = 0; k < b.value().ndim(); ++k) d.dims.push_back(b.value().dim(k));
    d.values.assign(static_cast<size_t>(n) * 4, 0);
    d.present.assign(static_cast<size_t>(n), 0);
    int64_t changed = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (t.value().f32()[j] == b.value().f32()[j]) continue;  // (-0 == +0: no change)
      // Exact deltas carry the new value itself (base + (tuned - base) can be
      // an ulp off); int8 deltas the difference, which quantizes finely.
      const float v = int8 ? t.value().f32()[j] - b.value().f32()[j] : t.value().f32()[j];
      std::memcpy(d.values.data() + j * 4, &v, 4);
      d.present[static_cast<size_t>(j)] = 1;
      ++changed;
    }
    if (changed > 0) {
      if (int8 && !d.dims.empty()) quantize_s8_per_channel(d);
      f.tensors.push_back(std::move(d));
    }
    if (!same_mask(b, t)) {
      format::Tensor m;
      m.name = b.name + ".mask";
      for (int k = 0; k < b.value().ndim(); ++k) m.dims.push_back(b.value().dim(k));
      m.values.assign(static_cast<size_t>(n) * 4, 0);
      m.present.assign(static_cast<size_t>(n), 0);
      const float one = 1.0f;
      for (int64_t j = 0; j < n; ++j)
        if (!t.mask.defined() || t.mask.f32()[j] > 0.0f) {
          std::memcpy(m.values.data() + j * 4, &one, 4);
          m.present[static_cast<size_t>(j)] = 1;
        }
      f.tensors.push_back(std::move(m));
    }
  }
  if (f.tensors.empty()) {
    // Nothing changed: a file still holds one tensor (docs/format.md), an
    // empty difference of the first parameter.
    format::Tensor d;
    d.name = bp[0]->name;
    for (int k = 0; k < bp[0]->value().ndim(); ++k) d.dims.push_back(bp[0]->value().dim(k));
    d.values.assign(static_cast<size_t>(bp[0]->numel()) * 4, 0);
    d.present.assign(static_cast<size_t>(bp[0]->numel()), 0);
    f.tensors.push_back(std::move(d));
  }
  return f;
}

std::unique_ptr<nn::Model> apply_delta(const nn::Model& base, const format::File& delta,
                                       const std::string& source) {
  json meta;
  try {
    meta = json::parse(delta.meta_json.empty() ? "{}" : delta.meta_json);
  } catch (const json::exception&) {
    fail(source, ": META is not JSON");
  }
  if (meta.value("kind", "") != "delta") fail(source, ": not a delta (META kind is not \"delta\")");
  const std::string values = meta.value("values", "");
  if (values != "replacements" && values != "differences")
    fail(source, ": META values must be \"replacements\" or \"differences\"");
  const bool replace = values == "replacements";
  if (meta.value("base_fingerprint", "") != hex64(weights_fingerprint(base)))
    fail(source, ": made against another base (fingerprint ", meta.value("base_fingerprint", "?"),
         ", this base ", hex64(weights_fingerprint(base)), ")");
  if (delta.spec_json != nn::model_spec_to_json(base.spec()))
    fail(source, ": SPEC differs from the base's");
  // A fresh model of the same spec holding the base's exact values and masks.
  auto out = nn::Model::build(base.spec(), 0);
  for (size_t i = 0; i < base.parameters().size(); ++i) {
    out->parameters()[i]->value().copy_from(base.parameters()[i]->value());
    if (base.parameters()[i]->mask.defined())
      out->parameters()[i]->mask = base.parameters()[i]->mask.clone();
  }
  // The differences (dequantized) added where present; masks replaced.
  for (const format::Tensor& t : delta.tensors) {
    const bool is_mask = is_mask_tensor(t.name);
    const std::string param = is_mask ? t.name.substr(0, t.name.size() - 5) : t.name;
    nn::Parameter* p = out->find(param);
    if (!p) fail(source, ": TTAB: tensor ", t.name, " is not a parameter of the base");
    const Shape& s = p->value().shape();
    bool fits = static_cast<int>(t.dims.size()) == s.ndim();
    for (int k = 0; fits && k < s.ndim(); ++k) fits = t.dims[static_cast<size_t>(k)] == s[k];
    if (!fits) fail(source, ": TTAB: tensor ", t.name, " does not have the shape ", s.str());
    const int64_t n = p->numel();
    if (is_mask) {
      p->mask = Tensor::empty(s);
      for (int64_t j = 0; j < n; ++j) p->mask.f32()[j] = t.present.empty() || t.present[static_cast<size_t>(j)] ? 1.0f : 0.0f;
      continue;
    }
    for (int64_t j = 0; j < n; ++j) {
      const bool present = t.present.empty() || t.present[static_cast<size_t>(j)];
      if (!present) continue;
      if (t.quant.kind != format::QuantKind::none && t.quant.kind != format::QuantKind::channel)
        fail(source, ": TTAB: tensor ", t.name, ": a delta holds f32 or s8 per-channel values");
      const float real = real_value(t, j);
      if (replace)
        p->value().f32()[j] = real;
      else
        p->value().f32()[j] += real;
    }
  }
  for (nn::Parameter* p : out->parameters()) p->apply_mask();
  return out;
}

}  // namespace pare::io
