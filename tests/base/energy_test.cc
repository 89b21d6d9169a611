// The RAPL meter on a fake powercap tree and /proc/stat: package zones only,
// the counter's wrap-around, the process's share of the busy CPU time, and a
// clear reason when nothing is readable.
#include "pare/base/energy.h"

#include <unistd.h>

#include <cmath>
#include <fstream>

#include "testing/temp_dir.h"

namespace pare {
namespace {

class EnergyMeterTest : public testing::TempDirTest {
 protected:
  // A powercap tree with one package zone (and a core subzone and a dram zone
  // the meter must ignore), and a /proc/stat whose busy time is `busy_ticks`.
  void make_tree(double package_uj, double range_uj) {
    std::filesystem::create_directories(dir_ / "powercap/intel-rapl:0/intel-rapl:0:0");
    std::filesystem::create_directories(dir_ / "powercap/intel-rapl:1");
    write("powercap/intel-rapl:0/name", "package-0\n");
    set_energy(package_uj);
    write("powercap/intel-rapl:0/max_energy_range_uj", std::to_string(static_cast<int64_t>(range_uj)) + "\n");
    write("powercap/intel-rapl:0/intel-rapl:0:0/name", "core\n");
    write("powercap/intel-rapl:0/intel-rapl:0:0/energy_uj", "999999999\n");
    write("powercap/intel-rapl:1/name", "dram\n");
    write("powercap/intel-rapl:1/energy_uj", "999999999\n");
  }
  void set_energy(double uj) { write("powercap/intel-rapl:0/energy_uj", std::to_string(static_cast<int64_t>(uj)) + "\n"); }
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  void set_busy_ticks(int64_t busy) {
    write("stat", "cpu  " + std::to_string(busy - 30) + " 10 10 5000 7 4 3 3\ncpu0 1 2 3 4 5 6 7 8\n");
  }
  double ticks_per_second() const { return static_cast<double>(::sysconf(_SC_CLK_TCK)); }
};

TEST_F(EnergyMeterTest, PackageEnergyTimesTheProcessShareOfBusyTime) {
  make_tree(5e6, 262143328850.0);
  set_busy_ticks(1000);
  const EnergyMeter meter(path("powercap"), path("stat"));
  ASSERT_TRUE(meter.available()) << meter.unavailable_reason();
  set_energy(5e6 + 40e6);  // 40 J since
  const double hz = ticks_per_second();
  set_busy_ticks(1000 + static_cast<int64_t>(8 * hz));  // the machine was busy 8 CPU-seconds
  const EnergyMeter::Reading r = meter.read(/*process_cpu_seconds=*/2.0);
  EXPECT_EQ(r.domains, 1);  // the core subzone and the dram zone are not packages
  EXPECT_NEAR(r.package_joules, 40.0, 1e-9);
  EXPECT_NEAR(r.machine_busy_seconds, 8.0, 1e-9);
  EXPECT_NEAR(r.process_share, 0.25, 1e-12);
  EXPECT_NEAR(r.process_joules, 10.0, 1e-9);
  // The share never exceeds the whole package.
  EXPECT_NEAR(meter.read(100.0).process_joules, 40.0, 1e-9);
}

TEST_F(EnergyMeterTest, CounterWrapAroundIsUndone) {
  make_tree(990e6, 1000e6);  // 10 J before the counter wraps at 1000 J
  set_busy_ticks(100);
  const EnergyMeter meter(path("powercap"), path("stat"));
  ASSERT_TRUE(meter.available());
  set_energy(5e6);  // wrapped: 10 J + 5 J
  set_busy_ticks(100 + static_cast<int64_t>(ticks_per_second()));
  EXPECT_NEAR(meter.read(1.0).package_joules, 15.0, 1e-9);
}

TEST_F(EnergyMeterTest, SaysWhyWhenNothingIsReadable) {
  const EnergyMeter none(path("no_such_dir"), path("stat"));
  EXPECT_FALSE(none.available());
  EXPECT_NE(none.unavailable_reason().find("no_such_dir"), std::string::npos);
  std::filesystem::create_directories(dir_ / "empty");
  const EnergyMeter empty(path("empty"), path("stat"));
  EXPECT_FALSE(empty.available());
  EXPECT_NE(empty.unavailable_reason().find("package"), std::string::npos);
  make_tree(1e6, 1e9);
  const EnergyMeter no_stat(path("powercap"), path("no_stat"));
  EXPECT_FALSE(no_stat.available());
  EXPECT_NE(no_stat.unavailable_reason().find("no_stat"), std::string::npos);
}

TEST_F(EnergyMeterTest, CpuModelNameFromCpuinfo) {
  write("cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n");
  EXPECT_EQ(cpu_model_name(path("cpuinfo")), "AMD EPYC 7763 64-Core Processor");
  EXPECT_EQ(cpu_model_name(path("missing")), "");
}

TEST_F(EnergyMeterTest, CpuFamilyFromCpuinfo) {
  write("cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n");
  EXPECT_EQ(cpu_family(path("cpuinfo")), 26);
  EXPECT_EQ(cpu_model_name(path("cpuinfo")), "AMD EPYC");
  write("odd", "cpu family\t: twenty\n");
  EXPECT_EQ(cpu_family(path("odd")), -1);
  EXPECT_EQ(cpu_family(path("missing")), -1);
}

}  // namespace
}  // namespace pare
