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

  // Fixed shards (data-parallel training over ranks, data_parallel.h): the
  // global batch (x, y) of B samples is cut into `total` shards, shard q
  // holding rows [chunk_begin(B, total, q), chunk_begin(B, total, q + 1));
  // this call computes shards [q0, q1), each forward and backward on one
  // thread into a gradient buffer of its own, scaled by the shard's share of
  // B, with dropout forked by q. The buffers are left unsummed (shard_grads)
  // and the shares' losses returned. A shard's bits depend only on the
  // model, (x, y), q and total: not on the thread count, nor on which
  // process computes it. REQUIRES: 1 <= total <= B, 0 <= q0 < q1 <= total,
  // q1 - q0 <= max_local_shards given at construction.
  std::vector<double> run_shards(const Tensor& x, const Tensor& y, const Rng& dropout, int q0, int q1,
                                 int total);
  // The gradient blob (the layout of model.store().grads()) of local shard
  // i, i.e. shard q0 + i of the last run_shards.
  const Tensor& shard_grads(int i) const { return fixed_grads_[static_cast<size_t>(i)]; }
  // Allocates buffers for up to `max_local_shards` fixed shards.
  void reserve_shards(int max_local_shards);

 private:
  nn::Model& model_;
  ParallelMode mode_;
  int shards_ = 1;
  std::vector<std::vector<autograd::Var>> leaves_;  // per shard >= 1
  std::vector<Tensor> grads_;                        // per shard >= 1: a gradient blob
  std::vector<std::vector<autograd::Var>> fixed_leaves_;  // per fixed shard
  std::vector<Tensor> fixed_grads_;                        // per fixed shard: a gradient blob
};

}  // namespace pare::train
