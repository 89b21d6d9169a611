// `pare cost RUN...`: what runs cost, side by side with what they reached
// (experiments/cost_table.h, docs/cost.md).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace pare::cli {

class CostCommand {
 public:
  explicit CostCommand(CLI::App& app);
  // After parsing: prints the table and returns 0, or -1 when `pare cost` was not chosen.
  int run();

 private:
  CLI::App* cmd_ = nullptr;
  std::vector<std::string> runs_;
  bool json_ = false;
};

}  // namespace pare::cli
