// pare::Error, fail() and PARE_CHECK.
#include "pare/base/error.h"

#include <gtest/gtest.h>

#include <string>

#include "testing/errors.h"

namespace pare {
namespace {

using pare::testing::error_message;

TEST(Error, CheckPassesSilently) {
  int evaluated = 0;
  EXPECT_NO_THROW(PARE_CHECK(++evaluated == 1, "never shown"));
  EXPECT_EQ(evaluated, 1);  // the condition is evaluated exactly once
}

TEST(Error, CheckThrowsErrorWithMessage) {
  std::string msg = error_message([] {
    int got = 3;
    PARE_CHECK(got == 4, "expected 4 things, got ", got);
  });
  EXPECT_NE(msg.find("expected 4 things, got 3"), std::string::npos) << msg;
  // The location is appended so the CLI can point at the check.
  EXPECT_NE(msg.find("error_test.cc"), std::string::npos) << msg;
}

TEST(Error, CheckWithoutMessageNamesCondition) {
  std::string msg = error_message([] {
    int x = 1;
    PARE_CHECK(x > 2);
  });
  EXPECT_NE(msg.find("x > 2"), std::string::npos) << msg;
}

TEST(Error, CheckIsARuntimeError) {
  EXPECT_THROW(PARE_CHECK(false, "boom"), std::runtime_error);
}

TEST(Error, FailConcatenatesArguments) {
  std::string msg = error_message([] { fail("file ", "x.bin", ": bad size ", 42); });
  EXPECT_EQ(msg, "file x.bin: bad size 42");
}

}  // namespace
}  // namespace pare
