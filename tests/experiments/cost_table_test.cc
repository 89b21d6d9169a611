// pare cost's rows (experiments/cost_table.h): a training run gives its
// ledger; a ticket study gives dense training, finding the ticket (the IMP
// rounds summed), the final ticket trained from its rewound init and the
// controls; runs from before the ledger show FLOPs and seconds only; what is
// not a run is refused by path.
#include "pare/experiments/cost_table.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing/temp_dir.h"

namespace pare::experiments {
namespace {

using json = nlohmann::json;
using testing::expect_error;

json ledger(double flops, double joules, double money) {
  return {{"flops", flops},       {"executed_flops", flops}, {"dense_flops", 2 * flops}, {"seconds", 10.0},
          {"cpu_seconds", 18.0},  {"threads", 2},            {"joules", joules},        {"co2e_grams", joules / 100},
          {"money", money},       {"currency", "USD"},       {"pue", 1.0},              {"grid_g_per_kwh", 475.0},
          {"price_per_core_hour", 0.0425},
          {"energy", {{"method", "estimated-cpu-time"}, {"measured", false}, {"basis", "CPU seconds x 4 W"}}}};
}

class CostTableTest : public testing::TempDirTest {};

TEST_F(CostTableTest, TrainingRunGivesItsLedger) {
  std::filesystem::create_directories(dir_ / "dense");
  write("dense/log.jsonl", json{{"event", "start"}}.dump() + "\n" +
                               json{{"event", "end"}, {"test_accuracy", 0.9}, {"sparsity", 0.0},
                                    {"cost", ledger(1e9, 50, 0.01)}}.dump() + "\n");
  const auto rows = cost_rows(path("dense"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].label, "dense");
  EXPECT_TRUE(rows[0].has_ledger);
  EXPECT_DOUBLE_EQ(rows[0].accuracy, 0.9);
  EXPECT_DOUBLE_EQ(rows[0].density, 1.0);
  EXPECT_DOUBLE_EQ(rows[0].cost.energy.joules, 50);
  const std::string table = cost_table(rows);
  EXPECT_NE(table.find("50 J estimated"), std::string::npos) << table;
  EXPECT_NE(table.find("CPU seconds x 4 W"), std::string::npos) << table;
}

TEST_F(CostTableTest, TicketStudyGivesFindingTrainingAndControls) {
  json runs = json::array();
  const double acc[3] = {0.90, 0.89, 0.88};
  for (int r = 0; r <= 2; ++r) {
    runs.push_back({{"round", r}, {"kind", "ticket"}, {"test_accuracy", acc[r]}, {"density", 1.0 / (1 << r)},
                    {"cost", ledger(100.0 / (1 << r), 10.0 * (r + 1), 0.001)}});
    if (r > 0) {
      runs.push_back({{"round", r}, {"kind", "random"}, {"test_accuracy", 0.5}, {"density", 1.0 / (1 << r)},
                      {"cost", ledger(7, 1, 0.001)}});
      runs.push_back({{"round", r}, {"kind", "reinit"}, {"test_accuracy", 0.6}, {"density", 1.0 / (1 << r)},
                      {"flops", 7.0}, {"seconds", 3.0}});  // written before the ledger
    }
  }
  std::filesystem::create_directories(dir_ / "ticket");
  write("ticket/results.json", json{{"runs", runs}, {"settings", json::object()}}.dump());
  const auto rows = cost_rows(path("ticket"));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].label, "dense training (round 0)");
  EXPECT_DOUBLE_EQ(rows[0].cost.flops, 100);
  EXPECT_EQ(rows[1].label, "finding the ticket (IMP rounds 0-2)");
  EXPECT_DOUBLE_EQ(rows[1].cost.flops, 100 + 50 + 25);       // every ticket round, summed
  EXPECT_DOUBLE_EQ(rows[1].cost.energy.joules, 10 + 20 + 30);
  EXPECT_DOUBLE_EQ(rows[1].accuracy, 0.88);                   // the final ticket's
  EXPECT_DOUBLE_EQ(rows[1].density, 0.25);
  EXPECT_EQ(rows[2].label, "training the ticket from its rewound init (round 2)");
  EXPECT_DOUBLE_EQ(rows[2].cost.flops, 25);
  EXPECT_NE(rows[3].label.find("fresh init"), std::string::npos);
  EXPECT_FALSE(rows[3].has_ledger);
  EXPECT_DOUBLE_EQ(rows[3].cost.flops, 7);
  EXPECT_NE(rows[4].label.find("random mask"), std::string::npos);
  EXPECT_TRUE(rows[4].has_ledger);
  EXPECT_NE(cost_table(rows).find("before pare's cost ledger"), std::string::npos);
}

TEST_F(CostTableTest, WhatIsNotARunIsRefused) {
  expect_error([&] { cost_rows(path("missing")); }, {"missing", "no such"});
  std::filesystem::create_directories(dir_ / "empty");
  expect_error([&] { cost_rows(path("empty")); }, {"empty", "not a pare run directory"});
  std::filesystem::create_directories(dir_ / "unfinished");
  write("unfinished/log.jsonl", json{{"event", "start"}}.dump() + "\n");
  expect_error([&] { cost_rows(path("unfinished")); }, {"has not finished"});
  std::filesystem::create_directories(dir_ / "garbage");
  write("garbage/log.jsonl", "{not json\n");
  expect_error([&] { cost_rows(path("garbage")); }, {"not JSON"});
}

}  // namespace
}  // namespace pare::experiments
