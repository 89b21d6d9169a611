// The inputs that crashed a reader under the fuzzers (docs/reliability.md,
// "Fuzzing"), one file each in tests/fuzz_regressions/<target>/, fed to the
// reader the way the fuzz target feeds it (fuzz/readers.h). Each must raise
// pare::Error from fail(): not a PARE_CHECK failure, not another exception,
// and not a crash (make test-asan runs this under ASan and UBSan too).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "pare/base/error.h"
#include "readers.h"

namespace pare::fuzz {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string target, file;  // file: the path under tests/fuzz_regressions/
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const Target& t : targets()) {
    const fs::path dir = fs::path(PARE_FUZZ_REGRESSIONS_DIR) / t.name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back({t.name, (fs::path(t.name) / e.path().filename()).string()});
  }
  std::sort(out.begin(), out.end(), [](const Case& a, const Case& b) { return a.file < b.file; });
  return out;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class FuzzRegression : public ::testing::TestWithParam<Case> {};

TEST_P(FuzzRegression, RaisesPareError) {
  const Case& c = GetParam();
  const std::string bytes = read_bytes(fs::path(PARE_FUZZ_REGRESSIONS_DIR) / c.file);
  ASSERT_FALSE(bytes.empty()) << c.file;
  try {
    target(c.target).feed(bytes);
  } catch (const std::exception& e) {
    EXPECT_TRUE(is_expected_error(e)) << c.file << ": raised " << typeid(e).name() << ": " << e.what();
    return;
  }
  ADD_FAILURE() << c.file << ": the reader accepted it; a regression input should be refused";
}

TEST(FuzzRegressions, EveryTargetDirectoryIsKnown) {
  // A directory named after no target would be skipped silently.
  std::set<std::string> names;
  for (const Target& t : targets()) names.insert(t.name);
  for (const auto& e : fs::directory_iterator(PARE_FUZZ_REGRESSIONS_DIR))
    if (e.is_directory()) {
      EXPECT_TRUE(names.count(e.path().filename().string())) << e.path();
    }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.file;
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Inputs, FuzzRegression, ::testing::ValuesIn(cases()), case_name);

}  // namespace
}  // namespace pare::fuzz
