// Deltas between a base model and a fine-tuned variant (see delta.h).
#include "pare/io/delta.h"

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/io/compress.h"
#include "pare/io/pare_model.h"
#include "pare/nn/lora.h"
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

format::Tensor empty_like(const std::string& name, const Tensor& v) {
  format::Tensor d;
  d.name = name;
  for (int k = 0; k < v.ndim(); ++k) d.dims.push_back(v.dim(k));
  d.values.assign(static_cast<size_t>(v.numel()) * 4, 0);
  d.present.assign(static_cast<size_t>(v.numel()), 0);
  return d;
}

// Appends to f what changed from b to t: the values at the changed positions
// (new values, or with int8 the differences as s8 per output channel), and
// the mask when it differs.
void append_changes(format::File& f, const nn::Parameter& b, const nn::Parameter& t, bool int8) {
  const int64_t n = b.numel();
  format::Tensor d = empty_like(b.name, b.value());
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
    format::Tensor m = empty_like(b.name + ".mask", b.value());
    const float one = 1.0f;
    for (int64_t j = 0; j < n; ++j)
      if (!t.mask.defined() || t.mask.f32()[j] > 0.0f) {
        std::memcpy(m.values.data() + j * 4, &one, 4);
        m.present[static_cast<size_t>(j)] = 1;
      }
    f.tensors.push_back(std::move(m));
  }
}

// A dense f32 tensor of the file (dims as given), all present.
format::Tensor dense_tensor(const std::string& name, const Tensor& v) {
  format::Tensor d = empty_like(name, v);
  std::memcpy(d.values.data(), v.f32(), d.values.size());
  std::fill(d.present.begin(), d.present.end(), uint8_t{1});
  return d;
}

Tensor to_tensor(const format::Tensor& t) {
  Tensor out = Tensor::empty(Shape(std::span<const int64_t>(t.dims)));
  for (int64_t j = 0; j < out.numel(); ++j)
    out.f32()[j] = t.present.empty() || t.present[static_cast<size_t>(j)] ? real_value(t, j) : 0.0f;
  return out;
}

// Nothing changed: a file still holds one tensor (docs/format.md), an empty
// difference of the first parameter.
void ensure_a_tensor(format::File& f, const nn::Model& base) {
  if (f.tensors.empty()) f.tensors.push_back(empty_like(base.parameters()[0]->name, base.parameters()[0]->value()));
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
  for (size_t i = 0; i < bp.size(); ++i) append_changes(f, *bp[i], *tp[i], int8);
  ensure_a_tensor(f, base);
  return f;
}

format::File make_lowrank_delta(const nn::Model& base, const nn::Model& tuned,
                                const std::vector<nn::LoraFactors>& factors, float scale, bool int8) {
  if (nn::model_spec_to_json(base.spec()) != nn::model_spec_to_json(tuned.spec()))
    fail("pare delta: the tuned model's spec differs from the base's");
  if (!(scale > 0) || !std::isfinite(scale)) fail("pare delta: the LoRA scale must be a finite number > 0, got ", scale);
  format::File f;
  f.spec_json = nn::model_spec_to_json(base.spec());
  f.meta_json = json{{"kind", "delta"},
                     {"base_fingerprint", hex64(weights_fingerprint(base))},
                     {"values", "low-rank"},
                     {"lora_scale", scale},
                     {"factors", int8 ? "s8 per rank component" : "f32"}}
                    .dump();
  std::map<std::string, const nn::LoraFactors*> by_name;
  for (const nn::LoraFactors& lf : factors) by_name[lf.name] = &lf;
  const auto& bp = base.parameters();
  const auto& tp = tuned.parameters();
  for (size_t i = 0; i < bp.size(); ++i) {
    const nn::Parameter& b = *bp[i];
    const nn::Parameter& t = *tp[i];
    const auto it = by_name.find(b.name);
    if (it == by_name.end()) {
      append_changes(f, b, t, /*int8=*/false);  // (a LoRA run leaves them as they were)
      continue;
    }
    const nn::LoraFactors& lf = *it->second;
    nn::check_lora_factors(b.value().shape(), lf.a, lf.b, "pare delta: " + b.name);
    if (!same_mask(b, t))
      fail("pare delta: ", b.name, ": the tuned model's mask differs from this base's; LoRA keeps masks, so it was "
           "tuned from another base");
    // The factors must rebuild the tuned weight from this base, as apply will.
    Tensor merged = Tensor::empty(b.value().shape());
    nn::lora_merge(merged, b.value(), lf.b, lf.a, scale, b.mask);
    for (int64_t j = 0; j < merged.numel(); ++j)
      if (merged.f32()[j] != t.value().f32()[j])
        fail("pare delta: the LoRA factors do not rebuild the tuned ", b.name, " from this base (entry ", j, ": ",
             merged.f32()[j], " against ", t.value().f32()[j], "); was it tuned from another base?");
    f.tensors.push_back(dense_tensor(b.name + ".lora_a", lf.a));
    f.tensors.push_back(dense_tensor(b.name + ".lora_b", lf.b));
    if (int8) {
      // One scale per rank component: per row of A, per column of B.
      quantize_s8_per_channel(f.tensors[f.tensors.size() - 2]);
      quantize_s8_per_column(f.tensors.back());
    }
    by_name.erase(it);
  }
  if (!by_name.empty()) fail("pare delta: LoRA factors for ", by_name.begin()->first, ", which is not a parameter of the base");
  ensure_a_tensor(f, base);
  return f;
}

bool is_lora_tensor(const std::string& name) { return name.ends_with(".lora_a") || name.ends_with(".lora_b"); }

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
  if (values != "replacements" && values != "differences" && values != "low-rank")
    fail(source, ": META values must be \"replacements\", \"differences\" or \"low-rank\"");
  // A low-rank delta's other tensors are replacements.
  const bool replace = values != "differences";
  float lora_scale = 0;
  if (values == "low-rank") {
    if (!meta.contains("lora_scale") || !meta["lora_scale"].is_number())
      fail(source, ": a low-rank delta needs META lora_scale");
    lora_scale = meta["lora_scale"].get<float>();
    if (!(lora_scale > 0) || !std::isfinite(lora_scale)) fail(source, ": META lora_scale must be a finite number > 0");
  }
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
  // Low-rank updates: W = mask * (W_base + scale B A), each weight's A
  // followed by its B.
  std::map<std::string, const format::Tensor*> lora_a, lora_b;
  for (const format::Tensor& t : delta.tensors) {
    if (!is_lora_tensor(t.name)) continue;
    if (values != "low-rank") fail(source, ": TTAB: tensor ", t.name, " in a delta of ", values);
    (t.name.ends_with(".lora_a") ? lora_a : lora_b)[t.name.substr(0, t.name.size() - 7)] = &t;
  }
  for (const auto& [param, ta] : lora_a) {
    nn::Parameter* p = out->find(param);
    if (!p) fail(source, ": TTAB: tensor ", ta->name, " is not for a parameter of the base");
    const auto tb = lora_b.find(param);
    if (tb == lora_b.end()) fail(source, ": TTAB: ", ta->name, " has no ", param, ".lora_b");
    const Tensor a = to_tensor(*ta), b = to_tensor(*tb->second);
    nn::check_lora_factors(p->value().shape(), a, b, source + ": " + param);
    nn::lora_merge(p->value(), p->value(), b, a, lora_scale, p->mask);
    lora_b.erase(tb);
  }
  if (!lora_b.empty()) fail(source, ": TTAB: ", lora_b.begin()->first, ".lora_b has no ", lora_b.begin()->first, ".lora_a");
  // The differences (dequantized) added where present; masks replaced.
  for (const format::Tensor& t : delta.tensors) {
    if (is_lora_tensor(t.name)) continue;
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
