// Sweeps over ranks, end to end: `pare life` and `pare ticket --seeds` under
// mpiexec (2 and 4 ranks on the loopback) give the runs one process gives,
// bit for bit; a restarted sweep redoes only what is missing; a run that
// fails on some rank stops the whole job with its message.
//
// The test runs the pare binary (PARE_BIN) and mpiexec (PARE_MPIEXEC) as
// subprocesses. CTest sets OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) and a fixed
// sparse crossover (PARE_SPARSE_CROSSOVER, passed to every rank with -x), so
// that no process measures its own and picks other kernels.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "testing/learnable_csv.h"
#include "testing/run_pare.h"
#include "testing/temp_dir.h"

#ifndef PARE_BIN
#error "sweep_test.cc needs PARE_BIN, the path of the pare binary"
#endif
#ifndef PARE_MPIEXEC
#error "sweep_test.cc needs PARE_MPIEXEC, the path of mpiexec"
#endif

extern char** environ;

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

using Finished = pare::testing::PareRun;

// The JSON lines of `out` (pare --json): every line must parse.
std::vector<json> json_lines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream is(out);
  for (std::string l; std::getline(is, l);) {
    if (l.empty()) continue;
    try {
      lines.push_back(json::parse(l));
    } catch (const json::exception&) {
      ADD_FAILURE() << "not a JSON line: " << l;
    }
  }
  return lines;
}

class SweepTest : public pare::testing::TempDirTest {
 protected:
  // Runs `argv` (argv[0] found on PATH or a path) with stdout and stderr to
  // files; kills it, and what it started, after `limit` seconds.
  Finished run(const std::vector<std::string>& argv, double limit = 120) {
    const std::string tag = path("cmd" + std::to_string(++runs_));
    const pid_t pid = pare::testing::spawn_program(argv, tag + ".out", tag + ".err", /*own_group=*/true);
    return pare::testing::wait_pare(pid, tag + ".out", tag + ".err", limit);
  }

  // pare with `args`, alone or under mpiexec with `ranks` ranks.
  Finished pare(const std::vector<std::string>& args, int ranks = 0, double limit = 120) {
    std::vector<std::string> argv;
    if (ranks > 0)
      argv = {PARE_MPIEXEC,
              "--allow-run-as-root",
              "--oversubscribe",
              "--bind-to",
              "none",
              "-x",
              "PARE_SPARSE_CROSSOVER",
              "-np",
              std::to_string(ranks)};
    argv.push_back(PARE_BIN);
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, limit);
  }

  // A learnable 2-feature, 2-class CSV (testing/learnable_csv.h).
  std::string make_csv(int rows) { return write("t.csv", pare::testing::learnable_csv(rows, 7)); }
  std::string make_spec() {
    return write("mlp.json",
                 R"({"name": "mlp", "input": [2], "layers": [{"type": "linear", "out": 16},
        {"type": "relu"}, {"type": "linear", "out": 2}]})");
  }

  int runs_ = 0;
};

// ---- pare life ----

// 12 runs of a few tens of milliseconds: long enough that every rank gets some.
std::vector<std::string> life_args(const std::string& out) {
  return {"life", "--steps",      "1,2", "--widths",        "1,2", "--seeds",
          "3",    "--examples",   "256", "--test-examples", "32",  "--epochs",
          "3",    "--board-size", "8",   "--out",           out,   "--json"};
}

// What decides a life run's result, from results.json (not its timings).
json life_outcome(const json& run) {
  json o;
  for (const char* k : {"n", "m", "seed", "success", "steps", "epochs", "flops", "parameters",
                        "weights_alive", "test_exact", "test_accuracy", "test_loss"})
    o[k] = run.at(k);
  return o;
}

// results.json of the study in `dir` holds the same runs, with the same
// outcomes, as the one in `want`, and every run's model.bin has the same bits.
void expect_same_life_study(const std::string& want, const std::string& dir) {
  const json a = json::parse(slurp(want + "/results.json"));
  const json b = json::parse(slurp(dir + "/results.json"));
  ASSERT_EQ(a.at("runs").size(), 12u);
  ASSERT_EQ(b.at("runs").size(), a.at("runs").size()) << dir;
  ASSERT_EQ(b.at("cells").size(), a.at("cells").size()) << dir;
  for (size_t i = 0; i < a["runs"].size(); ++i) {
    const json& ra = a["runs"][i];
    const json& rb = b["runs"][i];
    EXPECT_EQ(life_outcome(rb), life_outcome(ra)) << dir << ": run " << i;
    const std::string run_dir = "/n" + std::to_string(ra["n"].get<int>()) + "_m" +
                                std::to_string(ra["m"].get<int>()) + "/seed" +
                                std::to_string(ra["seed"].get<int>());
    const std::string model = slurp(want + run_dir + "/model.bin");
    EXPECT_FALSE(model.empty()) << want + run_dir;
    EXPECT_TRUE(slurp(dir + run_dir + "/model.bin") == model)
        << dir + run_dir << "/model.bin differs";
  }
  // The table's counts, from rank 0's records alone.
  for (size_t c = 0; c < a["cells"].size(); ++c)
    for (const char* k : {"n", "m", "runs", "successes", "mean_steps_to_solve", "flops"})
      EXPECT_EQ(b["cells"][c][k], a["cells"][c][k]) << dir << ": cell " << c << " " << k;
}

TEST_F(SweepTest, LifeOverTwoAndFourRanksGivesTheRunsOfOneProcess) {
  std::vector<std::string> one = life_args(path("one"));
  one.insert(one.end(), {"--jobs", "1"});
  const Finished alone = pare(one);
  ASSERT_EQ(alone.code, 0) << alone.err;
  for (int ranks : {2, 4}) {
    const std::string out = path("ranks" + std::to_string(ranks));
    const Finished f = pare(life_args(out), ranks);
    ASSERT_TRUE(f.exited) << ranks << " ranks: " << (f.timed_out ? "timed out" : "killed") << "\n"
                          << f.err;
    ASSERT_EQ(f.code, 0) << f.err;
    // Only rank 0 prints: one line per run, then the end.
    std::set<std::pair<int, int>> cells_seeds;
    std::set<int> ranks_used;
    int run_lines = 0, end_lines = 0;
    for (const json& j : json_lines(f.out)) {
      if (j["event"] == "end") {
        ++end_lines;
        continue;
      }
      ASSERT_EQ(j["event"], "run") << j.dump();
      ++run_lines;
      EXPECT_FALSE(j["skipped"].get<bool>());
      EXPECT_EQ(j["done"], run_lines);
      ranks_used.insert(j["rank"].get<int>());
      cells_seeds.insert({j["n"].get<int>() * 10 + j["m"].get<int>(), j["seed"].get<int>()});
    }
    EXPECT_EQ(run_lines, 12) << f.out;
    EXPECT_EQ(cells_seeds.size(), 12u);
    EXPECT_EQ(end_lines, 1);
    // Dynamic assignment spreads 12 runs over the ranks (rank 0 works too).
    EXPECT_GE(ranks_used.size(), 2u) << ranks << " ranks, but runs came from " << ranks_used.size();
    for (int r : ranks_used) EXPECT_TRUE(r >= 0 && r < ranks) << "rank " << r;
    expect_same_life_study(path("one"), out);
    EXPECT_EQ(slurp(out + "/settings.json"), slurp(path("one/settings.json")));
  }
}

TEST_F(SweepTest, ARestartedLifeSweepRedoesOnlyTheRunsWithoutAResult) {
  const std::string out = path("study");
  ASSERT_EQ(pare(life_args(out), 2).code, 0);
  const std::string before = slurp(out + "/results.json");
  const std::vector<std::string> gone = {"/n1_m1/seed1", "/n2_m2/seed2", "/n2_m1/seed0"};
  std::map<std::string, std::string> models;
  for (const std::string& d : gone) {
    models[d] = slurp(out + d + "/model.bin");
    ASSERT_TRUE(fs::remove(out + d + "/result.json")) << d;
  }
  fs::remove_all(out + gone[2]);  // this one from scratch
  const Finished again = pare(life_args(out), 2);
  ASSERT_EQ(again.code, 0) << again.err;
  std::set<std::string> redone;
  int skipped = 0;
  for (const json& j : json_lines(again.out)) {
    if (j["event"] != "run") continue;
    const std::string d = "/n" + std::to_string(j["n"].get<int>()) + "_m" +
                          std::to_string(j["m"].get<int>()) + "/seed" +
                          std::to_string(j["seed"].get<int>());
    if (j["skipped"].get<bool>()) {
      ++skipped;
      EXPECT_EQ(j["rank"], -1) << d << ": found finished by rank 0, not run";
    } else {
      redone.insert(d);
    }
  }
  EXPECT_EQ(skipped, 9);
  EXPECT_EQ(redone, std::set<std::string>(gone.begin(), gone.end()));
  for (const std::string& d : gone) EXPECT_TRUE(slurp(out + d + "/model.bin") == models[d]) << d;
  // The same study: every outcome as before (only timings may change).
  const json a = json::parse(before), b = json::parse(slurp(out + "/results.json"));
  ASSERT_EQ(b["runs"].size(), a["runs"].size());
  for (size_t i = 0; i < a["runs"].size(); ++i)
    EXPECT_EQ(life_outcome(b["runs"][i]), life_outcome(a["runs"][i])) << i;
}

// A run that cannot write its directory raises on whichever rank runs it:
// the job stops, non-zero, with the run's message and the rank it was on.
TEST_F(SweepTest, AFailingLifeRunStopsTheJobWithItsMessage) {
  const std::string out = path("failing");
  fs::create_directories(out + "/n2_m1");
  write("failing/n2_m1/seed1", "a file where the run directory goes");
  const Finished f = pare(life_args(out), 2, 60);
  EXPECT_FALSE(f.timed_out) << "the job hung";
  EXPECT_NE(f.code, 0);
  EXPECT_NE(f.err.find("pare: error: "), std::string::npos) << f.err;
  EXPECT_NE(f.err.find("n2_m1/seed1"), std::string::npos) << f.err;
  EXPECT_NE(f.err.find(" of 2)"), std::string::npos) << "the message names no rank: " << f.err;
}

// ---- pare ticket --seeds ----

std::vector<std::string> ticket_args(const std::string& csv, const std::string& spec,
                                     const std::string& out) {
  return {"ticket",   "--model",    spec,        "--data", csv,     "--test", csv,
          "--epochs", "3",          "--batch",   "16",     "--lr",  "0.05",   "--rounds",
          "2",        "--controls", "--threads", "1",      "--out", out};
}

json ticket_outcome(const json& run) {
  json o;
  for (const char* k : {"round", "kind", "density", "sparsity", "layers", "test_accuracy",
                        "test_loss", "best_accuracy", "flops", "dense_flops", "steps"})
    o[k] = run.at(k);
  return o;
}

TEST_F(SweepTest, TicketSeedsOverTwoRanksGiveTheTicketsOfSingleRuns) {
  const std::string csv = make_csv(256), spec = make_spec();
  const std::string out = path("sweep");
  std::vector<std::string> sweep = ticket_args(csv, spec, out);
  sweep.insert(sweep.end(), {"--seed", "3", "--seeds", "2", "--json"});
  const Finished f = pare(sweep, 2);
  ASSERT_EQ(f.code, 0) << f.err;
  std::set<int> ranks_used;
  int seed_lines = 0;
  for (const json& j : json_lines(f.out))
    if (j["event"] == "seed") {
      ++seed_lines;
      EXPECT_FALSE(j["skipped"].get<bool>());
      ranks_used.insert(j["rank"].get<int>());
    }
  EXPECT_EQ(seed_lines, 2) << f.out;
  EXPECT_EQ(ranks_used, (std::set<int>{0, 1})) << "two seeds, two ranks: one each";

  const json summary = json::parse(slurp(out + "/results.json"));
  std::map<std::pair<int, std::string>, std::vector<double>> accuracies;  // over the single runs
  for (int seed : {3, 4}) {
    const std::string single = path("single" + std::to_string(seed));
    std::vector<std::string> args = ticket_args(csv, spec, single);
    args.insert(args.end(), {"--seed", std::to_string(seed), "--quiet"});
    const Finished s = pare(args);
    ASSERT_EQ(s.code, 0) << s.err;
    const std::string mine = out + "/seed" + std::to_string(seed);
    EXPECT_EQ(slurp(mine + "/settings.json"), slurp(single + "/settings.json")) << seed;
    const json a = json::parse(slurp(single + "/results.json"));
    const json b = json::parse(slurp(mine + "/results.json"));
    ASSERT_EQ(a["runs"].size(), 7u);  // rounds 0, 1, 2; controls in rounds 1 and 2
    ASSERT_EQ(b["runs"].size(), a["runs"].size());
    for (size_t i = 0; i < a["runs"].size(); ++i) {
      const json& r = a["runs"][i];
      EXPECT_EQ(ticket_outcome(b["runs"][i]), ticket_outcome(r)) << "seed " << seed << " run " << i;
      const std::string run_dir = "/round_" + std::to_string(r["round"].get<int>()) + "/" +
                                  r["kind"].get<std::string>() + "/model.bin";
      const std::string model = slurp(single + run_dir);
      EXPECT_FALSE(model.empty()) << single + run_dir;
      EXPECT_TRUE(slurp(mine + run_dir) == model) << mine + run_dir << " differs";
      accuracies[{r["round"].get<int>(), r["kind"].get<std::string>()}].push_back(
          r["test_accuracy"].get<double>());
    }
  }
  // The summary over seeds: per round and kind, mean and std over both.
  ASSERT_EQ(summary["rows"].size(), accuracies.size());
  ASSERT_EQ(summary["finished"], 2);
  for (const json& row : summary["rows"]) {
    const auto& acc = accuracies[{row["round"].get<int>(), row["kind"].get<std::string>()}];
    ASSERT_EQ(acc.size(), 2u) << row.dump();
    EXPECT_EQ(row["seeds"], 2);
    const double mean = (acc[0] + acc[1]) / 2;
    const double sd =
        std::sqrt(((acc[0] - mean) * (acc[0] - mean) + (acc[1] - mean) * (acc[1] - mean)) / 1);
    EXPECT_NEAR(row["test_accuracy_mean"].get<double>(), mean, 1e-12) << row.dump();
    EXPECT_NEAR(row["test_accuracy_std"].get<double>(), sd, 1e-12) << row.dump();
  }
  // The seeds learned something different: the comparison above can fail.
  const double dense_accuracy = accuracies[{0, "ticket"}][0];
  EXPECT_GT(dense_accuracy, 0.6);

  // Restarted: seed 3 is found finished by rank 0; seed 4, whose last run
  // lost its result and whose results.json is gone, redoes that run only.
  const std::string model4 = slurp(out + "/seed4/round_2/random/model.bin");
  fs::remove(out + "/seed4/results.json");
  fs::remove(out + "/seed4/round_2/random/result.json");
  const Finished again = pare(sweep, 2);
  ASSERT_EQ(again.code, 0) << again.err;
  std::map<int, json> by_seed;
  for (const json& j : json_lines(again.out))
    if (j["event"] == "seed") by_seed[j["seed"].get<int>()] = j;
  ASSERT_EQ(by_seed.size(), 2u) << again.out;
  EXPECT_TRUE(by_seed[3]["skipped"].get<bool>());
  EXPECT_EQ(by_seed[3]["rank"], -1);
  EXPECT_FALSE(by_seed[4]["skipped"].get<bool>());
  EXPECT_GE(by_seed[4]["rank"].get<int>(), 0);
  EXPECT_TRUE(slurp(out + "/seed4/round_2/random/model.bin") == model4);
  const json again_summary = json::parse(slurp(out + "/results.json"));
  ASSERT_EQ(again_summary["rows"].size(), summary["rows"].size());
  for (size_t i = 0; i < summary["rows"].size(); ++i)
    EXPECT_EQ(again_summary["rows"][i]["test_accuracy_mean"],
              summary["rows"][i]["test_accuracy_mean"])
        << i;
}

}  // namespace
