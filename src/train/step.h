// One training step's forward and backward pass over a batch, using both
// cores in whichever of two ways suits the model.
//
//   ops:  the whole batch runs on the calling thread and each op (GEMM,
//         im2col, elementwise) splits its own work across the pool. Best for
//         layers with large matrices.
//   data: the batch is cut into one shard per thread; each thread runs the
//         whole forward and backward of its shard with no synchronisation,
//         accumulating into its own gradient buffer, and the buffers are then
//         summed in a fixed order. One hand-off per step instead of one per
//         op, which is what small networks (the Game of Life nets) need.
//
// Either way the gradient left in model.store().grads() is that of the batch
// mean loss, and a given mode and thread count always give the same bits.
#pragma once

#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/nn/module.h"

namespace pare::train {

enum class ParallelMode { ops, data };
// "auto" picks by the model's forward cost per sample and the batch size.
ParallelMode choose_parallel_mode(const std::string& name, const nn::Model& model, int64_t batch,
                                  int threads);
const char* parallel_mode_name(ParallelMode m);

class StepRunner {
 public:
  // REQUIRES: `model` outlives the runner.
  StepRunner(nn::Model& model, ParallelMode mode);
  // Zeroes the gradients, runs forward and backward on (x, y) and leaves the
  // gradient of the mean loss in the model's gradient blob. `dropout` seeds
  // the dropout streams (forked per shard). Returns the mean loss.
  double run(const Tensor& x, const Tensor& y, const Rng& dropout);
  ParallelMode mode() const { return mode_; }

 private:
  nn::Model& model_;
  ParallelMode mode_;
  int shards_ = 1;
  std::vector<std::vector<autograd::Var>> leaves_;  // per shard >= 1
  std::vector<Tensor> grads_;                        // per shard >= 1: a gradient blob
};

}  // namespace pare::train
