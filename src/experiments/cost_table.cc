#include "pare/experiments/cost_table.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "pare/base/error.h"
#include "pare/base/json_number.h"
#include "pare/base/strings.h"
#include "pare/base/file.h"

namespace pare::experiments {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json parse_json(const std::string& text, const std::string& path) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(path, ": not JSON");
  return j;
}

// A run's cost from its ledger, or, for runs written before it, from the
// FLOPs and seconds it did record.
void fill(CostRow& row, const json& j) {
  if (j.contains("cost") && j["cost"].is_object()) {
    row.cost = train::cost_from_json(j["cost"]);
    row.has_ledger = true;
    return;
  }
  row.cost.flops = j.value("flops", 0.0);
  row.cost.executed_flops = j.value("executed_flops", row.cost.flops);
  row.cost.dense_flops = j.value("dense_flops", 0.0);
  row.cost.seconds = j.value("seconds", 0.0);
  row.cost.cpu_seconds = j.value("cpu_seconds", 0.0);
}

std::vector<CostRow> from_log(const std::string& log_path, const std::string& label) {
  std::istringstream in(read_file(log_path));
  json end, start;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const json j = parse_json(line, log_path);
    if (j.value("event", "") == "end") end = j;
    if (j.value("event", "") == "start") start = j;
  }
  if (end.is_null()) fail(log_path, ": the run has not finished (no \"end\" event)");
  CostRow row;
  row.label = label;
  row.source = log_path;
  row.accuracy = end.value("test_accuracy", -1.0);
  if (end.contains("sparsity")) row.density = 1.0 - end.value("sparsity", 0.0);
  fill(row, end);
  return {row};
}

// A ticket run's "round" (-1 when it has none).
int round_of(const json& run) { return static_cast<int>(whole_number_or(run, "round", -1, 0, 1 << 20, "a run's")); }

std::vector<CostRow> from_ticket(const std::string& results_path) {
  const json j = parse_json(read_file(results_path), results_path);
  if (!j.contains("runs") || !j["runs"].is_array() || j["runs"].empty())
    fail(results_path, ": no \"runs\": not the results of pare ticket");
  int last = -1;
  for (const json& r : j["runs"])
    if (r.value("kind", "") == "ticket") last = std::max(last, round_of(r));
  if (last < 0) fail(results_path, ": no ticket round");
  std::vector<CostRow> rows;
  CostRow found;
  found.label = "finding the ticket (IMP rounds 0-" + std::to_string(last) + ")";
  found.source = results_path;
  bool first = true, ledger = true;
  for (const json& r : j["runs"]) {
    if (r.value("kind", "") != "ticket") continue;
    CostRow part;
    fill(part, r);
    ledger = ledger && part.has_ledger;
    found.cost = first ? part.cost : train::add(found.cost, part.cost);
    first = false;
    if (round_of(r) == last) {
      found.accuracy = r.value("test_accuracy", -1.0);
      found.density = r.value("density", -1.0);
    }
  }
  found.has_ledger = ledger;
  if (const auto* dense = [&]() -> const json* {
        for (const json& r : j["runs"])
          if (r.value("kind", "") == "ticket" && round_of(r) == 0) return &r;
        return nullptr;
      }()) {
    CostRow row;
    row.label = "dense training (round 0)";
    row.source = results_path;
    row.accuracy = dense->value("test_accuracy", -1.0);
    row.density = dense->value("density", 1.0);
    fill(row, *dense);
    rows.push_back(row);
  }
  rows.push_back(found);
  static const std::map<std::string, std::string> names = {
      {"ticket", "training the ticket from its rewound init"},
      {"reinit", "control: the ticket's mask, fresh init"},
      {"random", "control: a random mask, same layer sparsity"}};
  for (const char* kind : {"ticket", "reinit", "random"}) {
    for (const json& r : j["runs"]) {
      if (r.value("kind", "") != kind || round_of(r) != last) continue;
      CostRow row;
      row.label = names.at(kind) + " (round " + std::to_string(last) + ")";
      row.source = results_path;
      row.accuracy = r.value("test_accuracy", -1.0);
      row.density = r.value("density", -1.0);
      fill(row, r);
      rows.push_back(row);
    }
  }
  return rows;
}

std::vector<CostRow> read_cost_rows(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "results.json", ec)) {
      const json j = parse_json(read_file((p / "results.json").string()), (p / "results.json").string());
      if (j.contains("runs")) return from_ticket((p / "results.json").string());
    }
    if (fs::exists(p / "log.jsonl", ec)) return from_log((p / "log.jsonl").string(), p.filename().string());
    fail(path, ": no log.jsonl or ticket results.json: not a pare run directory");
  }
  if (!fs::exists(p, ec)) fail(path, ": no such run directory or file");
  if (p.filename() == "log.jsonl") return from_log(path, p.parent_path().filename().string());
  if (p.extension() == ".json") return from_ticket(path);
  fail(path, ": not a run directory, log.jsonl or ticket results.json");
}

}  // namespace

std::vector<CostRow> cost_rows(const std::string& path) {
  // Valid JSON of the wrong shape (a log line that is not an object, a
  // "round" that is a string) is as unreadable as bytes that are not JSON.
  try {
    return read_cost_rows(path);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not the log or ticket results pare writes (", e.what(), ")");
  }
}

std::string cost_table(const std::vector<CostRow>& rows) {
  std::ostringstream os;
  os << "| run | test accuracy | weights kept | FLOPs (executed) | seconds | CPU seconds | energy | CO2e | money |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  std::set<std::string> methods;
  for (const CostRow& r : rows) {
    const train::Cost& c = r.cost;
    os << "| " << r.label << " | " << (r.accuracy >= 0 ? strf("%.2f %%", 100 * r.accuracy) : "-") << " | "
       << (r.density >= 0 ? strf("%.2f %%", 100 * r.density) : "-") << " | " << strf("%.3g", c.flops) << " ("
       << strf("%.3g", c.executed_flops) << ") | " << strf("%.1f", c.seconds) << " | "
       << (c.cpu_seconds > 0 ? strf("%.1f", c.cpu_seconds) : "-") << " | ";
    if (r.has_ledger) {
      os << strf("%.4g J", c.energy.joules) << " " << (c.energy.measured ? "measured" : "estimated") << " | "
         << strf("%.3g g", c.co2e_grams) << " | " << strf("%.3g ", c.money) << c.settings.currency << " |\n";
      methods.insert(c.energy.method + ": " + c.energy.basis);
    } else {
      os << "- | - | - |\n";
    }
  }
  bool old = false;
  for (const CostRow& r : rows) old = old || !r.has_ledger;
  if (!methods.empty()) {
    os << "\nEnergy:\n";
    for (const std::string& m : methods) os << "- " << m << "\n";
    os << "CO2e = kWh x PUE x grid intensity; money = threads x wall hours x price per core-hour (docs/cost.md).\n";
  }
  if (old) os << "\n(-: a run written before pare's cost ledger: FLOPs and seconds only.)\n";
  return os.str();
}

}  // namespace pare::experiments
