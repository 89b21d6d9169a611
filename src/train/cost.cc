#include "pare/train/cost.h"

#include <algorithm>
#include <cmath>

#include "pare/base/error.h"
#include "pare/base/json_number.h"

namespace pare::train {

using json = nlohmann::json;

void CostSettings::validate() const {
  if (!(grid_g_per_kwh >= 0) || !std::isfinite(grid_g_per_kwh))
    fail("--grid-intensity ", grid_g_per_kwh, ": grams of CO2e per kWh must be a finite number >= 0");
  if (!(pue >= 1) || !std::isfinite(pue)) fail("--pue ", pue, ": the power usage effectiveness must be >= 1");
  if (!(price_per_core_hour >= 0) || !std::isfinite(price_per_core_hour))
    fail("--price-per-core-hour ", price_per_core_hour, ": must be a finite number >= 0");
  if (!(watts_per_core >= 0) || !std::isfinite(watts_per_core))
    fail("--watts-per-core ", watts_per_core, ": must be a finite number >= 0 (0: pare's model for the CPU)");
}

double grid_intensity_of(const std::string& region) {
  struct Region {
    const char* code;
    double g_per_kwh;
    const char* name;
  };
  static const Region regions[] = {
      {"AUS", 548.7, "Australia"},
      {"AUT", 110.8, "Austria"},
      {"BEL", 138.1, "Belgium"},
      {"BRA", 98.3, "Brazil"},
      {"CAN", 170.0, "Canada"},
      {"CHE", 34.8, "Switzerland"},
      {"CHN", 582.3, "China"},
      {"DEU", 380.9, "Germany"},
      {"DNK", 151.7, "Denmark"},
      {"ESP", 174.1, "Spain"},
      {"FIN", 79.2, "Finland"},
      {"FRA", 56.0, "France"},
      {"GBR", 237.6, "United Kingdom"},
      {"IND", 713.4, "India"},
      {"IRL", 290.8, "Ireland"},
      {"ITA", 330.7, "Italy"},
      {"JPN", 485.4, "Japan"},
      {"KOR", 430.6, "South Korea"},
      {"NLD", 267.6, "Netherlands"},
      {"NOR", 30.1, "Norway"},
      {"POL", 661.9, "Poland"},
      {"SGP", 470.8, "Singapore"},
      {"SWE", 40.7, "Sweden"},
      {"USA", 369.5, "United States"},
      {"ZAF", 707.7, "South Africa"}
};
  if (region == "world") return 475.0;
  std::string known = "world";
  for (const Region& r : regions) {
    if (region == r.code) return r.g_per_kwh;
    known += std::string(", ") + r.code;
  }
  fail("--region ", region, ": not a region pare knows (", known, "); give --grid-intensity G in gCO2e/kWh instead");
}

CorePower core_power_model(const std::string& name, int family) {
  // Thermal design power / cores of one representative part per family
  // (vendors' spec sheets), the first entry whose name matches and whose cpu
  // family, when it gives one, is the CPU's (a VM often names only "AMD
  // EPYC"; the family still tells the generation). A busy core-second is
  // charged its share of TDP.
  struct Family {
    const char* match;
    int cpu_family;  // -1: any
    double watts;
    const char* basis;
  };
  static const Family families[] = {
      {"EPYC", 26, 500.0 / 128, "AMD EPYC 9755 (Zen 5, cpu family 26): 500 W TDP / 128 cores"},
      {"EPYC", -1, 280.0 / 64, "AMD EPYC 7763: 280 W TDP / 64 cores"},
      {"Xeon", -1, 270.0 / 40, "Intel Xeon Platinum 8380: 270 W TDP / 40 cores"},
      {"Ryzen", -1, 105.0 / 16, "AMD Ryzen 9 5950X: 105 W TDP / 16 cores"},
      {"Core", -1, 125.0 / 12, "Intel Core i7-12700K: 125 W base power / 12 cores"},
  };
  for (const Family& f : families)
    if (name.find(f.match) != std::string::npos && (f.cpu_family < 0 || f.cpu_family == family))
      return {f.watts, f.basis};
  return {125.0 / 12, std::string("unknown CPU (\"") + name + "\"): a desktop part, Intel Core i7-12700K: 125 W / 12 cores"};
}

CostMeter::CostMeter(const CostSettings& settings, EnergyMeter rapl) : settings_(settings), rapl_(std::move(rapl)) {
  settings_.validate();
}

Energy CostMeter::energy(double cpu_seconds) const {
  Energy e;
  if (rapl_.available()) {
    const EnergyMeter::Reading r = rapl_.read(cpu_seconds);
    e.joules = r.process_joules;
    e.measured = true;
    e.method = "rapl-package";
    e.basis = "RAPL package counters x this process's share of the machine's busy CPU time";
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "RAPL package energy of %d package(s), %.1f J, times this process's share of the machine's busy "
                  "CPU time, %.3f (%.1f of %.1f s)",
                  r.domains, r.package_joules, r.process_share, cpu_seconds, r.machine_busy_seconds);
    e.detail = buf;
    return e;
  }
  CorePower power = settings_.watts_per_core > 0 ? CorePower{settings_.watts_per_core, "--watts-per-core"}
                                                 : core_power_model(cpu_model_name(), cpu_family());
  e.joules = cpu_seconds * power.watts;
  e.measured = false;
  e.method = "estimated-cpu-time";
  {
    char basis[384];
    std::snprintf(basis, sizeof basis, "CPU seconds x %.2f W per busy core (%s)", power.watts, power.basis.c_str());
    e.basis = basis;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "CPU time %.2f s x %.2f W per busy core (%s); RAPL not used: %s", cpu_seconds,
                power.watts, power.basis.c_str(), rapl_.unavailable_reason().c_str());
  e.detail = buf;
  return e;
}

void price(Cost& cost, const CostMeter& meter) {
  cost.settings = meter.settings();
  cost.energy = meter.energy(cost.cpu_seconds);
  const double kwh = cost.energy.joules / 3.6e6 * cost.settings.pue;
  cost.co2e_grams = kwh * cost.settings.grid_g_per_kwh;
  cost.money = cost.seconds / 3600.0 * cost.threads * cost.settings.price_per_core_hour;
}

json Cost::to_json() const {
  return {{"flops", flops},
          {"executed_flops", executed_flops},
          {"dense_flops", dense_flops},
          {"seconds", seconds},
          {"cpu_seconds", cpu_seconds},
          {"peak_rss_bytes", peak_rss_bytes},
          {"threads", threads},
          {"ledger_seconds", ledger_seconds},
          {"joules", energy.joules},
          {"energy",
           {{"method", energy.method}, {"measured", energy.measured}, {"basis", energy.basis}, {"detail", energy.detail}}},
          {"co2e_grams", co2e_grams},
          {"grid_g_per_kwh", settings.grid_g_per_kwh},
          {"pue", settings.pue},
          {"money", money},
          {"currency", settings.currency},
          {"price_per_core_hour", settings.price_per_core_hour}};
}

Cost cost_from_json(const json& j) {
  Cost c;
  c.flops = j.value("flops", 0.0);
  c.executed_flops = j.value("executed_flops", 0.0);
  c.dense_flops = j.value("dense_flops", 0.0);
  c.seconds = j.value("seconds", 0.0);
  c.cpu_seconds = j.value("cpu_seconds", 0.0);
  // Counts from a file: checked before conversion (base/json_number.h).
  c.peak_rss_bytes = whole_number_or(j, "peak_rss_bytes", 0, 0, int64_t{1} << 53, "cost");
  c.threads = static_cast<int>(whole_number_or(j, "threads", 1, 1, 1 << 20, "cost"));
  c.ledger_seconds = j.value("ledger_seconds", 0.0);
  c.energy.joules = j.value("joules", 0.0);
  if (j.contains("energy") && j["energy"].is_object()) {
    c.energy.method = j["energy"].value("method", "");
    c.energy.measured = j["energy"].value("measured", false);
    c.energy.basis = j["energy"].value("basis", "");
    c.energy.detail = j["energy"].value("detail", "");
  }
  c.co2e_grams = j.value("co2e_grams", 0.0);
  c.money = j.value("money", 0.0);
  c.settings.grid_g_per_kwh = j.value("grid_g_per_kwh", c.settings.grid_g_per_kwh);
  c.settings.pue = j.value("pue", c.settings.pue);
  c.settings.currency = j.value("currency", c.settings.currency);
  c.settings.price_per_core_hour = j.value("price_per_core_hour", c.settings.price_per_core_hour);
  return c;
}

Cost add(const Cost& a, const Cost& b) {
  Cost c = a;
  c.flops += b.flops;
  c.executed_flops += b.executed_flops;
  c.dense_flops += b.dense_flops;
  c.seconds += b.seconds;
  c.cpu_seconds += b.cpu_seconds;
  c.ledger_seconds += b.ledger_seconds;
  c.peak_rss_bytes = std::max(a.peak_rss_bytes, b.peak_rss_bytes);
  c.threads = std::max(a.threads, b.threads);
  c.energy.joules += b.energy.joules;
  c.energy.measured = a.energy.measured && b.energy.measured;
  if (a.energy.method != b.energy.method) c.energy.method = "mixed";
  if (a.energy.basis != b.energy.basis) c.energy.basis = a.energy.basis + "; " + b.energy.basis;
  c.energy.detail = "sum of parts";
  c.co2e_grams += b.co2e_grams;
  c.money += b.money;
  return c;
}

}  // namespace pare::train
