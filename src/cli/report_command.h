// `pare report RUN... -o report.html`: the charts of runs, tickets, Life
// studies and .pare files in one self-contained HTML page
// (experiments/report.h, docs/report.md).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace pare::cli {

class ReportCommand {
 public:
  // Registers the subcommand on `app`.
  explicit ReportCommand(CLI::App& app);
  // After parsing: writes the page and returns the exit code, or -1 when
  // `pare report` was not chosen.
  int run();

 private:
  CLI::App* cmd_ = nullptr;
  std::vector<std::string> runs_;
  std::string out_ = "report.html";
  std::string title_ = "pare report";
  bool json_ = false, quiet_ = false;
};

}  // namespace pare::cli
