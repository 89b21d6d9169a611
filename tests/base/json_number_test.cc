// Whole numbers from JSON (base/json_number.h): what a file may hold where a
// count belongs, each refused with the field and the value, or taken.
#include "pare/base/json_number.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing/errors.h"

namespace pare {
namespace {

using json = nlohmann::json;
using pare::testing::error_message;

TEST(JsonNumber, TakesWholeNumbersInRange) {
  EXPECT_EQ(whole_number(json::parse("0"), 0, 10, "n"), 0);
  EXPECT_EQ(whole_number(json::parse("10"), 0, 10, "n"), 10);
  EXPECT_EQ(whole_number(json::parse("-3"), -5, 5, "n"), -3);
  EXPECT_EQ(whole_number(json::parse("9007199254740992"), 0, int64_t{1} << 53, "n"), int64_t{1} << 53);
}

TEST(JsonNumber, RefusesFloatsStringsAndOutOfRange) {
  // 1e300 and 1e19 are floats out of int64's range: get<int64_t>() of them is
  // undefined behaviour, which UBSan reports (the fuzzer found it this way).
  for (const char* bad : {"1e300", "1e19", "2.5", "-1", "11", "\"3\"", "null", "[1]", "18446744073709551615"}) {
    const std::string msg = error_message([&] { whole_number(json::parse(bad), 0, 10, "cost \"threads\""); });
    EXPECT_EQ(msg, std::string("cost \"threads\" is ") + json::parse(bad).dump() + ", not a whole number in [0, 10]")
        << bad;
  }
}

TEST(JsonNumber, AbsentKeysAndNonObjectsGiveTheDefault) {
  const json j = json::parse(R"({"round": 3, "bad": 1e111})");
  EXPECT_EQ(whole_number_or(j, "round", -1, 0, 100, "a run's"), 3);
  EXPECT_EQ(whole_number_or(j, "missing", -1, 0, 100, "a run's"), -1);
  EXPECT_EQ(whole_number_or(json::parse("[1, 2]"), "round", -1, 0, 100, "a run's"), -1);
  const std::string msg = error_message([&] { whole_number_or(j, "bad", 0, 0, 100, "a run's"); });
  EXPECT_NE(msg.find("a run's \"bad\" is 1e+111, not a whole number in [0, 100]"), std::string::npos) << msg;
}

}  // namespace
}  // namespace pare
