// --on-nan end to end (train/numerics.h): a run whose loss stops being
// finite stops with a message naming the step and the layer, skips the
// batch, or rolls back with half the learning rate, deterministically.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>

#include "testing/run_pare.h"

namespace pare::testing {
namespace {

class NumericalFaultsTest : public PareBinaryTest {
 protected:
  // A 20-feature, 2-class CSV (label: the sum of the first two features > 0).
  // With `huge_row` >= 0 that row holds 3e38 in every feature: finite, but
  // any sum of a few of them overflows, so a batch holding it has a
  // non-finite loss whatever the weights.
  std::string csv(const std::string& name, int rows, unsigned seed, int huge_row = -1) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(-1, 1);
    std::ostringstream os;
    for (int j = 0; j < 20; ++j) os << "x" << j << ",";
    os << "label\n";
    for (int i = 0; i < rows; ++i) {
      float x[20];
      for (float& v : x) v = u(gen);
      for (int j = 0; j < 20; ++j) os << (i == huge_row ? "3e38" : std::to_string(x[j])) << ",";
      os << (x[0] + x[1] > 0 ? 1 : 0) << "\n";
    }
    return write(name, os.str());
  }
  std::string mlp() {
    return write("mlp.json",
                 R"({"name": "mlp20", "input": [20], "layers": [{"type": "linear", "out": 16},)"
                 R"( {"type": "relu"}, {"type": "linear", "out": 2}], "loss": "softmax_cross_entropy"})");
  }
  std::vector<std::string> train(const std::string& data, const std::string& out,
                                 std::vector<std::string> more) {
    std::vector<std::string> a = {"train", "--model", mlp(), "--data", data, "--test", csv("test.csv", 200, 2),
                                  "--epochs", "3", "--batch", "10", "--quiet", "--out", path(out)};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  int count(const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
};

TEST_F(NumericalFaultsTest, StopNamesTheStepTheBatchAndTheLayer) {
  const std::string data = csv("huge.csv", 300, 1, 137);
  const PareRun r = run(train(data, "stop", {}));
  expect_one_line_error(r, {"training stopped at step ", "(epoch 1, batch ", " of 30)", "the loss is ",
                            "non-finite gradient is in linear", "--on-nan skip or rollback"});
}

TEST_F(NumericalFaultsTest, SkipLeavesOutTheBadBatchAndFinishes) {
  const std::string data = csv("huge.csv", 300, 1, 137);
  const PareRun r = run(train(data, "skip", {"--on-nan", "skip"}));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string log = slurp(path("skip/log.jsonl"));
  // The huge row is in one batch of every epoch.
  EXPECT_EQ(count(log, "\"action\":\"skip\""), 3) << log;
  EXPECT_EQ(count(r.err, "pare: warning: step "), 3) << r.err;
  EXPECT_NE(log.find("\"event\":\"end\""), std::string::npos);
  EXPECT_EQ(log.find("\"test_loss\":null"), std::string::npos) << "a non-finite value reached the log";
}

TEST_F(NumericalFaultsTest, TooManySkipsInARowStop) {
  // A learning rate of 1e5 diverges for good: every batch is bad.
  const PareRun r = run(train(csv("ok.csv", 300, 1), "diverged",
                              {"--optimizer", "sgd", "--lr", "1e5", "--on-nan", "skip"}));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("11 batches in a row were not finite"), std::string::npos) << r.err;
}

TEST_F(NumericalFaultsTest, RollbackHalvesTheRateUntilItTrainsAndRepeatsItself) {
  const std::string data = csv("ok.csv", 300, 1);
  const auto args = [&](const std::string& out) {
    return train(data, out, {"--optimizer", "sgd", "--lr", "50", "--on-nan", "rollback"});
  };
  const PareRun a = run(args("a"));
  ASSERT_EQ(a.code, 0) << a.err;
  const std::string log = slurp(path("a/log.jsonl"));
  const int rollbacks = count(log, "\"event\":\"rollback\"");
  EXPECT_GE(rollbacks, 1) << log;
  EXPECT_LE(rollbacks, 8) << log;
  EXPECT_NE(log.find("\"lr_scale\":0.5"), std::string::npos) << log;
  // The same seed rolls back at the same steps to the same bits.
  const PareRun b = run(args("b"));
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(count(slurp(path("b/log.jsonl")), "\"event\":\"rollback\""), rollbacks);
  EXPECT_TRUE(slurp(path("a/model.bin")) == slurp(path("b/model.bin")));
  // A rate that no halving rescues stops after 8 rollbacks.
  const PareRun c = run(train(data, "c", {"--optimizer", "sgd", "--lr", "1e9", "--on-nan", "rollback"}));
  EXPECT_EQ(c.code, 1) << c.err;
  EXPECT_EQ(count(c.err, "rolling back"), 8) << c.err;
  EXPECT_NE(c.err.find("pare: error: training stopped at step "), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("8 rollbacks, each halving the learning rate, did not help"), std::string::npos) << c.err;
}

TEST_F(NumericalFaultsTest, BadSettingsAreRefusedBeforeWork) {
  expect_one_line_error(run(train(csv("ok.csv", 50, 1), "x", {"--on-nan", "ignore"})),
                        {"--on-nan ignore", "stop, skip or rollback"});
  expect_one_line_error(run(train(csv("ok.csv", 50, 1), "y", {"--grad-spike", "0.5"})),
                        {"--grad-spike 0.5"});
  // A setting, so a message without the source location of an internal check.
  const PareRun threads = run(train(csv("ok.csv", 50, 1), "z", {"--threads", "-3"}));
  expect_one_line_error(threads, {"--threads must be at least 1, got -3"});
  EXPECT_EQ(threads.err.find(".cc:"), std::string::npos) << threads.err;
}

}  // namespace
}  // namespace pare::testing
