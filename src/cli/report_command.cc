// `pare report` (report_command.h).
#include "pare/cli/report_command.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/experiments/report.h"

namespace pare::cli {

ReportCommand::ReportCommand(CLI::App& app) {
  cmd_ = app.add_subcommand("report",
                            "one self-contained HTML page of charts (loss and accuracy curves, "
                            "accuracy vs remaining weights, bytes and "
                            "training cost, the Life success table, per-layer sparsity) from run "
                            "directories, tickets, Life studies and "
                            ".pare files; opens offline");
  cmd_->add_option("runs", runs_,
                   "run directories (pare train / prune / ticket / life), .pare files, or "
                   "directories holding them")
      ->required();
  cmd_->add_option("-o,--out", out_, "the HTML file to write")->capture_default_str();
  cmd_->add_option("--title", title_, "the page's heading")->capture_default_str();
  cmd_->add_flag("--json", json_, "print what was written as JSON");
  cmd_->add_flag("--quiet", quiet_, "print nothing");
}

int ReportCommand::run() {
  if (!*cmd_) return -1;
  const experiments::Report r = experiments::write_report(runs_, out_, {.title = title_});
  if (json_) {
    std::cout << nlohmann::json{{"out", out_},
                                {"charts", r.charts},
                                {"not_shown", r.missing},
                                {"files_read", r.sources.size()}}
                     .dump()
              << std::endl;
  } else if (!quiet_) {
    std::cout << "report: " << out_ << " (" << r.charts.size() << " charts and tables from "
              << r.sources.size() << " files";
    if (!r.missing.empty())
      std::cout << "; not shown: " << r.missing.size() << ", listed on the page";
    std::cout << ")" << std::endl;
  }
  return 0;
}

}  // namespace pare::cli
