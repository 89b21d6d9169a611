// The training loop: forward -> loss -> zero_grad -> backward -> step, with
// evaluation, the JSON-lines run log, atomic checkpoints and exact resume.
//
// Reproducibility contract: the batch order of epoch e is a pure function of
// (seed, e), dropout's stream of (seed, global step), and the thread pool
// partitions work by thread count only; so a run with the same seed and
// thread count gives the same bits, and a run resumed from any checkpoint
// ends with the same bits as one that was never interrupted.
//
// The loop prints nothing: progress goes to the Observer (the CLI draws the
// bar) and results to DIR/log.jsonl.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "pare/data/dataset.h"
#include "pare/dist/communicator.h"
#include "pare/nn/module.h"
#include "pare/nn/sparse_dispatch.h"
#include "pare/optim/optimizer.h"
#include "pare/prune/sparse_training.h"
#include "pare/train/cost.h"
#include "pare/train/lora.h"

namespace pare::train {

struct TrainConfig {
  CostSettings cost;            // the cost ledger's settings (grid intensity, PUE, price, power)
  int64_t epochs = 10;          // passes over the training set
  int64_t batch = 60;           // samples per step
  uint64_t seed = 0;            // weights, batch order and dropout
  optim::OptimizerConfig optimizer;
  optim::ScheduleConfig schedule;
  std::string out_dir;          // run directory (log.jsonl, checkpoint.bin, model.bin); empty: none
  int64_t checkpoint_every = 0; // steps between checkpoints (0: at the end of each epoch only)
  bool resume = false;          // continue from out_dir/checkpoint.bin when it exists
  int64_t eval_batch = 1000;    // samples per evaluation step
  int64_t patience = 0;         // early stopping: epochs without test-loss improvement (0: off)
  double target_accuracy = 0;   // stop once test accuracy reaches this (0: off)
  double target_exact = 0;      // stop once EvalResult.exact on the test set reaches this (0: off)
  int64_t max_steps = 0;        // stop after this many steps in total (0: no limit)
  std::string parallel = "auto";  // how a step uses the threads: auto | data | ops (step.h)
  prune::SparseTrainingConfig sparse;  // pruning during training: gmp | set | rigl (off by default)
  // --sparse: how masked Linear layers run (nn/sparse_dispatch.h): "auto"
  // (sparse below the measured crossover density), "on" (every masked layer
  // sparse) or "off" (dense GEMM on the masked weights). Chosen at the start
  // and again whenever the masks change; logged as "sparse_dispatch" events.
  std::string sparse_kernels = "auto";
  // Sparse fine-tuning (issue #6: deltas that stay small by construction):
  // when > 0, only this fraction of each weight's entries (of those alive)
  // is trained, the entries whose gradient over the first `update_batches`
  // batches is largest in magnitude (summed |g|); every other weight keeps
  // its starting value exactly. Biases train. Layers run dense meanwhile.
  double update_fraction = 0;
  int64_t update_batches = 10;
  // LoRA fine-tuning (train/lora.h): every weight trains as W0 + scale B A
  // with only the rank-r factors A and B updated (biases frozen); the saved
  // model holds the merged weights and the factors, so `pare delta` keeps the
  // variant as the factors. A pruned weight's layer may run sparse
  // (`sparse_kernels`); its factors' gradients and merge then cost O(nnz * rank).
  LoraConfig lora;
  // When > 0, the weights after this many steps are saved to
  // out_dir/weights_step<k>.bin (the rewind point of IMP with late rewinding).
  int64_t snapshot_step = 0;
  // The ranks of the job (train/data_parallel.h): with more than one, each
  // global batch is split across them and their gradients summed, so every
  // rank takes the same steps; rank 0 alone writes the run directory. Null
  // or a single rank: this process alone. Not owned.
  dist::Communicator* comm = nullptr;
  // Fixed shards per global batch (train/data_parallel.h): each batch is cut
  // into this many pieces, each computed on one thread, and their gradients
  // summed in order, so runs with the same seed and shards give the same
  // bits on any number of ranks up to it. 0: with one rank, the usual step
  // (step.h); with several, ranks x threads per rank.
  int64_t shards = 0;
  // --on-nan: when the loss or a gradient is not finite (train/numerics.h):
  // "stop" (an error naming the step, the batch and the first layer with a
  // non-finite gradient or weight), "skip" (the batch makes no update; more
  // than 10 in a row stop), "rollback" (back to the last checkpoint with half
  // the learning rate; more than 8 rollbacks stop).
  std::string on_nan = "stop";
  // --grad-spike: a gradient norm above this many times its running typical
  // value is reported (event "gradient_spike", Observer::on_warning); 0: off.
  double grad_spike = 100;
  // Validates and raises Error naming the offending flag.
  void validate() const;
};

struct EvalResult {
  double loss = 0;             // mean loss
  double accuracy = 0;         // classification: top-1; bce: fraction of correct cells
  double exact = 0;            // bce: fraction of samples with every output correct
  int64_t samples = 0;
};

struct EpochResult {
  int64_t epoch = 0;           // 1-based
  int64_t steps = 0;           // total steps so far
  double train_loss = 0;       // mean over the epoch's steps
  double train_seconds = 0;    // the loop only: batching, forward, backward, step
  double samples_per_second = 0;
  double sparsity = 0;         // of the prunable weights at the end of the epoch
  EvalResult test;
};

struct TrainResult {
  std::vector<EpochResult> epochs;
  EvalResult final_test;
  double seconds = 0;          // wall time of the whole fit, evaluation included
  double cpu_seconds = 0;
  int64_t steps = 0;
  // Training FLOPs of the weight layers (forward + both backward products,
  // 2 per MAC) over all steps: as executed at each step's layer densities
  // (what a sparse kernel needs), and what the dense network would need.
  double flops = 0, dense_flops = 0;
  // The same FLOPs as the kernels really executed them: a masked layer that
  // ran dense (masked-dense, or RigL's dense-gradient steps) counts as dense.
  double executed_flops = 0;
  double sparsity = 0;         // of the prunable weights at the end
  int ranks = 1;               // processes the run was split across (TrainConfig::comm)
  double allreduce_seconds = 0;  // this rank's time exchanging and summing gradients (DataParallel)
  bool resumed = false;        // started from a checkpoint
  int64_t resumed_at_step = 0;
  std::string stopped_because; // "epochs" | "early_stopping" | "target_accuracy" | "target_exact" | "max_steps"
  // The ledger (train/cost.h): the figures above with the energy (measured or
  // estimated, and how), CO2e and money; logged as the "end" event's "cost".
  Cost cost;
};

// Called from the loop for progress display, and a hook on the weights; each may be empty.
struct Observer {
  // After every step: epoch (1-based), batch within the epoch, batches per epoch, loss.
  std::function<void(int64_t, int64_t, int64_t, double)> on_step;
  std::function<void(const EpochResult&)> on_epoch;
  // After every update, before on_step and the next forward pass: the step
  // just taken (0-based) and the learning rate its update used. The step's
  // gradients are still in model.store().grads(), so the hook may constrain
  // the weights from them (train/codebook_finetune.h ties shared weights to
  // their trained centroids). Runs before checkpoints and evaluation see the
  // weights.
  std::function<void(int64_t, float)> after_update;
  // Something the user should know that does not stop the run: a gradient
  // spike, a skipped batch, a rollback.
  std::function<void(const std::string&)> on_warning;
};

// Evaluates `model` on `data` without recording a graph.
// outputs: when given, receives the network's outputs (samples, outputs per
// sample), in the data's order. comm: with more than one rank, each rank
// evaluates its contiguous share of the samples and the sums are added
// across ranks, so every rank returns the same result (then outputs must be
// null).
EvalResult evaluate(nn::Model& model, const data::Dataset& data, int64_t batch,
                    Tensor* outputs = nullptr, dist::Communicator* comm = nullptr);

// Trains `model` on train, evaluating on test after every epoch.
TrainResult fit(nn::Model& model, const data::Dataset& train, const data::Dataset& test,
                const TrainConfig& cfg, const Observer& observer = {});

// What a run directory's log.jsonl says about its epochs. The log spans every
// resume of a run; a TrainResult covers only the last process's part.
struct RunLogSummary {
  int64_t epochs = 0;
  double train_seconds = 0;       // the training loop over all epochs
  double best_test_accuracy = 0;
  nlohmann::json cost;            // the last "end" event's "cost" (null when none)
};
RunLogSummary summarize_run_log(const std::string& path);

// Saves the model (spec + weights + masks) to a file that load_model reads.
// `extra`: further named tensors (a LoRA run's factors), which load_model
// ignores.
void save_model(const nn::Model& model, const std::string& path, const std::string& meta_json = "{}",
                const std::vector<std::pair<std::string, Tensor>>& extra = {});
std::unique_ptr<nn::Model> load_model(const std::string& path);

}  // namespace pare::train
