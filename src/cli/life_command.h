// `pare life`: the Game of Life study (experiments/life.h) from the command
// line: runs over steps n, widths m and seeds, spread across threads (and,
// under mpirun, across ranks; rank 0 prints), with a bar (terminal), plain
// lines or JSON lines, and the table at the end.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "pare/experiments/life.h"

namespace pare::cli {

class LifeCommand {
 public:
  // Registers the subcommand on `app`.
  explicit LifeCommand(CLI::App& app);
  // After parsing: runs the study and returns the exit code, or -1 when
  // `pare life` was not chosen.
  int run();

 private:
  CLI::App* cmd_ = nullptr;
  experiments::LifeStudyConfig cfg_;
  bool no_early_stop_ = false;
  bool json_ = false, quiet_ = false;
};

}  // namespace pare::cli
