// Numerical faults in training (issue #10): a NaN or an infinity in the loss
// or the gradients, and gradients that explode.
//
// fit() checks the loss of every step (free: it is one number) and the
// gradients every kGradientCheckInterval steps (one pass over them; no
// measurable change in a LeNet-300-100 epoch, docs/reliability.md). A non-finite value stops training with
// a message naming the step, the batch and the first layer with a
// non-finite gradient or weight (--on-nan stop), or skips the batch without
// updating (skip), or rolls back to the last checkpoint and halves the
// learning rate (rollback). A gradient norm far above its running typical
// value is reported (a "gradient_spike" event and a warning) but changes
// nothing.
#pragma once

#include <cstdint>
#include <string>

#include "pare/nn/module.h"

namespace pare::train {

enum class OnNan { stop, skip, rollback };
// "stop" | "skip" | "rollback"; raises Error naming --on-nan otherwise.
OnNan parse_on_nan(const std::string& name);

constexpr int64_t kGradientCheckInterval = 16;

// The sum of x[i]^2 over n floats, accumulated in double in 8 interleaved
// lanes (a fixed order: the same bits every time). A NaN or an infinity in x
// makes it non-finite.
double sum_of_squares(const float* x, int64_t n);

// The L2 norm of every gradient of the model (packed gradients of sparse
// layers included); non-finite when any entry is.
double gradient_norm(nn::Model& model);

// Where the model's numbers stopped being finite, for messages: "the first
// non-finite gradient is in linear2.weight (12 of 30000 entries); the
// weights are finite", or "the gradients and weights are finite" when the
// fault was elsewhere (the loss of finite outputs, e.g. log of 0).
std::string describe_nonfinite(nn::Model& model);

// Tracks the gradient norm's typical value (an exponential moving average
// of the norms checked so far, after a warm-up) and says when one is a spike.
class GradientSpikes {
 public:
  // factor: a norm above factor x typical is a spike; 0: never.
  explicit GradientSpikes(double factor) : factor_(factor) {}
  // Returns true when `norm` is a spike (then it does not enter the average).
  bool observe(double norm);
  double typical() const { return typical_; }

 private:
  double factor_;
  double typical_ = 0;
  int64_t seen_ = 0;
};

}  // namespace pare::train
