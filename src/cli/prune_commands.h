// `pare prune` (one-shot pruning by any criterion, unstructured or by whole
// neurons/channels, optionally followed by training) and `pare ticket`
// (lottery tickets by iterative magnitude pruning with rewinding; with
// --seeds, one ticket per seed, spread over the ranks under mpirun).
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "pare/cli/common.h"
#include "pare/experiments/lottery.h"

namespace pare::cli {

// The sparse-training flags of `pare train` (--sparse-training gmp|set|rigl ...).
void add_sparse_training_options(CLI::App* cmd, prune::SparseTrainingConfig& cfg);

class PruneCommands {
 public:
  // Registers both subcommands on `app`.
  explicit PruneCommands(CLI::App& app);
  // After parsing: runs the chosen subcommand and returns its exit code, or
  // -1 when neither was chosen.
  int run();

 private:
  int run_prune();
  int run_ticket();
  // `pare ticket --seeds N`: experiments::run_ticket_seeds.
  int run_ticket_seeds(experiments::TicketConfig cfg);

  CLI::App* prune_ = nullptr;
  CLI::App* ticket_ = nullptr;
  // shared
  std::string model_name_;
  DataOptions data_;
  train::TrainConfig train_;
  int threads_;
  bool json_ = false, quiet_ = false, overwrite_ = false;
  std::string out_;
  // prune
  std::string from_;
  std::string criterion_ = "magnitude";
  double sparsity_ = -1;
  std::string scope_ = "global";
  int64_t score_samples_ = 1000;
  bool structured_ = false;
  double keep_ = 0.5;
  bool train_after_ = false;
  // ticket
  experiments::TicketConfig ticket_cfg_;
  std::vector<std::string> layer_rates_;
  int seeds_ = 0;  // --seeds: 0 for one ticket at --seed
};

}  // namespace pare::cli
