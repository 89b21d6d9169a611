// Pruning during one training run: gradual magnitude pruning (Zhu & Gupta
// 2017) and dynamic sparse training with SET (Mocanu et al. 2018) and RigL
// (Evci et al. 2020), plus the ERK layer densities they use.
//
// The training loop (train/trainer.cc) calls begin() once on a fresh run and
// update() after every backward pass, before the optimizer step, when the
// gradients of all weights (pruned ones included: the backward pass is dense)
// are in the store. Every decision is a pure function of the config, the
// step and the seed, so a run resumed from a checkpoint (which holds the
// masks) continues with the same bits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pare/nn/module.h"

namespace pare::prune {

struct SparseTrainingConfig {
  std::string method = "none";      // none | gmp | set | rigl
  double sparsity = 0.0;            // final fraction of prunable weights removed
  // How the sparsity is spread over layers: erk (Erdős–Rényi-kernel, denser
  // small layers), uniform (every layer the same), global (gmp only: one
  // magnitude ranking over all layers).
  std::string distribution = "erk";
  int64_t interval = 100;           // steps between mask updates
  double drop_fraction = 0.3;       // set/rigl: fraction replaced at step 0, cosine-decayed to 0
  double begin = 0.0;               // gmp: fraction of training before pruning starts
  double end = 0.75;                // fraction of training after which the mask stays fixed
  // Raises Error naming the offending flag.
  void validate() const;
  bool enabled() const { return method != "none"; }
};

const std::vector<std::string>& sparse_training_methods();

// Per prunable parameter, the density (fraction kept) that gives the model
// `density` overall under `distribution` (erk | uniform). ERK: layer density
// proportional to (sum of the weight's dimensions) / (their product), capped
// at 1, with the capped layers' share redistributed (Evci et al. 2020, app. A).
std::vector<double> layer_densities(const nn::Model& model, double density,
                                    const std::string& distribution);

// Zhu & Gupta's cubic schedule: sparsity at `step` rising from 0 at
// begin_step to `final_sparsity` at end_step.
double gradual_sparsity(double final_sparsity, int64_t step, int64_t begin_step, int64_t end_step);
// RigL's cosine-decayed drop fraction at `step`.
double cosine_drop_fraction(double initial, int64_t step, int64_t end_step);

class SparseTrainer {
 public:
  SparseTrainer(const SparseTrainingConfig& cfg, int64_t total_steps, uint64_t seed);
  // Fresh run: gives the model masks (set/rigl: random at the layer densities).
  void begin(nn::Model& model);
  // After backward at global step `step` (0-based): updates the masks when
  // due and masks the values. Returns true when a mask changed.
  bool update(int64_t step, nn::Model& model);
  // Whether the step needs the dense gradient of every weight (RigL's grow
  // steps); the FLOP count charges those steps as dense.
  bool needs_dense_gradient(int64_t step) const;
  // Whether update(step, ...) will look at the weights (and maybe change masks).
  bool due(int64_t step) const;
  const SparseTrainingConfig& config() const { return cfg_; }

 private:
  void rewire(int64_t step, nn::Model& model);  // set / rigl
  void gradual(int64_t step, nn::Model& model);  // gmp

  SparseTrainingConfig cfg_;
  int64_t total_steps_, begin_step_, end_step_;
  uint64_t seed_;
};

}  // namespace pare::prune
