// Forward/backward for one batch, op-parallel or data-parallel; see step.h.
#include "pare/train/step.h"

#include "pare/base/thread_pool.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::train {

using autograd::Var;

const char* parallel_mode_name(ParallelMode m) { return m == ParallelMode::data ? "data" : "ops"; }

ParallelMode choose_parallel_mode(const std::string& name, const nn::Model& model, int64_t batch,
                                  int threads) {
  if (name == "ops") return ParallelMode::ops;
  if (name == "data") return ParallelMode::data;
  if (name != "auto") fail("--parallel must be auto, data or ops, got \"", name, "\"");
  if (threads < 2 || batch < 2) return ParallelMode::ops;
  // Per-op hand-offs cost a few microseconds each; when a sample's forward
  // pass is small the ops are too short to split well, so split the batch.
  // Threshold measured on LeNet-300-100 / LeNet-5 / Life (docs/results.md).
  const double macs_per_shard = static_cast<double>(model.forward_macs()) * batch / threads;
  return macs_per_shard < 4e6 ? ParallelMode::data : ParallelMode::ops;
}

namespace {

// Leaves sharing the model's values whose gradients land in `blob` (laid
// out as the model's gradient blob), so a thread can run a whole forward and
// backward pass without touching another's gradients.
std::vector<Var> leaves_into(const nn::Model& model, Tensor& blob) {
  std::vector<Var> leaves;
  int64_t offset = 0;
  for (nn::Parameter* p : model.parameters()) {
    Var leaf(p->value(), /*requires_grad=*/true);
    const int64_t n = p->numel();
    leaf.bind_grad(blob.slice_rows(offset, offset + n).reshape(p->value().shape()));
    offset += n;
    leaves.push_back(std::move(leaf));
  }
  return leaves;
}

}  // namespace

StepRunner::StepRunner(nn::Model& model, ParallelMode mode) : model_(model), mode_(mode) {
  if (mode_ != ParallelMode::data) return;
  shards_ = num_threads();
  for (int s = 1; s < shards_; ++s) {
    grads_.push_back(Tensor::zeros(model.store().grads().shape()));
    leaves_.push_back(leaves_into(model, grads_.back()));
  }
}

void StepRunner::reserve_shards(int max_local_shards) {
  while (static_cast<int>(fixed_grads_.size()) < max_local_shards) {
    fixed_grads_.push_back(Tensor::zeros(model_.store().grads().shape()));
    fixed_leaves_.push_back(leaves_into(model_, fixed_grads_.back()));
  }
}

std::vector<double> StepRunner::run_shards(const Tensor& x, const Tensor& y, const Rng& dropout, int q0,
                                           int q1, int total) {
  const int64_t batch = x.dim(0);
  PARE_CHECK(total >= 1 && total <= batch && 0 <= q0 && q0 < q1 && q1 <= total &&
                 q1 - q0 <= static_cast<int>(fixed_grads_.size()),
             "run_shards: shards [", q0, ", ", q1, ") of ", total, " over a batch of ", batch, " with ",
             fixed_grads_.size(), " buffers");
  std::vector<double> losses(static_cast<size_t>(q1 - q0));
  // One shard per task, each on one thread from start to end: its bits do
  // not depend on which thread, or how many, run it.
  thread_pool().parallel_for(q1 - q0, [&](int64_t i0, int64_t i1, int) {
    SerialScope serial;  // the shard's ops stay on this thread
    for (int64_t i = i0; i < i1; ++i) {
      const int q = q0 + static_cast<int>(i);
      const int64_t b0 = ThreadPool::chunk_begin(batch, total, q);
      const int64_t b1 = ThreadPool::chunk_begin(batch, total, q + 1);
      Tensor& blob = fixed_grads_[static_cast<size_t>(i)];
      blob.zero();
      Rng rng = dropout.fork(static_cast<uint64_t>(q));
      nn::ForwardContext ctx{.training = true, .rng = &rng, .leaves = &fixed_leaves_[static_cast<size_t>(i)]};
      Var loss = model_.loss(model_.forward(Var(x.slice_rows(b0, b1)), ctx), y.slice_rows(b0, b1));
      const float weight = static_cast<float>(b1 - b0) / static_cast<float>(batch);
      loss.backward(Tensor::full({1}, weight));
      losses[static_cast<size_t>(i)] = loss.value().f32()[0] * static_cast<double>(weight);
    }
  });
  return losses;
}

double StepRunner::run(const Tensor& x, const Tensor& y, const Rng& dropout) {
  const int64_t batch = x.dim(0);
  Tensor& grads = model_.store().grads();
  if (mode_ == ParallelMode::ops || shards_ == 1 || batch < shards_) {
    model_.store().zero_grad();
    Rng rng = dropout;
    nn::ForwardContext ctx{.training = true, .rng = &rng};
    Var loss = model_.loss(model_.forward(Var(x), ctx), y);
    loss.backward();
    return loss.value().f32()[0];
  }
  std::vector<double> losses(static_cast<size_t>(shards_));
  thread_pool().parallel_for(shards_, [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t b0 = ThreadPool::chunk_begin(batch, shards_, static_cast<int>(s));
      const int64_t b1 = ThreadPool::chunk_begin(batch, shards_, static_cast<int>(s) + 1);
      Tensor shard_grads = s == 0 ? grads : grads_[static_cast<size_t>(s - 1)];
      shard_grads.zero();
      Rng rng = dropout.fork(static_cast<uint64_t>(s));
      nn::ForwardContext ctx{.training = true, .rng = &rng,
                             .leaves = s == 0 ? nullptr : &leaves_[static_cast<size_t>(s - 1)]};
      Var loss = model_.loss(model_.forward(Var(x.slice_rows(b0, b1)), ctx), y.slice_rows(b0, b1));
      // The batch loss is the shard losses weighted by their share of the batch.
      const float weight = static_cast<float>(b1 - b0) / static_cast<float>(batch);
      loss.backward(Tensor::full({1}, weight));
      losses[static_cast<size_t>(s)] = loss.value().f32()[0] * static_cast<double>(weight);
    }
  });
  // Sum the shard gradients into the model's blob, shard by shard in order.
  float* g = grads.f32();
  const int64_t n = grads.numel();
  ops::parallel_range(n, 1.0, [&](int64_t b, int64_t e) {
    for (const Tensor& other : grads_) kernels::axpy_f32(e - b, g + b, other.f32() + b, 1.0f);
  });
  double total = 0;
  for (double l : losses) total += l;
  return total;
}

}  // namespace pare::train
