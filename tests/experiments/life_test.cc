// The Game of Life study: Wilson intervals, the table, skip-if-done, results
// independent of --jobs, and a short real run whose success is checked cell
// by cell against the rule.
#include "pare/experiments/life.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "pare/autograd/var.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/data/life.h"
#include "testing/temp_dir.h"

namespace pare::experiments {
namespace {

std::string read_bytes(const Tensor& t) { return std::string(static_cast<const char*>(t.raw()), t.nbytes()); }

using pare::testing::expect_error;

// Hand values: 0 of 10 has upper bound z^2 / (10 + z^2); the others are the
// Wilson score formula worked out separately (1 of 20 is the textbook example,
// [0.0089, 0.2361]).
TEST(WilsonInterval, MatchesHandValues) {
  const double z2 = 1.959963984540054 * 1.959963984540054;
  Interval i = wilson_interval(0, 10);
  EXPECT_EQ(i.lo, 0.0);
  EXPECT_NEAR(i.hi, z2 / (10 + z2), 1e-12);
  i = wilson_interval(10, 10);
  EXPECT_NEAR(i.lo, 10 / (10 + z2), 1e-12);
  EXPECT_EQ(i.hi, 1.0);
  i = wilson_interval(5, 10);
  EXPECT_NEAR(i.lo, 0.236593, 1e-6);
  EXPECT_NEAR(i.hi, 0.763407, 1e-6);
  i = wilson_interval(1, 20);
  EXPECT_NEAR(i.lo, 0.008881, 1e-6);
  EXPECT_NEAR(i.hi, 0.236131, 1e-6);
  i = wilson_interval(3, 32);
  EXPECT_NEAR(i.lo, 0.032402, 1e-6);
  EXPECT_NEAR(i.hi, 0.242182, 1e-6);
  i = wilson_interval(0, 0);
  EXPECT_EQ(i.lo, 0.0);
  EXPECT_EQ(i.hi, 1.0);
}

TEST(LifeTable, OneRowPerCellWithRatesAndMeanStepsOfTheSolvedRuns) {
  std::vector<LifeRun> runs;
  auto add = [&](int n, int m, bool ok, int64_t steps) {
    LifeRun r;
    r.n = n;
    r.m = m;
    r.success = ok;
    r.steps = steps;
    r.parameters = 23 * n * m + 2;
    r.seconds = 1;
    r.flops = 2e9;
    runs.push_back(r);
  };
  add(1, 4, true, 100);
  add(1, 4, false, 1000);
  add(1, 4, true, 300);
  add(1, 1, false, 1000);
  const auto cells = life_cells(runs);
  ASSERT_EQ(cells.size(), 2u);
  EXPECT_EQ(cells[0].m, 1);  // ordered by (n, m)
  EXPECT_EQ(cells[0].successes, 0);
  EXPECT_EQ(cells[0].mean_steps, 0);
  EXPECT_EQ(cells[1].runs, 3);
  EXPECT_EQ(cells[1].successes, 2);
  EXPECT_DOUBLE_EQ(cells[1].rate, 2.0 / 3);
  EXPECT_DOUBLE_EQ(cells[1].mean_steps, 200);
  EXPECT_DOUBLE_EQ(cells[1].seconds, 3);
  EXPECT_EQ(cells[1].ci.lo, wilson_interval(2, 3).lo);
  const std::string md = life_table(runs);
  EXPECT_NE(md.find("| 1 | 4 | 94 | 2 / 3 | 66.7 % |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1 | 1 | 25 | 0 / 1 | 0.0 % | 0.0 % - 79.3 % | - |"), std::string::npos) << md;
}

class LifeStudyTest : public pare::testing::TempDirTest {
 protected:
  // Tiny boards and few of them: runs of a few milliseconds.
  LifeStudyConfig tiny(const std::string& out) {
    LifeStudyConfig c;
    c.recipe.examples = 64;
    c.recipe.test_examples = 16;
    c.recipe.epochs = 3;
    c.recipe.board = 6;
    c.steps = {1};
    c.widths = {1, 2};
    c.seeds = 3;
    c.out_dir = path(out);
    return c;
  }
};

// The test boards mix densities by default and take a fixed density on request;
// the training boards do not change with it.
TEST(LifeData, TestDensityIsASettingOfTheRecipe) {
  auto alive_fraction = [](const data::Dataset& d) {
    const auto* x = d.inputs.data<uint8_t>();
    int64_t alive = 0;
    for (int64_t i = 0; i < d.inputs.numel(); ++i) alive += x[i] != 0;
    return static_cast<double>(alive) / static_cast<double>(d.inputs.numel());
  };
  auto per_board = [](const data::Dataset& d, int64_t b) {
    const int64_t cells = d.inputs.numel() / d.size();
    const auto* x = d.inputs.data<uint8_t>() + b * cells;
    int64_t alive = 0;
    for (int64_t i = 0; i < cells; ++i) alive += x[i] != 0;
    return static_cast<double>(alive) / static_cast<double>(cells);
  };
  LifeRecipe r;
  r.examples = 8;
  r.test_examples = 200;
  const data::TrainTest mixed = life_data(r, 1, 3);
  r.test_density = 0.38f;
  const data::TrainTest fixed = life_data(r, 1, 3);
  EXPECT_NEAR(alive_fraction(fixed.test), 0.38, 0.01);
  double lo = 1, hi = 0;  // mixed: boards from nearly empty to nearly full
  for (int64_t b = 0; b < mixed.test.size(); ++b) {
    lo = std::min(lo, per_board(mixed.test, b));
    hi = std::max(hi, per_board(mixed.test, b));
  }
  EXPECT_LT(lo, 0.1);
  EXPECT_GT(hi, 0.9);
  EXPECT_EQ(read_bytes(mixed.train.inputs), read_bytes(fixed.train.inputs));
}

// A study run in parts (other widths, more seeds) in one directory: the
// table and results.json cover every run of the directory.
TEST_F(LifeStudyTest, TheTableCoversRunsFromEarlierPartsOfTheStudy) {
  LifeStudyConfig c = tiny("parts");
  c.widths = {1};
  c.seeds = 2;
  run_life_study(c);
  c.widths = {2};
  c.seeds = 1;
  const auto second = run_life_study(c);
  EXPECT_EQ(second.size(), 1u);  // the runs of this call only
  const auto results = nlohmann::json::parse(read_file(c.out_dir + "/results.json"));
  EXPECT_EQ(results["finished"], 3);
  EXPECT_EQ(results["total"], 3);
  ASSERT_EQ(results["cells"].size(), 2u);
  EXPECT_EQ(results["cells"][0]["m"], 1);
  EXPECT_EQ(results["cells"][0]["runs"], 2);
  EXPECT_EQ(results["cells"][1]["m"], 2);
  EXPECT_NE(read_file(c.out_dir + "/results.md").find("3 of 3 runs finished"), std::string::npos);
}

TEST_F(LifeStudyTest, ARestartedStudySkipsFinishedRunsAndRedoesTheRest) {
  LifeStudyConfig c = tiny("study");
  int reported = 0;
  LifeObserver obs;
  obs.on_result = [&](const LifeRun&, int done, int total) {
    EXPECT_EQ(done, ++reported);
    EXPECT_EQ(total, 6);
  };
  const auto first = run_life_study(c, obs);
  ASSERT_EQ(first.size(), 6u);
  EXPECT_EQ(reported, 6);
  for (const LifeRun& r : first) {
    EXPECT_FALSE(r.skipped);
    EXPECT_TRUE(file_exists(r.dir + "/result.json"));
    EXPECT_EQ(r.epochs, r.success ? r.epochs : 3);
  }
  EXPECT_EQ(first[3].m, 2);  // ordered by n, m, seed
  EXPECT_EQ(first[3].seed, 0u);
  EXPECT_EQ(first[3].dir, life_run_dir(c.out_dir, 1, 2, 0));
  for (const char* f : {"/settings.json", "/results.json", "/results.md"})
    EXPECT_TRUE(file_exists(c.out_dir + f)) << f;

  // Everything done: nothing trains, the records come back from disk.
  const std::string model_before = read_file(first[4].dir + "/model.bin");
  const auto again = run_life_study(c);
  for (size_t i = 0; i < again.size(); ++i) {
    EXPECT_TRUE(again[i].skipped);
    EXPECT_EQ(again[i].steps, first[i].steps);
    EXPECT_EQ(again[i].loss, first[i].loss);
  }
  EXPECT_EQ(read_file(first[4].dir + "/model.bin"), model_before);

  // Killed after training, before result.json: taken as it ended. Killed
  // after its last checkpoint, before the model was saved: resumed there.
  // Deleted: trained again from scratch. All three end as they did.
  std::filesystem::remove(first[4].dir + "/result.json");
  std::filesystem::remove(first[1].dir + "/result.json");
  std::filesystem::remove(first[1].dir + "/model.bin");
  {
    const std::string log = read_file(first[1].dir + "/log.jsonl");
    const size_t end = log.rfind('\n', log.size() - 2) + 1;  // the last line: the end event
    ASSERT_NE(log.find("\"event\":\"end\"", end), std::string::npos);
    write_file_atomic(first[1].dir + "/log.jsonl", log.substr(0, end));
  }
  std::filesystem::remove_all(first[5].dir);
  const auto third = run_life_study(c);
  EXPECT_TRUE(third[3].skipped);
  for (size_t i : {1u, 4u, 5u}) {
    EXPECT_FALSE(third[i].skipped) << i;
    EXPECT_EQ(third[i].steps, first[i].steps) << i;
    EXPECT_EQ(third[i].loss, first[i].loss) << i;
    EXPECT_EQ(third[i].success, first[i].success) << i;
  }
  EXPECT_EQ(read_file(first[4].dir + "/model.bin"), model_before);

  // Widening the study in the same directory keeps the finished runs.
  c.seeds = 4;
  const auto wider = run_life_study(c);
  ASSERT_EQ(wider.size(), 8u);
  EXPECT_TRUE(wider[0].skipped);
  EXPECT_FALSE(wider[3].skipped);  // n1 m1 seed 3
  // Another recipe in the same directory is refused.
  c.recipe.lr = 2e-3f;
  expect_error([&] { run_life_study(c); }, {"another recipe", "--out"});
}

TEST_F(LifeStudyTest, RunsGiveTheSameBitsWhateverTheJobCount) {
  LifeStudyConfig one = tiny("one"), three = tiny("three");
  one.jobs = 1;
  three.jobs = 3;
  const auto a = run_life_study(one), b = run_life_study(three);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].steps, b[i].steps);
    EXPECT_EQ(a[i].loss, b[i].loss);
    EXPECT_EQ(read_file(a[i].dir + "/model.bin"), read_file(b[i].dir + "/model.bin")) << i;
  }
  // And the same bits as the run trained alone on this thread.
  SerialScope serial;
  auto model = life_model(one.recipe, 1, 2, 1);
  const LifeRun alone = run_life(one.recipe, 1, 2, 1, *model, path("alone"));
  EXPECT_EQ(read_file(path("alone/model.bin")), read_file(a[4].dir + "/model.bin"));
  EXPECT_EQ(alone.loss, a[4].loss);
}

// A run that cannot write its directory raises from its worker thread; the
// study waits for the others and raises that error on the caller's thread.
TEST_F(LifeStudyTest, AFailingRunRaisesItsErrorFromTheStudy) {
  LifeStudyConfig c = tiny("failing");
  c.jobs = 2;
  make_dirs(c.out_dir + "/n1_m2");
  write_file_atomic(c.out_dir + "/n1_m2/seed1", "a file where the run directory goes");
  expect_error([&] { run_life_study(c); }, {"seed1"});
}

TEST_F(LifeStudyTest, BadSettingsAreRefusedWithTheFlag) {
  LifeStudyConfig c = tiny("bad");
  c.widths = {};
  expect_error([&] { run_life_study(c); }, {"--widths", "at least one"});
  c = tiny("bad");
  c.widths = {0};
  expect_error([&] { run_life_study(c); }, {"--widths", "at least 1"});
  c = tiny("bad");
  c.steps = {1, 1};
  expect_error([&] { run_life_study(c); }, {"--steps", "twice"});
  c = tiny("bad");
  c.seeds = 0;
  expect_error([&] { run_life_study(c); }, {"--seeds"});
  c = tiny("bad");
  c.recipe.density = 1.5f;
  expect_error([&] { run_life_study(c); }, {"--density", "[0, 1]"});
  c = tiny("bad");
  c.recipe.test_density = 2.0f;
  expect_error([&] { run_life_study(c); }, {"--test-density", "[0, 1]"});
  c = tiny("bad");
  c.recipe.board = 2;
  expect_error([&] { run_life_study(c); }, {"--board-size"});
  c = tiny("bad");
  c.out_dir.clear();
  expect_error([&] { run_life_study(c); }, {"--out"});
}

// The short version of the study that `make test` runs: n = 1, m = 8 on the
// paper's 32x32 boards, a seed that solves it in about 1,100 steps. A
// success must mean every cell of every test board is right: checked here
// against life_step itself, not through evaluate().
TEST_F(LifeStudyTest, ShortRealRunSolvesEveryCellOfEveryTestBoard) {
  LifeStudyConfig c;
  c.recipe.examples = 1000;
  c.recipe.test_examples = 1000;
  c.recipe.epochs = 32;  // at most 4,000 steps of batch 8
  c.steps = {1};
  c.widths = {8};
  c.seeds = 1;
  c.jobs = 1;
  c.out_dir = path("real");
  const auto runs = run_life_study(c);
  ASSERT_EQ(runs.size(), 1u);
  const LifeRun& r = runs[0];
  ASSERT_TRUE(r.success) << "seed 0 stopped at " << r.steps << " steps, exact " << r.exact;
  EXPECT_EQ(r.exact, 1.0);
  EXPECT_LT(r.steps, 4000);  // stopped at success, not at the last epoch
  EXPECT_EQ(r.steps, r.epochs * 125);
  EXPECT_EQ(r.parameters, 8 * 2 * 9 + 16 + 16 * 8 + 8 + 8 + 1);

  auto model = train::load_model(r.dir + "/model.bin");
  const data::Dataset test = life_data(c.recipe, 1, 0).test;
  const int64_t boards = test.size(), cells = 32 * 32;
  ASSERT_EQ(boards, 1000);
  Tensor x = Tensor::empty({boards, 1, 32, 32});
  const uint8_t* in = test.inputs.data<uint8_t>();
  for (int64_t i = 0; i < boards * cells; ++i) x.f32()[i] = in[i];
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  const autograd::Var out = model->forward(autograd::Var(x), ctx);
  ASSERT_EQ(out.value().numel(), boards * cells);
  std::vector<uint8_t> next(static_cast<size_t>(cells));
  int64_t wrong = 0, live_inputs = 0;
  for (int64_t b = 0; b < boards; ++b) {
    data::life_step(32, 32, next.data(), in + b * cells);
    for (int64_t j = 0; j < cells; ++j) {
      wrong += (out.value().f32()[b * cells + j] > 0.0f) != (next[static_cast<size_t>(j)] == 1);
      live_inputs += in[b * cells + j];
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(live_inputs, boards * cells / 4);  // mixed densities: not all empty boards

  // Killed after the checkpoint of the solving epoch, before the net was
  // saved: the restarted run ends there rather than training on.
  std::filesystem::remove(r.dir + "/result.json");
  std::filesystem::remove(r.dir + "/model.bin");
  const std::string log = read_file(r.dir + "/log.jsonl");
  write_file_atomic(r.dir + "/log.jsonl", log.substr(0, log.rfind('\n', log.size() - 2) + 1));
  const auto again = run_life_study(c);
  EXPECT_FALSE(again[0].skipped);
  EXPECT_TRUE(again[0].success);
  EXPECT_EQ(again[0].steps, r.steps);
  EXPECT_EQ(again[0].loss, r.loss);
}

}  // namespace
}  // namespace pare::experiments
