// Finite-difference gradient checks for autograd ops (STYLE rule 10).
//
// The op under test, fn(inputs) -> out, is reduced to a scalar by a random
// projection, L = sum(out * R) with R ~ N(0, 1) drawn from a fixed seed. A
// random R exercises every output element with a different weight, so a
// backward pass that mixes up output positions cannot pass by symmetry (as it
// could with L = sum(out)). The analytic gradient is out.backward(R).
//
// The numeric gradient is a central difference per input element, taken in
// double precision around float ops:
//   dL/dx ~ (L(x + h) - L(x - h)) / (x+h - x-h)        (2-point, error O(h^2))
//   dL/dx ~ (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h   (4-point, O(h^4))
// L is summed in double, and the step actually taken is measured from the
// float values stored (x+h rounds), so the only float error left is the
// op's own rounding, about 1e-7 relative per output. Dividing that noise by
// 2h is why h is large for a gradient check: h = eps * max(1, |x|) with
// eps = 1e-2 keeps noise near 1e-5 while the truncation error of smooth ops
// stays near 1e-4 relative. Hence the acceptance test
//   |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|)
// with rtol = 1e-2 and an absolute floor atol = 1e-3 * max(1, max|analytic|)
// for entries whose true gradient is near zero (where only noise is left).
//
// Kinks (relu at 0, max_pool ties) make the finite difference meaningless
// within h of the kink, so the callers keep inputs away from them:
// away_from_zero() for relu (margin > h), distinct_spaced() for max pooling
// (the caller picks eps so that h < spacing / 2 for the largest |x|).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/base/rng.h"

namespace pare::autograd::testing {

struct GradcheckOptions {
  double eps = 1e-2;         // relative step: h = eps * max(1, |x|)
  double rtol = 1e-2;        // relative tolerance
  double atol_scale = 1e-3;  // absolute floor = atol_scale * max(1, max |analytic|)
  bool four_point = false;   // 4-point stencil instead of the central difference
  uint64_t seed = 1234;      // seed of the projection R
};

using OpFn = std::function<Var(const std::vector<Var>&)>;

// Tensors with N(0, scale^2) entries.
inline Tensor random_normal(const Shape& shape, Rng& rng, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape);
  for (float& v : t.span_f32()) v = scale * rng.normal();
  return t;
}
// Uniform in [lo, hi).
inline Tensor random_uniform(const Shape& shape, Rng& rng, float lo, float hi) {
  Tensor t = Tensor::empty(shape);
  for (float& v : t.span_f32()) v = rng.uniform(lo, hi);
  return t;
}
// N(0, 1) values pushed to |v| >= margin, so relu's kink is never within h.
inline Tensor away_from_zero(const Shape& shape, Rng& rng, float margin = 0.1f) {
  Tensor t = random_normal(shape, rng);
  for (float& v : t.span_f32()) v = v >= 0 ? v + margin : v - margin;
  return t;
}
// A random permutation of 0, spacing, 2*spacing, ... shifted to mean ~0: all
// values distinct and at least `spacing` apart, so no perturbation of size
// h < spacing/2 changes which element of a pooling window is the max.
inline Tensor distinct_spaced(const Shape& shape, Rng& rng, float spacing = 0.05f) {
  Tensor t = Tensor::empty(shape);
  const int64_t n = t.numel();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  rng.shuffle(std::span<int64_t>(order));
  for (int64_t i = 0; i < n; ++i)
    t.f32()[i] = spacing * (static_cast<float>(order[i]) - 0.5f * static_cast<float>(n));
  return t;
}

namespace detail {
inline double projected(const Var& out, const Tensor& r) {
  double acc = 0;
  const float* o = out.value().f32();
  const float* rp = r.f32();
  for (int64_t i = 0, n = out.numel(); i < n; ++i)
    acc += static_cast<double>(o[i]) * static_cast<double>(rp[i]);
  return acc;
}
}  // namespace detail

// Checks fn's analytic gradient with respect to each input with needs_grad[i]
// (all inputs when needs_grad is empty) against finite differences. Inputs
// without needs_grad are passed as constants (requires_grad false), which also
// checks that the op handles them.
inline ::testing::AssertionResult gradcheck(const OpFn& fn, const std::vector<Tensor>& inputs,
                                            std::vector<bool> needs_grad = {},
                                            const GradcheckOptions& opt = {}) {
  if (needs_grad.empty()) needs_grad.assign(inputs.size(), true);
  // Private copies: the check perturbs them in place.
  std::vector<Tensor> values;
  for (const Tensor& t : inputs) values.push_back(t.defined() ? t.clone() : Tensor());
  auto make_leaves = [&](bool with_grad) {
    std::vector<Var> leaves;
    for (size_t i = 0; i < values.size(); ++i)
      leaves.push_back(values[i].defined() ? Var(values[i], with_grad && needs_grad[i]) : Var());
    return leaves;
  };

  // Analytic: backward of L = sum(out * R) seeds out's gradient with R.
  std::vector<Var> leaves = make_leaves(true);
  Var out = fn(leaves);
  Rng rng(opt.seed);
  Tensor r = random_normal(out.shape(), rng);
  if (!out.requires_grad())
    return ::testing::AssertionFailure() << "output does not require grad (no graph recorded)";
  out.backward(r);

  auto loss_at = [&]() {
    NoGradGuard no_grad;
    return detail::projected(fn(make_leaves(false)), r);
  };

  std::ostringstream failures;
  int num_failures = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!needs_grad[i] || !values[i].defined()) continue;
    const Tensor& analytic = leaves[i].grad();
    if (!analytic.defined())
      return ::testing::AssertionFailure() << "input " << i << " received no gradient";
    double max_abs = 1.0;
    for (float g : analytic.span_f32()) max_abs = std::max(max_abs, std::fabs(double{g}));
    const double atol = opt.atol_scale * max_abs;
    float* x = values[i].f32();
    for (int64_t j = 0, n = values[i].numel(); j < n; ++j) {
      const float x0 = x[j];
      const double h = opt.eps * std::max(1.0, std::fabs(double{x0}));
      auto at = [&](double offset) {
        x[j] = static_cast<float>(x0 + offset);
        const double actual = static_cast<double>(x[j]) - x0;  // the step really taken
        const double l = loss_at();
        x[j] = x0;
        return std::pair<double, double>{l, actual};
      };
      double numeric;
      if (opt.four_point) {
        auto [lp2, sp2] = at(2 * h);
        auto [lp1, sp1] = at(h);
        auto [lm1, sm1] = at(-h);
        auto [lm2, sm2] = at(-2 * h);
        // Steps are h and 2h up to rounding; use their mean as the unit.
        const double unit = (sp1 - sm1 + (sp2 - sm2) / 2) / 4;
        numeric = (-lp2 + 8 * lp1 - 8 * lm1 + lm2) / (12 * unit);
      } else {
        auto [lp, sp] = at(h);
        auto [lm, sm] = at(-h);
        numeric = (lp - lm) / (sp - sm);
      }
      const double a = analytic.f32()[j];
      const double tol = atol + opt.rtol * std::max(std::fabs(numeric), std::fabs(a));
      if (!(std::fabs(numeric - a) <= tol)) {
        if (++num_failures <= 8)
          failures << "\n  input " << i << " " << values[i].shape().str() << " element " << j
                   << ": analytic " << a << " numeric " << numeric << " (tol " << tol << ")";
      }
    }
  }
  if (num_failures > 0)
    return ::testing::AssertionFailure() << num_failures << " gradient mismatches" << failures.str();
  return ::testing::AssertionSuccess();
}

}  // namespace pare::autograd::testing
