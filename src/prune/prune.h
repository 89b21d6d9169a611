// Masks, pruning criteria and mask selection: the pieces every pruning method
// (one-shot, IMP, gradual, dynamic sparse training) is made of.
//
// A mask is a 0/1 f32 tensor on a Parameter (nn/parameter.h). Only weights are
// pruned (Parameter::is_weight); biases stay dense. A criterion scores every
// prunable weight (higher = more worth keeping); a selection turns scores into
// masks, choosing only among weights that are still alive, so pruning never
// revives a weight. Scores and selections are deterministic: ties are broken
// by position, and the random criterion draws from a counter-based stream.
//
//   auto scores = pare::prune::criterion("snip").score(model, input);
//   pare::prune::keep_top_global(model, scores, model_weights / 10);
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pare/nn/module.h"

namespace pare::prune {

// The parameters pruning acts on, in model order: the weights.
std::vector<nn::Parameter*> prunable(const nn::Model& model);
// Gives every prunable parameter an all-ones mask if it has none.
void ensure_masks(nn::Model& model);
// Multiplies every masked parameter's value by its mask.
void apply_masks(nn::Model& model);
// Number of alive (mask 1, or unmasked) entries of a parameter.
int64_t alive(const nn::Parameter& p);

struct LayerSparsity {
  std::string name;  // parameter name, "fc1.weight"
  int64_t total = 0, kept = 0;
  double density() const { return total ? static_cast<double>(kept) / total : 0; }
  double sparsity() const { return 1.0 - density(); }
};
struct SparsityReport {
  std::vector<LayerSparsity> layers;  // prunable parameters only
  int64_t total = 0, kept = 0;        // over prunable parameters
  double density() const { return total ? static_cast<double>(kept) / total : 0; }
  double sparsity() const { return 1.0 - density(); }
};
SparsityReport sparsity(const nn::Model& model);

// One score tensor per prunable parameter (same order and shapes); higher
// means more worth keeping.
using Scores = std::vector<Tensor>;

// Keeps, over all prunable weights together, the `keep` highest-scoring alive
// weights; masks the rest. Raises Error if `keep` exceeds the alive count.
void keep_top_global(nn::Model& model, const Scores& scores, int64_t keep);
// Keeps, in prunable parameter i, the keep[i] highest-scoring alive weights.
void keep_top_per_layer(nn::Model& model, const Scores& scores, const std::vector<int64_t>& keep);

// What data-dependent criteria see.
struct ScoreInput {
  // A few batches (inputs f32 of the model's input shape, targets as the loss
  // expects). SNIP and GraSP average over them; SynFlow, magnitude and random
  // ignore them.
  std::vector<std::pair<Tensor, Tensor>> batches;
  uint64_t seed = 0;  // random: the stream the scores are drawn from
};

struct Criterion {
  std::string name;
  std::string summary;  // one line for --help and docs
  bool needs_data = false;
  // Iterative criteria (SynFlow) are re-scored while the mask tightens:
  // one_shot() calls score() `iterations` times on an exponential schedule.
  int iterations = 1;
  std::function<Scores(nn::Model&, const ScoreInput&)> score;
};

// The registry: magnitude, random, snip, grasp, synflow. Raises Error listing
// the names on a miss.
const Criterion& criterion(const std::string& name);
std::vector<std::string> criterion_names();
void register_criterion(Criterion c);

// Scope of a one-shot selection.
enum class Scope { global, layerwise };
Scope parse_scope(const std::string& name);  // "global" | "layerwise"

// Prunes `model` in one shot to `sparsity` (fraction of prunable weights
// removed, counted from all prunable weights) with the criterion; iterative
// criteria get their schedule. Masks are created if missing and values are
// masked after.
void one_shot(nn::Model& model, const Criterion& c, double sparsity, Scope scope,
              const ScoreInput& input);

// ---- structured (neuron / channel) ranking ---------------------------------

// L1 norm of every output unit (row of a linear weight, filter of a conv
// weight) of prunable parameter `p`: one value per output unit.
std::vector<double> unit_l1_norms(const nn::Parameter& p);

}  // namespace pare::prune
