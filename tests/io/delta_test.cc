// Deltas: base + delta rebuilds the variant exactly (f32) or within half a
// quantization step (int8), only changed weights are stored, and a delta is
// refused on the wrong base.
#include "pare/io/delta.h"

#include <gtest/gtest.h>

#include <cmath>

#include "pare/base/rng.h"
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

}  // namespace
}  // namespace pare::io
