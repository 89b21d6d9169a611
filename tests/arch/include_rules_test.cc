// Mechanical check of the room dependency rules: every file under
// src/<room>/ may include "pare/<other>/..." only for <other> allowed below
// (or its own room). The table mirrors docs/architecture.md, which is the
// source of truth: change both together. A room that is not in the table
// fails the test, so adding src/<new room>/ means adding a row here.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// room -> rooms it may include (besides itself). See docs/architecture.md.
const std::map<std::string, std::set<std::string>>& allowed_includes() {
  static const std::map<std::string, std::set<std::string>> table = {
      {"base", {}},
      {"format", {"base"}},
      {"kernels", {"base"}},
      {"tensor", {"base", "kernels"}},
      {"data", {"base", "tensor", "kernels"}},
      {"dist", {"base"}},
      {"autograd", {"base", "kernels", "tensor"}},
      {"nn", {"autograd", "base", "kernels", "tensor"}},
      {"optim", {"nn", "autograd", "base", "kernels", "tensor"}},
      {"prune", {"nn", "autograd", "base", "kernels", "tensor"}},
      {"io", {"nn", "format", "autograd", "base", "kernels", "tensor"}},
      {"codegen", {"io", "nn", "format", "autograd", "base", "kernels", "tensor"}},
      {"train", {"optim", "prune", "nn", "autograd", "data", "dist", "base", "kernels", "tensor"}},
      {"experiments",
       {"train", "optim", "prune", "nn", "autograd", "data", "dist", "format", "base", "kernels",
        "tensor"}},
      {"cli",
       {"base", "format", "kernels", "tensor", "data", "dist", "autograd", "nn", "optim", "prune",
        "io", "codegen", "train", "experiments"}},
  };
  return table;
}

struct Include {
  std::string room;  // the included room ("" for a malformed pare/ path)
  std::string text;  // the whole directive
  int line;
};

// All `#include "pare/<room>/..."` (or <pare/...>) directives in a file.
std::vector<Include> pare_includes(const fs::path& file) {
  static const std::regex re(R"(^\s*#\s*include\s*["<]pare/([^/">]*)(/[^">]*)?[">])");
  std::vector<Include> out;
  std::ifstream in(file);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back({m[2].matched ? m[1].str() : "", line, n});
  }
  return out;
}

fs::path source_dir() {
  const char* dir = std::getenv("PARE_SOURCE_DIR");
  if (dir == nullptr || *dir == '\0') return {};
  return fs::path(dir) / "src";
}

TEST(IncludeRules, TableIsConsistent) {
  const auto& table = allowed_includes();
  for (const auto& [room, deps] : table) {
    for (const auto& dep : deps) {
      EXPECT_TRUE(table.count(dep)) << room << " may include unknown room " << dep;
      EXPECT_NE(dep, room) << room << " lists itself";
      // No cycles of length two: if A may include B, B may not include A.
      if (table.count(dep)) EXPECT_FALSE(table.at(dep).count(room)) << room << " <-> " << dep;
    }
  }
}

TEST(IncludeRules, RegexRecognisesDirectives) {
  const fs::path tmp = fs::temp_directory_path() / "pare_arch_regex_test.h";
  {
    std::ofstream out(tmp);
    out << "#include \"pare/base/error.h\"\n"
        << "  #  include <pare/nn/module.h>\n"
        << "#include \"pare/kernels/fast/simd.h\"\n"
        << "#include <vector>\n"
        << "// #include \"pare/cli/progress.h\" is a comment: not matched\n"
        << "#include \"other/pare/x.h\"\n";
  }
  auto inc = pare_includes(tmp);
  fs::remove(tmp);
  ASSERT_EQ(inc.size(), 3u);
  EXPECT_EQ(inc[0].room, "base");
  EXPECT_EQ(inc[1].room, "nn");
  EXPECT_EQ(inc[1].line, 2);
  EXPECT_EQ(inc[2].room, "kernels");
}

TEST(IncludeRules, EveryRoomIncludesOnlyAllowedRooms) {
  const fs::path src = source_dir();
  ASSERT_FALSE(src.empty()) << "PARE_SOURCE_DIR is not set; run this test through CTest "
                               "or set it to the repository root";
  ASSERT_TRUE(fs::is_directory(src)) << src << " is not a directory (PARE_SOURCE_DIR)";
  const auto& table = allowed_includes();
  int rooms = 0, files = 0, includes = 0;
  for (const auto& room_dir : fs::directory_iterator(src)) {
    if (!room_dir.is_directory()) continue;
    const std::string room = room_dir.path().filename().string();
    auto row = table.find(room);
    if (row == table.end()) {
      ADD_FAILURE() << "src/" << room
                    << "/ is not in the include table: add its row to docs/architecture.md and "
                       "to allowed_includes() in tests/arch/include_rules_test.cc";
      continue;
    }
    ++rooms;
    for (const auto& entry : fs::recursive_directory_iterator(room_dir.path())) {
      if (!entry.is_regular_file()) continue;
      ++files;
      const std::string rel = fs::relative(entry.path(), src.parent_path()).string();
      for (const Include& inc : pare_includes(entry.path())) {
        ++includes;
        if (inc.room.empty()) {
          ADD_FAILURE() << rel << ":" << inc.line << ": malformed pare include: " << inc.text;
          continue;
        }
        if (inc.room == room) continue;
        if (!table.count(inc.room)) {
          ADD_FAILURE() << rel << ":" << inc.line << ": includes unknown room '" << inc.room
                        << "': " << inc.text;
          continue;
        }
        if (!row->second.count(inc.room)) {
          std::string allowed;
          for (const auto& a : row->second) allowed += (allowed.empty() ? "" : ", ") + a;
          ADD_FAILURE() << rel << ":" << inc.line << ": room '" << room << "' may not include '"
                        << inc.room << "' (allowed: " << (allowed.empty() ? "none" : allowed)
                        << "; see docs/architecture.md): " << inc.text;
        }
      }
    }
  }
  // Guard against scanning the wrong directory and passing vacuously.
  EXPECT_GE(rooms, 3) << "found too few rooms under " << src;
  EXPECT_GT(files, 10) << "found too few files under " << src;
  EXPECT_GT(includes, 10) << "found too few pare includes under " << src;
}

}  // namespace
