// Random pruning masks for test models. Include only from tests that link nn.
#pragma once

#include "pare/base/rng.h"
#include "pare/nn/module.h"
#include "pare/nn/parameter.h"
#include "pare/tensor/tensor.h"

namespace pare::testing {

// Gives `p` a fresh 0/1 mask keeping each entry with probability `keep` (one
// rng.uniform() per entry, in order) and zeroes the pruned values.
inline void mask_at_random(nn::Parameter& p, float keep, Rng& rng) {
  p.mask = Tensor::empty(p.value().shape());
  for (float& m : p.mask.span_f32()) m = rng.uniform() < keep ? 1.0f : 0.0f;
  p.apply_mask();
}

// mask_at_random on every weight of `m` (biases stay dense), in parameter order.
inline void mask_weights_at_random(nn::Model& m, float keep, Rng& rng) {
  for (nn::Parameter* p : m.parameters())
    if (p->is_weight) mask_at_random(*p, keep, rng);
}

}  // namespace pare::testing
