// Lottery tickets: rounds, rewinding, controls, resume.
#include "pare/experiments/lottery.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "pare/base/file.h"
#include "pare/prune/prune.h"
#include "train/train_helpers.h"

namespace pare::experiments {
namespace {

using train::testing::blob;
using train::testing::mlp_spec;
using train::testing::plane_dataset;

class LotteryTest : public pare::testing::TempDirTest {
 protected:
  TicketConfig config(int rounds) {
    TicketConfig c;
    c.spec = mlp_spec(32);
    c.train.epochs = 2;
    c.train.batch = 32;
    c.train.seed = 4;
    c.train.optimizer.lr = 0.01f;
    c.rounds = rounds;
    c.out_dir = path("ticket");
    return c;
  }
  data::Dataset train_ = plane_dataset(512, 1), test_ = plane_dataset(256, 2);
};

std::vector<float> mask_values(const nn::Model& m) {
  std::vector<float> out;
  for (nn::Parameter* p : prune::prunable(m)) out.insert(out.end(), p->mask.f32(), p->mask.f32() + p->numel());
  return out;
}

TEST_F(LotteryTest, RoundsPruneAtTheirRatesAndRewindToInitBitForBit) {
  TicketConfig c = config(2);
  c.controls = true;
  const auto records = run_ticket(c, train_, test_);
  ASSERT_EQ(records.size(), 3u + 4u);
  EXPECT_EQ(records[0].kind, "ticket");
  EXPECT_EQ(records[0].density, 1.0);
  // Hidden layer (8x32 = 256): 20% per round; output (32x2 = 64): 10%.
  auto r1 = ticket_start(c, 1);
  auto layers = prune::sparsity(*r1).layers;
  EXPECT_EQ(layers[0].kept, 256 - 51);
  EXPECT_EQ(layers[1].kept, 64 - 6);
  auto r2 = ticket_start(c, 2);
  layers = prune::sparsity(*r2).layers;
  EXPECT_EQ(layers[0].kept, 205 - 41);
  EXPECT_EQ(layers[1].kept, 58 - 6);
  // Round 2's mask lies inside round 1's.
  const auto m1 = mask_values(*r1), m2 = mask_values(*r2);
  for (size_t i = 0; i < m1.size(); ++i) EXPECT_LE(m2[i], m1[i]);

  // Rewinding: round 1 starts from the initialisation, masked, bit for bit,
  // not from round 0's trained weights.
  auto init = nn::Model::build(c.spec, c.train.seed);
  auto pi = prune::prunable(*init), p1 = prune::prunable(*r1);
  for (size_t i = 0; i < pi.size(); ++i)
    for (int64_t j = 0; j < pi[i]->numel(); ++j) {
      const float* got = &p1[i]->value().f32()[j];
      if (p1[i]->mask.f32()[j] == 0.0f)
        ASSERT_EQ(*got, 0.0f);  // pruned (the sign of zero may differ)
      else
        ASSERT_EQ(std::memcmp(got, &pi[i]->value().f32()[j], sizeof(float)), 0) << i << " " << j;
    }
  auto biases_init = init->find("linear1.bias"), biases_r1 = r1->find("linear1.bias");
  EXPECT_EQ(std::memcmp(biases_init->value().f32(), biases_r1->value().f32(), biases_init->value().nbytes()), 0);
  auto trained0 = train::load_model(c.out_dir + "/round_0/ticket/model.bin");
  EXPECT_NE(blob(*trained0), blob(*r1));

  // Controls: reinit has the ticket's mask on other weights; random has the
  // ticket's per-layer counts on another mask.
  auto reinit = train::load_model(c.out_dir + "/round_1/reinit/model.bin");
  auto random = train::load_model(c.out_dir + "/round_1/random/model.bin");
  EXPECT_EQ(mask_values(*reinit), m1);
  EXPECT_NE(mask_values(*random), m1);
  const auto rl = prune::sparsity(*random).layers, tl = prune::sparsity(*r1).layers;
  for (size_t i = 0; i < rl.size(); ++i) EXPECT_EQ(rl[i].kept, tl[i].kept);
  EXPECT_NE(blob(*reinit), blob(*train::load_model(c.out_dir + "/round_1/ticket/model.bin")));
  // Cost: a sparser round needs fewer FLOPs; cumulative sums the rounds.
  EXPECT_LT(records[1].flops, records[0].flops);
  EXPECT_EQ(records[0].dense_flops, records[1].dense_flops);
  EXPECT_DOUBLE_EQ(records[1].cumulative_flops, records[0].flops + records[1].flops);
  EXPECT_TRUE(std::filesystem::exists(c.out_dir + "/results.md"));
  EXPECT_TRUE(std::filesystem::exists(c.out_dir + "/settings.json"));
}

TEST_F(LotteryTest, RestartSkipsFinishedRunsAndRedoesMissingOnesIdentically) {
  TicketConfig c = config(2);
  const auto first = run_ticket(c, train_, test_);
  for (const auto& r : first) EXPECT_FALSE(r.skipped);
  std::filesystem::remove(c.out_dir + "/round_2/ticket/result.json");
  std::filesystem::remove(c.out_dir + "/round_2/ticket/checkpoint.bin");
  std::filesystem::remove(c.out_dir + "/round_2/ticket/log.jsonl");
  const auto again = run_ticket(c, train_, test_);
  ASSERT_EQ(again.size(), first.size());
  EXPECT_TRUE(again[0].skipped);
  EXPECT_TRUE(again[1].skipped);
  EXPECT_FALSE(again[2].skipped);
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(again[i].test_accuracy, first[i].test_accuracy) << i;
    EXPECT_EQ(again[i].flops, first[i].flops) << i;
  }
  // Other settings in the same directory are refused.
  c.rate = 0.5;
  pare::testing::expect_error([&] { run_ticket(c, train_, test_); }, {"other settings"});
}

// The data flags are part of the settings: a directory never mixes runs on
// other data. One written before they were recorded (no "data") resumes,
// and its settings.json stays as it was.
TEST_F(LotteryTest, OtherDataIsRefusedAndOlderDirectoriesWithoutDataResume) {
  TicketConfig c = config(1);
  c.data = {{"data", "a.csv"}, {"holdout", 0}};
  run_ticket(c, train_, test_);
  TicketConfig other = c;
  other.data["data"] = "b.csv";
  pare::testing::expect_error([&] { run_ticket(other, train_, test_); }, {"other settings"});
  other.data = c.data;
  other.data["holdout"] = 16;
  pare::testing::expect_error([&] { run_ticket(other, train_, test_); }, {"other settings"});
  for (const auto& r : run_ticket(c, train_, test_)) EXPECT_TRUE(r.skipped) << r.round << " " << r.kind;

  TicketConfig old = config(1);
  old.out_dir = c.out_dir + "-old";
  run_ticket(old, train_, test_);  // data null: settings.json without "data"
  const std::string before = pare::read_file(old.out_dir + "/settings.json");
  ASSERT_EQ(before.find("\"data\""), std::string::npos) << before;
  old.data = c.data;
  for (const auto& r : run_ticket(old, train_, test_)) EXPECT_TRUE(r.skipped) << r.round << " " << r.kind;
  EXPECT_EQ(pare::read_file(old.out_dir + "/settings.json"), before);
}

TEST_F(LotteryTest, TablesNameTheSplitTheyScored) {
  TicketConfig c = config(1);
  c.eval_split = "holdout";
  const auto records = run_ticket(c, train_, test_);
  EXPECT_NE(ticket_table(records, "holdout").find("ticket: holdout acc"), std::string::npos);
  EXPECT_NE(pare::read_file(c.out_dir + "/results.md").find("ticket: holdout acc"), std::string::npos);
  EXPECT_NE(ticket_table(records).find("ticket: test acc"), std::string::npos);
}

TEST_F(LotteryTest, LateRewindingStartsFromTheSnapshot) {
  TicketConfig c = config(1);
  c.rewind_step = 5;
  pare::testing::expect_error([&] { rewind_weights(c); }, {"weights_step5.bin is missing"});
  run_ticket(c, train_, test_);
  auto snap = train::load_model(c.out_dir + "/round_0/ticket/weights_step5.bin");
  auto r1 = ticket_start(c, 1);
  auto ps = prune::prunable(*snap), p1 = prune::prunable(*r1);
  for (size_t i = 0; i < ps.size(); ++i)
    for (int64_t j = 0; j < ps[i]->numel(); ++j)
      ASSERT_EQ(p1[i]->value().f32()[j], p1[i]->mask.f32()[j] != 0.0f ? ps[i]->value().f32()[j] : 0.0f);
  EXPECT_NE(blob(*snap), blob(*nn::Model::build(c.spec, c.train.seed)));
}

TEST(TicketConfig, RejectsBadSettings) {
  TicketConfig c;
  pare::testing::expect_error([&] { c.validate(); }, {"needs a run directory"});
  c.out_dir = "x";
  c.rate = 1.0;
  pare::testing::expect_error([&] { c.validate(); }, {"--rate must be in [0, 1)"});
  c.rate = 0.2;
  c.train.sparse.method = "rigl";
  c.train.sparse.sparsity = 0.5;
  pare::testing::expect_error([&] { c.validate(); }, {"--sparse-training must be none"});
}

TEST(SettingsDirName, IsStableAndDistinct) {
  EXPECT_EQ(settings_dir_name("ticket", "--rate=0.3 "), settings_dir_name("ticket", "--rate=0.3 "));
  EXPECT_NE(settings_dir_name("ticket", "--rate=0.3 "), settings_dir_name("ticket", "--rate=0.2 "));
  EXPECT_EQ(settings_dir_name("prune", "").rfind("prune-", 0), 0u);
  EXPECT_EQ(settings_dir_name("prune", "").size(), 6u + 16u);
}

}  // namespace
}  // namespace pare::experiments
