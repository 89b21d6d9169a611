// NaN and infinity checks and gradient spikes; see numerics.h.
#include "pare/train/numerics.h"

#include <cmath>

#include "pare/base/error.h"
#include "pare/base/strings.h"

namespace pare::train {

OnNan parse_on_nan(const std::string& name) {
  if (name == "stop") return OnNan::stop;
  if (name == "skip") return OnNan::skip;
  if (name == "rollback") return OnNan::rollback;
  fail("--on-nan ", name, ": what to do when the loss or a gradient is not finite must be stop, skip or rollback");
}

double sum_of_squares(const float* x, int64_t n) {
  // Eight lanes so that the compiler can keep them in vector registers; the
  // order of the additions is fixed by the code, not by the compiler.
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
  for (int j = 0; i < n; ++i, ++j) lane[j] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

namespace {

// The gradient a parameter trains with: its packed one when it has one.
const Tensor& gradient_of(nn::Parameter& p) { return p.packed.defined() ? p.packed.grad() : p.grad(); }
const Tensor& value_of(nn::Parameter& p) { return p.packed.defined() ? p.packed.value() : p.value(); }

int64_t count_nonfinite(const Tensor& t) {
  int64_t bad = 0;
  const float* x = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) bad += !std::isfinite(x[i]);
  return bad;
}

}  // namespace

double gradient_norm(nn::Model& model) {
  double sum = 0;
  for (nn::Parameter* p : model.parameters()) {
    const Tensor& g = gradient_of(*p);
    sum += sum_of_squares(g.f32(), g.numel());
  }
  return std::sqrt(sum);
}

std::string describe_nonfinite(nn::Model& model) {
  std::string grad, weight;
  for (nn::Parameter* p : model.parameters()) {
    if (grad.empty())
      if (const int64_t bad = count_nonfinite(gradient_of(*p)); bad > 0)
        grad = strf("the first non-finite gradient is in %s (%lld of %lld entries)", p->name.c_str(),
                    static_cast<long long>(bad), static_cast<long long>(gradient_of(*p).numel()));
    if (weight.empty())
      if (const int64_t bad = count_nonfinite(value_of(*p)); bad > 0)
        weight = strf("the first non-finite weight is in %s (%lld of %lld entries)", p->name.c_str(),
                      static_cast<long long>(bad), static_cast<long long>(value_of(*p).numel()));
  }
  if (grad.empty() && weight.empty())
    return "the gradients and weights are finite (the loss overflowed on finite outputs)";
  if (grad.empty()) return "the gradients are finite; " + weight;
  return grad + "; " + (weight.empty() ? std::string("the weights are finite") : weight);
}

bool GradientSpikes::observe(double norm) {
  if (factor_ <= 0 || !std::isfinite(norm)) return false;
  constexpr int64_t kWarmup = 8;  // checks before a typical value is trusted
  if (seen_ >= kWarmup && norm > factor_ * typical_) return true;
  typical_ = seen_ == 0 ? norm : 0.9 * typical_ + 0.1 * norm;
  ++seen_;
  return false;
}

}  // namespace pare::train
