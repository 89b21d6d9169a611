// The training loop: learning, bit reproducibility, exact resume, stopping
// rules, divergence, and saved models.
#include "pare/train/trainer.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "pare/base/thread_pool.h"
#include "pare/data/life.h"
#include "pare/train/archive.h"
#include "train/train_helpers.h"

namespace pare::train {
namespace {

using testing::blob;
using testing::expect_error;
using testing::mlp_spec;
using testing::plane_dataset;
using testing::read_lines;
using testing::TempDirTest;

TrainConfig small_config(int64_t epochs = 3) {
  TrainConfig cfg;
  cfg.epochs = epochs;
  cfg.batch = 32;
  cfg.seed = 7;
  cfg.optimizer.name = "adam";
  cfg.optimizer.lr = 0.01f;
  return cfg;
}

class TrainerTest : public testing::PlaneDataTest {};

TEST_F(TrainerTest, LossDecreasesAndAccuracyBeatsChance) {
  auto model = nn::Model::build(mlp_spec(), 7);
  const EvalResult before = evaluate(*model, test_, 1000);
  TrainResult r = fit(*model, train_, test_, small_config(5));
  ASSERT_EQ(r.epochs.size(), 5u);
  EXPECT_EQ(r.stopped_because, "epochs");
  EXPECT_EQ(r.steps, 5 * 16);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  EXPECT_LT(r.final_test.loss, before.loss);
  EXPECT_GT(r.final_test.accuracy, 0.85) << "chance is 0.5";
  EXPECT_EQ(r.final_test.samples, 256);
  // evaluate() agrees with what fit reported for the final weights.
  EXPECT_DOUBLE_EQ(evaluate(*model, test_, 1000).accuracy, r.final_test.accuracy);
}

// One Game of Life step on 8x8 boards: data, the life net and a short recipe.
struct SmallLife {
  data::Dataset train, test;
  std::unique_ptr<nn::Model> model;
  TrainConfig cfg;
};
SmallLife small_life(const TrainConfig& base) {
  data::LifeConfig lc{.size = 8, .steps = 1};
  Rng rng(3);
  SmallLife l;
  l.train = data::life_boards(256, lc, rng);
  l.test = data::life_boards(64, lc, rng);
  l.model = nn::Model::build(nn::preset("life", {.board = 8}), 1);
  l.cfg = base;
  l.cfg.batch = 8;
  l.cfg.optimizer.lr = 0.02f;
  return l;
}

TEST_F(TrainerTest, LearnsGameOfLifeBoardsBetterThanChance) {
  SmallLife l = small_life(small_config(3));
  auto& model = l.model;
  TrainResult r = fit(*model, l.train, l.test, l.cfg);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  EXPECT_GT(r.final_test.accuracy, 0.5);
  EXPECT_GE(r.final_test.accuracy, r.final_test.exact);
}

TEST_F(TrainerTest, SameSeedAndThreadsGiveIdenticalBits) {
  for (int threads : {1, 2, 3}) {
    for (const char* parallel : {"ops", "data"}) {
      set_num_threads(threads);
      std::string first;
      for (int run = 0; run < 2; ++run) {
        auto model = nn::Model::build(mlp_spec(32), 11);
        TrainConfig cfg = small_config(2);
        cfg.seed = 11;
        cfg.parallel = parallel;
        fit(*model, train_, test_, cfg);
        if (run == 0)
          first = blob(*model);
        else
          EXPECT_TRUE(first == blob(*model)) << "threads " << threads << ", " << parallel << ": runs differ";
      }
    }
  }
}

TEST_F(TrainerTest, SameSeedGivesIdenticalBitsForConvWithDropout) {
  data::LifeConfig lc{.size = 8, .steps = 1};
  Rng rng(5);
  data::Dataset train = data::life_boards(64, lc, rng);
  nn::ModelSpec spec;
  spec.name = "convdrop";
  spec.input = {1, 8, 8};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1, .circular = true},
                 nn::LayerSpec{.type = "relu"}, nn::LayerSpec{.type = "dropout", .p = 0.25f},
                 nn::LayerSpec{.type = "conv2d", .out = 1, .kernel = 1}};
  spec.loss = "bce_with_logits";
  std::string first;
  for (int run = 0; run < 2; ++run) {
    auto model = nn::Model::build(spec, 4);
    TrainConfig cfg = small_config(2);
    cfg.batch = 8;
    fit(*model, train, {}, cfg);
    if (run == 0)
      first = blob(*model);
    else
      EXPECT_TRUE(first == blob(*model));
  }
  // A different seed gives different weights (the comparison is not vacuous).
  auto other = nn::Model::build(spec, 4);
  TrainConfig cfg = small_config(2);
  cfg.batch = 8;
  cfg.seed = 8;
  fit(*other, train, {}, cfg);
  EXPECT_FALSE(first == blob(*other));
}

bool log_has_event(const std::string& log, const std::string& event) {
  for (const std::string& line : read_lines(log))
    if (nlohmann::json::parse(line).value("event", "") == event) return true;
  return false;
}

// Run A: 3 epochs straight. Returns its final weights.
std::string straight_run(const data::Dataset& train, const data::Dataset& test, const std::string& dir) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = dir;
  TrainResult r = fit(*model, train, test, cfg);
  EXPECT_EQ(r.steps, 48);
  EXPECT_FALSE(r.resumed);
  return blob(*model);
}

// Regression: stopping on max_steps mid-epoch used to checkpoint as if the
// epoch were complete, so a resumed run skipped the rest of it.
TEST_F(TrainerTest, ResumeAfterMaxStepsMidEpochMatchesStraightRun) {
  const std::string a = straight_run(train_, test_, path("A"));
  // 16 batches per epoch: step 20 is mid-way through epoch 2.
  {
    auto model = nn::Model::build(mlp_spec(), 7);
    TrainConfig cfg = small_config(3);
    cfg.checkpoint_every = 7;
    cfg.out_dir = path("B");
    cfg.max_steps = 20;
    TrainResult r = fit(*model, train_, test_, cfg);
    EXPECT_EQ(r.stopped_because, "max_steps");
    EXPECT_EQ(r.steps, 20);
    ASSERT_TRUE(file_exists(path("B/checkpoint.bin")));
    nlohmann::json meta = nlohmann::json::parse(read_archive(path("B/checkpoint.bin")).meta_json);
    EXPECT_EQ(meta.value("step", -1), 20) << "the checkpoint should hold the state at max_steps";
    EXPECT_EQ(meta.value("epoch", -1), 1) << "stopped inside epoch 2 (0-based 1)";
    EXPECT_EQ(meta.value("batch", -1), 4) << "4 of epoch 2's 16 batches were done";
  }
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = path("B");
  cfg.resume = true;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(r.resumed_at_step, 20);
  EXPECT_EQ(r.steps, 48);
  EXPECT_TRUE(a == blob(*model)) << "resumed weights differ from the straight run";
  EXPECT_TRUE(log_has_event(path("B/log.jsonl"), "resume"));
  EXPECT_TRUE(log_has_event(path("B/log.jsonl"), "end"));
}

TEST_F(TrainerTest, ResumeAfterCrashMidEpochMatchesStraightRun) {
  const std::string a = straight_run(train_, test_, path("A"));
  // Simulate a crash right after step 30: the last checkpoint is step 28 (7 * 4),
  // batch 12 of epoch 2.
  {
    auto model = nn::Model::build(mlp_spec(), 7);
    TrainConfig cfg = small_config(3);
    cfg.checkpoint_every = 7;
    cfg.out_dir = path("B");
    Observer crash;
    int64_t steps = 0;
    crash.on_step = [&](int64_t, int64_t, int64_t, double) {
      if (++steps == 30) throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(fit(*model, train_, test_, cfg, crash), std::runtime_error);
    EXPECT_FALSE(file_exists(path("B/model.bin")));
    nlohmann::json meta = nlohmann::json::parse(read_archive(path("B/checkpoint.bin")).meta_json);
    EXPECT_EQ(meta.value("step", -1), 28);
  }
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = path("B");
  cfg.resume = true;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.resumed_at_step, 28);
  EXPECT_TRUE(a == blob(*model)) << "resumed weights differ from the straight run";
  EXPECT_TRUE(log_has_event(path("B/log.jsonl"), "resume"));
  // The resumed log continues the interrupted one: one start, epochs 1..3 once each.
  int starts = 0, epochs = 0;
  for (const std::string& line : read_lines(path("B/log.jsonl"))) {
    auto j = nlohmann::json::parse(line);
    starts += j["event"] == "start";
    epochs += j["event"] == "epoch";
  }
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(epochs, 3);
}

// Trains into `dir` and throws from the observer right after step `crash_at`.
void crash_run(const data::Dataset& train, const data::Dataset& test, const std::string& dir, int64_t crash_at) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = dir;
  Observer crash;
  int64_t steps = 0;
  crash.on_step = [&](int64_t, int64_t, int64_t, double) {
    if (++steps == crash_at) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(fit(*model, train, test, cfg, crash), std::runtime_error);
}

std::string resume_run(const data::Dataset& train, const data::Dataset& test, const std::string& dir) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = dir;
  cfg.resume = true;
  TrainResult r = fit(*model, train, test, cfg);
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(r.steps, 48);
  return blob(*model);
}

// Regression: before the first evaluation the best test loss is infinite,
// stored as JSON null; resuming such a checkpoint used to fail reading it.
TEST_F(TrainerTest, ResumeBeforeFirstEvaluationMatchesStraightRun) {
  const std::string a = straight_run(train_, test_, path("A"));
  crash_run(train_, test_, path("B"), 10);  // last checkpoint: step 7, in epoch 1
  EXPECT_EQ(nlohmann::json::parse(read_archive(path("B/checkpoint.bin")).meta_json).value("step", -1), 7);
  EXPECT_TRUE(a == resume_run(train_, test_, path("B")));
}

// The same without a test set, where the best test loss stays infinite.
TEST_F(TrainerTest, ResumeWithoutTestSetMatchesStraightRun) {
  const data::Dataset none;
  const std::string a = straight_run(train_, none, path("A"));
  crash_run(train_, none, path("B"), 40);
  EXPECT_TRUE(a == resume_run(train_, none, path("B")));
}

TEST_F(TrainerTest, ResumeFromEpochBoundaryMatchesStraightRun) {
  const std::string a = straight_run(train_, test_, path("A"));
  {
    auto model = nn::Model::build(mlp_spec(), 7);
    TrainConfig cfg = small_config(1);  // stops after epoch 1: checkpoint at (epoch 1, batch 0)
    cfg.checkpoint_every = 7;
    cfg.out_dir = path("B");
    fit(*model, train_, test_, cfg);
  }
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(3);
  cfg.checkpoint_every = 7;
  cfg.out_dir = path("B");
  cfg.resume = true;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.resumed_at_step, 16);
  EXPECT_TRUE(a == blob(*model));
}

TEST_F(TrainerTest, ResumeRejectsADifferentModel) {
  {
    auto model = nn::Model::build(mlp_spec(16), 7);
    TrainConfig cfg = small_config(1);
    cfg.out_dir = path("B");
    fit(*model, train_, test_, cfg);
  }
  auto model = nn::Model::build(mlp_spec(24), 7);
  TrainConfig cfg = small_config(2);
  cfg.out_dir = path("B");
  cfg.resume = true;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"checkpoint.bin", "different model"});
}

TEST_F(TrainerTest, RunDirectoryHoldsLogCheckpointAndModel) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(2);
  cfg.out_dir = path("run");
  fit(*model, train_, test_, cfg);
  EXPECT_TRUE(file_exists(path("run/checkpoint.bin")));
  EXPECT_TRUE(file_exists(path("run/model.bin")));
  std::vector<std::string> lines = read_lines(path("run/log.jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["event"], "start");
  EXPECT_EQ(nlohmann::json::parse(lines[1])["event"], "epoch");
  EXPECT_EQ(nlohmann::json::parse(lines[2])["event"], "epoch");
  auto end = nlohmann::json::parse(lines[3]);
  EXPECT_EQ(end["event"], "end");
  EXPECT_EQ(end["stopped_because"], "epochs");
  EXPECT_EQ(end["steps"], 32);
}

TEST_F(TrainerTest, EarlyStoppingAfterPatienceEpochsWithoutImprovement) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(20);
  // An update far below float resolution: the weights and so the test loss
  // never change, and every epoch after the first counts as no improvement.
  cfg.optimizer.name = "sgd";
  cfg.optimizer.lr = 1e-30f;
  cfg.patience = 2;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.stopped_because, "early_stopping");
  EXPECT_EQ(r.epochs.size(), 3u);
}

TEST_F(TrainerTest, StopsAtTargetAccuracy) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(50);
  cfg.target_accuracy = 0.8;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.stopped_because, "target_accuracy");
  EXPECT_LT(r.epochs.size(), 50u);
  EXPECT_GE(r.final_test.accuracy, 0.8);
  for (size_t i = 0; i + 1 < r.epochs.size(); ++i) EXPECT_LT(r.epochs[i].test.accuracy, 0.8);
}

// target_exact stops on the fraction of samples with every output right:
// for a classifier that is the accuracy; for Life boards it stays far below
// the cell accuracy, so a target the cells pass does not stop the run.
TEST_F(TrainerTest, StopsAtTargetExactOnWholeSamplesNotCells) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(50);
  cfg.target_exact = 0.8;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.stopped_because, "target_exact");
  EXPECT_LT(r.epochs.size(), 50u);
  EXPECT_GE(r.final_test.exact, 0.8);

  SmallLife l = small_life(small_config(3));
  l.cfg.target_exact = 0.5;
  TrainResult lr = fit(*l.model, l.train, l.test, l.cfg);
  ASSERT_GT(lr.final_test.accuracy, 0.5);
  ASSERT_LT(lr.final_test.exact, 0.5);
  EXPECT_EQ(lr.stopped_because, "epochs");
  EXPECT_EQ(lr.epochs.size(), 3u);

  cfg.target_exact = 1.5;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"exact", "[0, 1]"});
}

TEST_F(TrainerTest, MaxStepsStopsTheRun) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(10);
  cfg.max_steps = 5;
  TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_EQ(r.stopped_because, "max_steps");
  EXPECT_EQ(r.steps, 5);
  // A partial epoch is not reported as an epoch, but the model is still evaluated.
  EXPECT_EQ(r.epochs.size(), 0u);
  EXPECT_EQ(r.final_test.samples, test_.size());
}

TEST_F(TrainerTest, DivergenceRaisesAboutTheLossAndWritesNoModel) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config(5);
  cfg.optimizer.name = "sgd";
  cfg.optimizer.lr = 1e6f;
  cfg.out_dir = path("nan");
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"loss"});
  EXPECT_FALSE(file_exists(path("nan/model.bin")));
}

TEST_F(TrainerTest, InvalidConfigNamesTheFlag) {
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = small_config();
  cfg.epochs = 0;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"--epochs"});
  cfg = small_config();
  cfg.batch = 0;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"--batch"});
  cfg = small_config();
  cfg.resume = true;
  expect_error([&] { fit(*model, train_, test_, cfg); }, {"--resume", "--out"});
}

TEST_F(TrainerTest, SavedModelGivesTheSameOutputs) {
  auto model = nn::Model::build(mlp_spec(), 7);
  fit(*model, train_, test_, small_config(2));
  save_model(*model, path("m.bin"), R"({"note": "test"})");
  auto loaded = load_model(path("m.bin"));
  EXPECT_EQ(nn::model_spec_to_json(loaded->spec()), nn::model_spec_to_json(model->spec()));
  EXPECT_TRUE(blob(*model) == blob(*loaded));
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  autograd::Var x(test_.inputs);
  Tensor a = model->forward(x, ctx).value();
  Tensor b = loaded->forward(x, ctx).value();
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  EvalResult ea = evaluate(*model, test_, 100), eb = evaluate(*loaded, test_, 100);
  EXPECT_EQ(ea.accuracy, eb.accuracy);
  EXPECT_EQ(ea.loss, eb.loss);
}

TEST_F(TrainerTest, SavedConvModelGivesTheSameOutputs) {
  auto model = nn::Model::build(nn::preset("lenet5"), 3);
  save_model(*model, path("lenet5.bin"));
  auto loaded = load_model(path("lenet5.bin"));
  EXPECT_TRUE(blob(*model) == blob(*loaded));
}

TEST_F(TrainerTest, LoadModelWithMismatchedShapeNamesTensorAndShapes) {
  auto model = nn::Model::build(mlp_spec(16), 7);
  save_model(*model, path("m.bin"));
  Archive a = read_archive(path("m.bin"));
  bool replaced = false;
  for (auto& [name, t] : a.tensors) {
    if (name == "param/linear1.weight") {
      ASSERT_EQ(t.shape(), Shape({16, 8}));
      t = Tensor::zeros({12, 8});
      replaced = true;
    }
  }
  ASSERT_TRUE(replaced) << "parameter naming changed?";
  write_archive(path("bad.bin"), a);
  expect_error([&] { load_model(path("bad.bin")); },
               {"bad.bin", "linear1.weight", "(12, 8)", "(16, 8)"});
}

TEST_F(TrainerTest, LoadModelWithMissingTensorNamesIt) {
  auto model = nn::Model::build(mlp_spec(16), 7);
  save_model(*model, path("m.bin"));
  Archive a = read_archive(path("m.bin"));
  std::erase_if(a.tensors, [](const auto& p) { return p.first == "param/linear3.bias"; });
  write_archive(path("bad.bin"), a);
  expect_error([&] { load_model(path("bad.bin")); }, {"bad.bin", "linear3.bias"});
}

TEST_F(TrainerTest, LoadModelRejectsAnArchiveWithoutSpec) {
  Archive a;
  a.meta_json = R"({"kind": "other"})";
  write_archive(path("nospec.bin"), a);
  expect_error([&] { load_model(path("nospec.bin")); }, {"nospec.bin", "spec"});
}

}  // namespace
}  // namespace pare::train

namespace pare::train {
namespace {

using RunLogTest = pare::testing::TempDirTest;

TEST_F(RunLogTest, SummarizeRunLogSumsEpochsAcrossResumes) {
  const std::string log = write("log.jsonl",
                                "{\"event\":\"start\"}\n"
                                "{\"event\":\"epoch\",\"train_seconds\":1.5,\"test_accuracy\":0.5}\n"
                                "{\"event\":\"resume\"}\n"
                                "{\"event\":\"epoch\",\"train_seconds\":2.0,\"test_accuracy\":0.75}\n"
                                "{\"event\":\"epoch\",\"train_seconds\":0.5,\"test_accuracy\":0.7}\n"
                                "{\"event\":\"end\"}\n");
  const RunLogSummary s = summarize_run_log(log);
  EXPECT_EQ(s.epochs, 3);
  EXPECT_DOUBLE_EQ(s.train_seconds, 4.0);
  EXPECT_DOUBLE_EQ(s.best_test_accuracy, 0.75);
  pare::testing::expect_error([&] { summarize_run_log(write("bad.jsonl", "{\"event\":\"epoch\"}\nnot json\n")); },
               {"bad.jsonl:2", "not a JSON line"});
}

}  // namespace
}  // namespace pare::train
