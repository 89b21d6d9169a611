// `pare life-prune` and `pare life-filters`: the pruning extension of the Game
// of Life study (experiments/life_prune.h) from the command line, and the
// reader that prints a saved life net's filters.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "pare/experiments/life_prune.h"

namespace pare::cli {

class LifePruneCommand {
 public:
  // Registers both subcommands on `app`.
  explicit LifePruneCommand(CLI::App& app);
  // After parsing: runs the chosen subcommand and returns the exit code, or
  // -1 when neither was chosen.
  int run();

 private:
  int run_prune();
  int run_filters();

  CLI::App* prune_ = nullptr;
  CLI::App* filters_ = nullptr;
  experiments::LifePruneConfig cfg_;
  bool json_ = false, quiet_ = false;
  std::string model_file_;
};

}  // namespace pare::cli
