// The CLI's shared pieces that need no subprocess: run-directory settings.
#include "pare/cli/common.h"

#include <gtest/gtest.h>

namespace pare::cli {
namespace {

std::string settings_of(std::vector<std::string> args) {
  CLI::App app;
  std::vector<int> widths = {1, 2, 4, 8};
  double rate = 0.2;
  std::string out;
  bool quiet = false;
  app.add_option("--widths", widths)->delimiter(',')->capture_default_str();
  app.add_option("--rate", rate)->capture_default_str();
  app.add_option("--out", out);
  app.add_flag("--quiet", quiet);
  std::reverse(args.begin(), args.end());
  app.parse(args);
  return non_default_settings(&app, {"--out", "--quiet"});
}

TEST(NonDefaultSettings, ListsOnlyValuesThatDifferFromTheDefaults) {
  EXPECT_EQ(settings_of({}), "");
  EXPECT_EQ(settings_of({"--rate", "0.2"}), "");                 // the default, given explicitly
  EXPECT_EQ(settings_of({"--widths", "1,2,4,8"}), "");           // a list default, given explicitly
  EXPECT_EQ(settings_of({"--out", "x", "--quiet"}), "");         // ignored flags
  EXPECT_EQ(settings_of({"--rate", "0.3"}), "--rate=0.3 ");
  EXPECT_EQ(settings_of({"--widths", "1,2", "--rate", "0.3"}), "--rate=0.3 --widths=1,2 ");
}

TEST(Closest, SuggestsOnlyNearMisses) {
  const std::vector<std::string> flags = {"--epochs", "--batch", "--rate", "--rounds", "--seed", "--seeds"};
  EXPECT_EQ(closest("--epoch", flags), "--epochs");    // a deletion
  EXPECT_EQ(closest("--ebochs", flags), "--epochs");   // a substitution
  EXPECT_EQ(closest("--epcohs", flags), "--epochs");   // neighbours swapped: one edit
  EXPECT_EQ(closest("--rat", flags), "--rate");
  EXPECT_EQ(closest("--seeds", flags), "--seeds");     // exact
  EXPECT_EQ(closest("--learning-rate", flags), "");    // too far from anything
  EXPECT_EQ(closest("--xy", flags), "");               // 2 edits of 2 letters is not a typo
  EXPECT_EQ(closest("trian", {"train", "eval", "ticket"}), "train");
  EXPECT_EQ(closest("anything", {}), "");
}

}  // namespace
}  // namespace pare::cli
