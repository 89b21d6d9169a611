// Update rules: SGD (momentum, Nesterov, weight decay), Adam and AdamW, and
// learning-rate schedules. Masks are respected: a masked-out weight and its
// optimizer state stay at exactly zero. A parameter running sparse
// (Parameter::sparse) is updated only at its pattern's entries, O(nnz).
//
// Every optimizer is reachable by name (make_optimizer) for the CLI, and
// exposes its state as named tensors plus a step count for checkpoints.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pare/nn/parameter.h"

namespace pare::optim {

struct OptimizerConfig {
  std::string name = "adam";  // sgd | adam | adamw
  float lr = 1e-3f;           // base learning rate
  float momentum = 0.0f;      // sgd: momentum factor (0 = plain SGD); typical 0.9
  float dampening = 0.0f;     // sgd
  bool nesterov = false;      // sgd: Nesterov momentum (needs momentum > 0)
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // adam / adamw
  float weight_decay = 0.0f;  // L2 (sgd, adam) or decoupled (adamw); adamw typical 1e-2
};

class Optimizer {
 public:
  explicit Optimizer(std::vector<nn::Parameter*> params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  // Applies one update from the parameters' gradients at learning rate lr.
  virtual void step(float lr) = 0;
  // Named state tensors (for checkpoints), each of its parameter's dense
  // shape and current (packed state is written back first); a checkpoint
  // reader copies into them.
  std::vector<std::pair<std::string, Tensor*>> state();
  // Zeroes each masked parameter's value and state outside its mask. A
  // parameter with a sparse pattern (Parameter::sparse) is updated at the
  // pattern's entries only, so after its mask changes this must run once
  // before the next step (the dense masked update does it every step).
  void apply_masks();
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

 protected:
  // The dense state tensors of parameter i (Adam: m, v; SGD: the momentum
  // buffer, or none) and all of them by name.
  virtual std::vector<Tensor*> state_of(size_t i) = 0;
  virtual std::vector<std::pair<std::string, Tensor*>> named_state() = 0;
  // For a parameter that trains packed (Parameter::packed): state_of(i)
  // gathered at its pattern, in pattern order, kept while the pattern lasts
  // so that the update runs over nnz contiguous values.
  std::vector<Tensor>& packed_state(size_t i);
  // Writes all packed state back into the dense state tensors and drops it.
  void flush_packed_state();

  std::vector<nn::Parameter*> params_;
  int64_t steps_ = 0;

 private:
  struct PackedState {
    std::shared_ptr<const CsrPattern> pattern;  // null: nothing packed
    std::vector<Tensor> tensors;               // one per state_of(i)
  };
  std::vector<PackedState> packed_;
};

// Raises Error naming the flag for an unknown name or a bad value.
void validate(const OptimizerConfig& cfg);
// Raises Error naming the valid choices for an unknown name or bad values.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& cfg,
                                          std::vector<nn::Parameter*> params);
const std::vector<std::string>& optimizer_names();

// Learning rate as a function of the step (0-based).
struct ScheduleConfig {
  std::string name = "constant";  // constant | step | cosine
  int64_t warmup_steps = 0;       // linear warm-up from 0 over this many steps
  int64_t step_size = 0;          // step: multiply by gamma every step_size steps
  float gamma = 0.1f;             // step
  int64_t total_steps = 0;        // cosine: length of the decay
  float lr_min = 0.0f;            // cosine: final learning rate
};
float scheduled_lr(const ScheduleConfig& s, float base_lr, int64_t step);
const std::vector<std::string>& schedule_names();
void validate(const ScheduleConfig& s);

}  // namespace pare::optim
