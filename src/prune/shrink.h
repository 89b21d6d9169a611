// Structured pruning that really shrinks the model: removing neurons or
// channels yields a smaller dense model (smaller matrices), not a masked big one.
//
//   auto units = pare::prune::select_units_l1(model, /*keep_fraction=*/0.5);
//   pare::prune::mask_units(model, units);         // the masked big model
//   auto small = pare::prune::shrink(model, units); // same outputs, fewer bytes
#pragma once

#include <memory>
#include <vector>

#include "pare/nn/module.h"

namespace pare::prune {

// Output units (neurons of a linear layer, channels of a conv) kept per
// prunable weight, in model order: keep[i] lists the kept unit indices of
// prunable parameter i, ascending. The last weight layer (the model's output)
// always keeps all its units.
struct UnitSelection {
  std::vector<std::vector<int64_t>> keep;
};

// Keeps in every hidden weight layer the ceil(keep_fraction * units) units of
// largest L1 norm (ties: lower index first). Raises Error for a fraction
// outside (0, 1].
UnitSelection select_units_l1(const nn::Model& model, double keep_fraction);

// Masks the removed units in place: the unit's weights, its bias entry, and
// the weights of the next layer that read it, so the masked model computes
// exactly what the shrunk one does.
void mask_units(nn::Model& model, const UnitSelection& units);

// A new, smaller dense model (spec with the reduced widths, weights copied)
// computing the same function as the masked model. Raises Error for models
// it cannot shrink, naming the layer.
std::unique_ptr<nn::Model> shrink(const nn::Model& model, const UnitSelection& units);

}  // namespace pare::prune
