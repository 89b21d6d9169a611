// The quantization-aware fine-tuning loop (see qat.h).
#include "pare/train/qat.h"

#include "pare/base/clock.h"
#include "pare/base/error.h"
#include "pare/data/batcher.h"

namespace pare::train {

void QatConfig::validate() const {
  if (epochs < 1) fail("--qat-epochs must be at least 1, got ", epochs);
  if (batch < 1) fail("--qat-batch must be at least 1, got ", batch);
  if (!(optimizer.lr > 0.0f)) fail("--qat-lr must be positive, got ", optimizer.lr);
  optim::validate(optimizer);
}

QatResult qat_finetune(nn::Model& model, const data::Dataset& data, const QatConfig& cfg,
                       const ForwardFn& forward) {
  cfg.validate();
  if (data.size() == 0) fail("quantization-aware training: no training samples");
  auto opt = optim::make_optimizer(cfg.optimizer, model.parameters());
  opt->apply_masks();  // pruned weights and their state start (and stay) at zero
  data::Batcher batcher(data, cfg.batch, /*shuffle=*/true);
  const Rng root(cfg.seed);
  Tensor x, y;
  QatResult result;
  Stopwatch timer;
  for (int64_t epoch = 0; epoch < cfg.epochs; ++epoch) {
    Rng order = root.fork(0x0A7000 + static_cast<uint64_t>(epoch));
    batcher.start_epoch(order);
    double loss_sum = 0;
    int64_t seen = 0;
    while (batcher.next(x, y)) {
      Rng dropout = root.fork(0xD0000000 + static_cast<uint64_t>(result.steps));
      nn::ForwardContext ctx{.training = true, .rng = &dropout};
      model.store().zero_grad();
      autograd::Var loss = model.loss(forward(autograd::Var(x), ctx), y);
      loss_sum += static_cast<double>(loss.value().f32()[0]) * static_cast<double>(x.dim(0));
      seen += x.dim(0);
      loss.backward();
      opt->step(cfg.optimizer.lr);
      ++result.steps;
    }
    const double mean = loss_sum / static_cast<double>(seen);
    if (epoch == 0) result.first_epoch_loss = mean;
    result.last_epoch_loss = mean;
  }
  result.seconds = timer.seconds();
  return result;
}

}  // namespace pare::train
