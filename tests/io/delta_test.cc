// Deltas: base + delta rebuilds the variant exactly (f32) or within half a
// quantization step (int8), only changed weights are stored, and a delta is
// refused on the wrong base. A LoRA variant's low-rank delta keeps the
// factors, rebuilds the variant to the bit and refuses factors that do not.
#include "pare/io/delta.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <span>
#include <tuple>
#include <vector>

#include "pare/base/rng.h"
#include "pare/io/pare_model.h"
#include "pare/nn/lora.h"
#include "pare/nn/spec.h"
#include "testing/errors.h"
#include "testing/masks.h"

namespace pare::io {
namespace {

std::unique_ptr<nn::Model> masked_lenet300(uint64_t seed) {
  auto m = nn::Model::build(nn::preset("lenet300"), seed);
  Rng rng(seed + 1);
  testing::mask_weights_at_random(*m, 0.1f, rng);
  return m;
}

// A variant: 1 % of the kept weights and one bias changed, and one layer's mask
// grown by one weight.
std::unique_ptr<nn::Model> variant_of(const nn::Model& base, int64_t* changed) {
  auto v = nn::Model::build(base.spec(), 0);
  Rng rng(42);
  *changed = 0;
  for (size_t i = 0; i < base.parameters().size(); ++i) {
    nn::Parameter& p = *v->parameters()[i];
    const nn::Parameter& b = *base.parameters()[i];
    p.value().copy_from(b.value());
    if (b.mask.defined()) p.mask = b.mask.clone();
    for (int64_t j = 0; j < p.numel(); ++j) {
      const bool kept = !p.mask.defined() || p.mask.f32()[j] > 0.0f;
      if (kept && rng.uniform() < 0.01) {
        p.value().f32()[j] += rng.normal() * 0.01f;
        ++*changed;
      }
    }
  }
  nn::Parameter* w = v->find("linear3.weight");
  for (int64_t j = 0; j < w->numel(); ++j)
    if (w->mask.f32()[j] == 0.0f) {
      w->mask.f32()[j] = 1.0f;
      w->value().f32()[j] = 0.25f;
      ++*changed;
      break;
    }
  return v;
}

TEST(Delta, ExactDeltaRebuildsTheVariantAndStoresOnlyTheChanges) {
  auto base = masked_lenet300(1);
  int64_t changed = 0;
  auto tuned = variant_of(*base, &changed);
  format::File d = make_delta(*base, *tuned, /*int8=*/false);
  int64_t stored = 0;
  bool has_mask = false;
  for (const format::Tensor& t : d.tensors) {
    if (t.name == "linear3.weight.mask") has_mask = true;
    else stored += t.present_count();
  }
  EXPECT_EQ(stored, changed);
  EXPECT_TRUE(has_mask) << "the grown mask travels with the delta";
  const std::string bytes = format::encode(d);
  EXPECT_LT(bytes.size(), 4u * static_cast<size_t>(changed) * 3 + 4096) << "a few bytes per changed weight";
  auto rebuilt = apply_delta(*base, format::decode(bytes, "v.pdelta"), "v.pdelta");
  for (size_t i = 0; i < tuned->parameters().size(); ++i) {
    const nn::Parameter& a = *tuned->parameters()[i];
    const nn::Parameter& b = *rebuilt->parameters()[i];
    int differ = 0;
    for (int64_t j = 0; j < a.numel(); ++j) differ += a.value().f32()[j] != b.value().f32()[j];
    EXPECT_EQ(differ, 0) << a.name;
    ASSERT_EQ(a.mask.defined(), b.mask.defined()) << a.name;
    if (a.mask.defined()) {
      int mask_differ = 0;
      for (int64_t j = 0; j < a.numel(); ++j) mask_differ += a.mask.f32()[j] != b.mask.f32()[j];
      EXPECT_EQ(mask_differ, 0) << a.name;
    }
  }
}

TEST(Delta, Int8DeltaIsWithinHalfAStep) {
  auto base = masked_lenet300(2);
  int64_t changed = 0;
  auto tuned = variant_of(*base, &changed);
  format::File d = make_delta(*base, *tuned, /*int8=*/true);
  auto rebuilt = apply_delta(*base, format::decode(format::encode(d), "v8.pdelta"), "v8.pdelta");
  for (const format::Tensor& t : d.tensors) {
    if (t.quant.kind != format::QuantKind::channel) continue;
    const nn::Parameter& a = *tuned->find(t.name);
    const nn::Parameter& b = *rebuilt->find(t.name);
    const int64_t per = a.numel() / t.dims[0];
    for (int64_t j = 0; j < a.numel(); ++j)
      EXPECT_LE(std::fabs(a.value().f32()[j] - b.value().f32()[j]),
                t.quant.scales[static_cast<size_t>(j / per)] / 2 + 1e-7f) << t.name << " " << j;
  }
}

TEST(Delta, RefusedOnTheWrongBase) {
  auto base = masked_lenet300(3);
  int64_t changed = 0;
  auto tuned = variant_of(*base, &changed);
  const format::File d = make_delta(*base, *tuned, false);
  auto other = masked_lenet300(4);
  testing::expect_error([&] { apply_delta(*other, d, "v.pdelta"); }, {"v.pdelta", "another base"});
  format::File not_delta = d;
  not_delta.meta_json = "{}";
  testing::expect_error([&] { apply_delta(*base, not_delta, "x.pare"); }, {"not a delta"});
  auto lenet5 = nn::Model::build(nn::preset("lenet5"), 0);
  testing::expect_error([&] { make_delta(*base, *lenet5, false); }, {"spec"});
  // An unchanged variant gives a delta that rebuilds the base.
  format::File none = make_delta(*base, *base, false);
  auto same = apply_delta(*base, format::decode(format::encode(none), "n"), "n");
  EXPECT_EQ(weights_fingerprint(*same), weights_fingerprint(*base));
}

// A copy of `base` (values and masks), built fresh.
std::unique_ptr<nn::Model> copy_of(const nn::Model& base) {
  auto v = nn::Model::build(base.spec(), 0);
  for (size_t i = 0; i < base.parameters().size(); ++i) {
    v->parameters()[i]->value().copy_from(base.parameters()[i]->value());
    if (base.parameters()[i]->mask.defined())
      v->parameters()[i]->mask = base.parameters()[i]->mask.clone();
  }
  return v;
}

// Rank-2 factors by hand for every weight of `base`, A and B both nonzero.
std::vector<nn::LoraFactors> factors_for(const nn::Model& base, uint64_t seed) {
  Rng rng(seed);
  std::vector<nn::LoraFactors> out;
  for (const nn::Parameter* p : base.parameters()) {
    if (!p->is_weight) continue;
    const auto [rows, k] = nn::lora_matrix_dims(p->value().shape());
    nn::LoraFactors f{p->name, Tensor::empty({2, k}), Tensor::empty({rows, 2})};
    for (int64_t j = 0; j < f.a.numel(); ++j) f.a.f32()[j] = rng.uniform(-0.05f, 0.05f);
    for (int64_t j = 0; j < f.b.numel(); ++j) f.b.f32()[j] = rng.uniform(-0.05f, 0.05f);
    out.push_back(std::move(f));
  }
  return out;
}

// `base` with each factored weight replaced by mask * (W0 + scale B A), as a
// LoRA run leaves it; nothing else changed.
std::unique_ptr<nn::Model> lora_tuned(const nn::Model& base,
                                      const std::vector<nn::LoraFactors>& factors, float scale) {
  auto tuned = copy_of(base);
  for (const nn::LoraFactors& f : factors) {
    nn::Parameter& w = *tuned->find(f.name);
    nn::lora_merge(w.value(), base.find(f.name)->value(), f.b, f.a, scale, w.mask);
  }
  return tuned;
}

// Every parameter of a and b holds the same bits, and the same mask.
void expect_same_bits(const nn::Model& a, const nn::Model& b) {
  ASSERT_EQ(a.parameters().size(), b.parameters().size());
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    const nn::Parameter& pa = *a.parameters()[i];
    const nn::Parameter& pb = *b.parameters()[i];
    ASSERT_EQ(pa.numel(), pb.numel()) << pa.name;
    int differ = 0;
    for (int64_t j = 0; j < pa.numel(); ++j)
      differ += std::memcmp(&pa.value().f32()[j], &pb.value().f32()[j], 4) != 0;
    EXPECT_EQ(differ, 0) << pa.name;
    ASSERT_EQ(pa.mask.defined(), pb.mask.defined()) << pa.name;
    if (pa.mask.defined()) {
      EXPECT_EQ(std::memcmp(pa.mask.f32(), pb.mask.f32(), pa.mask.nbytes()), 0) << pa.name;
    }
  }
}

const format::Tensor* find_tensor(const format::File& f, const std::string& name) {
  for (const format::Tensor& t : f.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TEST(LowRankDelta, KeepsOnlyTheFactorsAndRebuildsTheTunedModelToTheBit) {
  auto base = masked_lenet300(5);
  const auto factors = factors_for(*base, 6);
  ASSERT_EQ(factors.size(), 3u);
  auto tuned = lora_tuned(*base, factors, 1.5f);
  const format::File d = make_lowrank_delta(*base, *tuned, factors, 1.5f);
  const nlohmann::json meta = nlohmann::json::parse(d.meta_json);
  EXPECT_EQ(meta["values"], "low-rank");
  EXPECT_EQ(meta["lora_scale"].get<float>(), 1.5f);
  // Two tensors per weight, the factors as they were; the unchanged biases
  // and masks are not stored.
  ASSERT_EQ(d.tensors.size(), 2 * factors.size());
  for (const nn::LoraFactors& f : factors) {
    const format::Tensor* a = find_tensor(d, f.name + ".lora_a");
    const format::Tensor* b = find_tensor(d, f.name + ".lora_b");
    ASSERT_NE(a, nullptr) << f.name;
    ASSERT_NE(b, nullptr) << f.name;
    EXPECT_EQ(a->dims, f.a.shape().vec()) << f.name;
    EXPECT_EQ(b->dims, f.b.shape().vec()) << f.name;
    ASSERT_EQ(a->values.size(), f.a.nbytes());
    EXPECT_EQ(std::memcmp(a->values.data(), f.a.f32(), f.a.nbytes()), 0) << f.name;
    ASSERT_EQ(b->values.size(), f.b.nbytes());
    EXPECT_EQ(std::memcmp(b->values.data(), f.b.f32(), f.b.nbytes()), 0) << f.name;
  }
  auto rebuilt = apply_delta(*base, d, "v.pdelta");
  expect_same_bits(*tuned, *rebuilt);
  // Pruned weights stay 0 in the rebuilt model.
  for (const nn::Parameter* p : rebuilt->parameters()) {
    if (!p->mask.defined()) continue;
    for (int64_t j = 0; j < p->numel(); ++j) {
      if (p->mask.f32()[j] == 0.0f) {
        ASSERT_EQ(p->value().f32()[j], 0.0f) << p->name << " " << j;
      }
    }
  }
}

TEST(LowRankDelta, SurvivesEncodeAndDecodeExactlyAndIsSmall) {
  auto base = masked_lenet300(7);
  const auto factors = factors_for(*base, 8);
  // A scale that is no short decimal: META's JSON must carry its float exactly.
  auto tuned = lora_tuned(*base, factors, 0.3f);
  format::File d = make_lowrank_delta(*base, *tuned, factors, 0.3f);
  const std::string bytes = format::encode(d);
  int64_t factor_values = 0, parameters = 0;
  for (const nn::LoraFactors& f : factors) factor_values += f.a.numel() + f.b.numel();
  for (const nn::Parameter* p : base->parameters()) parameters += p->numel();
  EXPECT_LT(bytes.size(), 4u * static_cast<size_t>(factor_values) + 4096)
      << "the factors, not the weights";
  EXPECT_LT(factor_values * 20, parameters) << "the test's factors are much smaller than the model";
  auto rebuilt = apply_delta(*base, format::decode(bytes, "v.pdelta"), "v.pdelta");
  expect_same_bits(*tuned, *rebuilt);
}

TEST(LowRankDelta, OtherChangedParametersTravelAsReplacements) {
  auto base = masked_lenet300(9);
  // Factors for the first weight only; a bias changed besides.
  auto factors = factors_for(*base, 10);
  factors.resize(1);
  auto tuned = lora_tuned(*base, factors, 1.0f);
  nn::Parameter* bias = nullptr;
  for (nn::Parameter* p : tuned->parameters())
    if (!p->is_weight) bias = p;
  ASSERT_NE(bias, nullptr);
  bias->value().f32()[1] += 0.125f;
  format::File d = make_lowrank_delta(*base, *tuned, factors, 1.0f);
  ASSERT_EQ(d.tensors.size(), 3u);
  const format::Tensor* replaced = find_tensor(d, bias->name);
  ASSERT_NE(replaced, nullptr);
  EXPECT_EQ(replaced->present_count(), 1);
  auto rebuilt = apply_delta(*base, format::decode(format::encode(d), "v.pdelta"), "v.pdelta");
  expect_same_bits(*tuned, *rebuilt);
}

TEST(LowRankDelta, RefusesFactorsThatDoNotRebuildTheTunedModel) {
  auto base = masked_lenet300(11);
  const auto factors = factors_for(*base, 12);
  auto tuned = lora_tuned(*base, factors, 1.0f);
  // Another base: the same masks, one kept weight different.
  auto other = copy_of(*base);
  nn::Parameter& w = *other->find(factors[1].name);
  int64_t kept = 0;
  while (w.mask.f32()[kept] == 0.0f) ++kept;
  w.value().f32()[kept] += 0.5f;
  testing::expect_error([&] { make_lowrank_delta(*other, *tuned, factors, 1.0f); },
                        {factors[1].name, "do not rebuild", "another base"});
  // The wrong scale.
  testing::expect_error([&] { make_lowrank_delta(*base, *tuned, factors, 2.0f); },
                        {"do not rebuild"});
  testing::expect_error([&] { make_lowrank_delta(*base, *tuned, factors, 0.0f); }, {"scale"});
  // A base with other masks.
  auto remasked = masked_lenet300(13);
  testing::expect_error([&] { make_lowrank_delta(*remasked, *tuned, factors, 1.0f); }, {"mask"});
  // Factors for a name the model does not have, or of the wrong shape.
  auto stray = factors;
  stray[0].name = "no_such.weight";
  testing::expect_error([&] { make_lowrank_delta(*base, *tuned, stray, 1.0f); },
                        {"no_such.weight"});
  auto misfit = factors;
  std::swap(misfit[0].a, misfit[1].a);
  testing::expect_error([&] { make_lowrank_delta(*base, *tuned, misfit, 1.0f); }, {"LoRA factors"});
  // A delta made on the right base is refused on another.
  const format::File d = make_lowrank_delta(*base, *tuned, factors, 1.0f);
  testing::expect_error([&] { apply_delta(*other, d, "v.pdelta"); }, {"v.pdelta", "another base"});
}

TEST(LowRankDelta, ApplyRefusesUnpairedFactorsAndAMissingScale) {
  auto base = masked_lenet300(14);
  const auto factors = factors_for(*base, 15);
  auto tuned = lora_tuned(*base, factors, 1.0f);
  const format::File d = make_lowrank_delta(*base, *tuned, factors, 1.0f);
  const std::string w = factors[0].name;
  ASSERT_NO_THROW(apply_delta(*base, d, "v.pdelta"));

  format::File no_b = d;
  std::erase_if(no_b.tensors, [&](const format::Tensor& t) { return t.name == w + ".lora_b"; });
  testing::expect_error([&] { apply_delta(*base, no_b, "v.pdelta"); },
                        {"v.pdelta", w + ".lora_a", w + ".lora_b"});

  format::File no_a = d;
  std::erase_if(no_a.tensors, [&](const format::Tensor& t) { return t.name == w + ".lora_a"; });
  testing::expect_error([&] { apply_delta(*base, no_a, "v.pdelta"); },
                        {"v.pdelta", w + ".lora_b", w + ".lora_a"});

  nlohmann::json meta = nlohmann::json::parse(d.meta_json);
  format::File no_scale = d;
  meta.erase("lora_scale");
  no_scale.meta_json = meta.dump();
  testing::expect_error([&] { apply_delta(*base, no_scale, "v.pdelta"); },
                        {"v.pdelta", "lora_scale"});
  format::File bad_scale = d;
  meta["lora_scale"] = -1.0;
  bad_scale.meta_json = meta.dump();
  testing::expect_error([&] { apply_delta(*base, bad_scale, "v.pdelta"); },
                        {"v.pdelta", "lora_scale"});
  meta["lora_scale"] = "1";
  bad_scale.meta_json = meta.dump();
  testing::expect_error([&] { apply_delta(*base, bad_scale, "v.pdelta"); },
                        {"v.pdelta", "lora_scale"});

  // Factors in a delta of replacements.
  format::File replacements = d;
  meta = nlohmann::json::parse(d.meta_json);
  meta["values"] = "replacements";
  replacements.meta_json = meta.dump();
  testing::expect_error([&] { apply_delta(*base, replacements, "v.pdelta"); },
                        {"v.pdelta", ".lora_a"});

  // Factors that do not fit their weight: A's columns cut by one.
  format::File misfit = d;
  for (format::Tensor& t : misfit.tensors)
    if (t.name == w + ".lora_a") {
      t.dims[1] -= 1;
      t.values.resize(static_cast<size_t>(t.dims[0] * t.dims[1]) * 4);
      t.present.resize(static_cast<size_t>(t.dims[0] * t.dims[1]));
    }
  testing::expect_error([&] { apply_delta(*base, misfit, "v.pdelta"); }, {"v.pdelta", w});
}

// The factors of a low-rank delta as the file holds them (dequantized).
nn::LoraFactors factors_in(const format::File& d, const std::string& weight) {
  auto tensor_of = [&](const std::string& name) {
    const format::Tensor* t = find_tensor(d, name);
    EXPECT_NE(t, nullptr) << name;
    if (!t) return Tensor();
    Tensor out = Tensor::empty(Shape(std::span<const int64_t>(t->dims)));
    for (int64_t j = 0; j < out.numel(); ++j) out.f32()[j] = real_value(*t, j);
    return out;
  };
  return {weight, tensor_of(weight + ".lora_a"), tensor_of(weight + ".lora_b")};
}

TEST(LowRankDelta, Int8KeepsTheFactorsAsS8AndApplyMergesTheirDequantizedValues) {
  auto base = masked_lenet300(16);
  const auto factors = factors_for(*base, 17);
  auto tuned = lora_tuned(*base, factors, 1.25f);
  format::File d = make_lowrank_delta(*base, *tuned, factors, 1.25f, /*int8=*/true);
  EXPECT_EQ(nlohmann::json::parse(d.meta_json)["values"], "low-rank");
  ASSERT_EQ(d.tensors.size(), 2 * factors.size());
  for (const format::Tensor& t : d.tensors) {
    EXPECT_EQ(t.dtype, format::DType::s8) << t.name;
    EXPECT_NE(t.quant.kind, format::QuantKind::none) << t.name;
  }
  // Each dequantized factor within half a step of the original, whatever
  // scales the file uses: no step is coarser than the tensor's max |x| / 127.
  for (const nn::LoraFactors& f : factors) {
    const nn::LoraFactors q = factors_in(d, f.name);
    for (const auto& [orig, deq, name] :
         {std::tuple{&f.a, &q.a, ".lora_a"}, std::tuple{&f.b, &q.b, ".lora_b"}}) {
      ASSERT_EQ(orig->numel(), deq->numel()) << f.name << name;
      float largest = 0;
      for (int64_t j = 0; j < orig->numel(); ++j)
        largest = std::max(largest, std::fabs(orig->f32()[j]));
      for (int64_t j = 0; j < orig->numel(); ++j)
        ASSERT_LE(std::fabs(orig->f32()[j] - deq->f32()[j]), largest / 254 * 1.0001f)
            << f.name << name << " " << j;
    }
  }
  // apply: mask * (W0 + scale B' A') of the dequantized factors, to the bit,
  // also after encode and decode.
  std::vector<nn::LoraFactors> dequantized;
  for (const nn::LoraFactors& f : factors) dequantized.push_back(factors_in(d, f.name));
  auto want = lora_tuned(*base, dequantized, 1.25f);
  auto rebuilt = apply_delta(*base, format::decode(format::encode(d), "v8.pdelta"), "v8.pdelta");
  expect_same_bits(*want, *rebuilt);
}

}  // namespace
}  // namespace pare::io
