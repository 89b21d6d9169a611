// End-to-end tests of the `pare` binary: help and info, one-line errors with
// exit code 1 for bad input, train -> eval, --json, and exact resume
// after SIGKILL.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/train/archive.h"
#include "testing/learnable_csv.h"
#include "testing/run_pare.h"

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// One run of the pare binary: exit status, stdout, stderr.
using Result = pare::testing::PareRun;
using pare::testing::expect_one_line_error;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A scratch directory per test and `pare` runs in it (testing/run_pare.h).
class CliTest : public pare::testing::PareBinaryTest {
 protected:
  // A learnable 2-feature, 2-class CSV with a header (testing/learnable_csv.h).
  std::string make_csv(const std::string& name, int rows, unsigned seed) {
    spit(path(name), pare::testing::learnable_csv(rows, seed));
    return path(name);
  }
  std::string make_spec() {
    spit(path("mlp.json"),
         R"({"name": "mlp", "input": [2], "layers": [{"type": "linear", "out": 8}, {"type": "relu"},
             {"type": "linear", "out": 2}]})");
    return path("mlp.json");
  }
};

TEST_F(CliTest, HelpAndInfoSucceed) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"}, {"train", "--help"}, {"eval", "--help"},
                                        {"info"}, {"--version"}}) {
    Result r = run(args);
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 0) << args[0] << " " << (args.size() > 1 ? args[1] : "") << ": " << r.err;
    EXPECT_FALSE(r.out.empty()) << args[0];
  }
  Result help = run({"train", "--help"});
  for (const char* flag : {"--model", "--data", "--epochs", "--resume", "--checkpoint-every", "--max-steps", "--json"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  Result info = run({"info", "--json"});
  ASSERT_EQ(info.code, 0);
  json j = json::parse(info.out);
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_TRUE(j["presets"].is_array());
  EXPECT_TRUE(j["layers"].is_array());
}

TEST_F(CliTest, NoSubcommandOrUnknownFlagFails) {
  // Parse errors too come as one "pare: error:" line, exit code 1.
  expect_one_line_error(run({}), {"subcommand", "--help"});
  expect_one_line_error(run({"train", "--model", "lenet300", "--no-such-flag"}), {"--no-such-flag"});
  expect_one_line_error(run({"train", "--model", "lenet300", "--region", "Atlantis"}), {"--region Atlantis", "FRA"});
  const Result help = run({"train", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--region"), std::string::npos);
}

TEST_F(CliTest, TyposGetASuggestion) {
  expect_one_line_error(run({"trian", "--model", "lenet300"}), {"unknown command trian", "did you mean train?"});
  expect_one_line_error(run({"xyzzy"}), {"unknown command xyzzy", "pare --help"});
  expect_one_line_error(run({"train", "--model", "lenet300", "--epoch", "3"}),
                        {"unknown option --epoch for pare train", "did you mean --epochs?"});
  expect_one_line_error(run({"ticket", "--model", "lenet300", "--rat=0.2"}),
                        {"unknown option --rat for pare ticket", "did you mean --rate?"});
  // Nothing close enough: no guess.
  const Result far = run({"train", "--model", "lenet300", "--learning-rate", "3"});
  expect_one_line_error(far, {"unknown option --learning-rate for pare train", "pare train --help"});
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << far.err;
}

TEST_F(CliTest, MissingDatasetFile) {
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", "/nonexistent.csv"}), {"/nonexistent.csv"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", "/nonexistent.npy", "--labels", "/nonexistent_y.npy"}),
                        {"/nonexistent"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", "data.txt"}), {"data.txt"});
}

TEST_F(CliTest, TruncatedNpy) {
  // A valid v1.0 header for (10, 2) '<f4' followed by 30 of the 80 data bytes.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 2), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';  // magic, version, length, dict, newline
  header += "\n";
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size());
  bytes += '\0';
  bytes += header + std::string(30, '\0');
  spit(path("x.npy"), bytes);
  spit(path("y.npy"), bytes);
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("x.npy"), "--labels", path("y.npy")}),
                        {"x.npy"});
  // An .npy without --labels is refused with a hint.
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("x.npy")}), {"x.npy", "--labels"});
}

TEST_F(CliTest, TruncatedAndRaggedCsv) {
  spit(path("trunc.csv"), "x,y,label\n0.1,0.2,1\n0.3,0.4,0\n0.5,");
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("trunc.csv")}), {"trunc.csv:4"});
  spit(path("ragged.csv"), "x,y,label\n0.1,0.2,1\n0.3,0.4,0,7\n");
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("ragged.csv")}), {"ragged.csv:3"});
  spit(path("nan.csv"), "x,y,label\n0.1,0.2,1\n0.3,abc,0\n");
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("nan.csv")}), {"nan.csv:3"});
  spit(path("empty.csv"), "");
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", path("empty.csv")}), {"empty.csv"});
}

TEST_F(CliTest, CsvWhoseWidthDoesNotFitTheModel) {
  spit(path("three.csv"), "0.1,0.2,0.3,1\n0.3,0.4,0.5,0\n");
  Result r = run({"train", "--model", make_spec(), "--data", path("three.csv"), "--quiet"});
  expect_one_line_error(r, {"does not match", "(2)"});
}

TEST_F(CliTest, SpecWithUnknownLayerType) {
  spit(path("bad.json"), R"({"input": [2], "layers": [{"type": "lineer", "out": 8}]})");
  expect_one_line_error(run({"train", "--model", path("bad.json"), "--data", make_csv("t.csv", 20, 1)}),
                        {"bad.json", "lineer"});
  spit(path("notjson.json"), "{ this is not json");
  expect_one_line_error(run({"train", "--model", path("notjson.json"), "--data", path("t.csv")}), {"notjson.json"});
  expect_one_line_error(run({"train", "--model", path("absent.json"), "--data", path("t.csv")}), {"absent.json"});
}

TEST_F(CliTest, UnknownModelName) {
  expect_one_line_error(run({"train", "--model", "resnet9000", "--data", make_csv("t.csv", 20, 1)}),
                        {"resnet9000", "lenet300"});
}

TEST_F(CliTest, BadFlagValues) {
  const std::string csv = make_csv("t.csv", 20, 1);
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--epochs", "0"}), {"--epochs"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--batch", "0"}), {"--batch"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--resume"}), {"--resume", "--out"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--parallel", "gpu"}), {"--parallel"});
  // Optimizer settings are checked only when fit() builds the optimizer, after
  // the model summary went to stderr; with --quiet the error is the one line.
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--lr", "-1", "--quiet"}), {"--lr"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--optimizer", "rmsprop", "--quiet"}),
                        {"rmsprop"});
}

// Optimizer flags are validated before anything is printed or loaded.
TEST_F(CliTest, BadOptimizerFlagsGiveOneLine) {
  const std::string csv = make_csv("t.csv", 20, 1);
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--lr", "-1"}), {"--lr"});
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--optimizer", "rmsprop"}), {"rmsprop"});
}

TEST_F(CliTest, OutDirHoldingARunNeedsResumeOrOverwrite) {
  const std::string csv = make_csv("t.csv", 64, 1);
  const std::string out = path("run");
  Result first = run({"train", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "2", "--out", out,
                      "--quiet"});
  ASSERT_EQ(first.code, 0) << first.err;
  ASSERT_TRUE(fs::exists(out + "/checkpoint.prev.bin")) << "two epochs, two checkpoints";
  expect_one_line_error(run({"train", "--model", make_spec(), "--data", csv, "--epochs", "1", "--out", out}),
                        {out, "--resume", "--overwrite"});
  Result over = run({"train", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "1", "--out", out,
                     "--overwrite", "--quiet"});
  EXPECT_EQ(over.code, 0) << over.err;
  EXPECT_TRUE(fs::exists(out + "/model.bin"));
  // Nothing of the replaced run is left to be mistaken for this one's: its
  // older checkpoint (a fallback --resume would read) is gone too.
  EXPECT_FALSE(fs::exists(out + "/checkpoint.prev.bin"));
  // Resuming a finished run with more epochs continues it.
  Result more = run({"train", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "2", "--out", out,
                     "--resume", "--json"});
  EXPECT_EQ(more.code, 0) << more.err;
  EXPECT_NE(slurp(out + "/log.jsonl").find("\"resume\""), std::string::npos);
}

TEST_F(CliTest, DivergentRunFailsAboutTheLossAndLeavesNoModel) {
  const std::string csv = make_csv("t.csv", 64, 1);
  Result r = run({"train", "--model", make_spec(), "--data", csv, "--optimizer", "sgd", "--lr", "1e6", "--epochs", "20",
                  "--batch", "8", "--out", path("nan"), "--quiet"});
  expect_one_line_error(r, {"loss"});
  EXPECT_FALSE(fs::exists(path("nan/model.bin")));
  // Without --quiet the summary goes to stderr first; the error is still the last line.
  Result loud = run({"train", "--model", make_spec(), "--data", csv, "--optimizer", "sgd", "--lr", "1e6", "--epochs",
                     "20", "--batch", "8", "--out", path("nan2")});
  EXPECT_TRUE(loud.exited);
  EXPECT_EQ(loud.code, 1);
  ASSERT_FALSE(loud.err_lines().empty());
  EXPECT_NE(loud.err_lines().back().find("loss"), std::string::npos) << loud.err;
  EXPECT_FALSE(fs::exists(path("nan2/model.bin")));
}

TEST_F(CliTest, TrainThenEval) {
  const std::string train = make_csv("train.csv", 256, 1), test = make_csv("test.csv", 128, 2);
  const std::string out = path("run");
  Result r = run({"train", "--model", make_spec(), "--data", train, "--test", test, "--epochs", "8", "--batch", "16",
                  "--lr", "0.02", "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
  for (const char* f : {"/log.jsonl", "/checkpoint.bin", "/model.bin"}) EXPECT_TRUE(fs::exists(out + f)) << f;

  Result e = run({"eval", out + "/model.bin", "--data", test});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_NE(e.out.find("accuracy"), std::string::npos) << e.out;
  Result ej = run({"eval", out + "/model.bin", "--data", test, "--json"});
  ASSERT_EQ(ej.code, 0) << ej.err;
  json j = json::parse(ej.out);
  EXPECT_EQ(j["samples"], 128);
  EXPECT_GT(j["accuracy"].get<double>(), 0.8);
  // The same accuracy as the run's final evaluation.
  std::istringstream log(slurp(out + "/log.jsonl"));
  json end;
  for (std::string l; std::getline(log, l);) end = json::parse(l);
  EXPECT_EQ(end["event"], "end");
  EXPECT_DOUBLE_EQ(end["test_accuracy"].get<double>(), j["accuracy"].get<double>());

  expect_one_line_error(run({"eval", path("absent.bin"), "--data", test}), {"absent.bin"});
  expect_one_line_error(run({"eval", test, "--data", test}), {"test.csv", "magic"});
  std::string damaged = slurp(out + "/model.bin");
  damaged[damaged.size() / 2] ^= 0x10;
  spit(path("damaged.bin"), damaged);
  expect_one_line_error(run({"eval", path("damaged.bin"), "--data", test}), {"damaged.bin", "checksum"});
}

TEST_F(CliTest, JsonPrintsParseableLines) {
  const std::string csv = make_csv("t.csv", 64, 1);
  Result r = run({"train", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream is(r.out);
  std::vector<json> lines;
  for (std::string l; std::getline(is, l);) {
    ASSERT_NO_THROW(lines.push_back(json::parse(l))) << "not JSON: " << l;
  }
  ASSERT_EQ(lines.size(), 4u) << r.out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(lines[static_cast<size_t>(i)]["event"], "epoch");
    EXPECT_EQ(lines[static_cast<size_t>(i)]["epoch"], i + 1);
  }
  EXPECT_EQ(lines[3]["event"], "end");
  EXPECT_EQ(lines[3]["stopped_because"], "epochs");
  EXPECT_EQ(lines[3]["steps"], 3 * 2);
  EXPECT_TRUE(r.err.empty()) << "--json should keep stderr quiet: " << r.err;
}

TEST_F(CliTest, MaxStepsStopsEarly) {
  const std::string csv = make_csv("t.csv", 64, 1);
  Result r = run({"train", "--model", make_spec(), "--data", csv, "--epochs", "5", "--batch", "8", "--max-steps", "3",
                  "--json", "--out", path("run")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"stopped_because\":\"max_steps\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"steps\":3"), std::string::npos) << r.out;
}

json last_json_line(const std::string& out) {
  std::istringstream is(out);
  json j;
  for (std::string l; std::getline(is, l);)
    if (!l.empty()) j = json::parse(l);
  return j;
}

// --holdout N trains on all but the last N samples and evaluates on those:
// 64 samples at batch 8 with 16 held out make 6 steps per epoch, not 8.
TEST_F(CliTest, HoldoutEvaluatesOnTheLastTrainingSamples) {
  const std::string csv = make_csv("t.csv", 64, 1);
  Result r = run({"train", "--model", make_spec(), "--data", csv, "--epochs", "1", "--batch", "8",
                  "--holdout", "16", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json end = last_json_line(r.out);
  EXPECT_EQ(end["eval_split"], "holdout");
  EXPECT_EQ(end["steps"], 6);
  Result text = run({"train", "--model", make_spec(), "--data", csv, "--epochs", "1", "--batch", "8",
                     "--holdout", "16"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.err.find("48 train, 16 holdout samples"), std::string::npos) << text.err;
  EXPECT_NE(text.out.find("holdout accuracy"), std::string::npos) << text.out;
  Result all = run({"train", "--model", make_spec(), "--data", csv, "--holdout", "64"});
  EXPECT_NE(all.code, 0);
  EXPECT_NE(all.err.find("cannot hold out 64 of its 64 samples"), std::string::npos) << all.err;
}

// ---- pruning: pare prune, pare ticket, pare train --sparse-training ----

TEST_F(CliTest, PruneASavedModelThenEvalReportsItsSparsity) {
  const std::string train = make_csv("train.csv", 256, 1), test = make_csv("test.csv", 128, 2);
  Result r = run({"train", "--model", make_spec(), "--data", train, "--test", test, "--epochs", "4", "--batch", "16",
                  "--lr", "0.02", "--out", path("dense"), "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  // 2 -> 8 -> 2: weights 16 + 16; global magnitude at 50 % keeps 16.
  Result p = run({"prune", "--from", path("dense/model.bin"), "--criterion", "magnitude", "--sparsity", "0.5",
                  "--data", train, "--test", test, "--out", path("pruned"), "--json"});
  ASSERT_EQ(p.code, 0) << p.err;
  json j = last_json_line(p.out);
  EXPECT_DOUBLE_EQ(j["sparsity"].get<double>(), 0.5);
  EXPECT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][0]["kept"].get<int>() + j["layers"][1]["kept"].get<int>(), 16);
  Result e = run({"eval", path("pruned/model.bin"), "--data", test, "--json"});
  ASSERT_EQ(e.code, 0) << e.err;
  json ej = json::parse(e.out);
  EXPECT_DOUBLE_EQ(ej["sparsity"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(ej["accuracy"].get<double>(), j["test_accuracy"].get<double>());
  Result et = run({"eval", path("pruned/model.bin"), "--data", test});
  EXPECT_NE(et.out.find("16 of 32 (50.00% kept"), std::string::npos) << et.out;
  // The same command again finds its finished run and redoes nothing.
  Result again = run({"prune", "--from", path("dense/model.bin"), "--criterion", "magnitude", "--sparsity", "0.5",
                      "--data", train, "--test", test, "--out", path("pruned")});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("holds this finished run"), std::string::npos) << again.err;
  // Other flags with the same --out are refused, not answered with the old run.
  expect_one_line_error(run({"prune", "--from", path("dense/model.bin"), "--criterion", "magnitude", "--sparsity",
                             "0.9", "--data", train, "--test", test, "--out", path("pruned")}),
                        {"other settings", "--overwrite"});
}

// A pruned model compressed to .pare: smaller than model.bin, the pruned
// weights stored sparse, the same accuracy and loss when evaluated from it
// (sparse and dense kernels alike), and the same sparsity when pruned further.
TEST_F(CliTest, CompressInspectAndEvaluateAPareFile) {
  const std::string train = make_csv("train.csv", 256, 1), test = make_csv("test.csv", 128, 2);
  ASSERT_EQ(run({"train", "--model", make_spec(), "--data", train, "--test", test, "--epochs", "4", "--batch", "16",
                 "--lr", "0.02", "--out", path("dense"), "--quiet"}).code, 0);
  ASSERT_EQ(run({"prune", "--from", path("dense/model.bin"), "--criterion", "magnitude", "--sparsity", "0.5",
                 "--data", train, "--test", test, "--out", path("pruned"), "--quiet"}).code, 0);
  Result c = run({"compress", path("pruned/model.bin"), "-o", path("m.pare"), "--json"});
  ASSERT_EQ(c.code, 0) << c.err;
  json cj = json::parse(c.out);
  EXPECT_LT(cj["file_bytes"].get<int64_t>(), static_cast<int64_t>(std::filesystem::file_size(path("pruned/model.bin"))));
  int64_t kept = 0;
  for (const auto& t : cj["tensors"])
    if (t["name"].get<std::string>().find("weight") != std::string::npos) kept += t["kept"].get<int64_t>();
  EXPECT_EQ(kept, 16);
  Result i = run({"inspect", path("m.pare"), "--json"});
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_EQ(json::parse(i.out)["file_bytes"], cj["file_bytes"]);
  for (const char* sparse : {"on", "off"}) {
    Result from_bin = run({"eval", path("pruned/model.bin"), "--data", test, "--json", "--sparse", sparse});
    Result from_pare = run({"eval", path("m.pare"), "--data", test, "--json", "--sparse", sparse});
    ASSERT_EQ(from_pare.code, 0) << from_pare.err;
    json a = json::parse(from_bin.out), b = json::parse(from_pare.out);
    EXPECT_EQ(a["accuracy"], b["accuracy"]) << sparse;
    EXPECT_EQ(a["loss"], b["loss"]) << sparse;
    EXPECT_DOUBLE_EQ(b["sparsity"].get<double>(), 0.5);
  }
  // A damaged file is refused with the section named.
  std::string bytes = pare::read_file(path("m.pare"));
  bytes[bytes.size() - 3] ^= 0x5A;
  pare::write_file_atomic(path("bad.pare"), bytes);
  Result bad = run({"eval", path("bad.pare"), "--data", test});
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("bad.pare"), std::string::npos) << bad.err;
  EXPECT_TRUE(bad.err.find("CRC-32") != std::string::npos) << bad.err;
  // Lossy storage: the kept weights as int8 or as codebook indices, read back
  // and evaluated; flags checked.
  for (std::vector<std::string> flags : {std::vector<std::string>{"--int8"}, {"--share-bits", "3"}}) {
    std::vector<std::string> args{"compress", path("pruned/model.bin"), "-o", path("q.pare"), "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    Result q = run(args);
    ASSERT_EQ(q.code, 0) << q.err;
    const json qj = json::parse(q.out);
    for (const auto& t : qj["tensors"]) {
      if (t["dims"].size() > 1) {
        EXPECT_EQ(t["dtype"].get<std::string>(), flags[0] == "--int8" ? "s8" : "code") << t["name"];
      }
    }
    Result qe = run({"eval", path("q.pare"), "--data", test, "--json"});
    ASSERT_EQ(qe.code, 0) << qe.err;
    EXPECT_DOUBLE_EQ(json::parse(qe.out)["sparsity"].get<double>(), 0.5);
  }
  // Integer inference: int8 weights with calibrated activation grids, run on
  // the int8 kernels; close to the float evaluation of the same file.
  Result qc = run({"compress", path("pruned/model.bin"), "-o", path("i8.pare"), "--int8", "--calibrate",
                   "--data", train, "--json"});
  ASSERT_EQ(qc.code, 0) << qc.err;
  Result int8 = run({"eval", path("i8.pare"), "--data", test, "--int8", "--json"});
  ASSERT_EQ(int8.code, 0) << int8.err;
  Result flt = run({"eval", path("i8.pare"), "--data", test, "--json"});
  ASSERT_EQ(flt.code, 0) << flt.err;
  EXPECT_EQ(json::parse(int8.out)["kernels"], "int8");
  EXPECT_NEAR(json::parse(int8.out)["accuracy"].get<double>(), json::parse(flt.out)["accuracy"].get<double>(), 0.1);
  Result nocal = run({"eval", path("q.pare"), "--data", test, "--int8"});
  EXPECT_NE(nocal.code, 0);
  EXPECT_NE(nocal.err.find("activations"), std::string::npos) << nocal.err;
  Result both = run({"compress", path("pruned/model.bin"), "-o", path("x.pare"), "--int8", "--share-bits", "4"});
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("choose one"), std::string::npos) << both.err;
  Result nine = run({"compress", path("pruned/model.bin"), "-o", path("x.pare"), "--share-bits", "9"});
  EXPECT_NE(nine.code, 0);
  EXPECT_NE(nine.err.find("1 to 8"), std::string::npos) << nine.err;
  // A variant fine-tuned from the pruned model on one class with 10 % of each
  // weight trainable, kept as a delta and rebuilt exactly.
  Result ft = run({"train", "--from", path("pruned/model.bin"), "--data", train, "--test", test,
                   "--train-classes", "1", "--epochs", "1", "--batch", "16", "--lr", "0.02",
                   "--update-fraction", "0.1", "--out", path("variant"), "--quiet"});
  ASSERT_EQ(ft.code, 0) << ft.err;
  Result dl = run({"delta", path("pruned/model.bin"), path("variant/model.bin"), "-o", path("v.pdelta"), "--json"});
  ASSERT_EQ(dl.code, 0) << dl.err;
  const json dj = json::parse(dl.out);
  EXPECT_GT(dj["changed"].get<int64_t>(), 0);
  EXPECT_LE(dj["changed"].get<int64_t>(), 2 + 10) << "10 % of 16 kept weights, and the biases";
  ASSERT_EQ(run({"apply", path("pruned/model.bin"), path("v.pdelta"), "-o", path("v.bin")}).code, 0);
  Result va = run({"eval", path("variant/model.bin"), "--data", test, "--json"});
  Result vb = run({"eval", path("v.bin"), "--data", test, "--json"});
  EXPECT_EQ(json::parse(va.out)["loss"], json::parse(vb.out)["loss"]);
  // --test-classes scores on that class of the test set only: the samples
  // counted are the class's, and a class out of range names the flag.
  Result all = run({"eval", path("v.bin"), "--data", test, "--json"});
  Result one = run({"eval", path("v.bin"), "--data", test, "--test-classes", "1", "--json"});
  ASSERT_EQ(one.code, 0) << one.err;
  const int64_t n_all = json::parse(all.out)["samples"].get<int64_t>(), n_one = json::parse(one.out)["samples"].get<int64_t>();
  EXPECT_GT(n_one, 0);
  EXPECT_LT(n_one, n_all);
  Result zero = run({"eval", path("v.bin"), "--data", test, "--test-classes", "0", "--json"});
  ASSERT_EQ(zero.code, 0) << zero.err;
  EXPECT_EQ(n_one + json::parse(zero.out)["samples"].get<int64_t>(), n_all) << "two classes";
  Result bad_class = run({"eval", path("v.bin"), "--data", test, "--test-classes", "7"});
  EXPECT_NE(bad_class.code, 0);
  EXPECT_NE(bad_class.err.find("--test-classes"), std::string::npos) << bad_class.err;
  // Training without a test split has nothing for --test-classes to select.
  Result no_split = run({"train", "--from", path("pruned/model.bin"), "--data", train, "--test-classes", "1",
                         "--epochs", "1", "--max-steps", "1", "--quiet"});
  EXPECT_NE(no_split.code, 0);
  EXPECT_NE(no_split.err.find("no test split"), std::string::npos) << no_split.err;
  Result with_split = run({"train", "--from", path("pruned/model.bin"), "--data", train, "--test", test,
                           "--test-classes", "1", "--epochs", "1", "--max-steps", "1", "--json"});
  ASSERT_EQ(with_split.code, 0) << with_split.err;
  Result wrong = run({"apply", path("dense/model.bin"), path("v.pdelta"), "-o", path("w.bin")});
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.err.find("another base"), std::string::npos) << wrong.err;
  Result both_models = run({"train", "--from", path("pruned/model.bin"), "--model", make_spec(), "--data", train});
  EXPECT_NE(both_models.code, 0);
  // Budgets choose the storage: a byte budget the least lossy that fits, an
  // accuracy budget the smallest within it; an impossible budget is refused.
  Result fb = run({"compress", path("pruned/model.bin"), "-o", path("b.pare"), "--max-bytes", "100000", "--json"});
  ASSERT_EQ(fb.code, 0) << fb.err;
  EXPECT_EQ(json::parse(fb.out)["tensors"][0]["dtype"], "f32") << "float fits 100 KB";
  Result ab = run({"compress", path("pruned/model.bin"), "-o", path("a.pare"), "--max-accuracy-drop", "100",
                   "--data", train, "--test", test, "--json"});
  ASSERT_EQ(ab.code, 0) << ab.err;
  EXPECT_LE(json::parse(ab.out)["file_bytes"].get<int64_t>(), json::parse(fb.out)["file_bytes"].get<int64_t>());
  // Any loss allowed: the smallest candidate, no larger than 2-bit sharing or int8.
  for (std::vector<std::string> flags : {std::vector<std::string>{"--share-bits", "2"}, {"--int8"}}) {
    std::vector<std::string> args{"compress", path("pruned/model.bin"), "-o", path("c.pare"), "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    Result other = run(args);
    ASSERT_EQ(other.code, 0) << other.err;
    EXPECT_LE(json::parse(ab.out)["file_bytes"].get<int64_t>(), json::parse(other.out)["file_bytes"].get<int64_t>() + 64)
        << flags[0];
  }
  Result tiny = run({"compress", path("pruned/model.bin"), "-o", path("t.pare"), "--max-bytes", "10"});
  EXPECT_NE(tiny.code, 0);
  EXPECT_NE(tiny.err.find("no storage meets the budget"), std::string::npos) << tiny.err;
  Result mixed = run({"compress", path("pruned/model.bin"), "-o", path("t.pare"), "--max-bytes", "1000", "--int8"});
  EXPECT_NE(mixed.code, 0);
  Result not_pare = run({"compress", path("pruned/model.bin"), "-o", path("m.bin")});
  EXPECT_NE(not_pare.code, 0);
  EXPECT_NE(not_pare.err.find("must end in .pare"), std::string::npos) << not_pare.err;
}

TEST_F(CliTest, PruneAtInitThenTrainCountsSparseFlops) {
  const std::string csv = make_csv("t.csv", 128, 1);
  for (const char* c : {"snip", "grasp", "synflow", "random"}) {
    Result r = run({"prune", "--model", make_spec(), "--data", csv, "--test", csv, "--criterion", c,
                    "--sparsity", "0.75", "--train", "--epochs", "2", "--batch", "16", "--score-samples", "32",
                    "--out", path(std::string("pai_") + c), "--json"});
    ASSERT_EQ(r.code, 0) << c << ": " << r.err;
    json j = last_json_line(r.out);
    EXPECT_EQ(j["method"], c);
    EXPECT_DOUBLE_EQ(j["sparsity"].get<double>(), 0.75) << c;
    EXPECT_GT(j["flops"].get<double>(), 0) << c;
    EXPECT_LT(j["flops"].get<double>(), 0.5 * j["dense_flops"].get<double>()) << c;
    EXPECT_TRUE(fs::exists(path(std::string("pai_") + c + "/result.json")));
  }
}

TEST_F(CliTest, StructuredPruneSavesASmallerModel) {
  const std::string csv = make_csv("t.csv", 128, 1);
  Result r = run({"prune", "--model", make_spec(), "--data", csv, "--test", csv, "--structured", "--keep", "0.5",
                  "--out", path("s"), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  json j = last_json_line(r.out);
  EXPECT_EQ(j["parameters"], 2 * 4 + 4 + 4 * 2 + 2);  // 8 hidden units -> 4
  EXPECT_DOUBLE_EQ(j["masked_accuracy"].get<double>(), j["test_accuracy"].get<double>());
  Result e = run({"eval", path("s/model.bin"), "--data", csv, "--json"});
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(json::parse(e.out)["parameters"], 22);
}

TEST_F(CliTest, TicketRunsRoundsWithControlsAndResumes) {
  const std::string csv = make_csv("t.csv", 128, 1);
  const std::vector<std::string> args = {"ticket", "--model", make_spec(), "--data", csv, "--test", csv,
                                         "--epochs", "2", "--batch", "16", "--rounds", "2", "--controls",
                                         "--out", path("t"), "--json"};
  Result r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  int runs = 0;
  std::istringstream is(r.out);
  for (std::string l; std::getline(is, l);) {
    json j = json::parse(l);
    if (j["event"] == "run") {
      ++runs;
      EXPECT_FALSE(j["skipped"].get<bool>());
    }
  }
  EXPECT_EQ(runs, 3 + 2 * 2);
  for (const char* f : {"/settings.json", "/results.json", "/results.md", "/round_2/random/result.json"})
    EXPECT_TRUE(fs::exists(path("t") + f)) << f;
  Result again = run(args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out.find("\"skipped\":false"), std::string::npos) << again.out;
}

// pare ticket records its data flags: the same --out with other data is
// refused instead of mixing rounds trained on two datasets.
TEST_F(CliTest, TicketRefusesToResumeOnOtherData) {
  const std::string a = make_csv("a.csv", 64, 1), b = make_csv("b.csv", 64, 2);
  const std::vector<std::string> base = {"ticket", "--model", make_spec(), "--test", a, "--epochs", "1",
                                         "--batch", "16", "--rounds", "1", "--out", path("t"), "--quiet"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  Result first = with({"--data", a});
  ASSERT_EQ(first.code, 0) << first.err;
  expect_one_line_error(with({"--data", b}), {"other settings"});
  expect_one_line_error(with({"--data", a, "--holdout", "16"}), {"other settings"});
  Result again = with({"--data", a});
  EXPECT_EQ(again.code, 0) << again.err;
}

// With --holdout, pare prune and pare ticket say which split they scored.
TEST_F(CliTest, PruneAndTicketNameTheHoldoutSplit) {
  const std::string csv = make_csv("t.csv", 128, 1);
  Result p = run({"prune", "--model", make_spec(), "--data", csv, "--holdout", "32", "--criterion", "magnitude",
                  "--sparsity", "0.5", "--out", path("p")});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_NE(p.out.find("holdout accuracy right after pruning"), std::string::npos) << p.out;
  EXPECT_EQ(p.out.find("test accuracy"), std::string::npos) << p.out;
  Result pj = run({"prune", "--model", make_spec(), "--data", csv, "--holdout", "32", "--criterion", "magnitude",
                   "--sparsity", "0.5", "--out", path("pj"), "--json"});
  ASSERT_EQ(pj.code, 0) << pj.err;
  EXPECT_EQ(last_json_line(pj.out)["eval_split"], "holdout");
  Result t = run({"ticket", "--model", make_spec(), "--data", csv, "--holdout", "32", "--epochs", "1", "--batch",
                  "16", "--rounds", "1", "--out", path("t")});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("of weights, holdout accuracy"), std::string::npos) << t.out;
  Result tj = run({"ticket", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "1", "--batch", "16",
                   "--rounds", "1", "--out", path("tj"), "--json"});
  ASSERT_EQ(tj.code, 0) << tj.err;
  std::istringstream is(tj.out);
  int runs = 0;
  for (std::string l; std::getline(is, l);) {
    const json j = json::parse(l);
    if (j["event"] != "run") continue;
    EXPECT_EQ(j["eval_split"], "test") << l;
    ++runs;
  }
  EXPECT_EQ(runs, 2);
}

TEST_F(CliTest, SparseTrainingReachesItsSparsity) {
  const std::string csv = make_csv("t.csv", 256, 1);
  for (const char* m : {"gmp", "set", "rigl"}) {
    Result r = run({"train", "--model", make_spec(), "--data", csv, "--test", csv, "--epochs", "3", "--batch", "16",
                    "--sparse-training", m, "--sparsity", "0.5", "--distribution", "uniform",
                    "--update-interval", "4", "--json"});
    ASSERT_EQ(r.code, 0) << m << ": " << r.err;
    json j = last_json_line(r.out);
    EXPECT_DOUBLE_EQ(j["sparsity"].get<double>(), 0.5) << m;
    EXPECT_LT(j["flops"].get<double>(), j["dense_flops"].get<double>()) << m;
  }
}

TEST_F(CliTest, PruningFlagsAreChecked) {
  const std::string csv = make_csv("t.csv", 64, 1);
  const std::string spec = make_spec();
  expect_one_line_error(run({"prune", "--model", spec, "--data", csv, "--out", path("a")}), {"--sparsity"});
  expect_one_line_error(run({"prune", "--model", spec, "--data", csv, "--criterion", "fisher", "--sparsity", "0.5",
                             "--out", path("b")}),
                        {"fisher", "magnitude, random, snip, grasp, synflow"});
  expect_one_line_error(run({"prune", "--data", csv, "--sparsity", "0.5", "--out", path("c")}),
                        {"exactly one of --model and --from"});
  expect_one_line_error(run({"prune", "--model", spec, "--data", csv, "--sparsity", "1.5", "--out", path("d")}),
                        {"--sparsity must be in [0, 1)"});
  expect_one_line_error(run({"ticket", "--model", spec, "--data", csv, "--layer-rate", "nope=0.3",
                             "--out", path("e")}),
                        {"--layer-rate nope", "no such weight"});
  expect_one_line_error(run({"train", "--model", spec, "--data", csv, "--sparse-training", "rigl"}),
                        {"--sparsity must be in (0, 1)"});
  expect_one_line_error(run({"train", "--model", spec, "--data", csv, "--sparse-training", "rigl", "--sparsity",
                             "0.5", "--distribution", "global"}),
                        {"gmp only"});
}

// ---- pare life: the Game of Life study ----

// Tiny boards and few of them: each run takes milliseconds.
std::vector<std::string> tiny_life_args(const std::string& out) {
  return {"life", "--steps", "1", "--widths", "1,2", "--seeds", "2", "--examples", "64", "--test-examples", "16",
          "--epochs", "2", "--board-size", "6", "--jobs", "2", "--out", out};
}

TEST_F(CliTest, LifeStudyWritesItsTableAndARestartSkipsFinishedRuns) {
  std::vector<std::string> args = tiny_life_args(path("life"));
  args.push_back("--json");
  Result r = run(args);
  ASSERT_EQ(r.code, 0) << r.err;
  int runs = 0;
  json end;
  std::istringstream is(r.out);
  for (std::string l; std::getline(is, l);) {
    const json j = json::parse(l);
    if (j["event"] == "run") {
      ++runs;
      EXPECT_FALSE(j["skipped"].get<bool>());
    } else {
      end = j;
    }
  }
  EXPECT_EQ(runs, 4);
  ASSERT_EQ(end["event"], "end") << r.out;
  ASSERT_EQ(end["cells"].size(), 2u);
  EXPECT_EQ(end["cells"][1]["m"], 2);
  EXPECT_EQ(end["cells"][1]["parameters"], 53);  // 3x3 conv 1->4: 40, 1x1 4->2: 10, 1x1 2->1: 3
  EXPECT_EQ(end["cells"][1]["runs"], 2);
  for (const char* f : {"/settings.json", "/results.json", "/results.md", "/n1_m2/seed1/result.json",
                        "/n1_m2/seed1/model.bin"})
    EXPECT_TRUE(fs::exists(path("life") + f)) << f;
  EXPECT_NE(slurp(path("life/results.md")).find("| 1 | 1 | 25 |"), std::string::npos);

  // The same command in text mode: every run found done, the table printed.
  Result again = run(tiny_life_args(path("life")));
  ASSERT_EQ(again.code, 0) << again.err;
  size_t done_before = 0;
  for (size_t at = 0; (at = again.out.find("[done before]", at)) != std::string::npos; ++at) ++done_before;
  EXPECT_EQ(done_before, 4u) << again.out;
  EXPECT_NE(again.out.find("| n | m | parameters | solved / runs |"), std::string::npos) << again.out;
  EXPECT_NE(again.err.find("4 of 4 runs were done before"), std::string::npos) << again.err;

  // A run whose result is gone is redone, and only that one.
  fs::remove(path("life/n1_m1/seed0/result.json"));
  args.back() = "--json";
  Result third = run(args);
  ASSERT_EQ(third.code, 0) << third.err;
  EXPECT_EQ(third.out.find("\"skipped\":false"), third.out.rfind("\"skipped\":false")) << third.out;
  EXPECT_NE(third.out.find("\"skipped\":false"), std::string::npos) << third.out;
}

TEST_F(CliTest, LifeFlagsAreChecked) {
  // The tiny study with one flag set to `value` (replaced when it is there).
  auto with = [&](const std::string& flag, const std::string& value) {
    std::vector<std::string> a = tiny_life_args(path("bad"));
    auto it = std::find(a.begin(), a.end(), flag);
    if (it != a.end())
      it[1] = value;
    else
      a.insert(a.end(), {flag, value});
    return run(a);
  };
  expect_one_line_error(with("--widths", "0"), {"--widths", "at least 1"});
  expect_one_line_error(with("--widths", ""), {"--widths", "list"});
  expect_one_line_error(with("--steps", "1,1"), {"--steps", "twice"});
  expect_one_line_error(with("--steps", "0"), {"--steps", "at least 1"});
  expect_one_line_error(with("--seeds", "0"), {"--seeds"});
  expect_one_line_error(with("--density", "1.5"), {"--density", "[0, 1]"});
  expect_one_line_error(with("--board-size", "2"), {"--board-size"});
  expect_one_line_error(with("--examples", "0"), {"--examples"});
  expect_one_line_error(with("--jobs", "-1"), {"--jobs"});
  EXPECT_FALSE(fs::exists(path("bad")));  // refused before anything was written
  // Another recipe in a finished study's directory.
  ASSERT_EQ(run(tiny_life_args(path("done"))).code, 0);
  std::vector<std::string> other = tiny_life_args(path("done"));
  other.insert(other.end(), {"--lr", "0.002", "--quiet"});
  expect_one_line_error(run(other), {"another recipe", "--out"});
}

// ---- kill -9 and resume ----

struct Params {
  std::vector<std::pair<std::string, std::string>> tensors;  // name, bytes
  std::string meta;
};

Params read_params(const std::string& file) {
  pare::train::Archive a = pare::train::read_archive(file);
  Params p;
  p.meta = a.meta_json;
  for (auto& [name, t] : a.tensors)
    p.tensors.emplace_back(name, std::string(static_cast<const char*>(t.raw()), t.nbytes()));
  return p;
}

int64_t checkpoint_step(const std::string& file) {
  try {
    return json::parse(pare::train::read_archive(file).meta_json).value("step", int64_t{-1});
  } catch (const pare::Error&) {
    return -1;  // not there yet
  }
}

class KillResumeTest : public CliTest {
 protected:
  // 4000 boards of 32x32, batch 8: 500 steps per epoch, 1000 in all (about
  // 0.7 s on an idle 2-core machine); a checkpoint every 50 steps, including
  // the one at the end of epoch 1 (step 500).
  std::vector<std::string> args(const std::string& out) {
    return {"train", "--model", "life", "--data", "life", "--examples", "4000", "--test-examples", "200",
            "--batch", "8", "--epochs", "2", "--checkpoint-every", "50", "--threads", "2", "--quiet",
            "--out", out};
  }

  // Trains to completion once, then for each target starts the same run,
  // SIGKILLs it once its checkpoint holds at least `target` steps (plus a
  // pseudo-random delay, so the kill lands at different points between
  // checkpoints, possibly mid-write of one), resumes it, and compares the
  // final parameters with the uninterrupted run's bit for bit.
  void kill_and_resume(std::initializer_list<int64_t> targets) {
    const std::string d1 = path("D1");
    Result ref = run(args(d1));
    ASSERT_EQ(ref.code, 0) << ref.err;
    const Params want = read_params(d1 + "/model.bin");
    ASSERT_FALSE(want.tensors.empty());
    std::mt19937 gen(20240611);
    int round = 0;
    for (int64_t target : targets) {
      SCOPED_TRACE("kill after checkpoint step >= " + std::to_string(target));
      const std::string d2 = path("D2_" + std::to_string(++round));
      const std::string tag = "kill" + std::to_string(round);
      pid_t pid = spawn(args(d2), tag);
      ASSERT_GT(pid, 0);
      bool exited_early = false;
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (checkpoint_step(d2 + "/checkpoint.bin") < target) {
        if (waitpid(pid, nullptr, WNOHANG) == pid) {
          exited_early = true;
          break;
        }
        if (std::chrono::steady_clock::now() > give_up) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_FALSE(exited_early) << "the run finished before it could be killed";
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 6)(gen)));
      ASSERT_EQ(kill(pid, SIGKILL), 0);
      Result killed = wait(pid, tag);
      ASSERT_EQ(killed.signal, SIGKILL) << "exited with " << killed.code << " before the kill: " << killed.err;
      ASSERT_FALSE(fs::exists(d2 + "/model.bin")) << "killed too late to test resume";
      const int64_t at = checkpoint_step(d2 + "/checkpoint.bin");
      EXPECT_GE(at, target);

      // Without --resume the directory is refused; with it the run completes.
      expect_one_line_error(run(args(d2)), {"--resume"});
      std::vector<std::string> resume = args(d2);
      resume.push_back("--resume");
      Result r = run(resume);
      ASSERT_EQ(r.code, 0) << r.err;

      const Params got = read_params(d2 + "/model.bin");
      ASSERT_EQ(got.tensors.size(), want.tensors.size());
      for (size_t i = 0; i < want.tensors.size(); ++i) {
        EXPECT_EQ(got.tensors[i].first, want.tensors[i].first);
        ASSERT_EQ(got.tensors[i].second.size(), want.tensors[i].second.size());
        EXPECT_EQ(std::memcmp(got.tensors[i].second.data(), want.tensors[i].second.data(),
                              want.tensors[i].second.size()), 0)
            << want.tensors[i].first << " differs after resuming from step " << at;
      }
      EXPECT_EQ(json::parse(got.meta)["info"]["steps"], 1000);
      const std::string log = slurp(d2 + "/log.jsonl");
      EXPECT_NE(log.find("\"event\":\"resume\""), std::string::npos);
      EXPECT_NE(log.find("\"event\":\"end\""), std::string::npos);
    }
  }
};

// Just after the epoch-1 checkpoint, early in epoch 2, mid-way through epoch 2.
TEST_F(KillResumeTest, KillNineThenResumeMatchesAnUninterruptedRun) { kill_and_resume({500, 600, 750}); }

// Killed before the first evaluation (best test loss still infinite).
TEST_F(KillResumeTest, KillNineInFirstEpochThenResume) { kill_and_resume({100}); }

}  // namespace
