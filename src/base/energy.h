// The processor energy a piece of work used, from the kernel's powercap/RAPL
// counters when they can be read, scaled to this process's share of the CPU
// time spent on the machine meanwhile (issue #8, docs/cost.md).
//
// RAPL's package domain counts the whole socket: every process on it. Over
// the interval, the process's CPU seconds divided by the machine's busy CPU
// seconds (/proc/stat) is the share charged to it. When no package counter is
// readable (a VM, no permission) the meter says so and measures nothing; the
// caller then estimates (train/cost.h) and labels the figure estimated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pare {

class EnergyMeter {
 public:
  // Reads the counters now. `powercap_root` and `proc_stat` are seams for
  // tests (a fake sysfs tree).
  explicit EnergyMeter(std::string powercap_root = "/sys/class/powercap", std::string proc_stat = "/proc/stat");

  // True when at least one package counter was readable at construction.
  bool available() const { return !domains_.empty(); }
  // Why not, when not ("no /sys/class/powercap/intel-rapl:*", "permission denied", ...).
  const std::string& unavailable_reason() const { return reason_; }

  struct Reading {
    double package_joules = 0;         // all packages, the whole machine
    double machine_busy_seconds = 0;   // CPU seconds all processes were busy (/proc/stat)
    double process_share = 0;          // process_cpu_seconds / machine_busy_seconds, in [0, 1]
    double process_joules = 0;         // package_joules * process_share
    int domains = 0;
  };
  // Energy since construction. `process_cpu_seconds`: this process's CPU time
  // over the same interval. Counter wrap-around is undone with
  // max_energy_range_uj. REQUIRES: available().
  Reading read(double process_cpu_seconds) const;

 private:
  struct Domain {
    std::string energy_path;
    double range_uj = 0;
    double start_uj = 0;
  };
  std::vector<Domain> domains_;
  std::string reason_, proc_stat_;
  double busy_start_ = 0;
};

// Busy CPU seconds of the whole machine from /proc/stat's "cpu" line (user,
// nice, system, irq, softirq, steal), or -1 when unreadable.
double machine_busy_cpu_seconds(const std::string& proc_stat = "/proc/stat");

// The CPU's model name from /proc/cpuinfo ("" when unknown).
std::string cpu_model_name(const std::string& cpuinfo = "/proc/cpuinfo");
// Its "cpu family" (AMD: 23 Zen 1/2, 25 Zen 3/4, 26 Zen 5; Intel: 6), or -1.
// A VM may name only "AMD EPYC"; the family still tells the generation.
int cpu_family(const std::string& cpuinfo = "/proc/cpuinfo");

}  // namespace pare
