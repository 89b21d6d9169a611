// Quantization-aware fine-tuning (issue #6): a short fine-tune of a model
// through a caller's forward pass, in pare the fake-quantized network of
// io::FakeQuantModel (weights s8 per output channel, each weight layer's
// input u8 on its grid, straight-through gradients), so that the float
// weights move to where their int8 grids serve the loss best. The loop is the
// plain one: seeded shuffled batches, forward, loss, zero_grad, backward,
// step. Masks are respected (the optimizer keeps pruned weights at exactly
// zero), so a pruned model stays as sparse as it was.
//
// Reproducible: same seed and thread count, same bits.
#pragma once

#include <functional>

#include "pare/data/dataset.h"
#include "pare/nn/module.h"
#include "pare/optim/optimizer.h"

namespace pare::train {

struct QatConfig {
  int64_t epochs = 1;  // passes over the training set; typical 1 to 3
  int64_t batch = 60;  // samples per step
  // A fine-tune's small learning rate; Adam at 1e-4 is typical.
  optim::OptimizerConfig optimizer{.name = "adam", .lr = 1e-4f};
  uint64_t seed = 0;  // batch order and dropout
  // Raises Error naming the flag (--qat-epochs, --qat-batch, --qat-lr) to fix.
  void validate() const;
};

// The network's output for a batch x (training mode in ctx); records a graph.
using ForwardFn = std::function<autograd::Var(const autograd::Var& x, nn::ForwardContext& ctx)>;

struct QatResult {
  int64_t steps = 0;
  double first_epoch_loss = 0;  // mean training loss of the first epoch
  double last_epoch_loss = 0;   // and of the last
  double seconds = 0;
};

// Fine-tunes `model`'s parameters for cfg.epochs over `data` with the loss of
// the model's spec on forward(x) (in practice FakeQuantModel::forward).
QatResult qat_finetune(nn::Model& model, const data::Dataset& data, const QatConfig& cfg,
                       const ForwardFn& forward);

}  // namespace pare::train
