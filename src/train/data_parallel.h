// Data-parallel training over the ranks of a job (issue #9; docs/distributed.md).
//
// Every rank holds the whole model and walks the same global batches (the
// batch order is a function of the seed and the epoch, the same everywhere).
// Each global batch of B samples is cut into S shards (--shards; the same
// for every rank count), shard q holding rows [B*q/S, B*(q+1)/S). Rank r of
// K computes shards [S*r/K, S*(r+1)/K), each on one thread into a gradient
// buffer of its own, scaled by the shard's share of B
// (StepRunner::run_shards). The ranks exchange their shards' gradients (each
// rank broadcasts its rows: an allgather) and every rank sums the S rows in
// shard order, in double, rounding once to float (dist::sum_in_rank_order).
// With one shard per rank (S = K) the communicator's rank-ordered allreduce
// computes the same sum with less traffic, and is used instead.
//
// So the summed gradient depends on the model, the batch and S only: not on
// K, nor on the threads per rank. Runs with the same seed and S give the same
// bits with K = 1, 2 or 4 ranks (K <= S), and every rank takes the same
// optimizer step. Weights, optimizer state, masks (pruning during training
// reads the summed gradients) and every seeded stream stay identical on all
// ranks without being sent; check_in_sync verifies it after every epoch.
// Why not sum each rank's partial sum (a message S/K times smaller): partial
// sums round differently for each K, and training amplifies a one-ulp
// difference until, after an epoch of Adam on LeNet-300-100, weights differ
// by a tenth of their layer's range (docs/distributed.md); exact agreement
// is testable, a tolerance on chaotic trajectories is not.
//
// What is sent: the gradient entries that can be non-zero. A masked weight
// sends its entries at the mask's alive positions (its pruned entries are
// zero on every rank afterwards); other parameters send everything. On steps
// that need the dense gradient of masked weights (RigL's grow steps),
// send_dense sends every entry. A shard's gradient and its loss travel in
// one float row (so the logged training loss is a float sum).
//
// Not done: overlapping the exchange with the backward pass. On the machine
// measured (docs/distributed.md) the ranks share the cores that would do the
// overlapping.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pare/dist/communicator.h"
#include "pare/nn/module.h"
#include "pare/train/step.h"

namespace pare::train {

class DataParallel {
 public:
  // comm may be null (this process alone). shards: S; 0 with one rank: not
  // active (fit's usual step); 0 with several: ranks x rank 0's threads.
  // Raises Error, on every rank, unless all ranks pass the same S >= K.
  DataParallel(dist::Communicator* comm, int64_t shards);

  // Several ranks, or fixed shards on one: steps go through step().
  bool active() const { return shards_ > 0; }
  int64_t shards() const { return shards_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  std::string name() const;

  // The shards [q0, q1) of `total` that rank r computes.
  std::pair<int, int> shards_of(int r, int total) const;
  // The most shards a rank computes in one step (StepRunner::reserve_shards).
  int max_local_shards() const;

  // Makes every rank's parameters (values, initial values, masks) equal to
  // rank 0's. Raises Error, on every rank, when the ranks' models differ in
  // structure (spec, parameter names and shapes, which ones are masked).
  void broadcast_model(nn::Model& model);

  // Rank 0's string on every rank.
  std::string broadcast_string(const std::string& on_rank0);

  // Reads which gradient entries each parameter sends: call it before the
  // first step and whenever masks changed.
  void plan(const nn::Model& model);

  // One step's forward and backward over the global batch (x, y): this
  // rank's shards through runner.run_shards, then the exchange and the sum.
  // Leaves the gradient of the global batch mean loss in the model's
  // gradient blob on every rank and returns that loss. Masked entries of
  // masked weights are left zero unless send_dense. The runner must run in
  // data mode (no packed weights) with reserve_shards(max_local_shards()).
  double step(StepRunner& runner, nn::Model& model, const Tensor& x, const Tensor& y,
              const Rng& dropout, bool send_dense);

  // Raises Error on every rank unless all ranks hold the same bits of every
  // parameter value and mask (a CRC of each, compared with rank 0's).
  // `when` names the point for the message ("after epoch 3").
  void check_in_sync(nn::Model& model, const std::string& when);

  // The sum over ranks of each value (in rank order, in double).
  void sum(std::span<double> values);

  // Totals for the log: seconds spent exchanging and summing gradients
  // (packing, the broadcasts, the sum, unpacking; waiting for the slowest
  // rank included) and the floats this rank sent.
  double exchange_seconds() const { return exchange_seconds_; }
  double floats_sent() const { return floats_sent_; }

 private:
  dist::Communicator* comm_;
  int rank_ = 0, size_ = 1;
  int64_t shards_ = 0;
  std::vector<std::vector<int64_t>> alive_;  // per parameter: its mask's alive positions (empty: no mask)
  bool planned_ = false;
  std::vector<float> rows_;    // every shard's row: the gradient entries sent, then the loss
  std::vector<float> summed_;  // their sum in shard order
  double exchange_seconds_ = 0, floats_sent_ = 0;
};

}  // namespace pare::train
