// What a training run cost (issue #8, docs/cost.md): FLOPs, wall and CPU
// seconds, peak memory, energy (measured from RAPL where readable, else
// estimated from CPU time and a per-core power model, and labelled which),
// CO2e from a grid intensity and a PUE, and money from a price per core-hour.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "pare/base/energy.h"

namespace pare::train {

struct CostSettings {
  // gCO2e per kWh of the electricity: the world average of IEA 2019, as
  // CodeCarbon falls back to (../shared/research/papers.md, section 7).
  double grid_g_per_kwh = 475.0;
  // Where the electricity comes from, when given: "world" or an ISO 3166
  // alpha-3 country code; sets grid_g_per_kwh (grid_intensity_of).
  std::string region = "world";
  // Data-centre overhead (power usage effectiveness): 1 for a machine on a
  // desk; Strubell et al. 2019 used 1.58, the 2018 industry average.
  double pue = 1.0;
  // Price of one core for one hour, billed for every worker thread over the
  // wall time: AWS EC2 c6i.large on demand (us-east-1) costs 0.085 USD an hour
  // for 2 vCPUs.
  double price_per_core_hour = 0.0425;
  std::string currency = "USD";
  // Per-core power for the estimate; 0: the model for the detected CPU.
  double watts_per_core = 0.0;
  // Raises Error naming the flag (--grid-intensity, --pue, ...) to fix.
  void validate() const;
};

// gCO2e per kWh of a region's electricity: "world" (475, IEA 2019) or one of
// 25 countries by ISO alpha-3 code (2023 figures from Our World in Data, as
// CodeCarbon 3.3.2 ships them in data/private_infra/global_energy_mix.json).
// Raises Error listing the known regions for another name.
double grid_intensity_of(const std::string& region);

// The power one busy core draws, for estimates: the CPU's thermal design
// power divided by its cores, for the family its model name names (and, for
// AMD EPYC, the generation its cpu family gives; -1: unknown), with the part
// it was taken from.
struct CorePower {
  double watts = 0;
  std::string basis;
};
CorePower core_power_model(const std::string& cpu_model_name, int cpu_family = -1);

struct Energy {
  double joules = 0;
  bool measured = false;
  std::string method;  // "rapl-package" | "estimated-cpu-time"
  std::string basis;   // the rule, the same for every run it prices
  std::string detail;  // how, in words, with this run's numbers
};

// Started with the work; energy() measures it (or estimates it) at the end.
class CostMeter {
 public:
  explicit CostMeter(const CostSettings& settings) : CostMeter(settings, EnergyMeter()) {}
  // `rapl`: the counters to read (tests pass a fake powercap tree).
  CostMeter(const CostSettings& settings, EnergyMeter rapl);
  // cpu_seconds: the process's CPU time over the work.
  Energy energy(double cpu_seconds) const;
  const CostSettings& settings() const { return settings_; }

 private:
  CostSettings settings_;
  EnergyMeter rapl_;
};

struct Cost {
  double flops = 0, executed_flops = 0, dense_flops = 0;
  double seconds = 0, cpu_seconds = 0;
  int64_t peak_rss_bytes = 0;
  int threads = 1;
  double ledger_seconds = 0;  // wall time the ledger itself took (its overhead)
  Energy energy;
  double co2e_grams = 0, money = 0;
  CostSettings settings;
  // The run log's "cost" object (docs/cost.md).
  nlohmann::json to_json() const;
};

// Fills energy, CO2e and money from the time figures already set.
void price(Cost& cost, const CostMeter& meter);

// Sums of costs (phases of one study): flops, seconds, joules (measured only
// if all were), CO2e and money.
Cost add(const Cost& a, const Cost& b);
Cost cost_from_json(const nlohmann::json& j);

}  // namespace pare::train
