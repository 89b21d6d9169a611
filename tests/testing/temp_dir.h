// Test helpers shared by the rooms' tests: a scratch directory per test,
// removed afterwards, and a check that an action fails with a one-line
// pare::Error naming what went wrong.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "pare/base/error.h"
#include "pare/base/file.h"

namespace pare::testing {

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        std::filesystem::temp_directory_path() / ("pare_test_" + std::to_string(::getpid()) + "_" +
                                                  info->test_suite_name() + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `bytes` to `name` inside the directory and returns its path.
  std::string write(const std::string& name, std::string_view bytes) {
    std::string p = path(name);
    write_file_atomic(p, bytes);
    return p;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

// Runs `fn`, expecting a pare::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string_view> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected pare::Error";
  } catch (const pare::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message should be one line: " << msg;
    for (std::string_view f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "message lacks '" << f << "': " << msg;
  }
}

}  // namespace pare::testing
