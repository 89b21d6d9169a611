// Shared helpers for the prune tests.
#pragma once

#include <memory>
#include <vector>

#include "pare/nn/module.h"

namespace pare::prune::testing {

// An MLP widths[0] -> widths[1] -> ... with a ReLU between linear layers.
inline std::unique_ptr<nn::Model> relu_mlp(const std::vector<int64_t>& widths, uint64_t seed = 0) {
  nn::ModelSpec s;
  s.name = "mlp";
  s.input = {widths.front()};
  for (size_t i = 1; i < widths.size(); ++i) {
    if (i > 1) s.layers.push_back({.type = "relu"});
    s.layers.push_back({.type = "linear", .out = widths[i]});
  }
  return nn::Model::build(s, seed);
}

}  // namespace pare::prune::testing
