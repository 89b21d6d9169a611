// Shared helpers for the nn tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "pare/base/error.h"
#include "testing/errors.h"
#include "pare/base/rng.h"
#include "pare/nn/module.h"

namespace pare::nn::testing {

using pare::testing::expect_error;

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng r(seed);
  Tensor t = Tensor::empty(shape);
  for (float& v : t.span_f32()) v = r.uniform(lo, hi);
  return t;
}

inline Tensor random_labels(int64_t n, int32_t classes, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(r.below(static_cast<uint64_t>(classes)));
  return Tensor::from_i32({n}, v);
}

inline std::vector<float> values_of(Model& m) {
  auto s = m.store().values().span_f32();
  return {s.begin(), s.end()};
}

}  // namespace pare::nn::testing
