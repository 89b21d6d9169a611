#include "pare/base/energy.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pare/base/error.h"

namespace pare {

namespace {

namespace fs = std::filesystem;

bool read_number(const std::string& path, double* v) {
  std::ifstream in(path);
  if (!in) return false;
  double x = 0;
  if (!(in >> x)) return false;
  *v = x;
  return true;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace

double machine_busy_cpu_seconds(const std::string& proc_stat) {
  std::ifstream in(proc_stat);
  std::string label;
  if (!(in >> label) || label != "cpu") return -1;
  // user nice system idle iowait irq softirq steal
  double f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (double& x : f)
    if (!(in >> x)) return -1;
  const double busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  const long hz = ::sysconf(_SC_CLK_TCK);
  return busy / static_cast<double>(hz > 0 ? hz : 100);
}

namespace {

// The value of the first "<field>\t: value" line of /proc/cpuinfo ("" when none).
std::string cpuinfo_field(const std::string& cpuinfo, const std::string& field) {
  std::ifstream in(cpuinfo);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos || line.find_first_not_of(" \t", field.size()) != colon) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "";
}

}  // namespace

std::string cpu_model_name(const std::string& cpuinfo) { return cpuinfo_field(cpuinfo, "model name"); }

int cpu_family(const std::string& cpuinfo) {
  const std::string v = cpuinfo_field(cpuinfo, "cpu family");
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 4) return -1;
  return std::stoi(v);
}

EnergyMeter::EnergyMeter(std::string powercap_root, std::string proc_stat) : proc_stat_(std::move(proc_stat)) {
  std::error_code ec;
  if (!fs::is_directory(powercap_root, ec)) {
    reason_ = "no " + powercap_root + " (no powercap/RAPL interface: a VM or an old kernel)";
    return;
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(powercap_root, ec)) {
    const std::string name = e.path().filename().string();
    // Top-level RAPL zones only ("intel-rapl:0", not "intel-rapl:0:0"),
    // whose name says "package-N" (AMD's zones use the same driver name).
    if (name.rfind("intel-rapl:", 0) != 0 || std::count(name.begin(), name.end(), ':') != 1) continue;
    if (read_line((e.path() / "name").string()).rfind("package", 0) != 0) continue;
    dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  if (dirs.empty()) {
    reason_ = "no RAPL package zone under " + powercap_root;
    return;
  }
  for (const fs::path& d : dirs) {
    Domain dom;
    dom.energy_path = (d / "energy_uj").string();
    if (!read_number(dom.energy_path, &dom.start_uj)) {
      reason_ = dom.energy_path + " is not readable (it needs root since Linux 5.10)";
      domains_.clear();
      return;
    }
    if (!read_number((d / "max_energy_range_uj").string(), &dom.range_uj)) dom.range_uj = 0;
    domains_.push_back(dom);
  }
  busy_start_ = machine_busy_cpu_seconds(proc_stat_);
  if (busy_start_ < 0) {
    reason_ = proc_stat_ + " is not readable: no way to share the package's energy out";
    domains_.clear();
  }
}

EnergyMeter::Reading EnergyMeter::read(double process_cpu_seconds) const {
  PARE_CHECK(available(), "EnergyMeter::read without counters");
  Reading r;
  for (const Domain& d : domains_) {
    double now = 0;
    if (!read_number(d.energy_path, &now)) fail(d.energy_path, ": the RAPL counter stopped being readable");
    double delta = now - d.start_uj;
    if (delta < 0 && d.range_uj > 0) delta += d.range_uj;  // wrapped once
    r.package_joules += std::max(delta, 0.0) * 1e-6;
    ++r.domains;
  }
  r.machine_busy_seconds = std::max(machine_busy_cpu_seconds(proc_stat_) - busy_start_, 0.0);
  r.process_share = r.machine_busy_seconds > 0
                        ? std::clamp(process_cpu_seconds / r.machine_busy_seconds, 0.0, 1.0)
                        : (process_cpu_seconds > 0 ? 1.0 : 0.0);
  r.process_joules = r.package_joules * r.process_share;
  return r;
}

}  // namespace pare
