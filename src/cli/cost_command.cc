#include "pare/cli/cost_command.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/experiments/cost_table.h"

namespace pare::cli {

CostCommand::CostCommand(CLI::App& app) {
  cmd_ = app.add_subcommand(
      "cost", "what runs cost (FLOPs, seconds, energy measured or estimated, CO2e, money) beside what they reached");
  cmd_->add_option("runs", runs_, "run directories (pare train / prune / ticket), log.jsonl or results.json files")
      ->required();
  cmd_->add_flag("--json", json_, "print JSON");
}

int CostCommand::run() {
  if (!*cmd_) return -1;
  std::vector<experiments::CostRow> rows;
  for (const std::string& r : runs_) {
    auto more = experiments::cost_rows(r);
    rows.insert(rows.end(), more.begin(), more.end());
  }
  if (json_) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows)
      out.push_back({{"label", r.label},
                     {"source", r.source},
                     {"accuracy", r.accuracy},
                     {"density", r.density},
                     {"ledger", r.has_ledger},
                     {"cost", r.cost.to_json()}});
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << experiments::cost_table(rows);
  }
  return 0;
}

}  // namespace pare::cli
