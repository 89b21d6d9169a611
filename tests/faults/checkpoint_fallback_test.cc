// Crash safety in-process (docs/reliability.md): the file seam's previous-file
// rotation, write failures that leave the old file, stale temp files; fit's
// fallback to checkpoint.prev.bin when checkpoint.bin is damaged, and a
// checkpoint write that fails (file size limit) keeping the last good one.
// kill_points.py does the same to the pare binary with SIGKILL.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "pare/train/archive.h"
#include "train/train_helpers.h"

namespace pare::train::testing {
namespace {

using json = nlohmann::json;
using pare::testing::error_message;

class FaultsTest : public PlaneDataTest {};

TrainConfig config(const std::string& dir) {
  TrainConfig cfg;
  cfg.epochs = 3;  // 16 batches per epoch: 48 steps
  cfg.batch = 32;
  cfg.seed = 7;
  cfg.optimizer.name = "adam";
  cfg.optimizer.lr = 0.01f;
  cfg.checkpoint_every = 7;
  cfg.out_dir = dir;
  return cfg;
}

// The final weights of an uninterrupted run into `dir`.
std::string straight(const data::Dataset& train, const data::Dataset& test, const std::string& dir) {
  auto model = nn::Model::build(mlp_spec(), 7);
  fit(*model, train, test, config(dir));
  return blob(*model);
}

// A run into `dir` that "crashes" (throws from the observer) after step `at`.
void crash(const data::Dataset& train, const data::Dataset& test, const std::string& dir, int64_t at) {
  auto model = nn::Model::build(mlp_spec(), 7);
  Observer o;
  int64_t steps = 0;
  o.on_step = [&](int64_t, int64_t, int64_t, double) {
    if (++steps == at) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(fit(*model, train, test, config(dir), o), std::runtime_error);
}

int64_t step_of(const std::string& path) {
  return json::parse(read_archive(path).meta_json).value("step", int64_t{-1});
}

void flip_a_byte(const std::string& path) {
  std::string bytes = read_file(path);
  bytes[bytes.size() / 2] ^= 0x40;
  write_file_atomic(path, bytes);
}

TEST_F(FaultsTest, ReplaceKeepingPreviousKeepsTheOneBefore) {
  write_file_atomic(path("next"), "one");
  replace_keeping_previous(path("next"), path("f"), path("f.prev"));
  EXPECT_EQ(read_file(path("f")), "one");
  EXPECT_FALSE(file_exists(path("f.prev")));  // nothing to keep yet
  write_file_atomic(path("next"), "two");
  replace_keeping_previous(path("next"), path("f"), path("f.prev"));
  write_file_atomic(path("next"), "three");
  replace_keeping_previous(path("next"), path("f"), path("f.prev"));
  EXPECT_EQ(read_file(path("f")), "three");
  EXPECT_EQ(read_file(path("f.prev")), "two");
  EXPECT_FALSE(file_exists(path("next")));
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 2) << "no temp file is left";
  // A kill between the two renames leaves `prev` and `path` one file (hard
  // links): the next replace still leaves no temp file.
  std::filesystem::remove(path("f.prev"));
  std::filesystem::create_hard_link(path("f"), path("f.prev"));
  write_file_atomic(path("next"), "four");
  replace_keeping_previous(path("next"), path("f"), path("f.prev"));
  EXPECT_EQ(read_file(path("f")), "four");
  EXPECT_EQ(read_file(path("f.prev")), "three");
  files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 2) << "no temp file is left";
}

// A write beyond the file size limit (EFBIG, as a full disk gives ENOSPC)
// raises one clear error and leaves the old file whole, with no temp file.
TEST_F(FaultsTest, AFailedWriteLeavesTheOldFile) {
  write_file_atomic(path("f"), "old contents");
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 100;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string msg = error_message([&] { write_file_atomic(path("f"), std::string(1000, 'x')); });
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find(path("f")), std::string::npos) << msg;
  EXPECT_NE(msg.find("write failed after 100 of 1000 bytes: File too large"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path("f")), "old contents");
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1);
}

// A temp file of a killed writer goes with the next write of its target (or
// with remove_stale_temp_files of its directory); one whose pid still runs
// (pid 1) stays.
TEST_F(FaultsTest, StaleTempFilesGoWithTheNextWrite) {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // now a pid no process has
  const std::string stale = path("f.tmp." + std::to_string(child)), live = path("f.tmp.1");
  const std::string other = path("g.tmp." + std::to_string(child));
  for (const std::string& p : {stale, live, other}) write_file_atomic(p, "half a file");
  write_file_atomic(path("f"), "whole");
  EXPECT_FALSE(file_exists(stale));
  EXPECT_TRUE(file_exists(live));
  EXPECT_TRUE(file_exists(other)) << "another file's temp is not this write's to remove";
  remove_stale_temp_files(dir_.string());  // what fit does to its run directory
  EXPECT_FALSE(file_exists(other));
  EXPECT_TRUE(file_exists(live));
}

TEST_F(FaultsTest, ADamagedCheckpointFallsBackToThePreviousOne) {
  const std::string a = straight(train_, test_, path("A"));
  for (const char* how : {"flipped", "cut", "bad step"}) {
    SCOPED_TRACE(how);
    const std::string dir = path(std::string("B_") + how);
    crash(train_, test_, dir, 30);  // checkpoints at steps 21 and 28
    ASSERT_EQ(step_of(dir + "/checkpoint.bin"), 28);
    ASSERT_EQ(step_of(dir + "/checkpoint.prev.bin"), 21);
    const std::string ckpt = dir + "/checkpoint.bin";
    if (std::string(how) == "flipped") flip_a_byte(ckpt);
    if (std::string(how) == "cut") write_file_atomic(ckpt, read_file(ckpt).substr(0, 1000));
    if (std::string(how) == "bad step") {  // a whole file (good CRC) with metadata pare never writes
      Archive a = read_archive(ckpt);
      json meta = json::parse(a.meta_json);
      meta["step"] = "x";
      a.meta_json = meta.dump();
      write_archive(ckpt, a);
    }

    auto model = nn::Model::build(mlp_spec(), 7);
    TrainConfig cfg = config(dir);
    cfg.resume = true;
    std::vector<std::string> warnings;
    Observer o;
    o.on_warning = [&](const std::string& w) { warnings.push_back(w); };
    const TrainResult r = fit(*model, train_, test_, cfg, o);
    EXPECT_EQ(r.resumed_at_step, 21);
    EXPECT_TRUE(a == blob(*model)) << "the resumed run must end with the uninterrupted run's bits";
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find(ckpt + " is damaged ("), std::string::npos) << warnings[0];
    if (std::string(how) == "bad step") {
      EXPECT_NE(warnings[0].find("the checkpoint's \"step\" is \"x\""), std::string::npos) << warnings[0];
    }
    EXPECT_NE(warnings[0].find("resuming from " + dir + "/checkpoint.prev.bin at step 21"), std::string::npos)
        << warnings[0];
    int fallbacks = 0;
    for (const std::string& line : read_lines(dir + "/log.jsonl")) {
      const json j = json::parse(line);
      if (j["event"] != "checkpoint_fallback") continue;
      ++fallbacks;
      EXPECT_EQ(j["step"], 21);
      EXPECT_EQ(j["resumed_from"], dir + "/checkpoint.prev.bin");
    }
    EXPECT_EQ(fallbacks, 1);
    // The damaged file is not kept as the previous one: both are good again.
    EXPECT_EQ(step_of(ckpt), 48);
    EXPECT_GE(step_of(dir + "/checkpoint.prev.bin"), 21);
  }
}

TEST_F(FaultsTest, BothCheckpointsDamagedIsAClearError) {
  crash(train_, test_, path("B"), 30);
  flip_a_byte(path("B/checkpoint.bin"));
  write_file_atomic(path("B/checkpoint.prev.bin"), "not a checkpoint");
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = config(path("B"));
  cfg.resume = true;
  expect_error([&] { fit(*model, train_, test_, cfg); },
               {"checkpoint.bin is damaged (corrupt checkpoint: checksum mismatch",
                "checkpoint.prev.bin is damaged too (not a pare checkpoint", "no good checkpoint"});
  // Only the newest, damaged, and no previous one.
  std::filesystem::remove(path("B/checkpoint.prev.bin"));
  expect_error([&] { fit(*model, train_, test_, cfg); },
               {"checkpoint.bin is damaged", "no previous checkpoint"});
}

// A deleted checkpoint.bin (a crash never removes it) means starting over,
// not the previous one.
TEST_F(FaultsTest, ADeletedCheckpointStartsOver) {
  const std::string a = straight(train_, test_, path("A"));
  crash(train_, test_, path("B"), 30);
  std::filesystem::remove(path("B/checkpoint.bin"));
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = config(path("B"));
  cfg.resume = true;
  const TrainResult r = fit(*model, train_, test_, cfg);
  EXPECT_FALSE(r.resumed);
  EXPECT_TRUE(a == blob(*model));
  EXPECT_EQ(step_of(path("B/checkpoint.prev.bin")), 42) << "the earlier previous one was dropped";
}

// A run that stopped early and was killed after its last checkpoint, before
// it saved its model, stays stopped: the resumed run trains no further.
TEST_F(FaultsTest, AnEarlyStoppedRunStaysStoppedWhenResumed) {
  TrainConfig cfg = config(path("A"));
  cfg.target_accuracy = 0.5;  // reached after the first epoch
  auto a = nn::Model::build(mlp_spec(), 7);
  const TrainResult ra = fit(*a, train_, test_, cfg);
  ASSERT_EQ(ra.stopped_because, "target_accuracy");
  ASSERT_EQ(ra.steps, 16);
  std::filesystem::remove(path("A/model.bin"));  // the state a kill after the checkpoint leaves
  auto b = nn::Model::build(mlp_spec(), 7);
  cfg.resume = true;
  const TrainResult rb = fit(*b, train_, test_, cfg);
  EXPECT_EQ(rb.steps, 16);
  EXPECT_EQ(rb.stopped_because, "target_accuracy");
  EXPECT_EQ(rb.final_test.accuracy, ra.final_test.accuracy) << "the resumed run reports the net it ended with";
  EXPECT_TRUE(blob(*a) == blob(*b));
}

// A fresh run does not keep an earlier run's checkpoint as its previous one.
TEST_F(FaultsTest, AFreshRunDropsAnEarlierRunsCheckpoints) {
  crash(train_, test_, path("B"), 30);
  crash(train_, test_, path("B"), 10);  // the same directory, not resumed: starts over
  EXPECT_EQ(step_of(path("B/checkpoint.bin")), 7);
  EXPECT_FALSE(file_exists(path("B/checkpoint.prev.bin")));
}

// A checkpoint write that fails (here the file size limit, as a full disk)
// stops the run with one error naming the file, the cause and the step of
// the checkpoint kept; that checkpoint resumes to the uninterrupted bits.
TEST_F(FaultsTest, AFailedCheckpointWriteKeepsTheLastGoodOne) {
  const std::string a = straight(train_, test_, path("A"));
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  std::string msg;
  {
    auto model = nn::Model::build(mlp_spec(), 7);
    Observer o;
    o.on_step = [&](int64_t, int64_t, int64_t, double) {
      // Checkpoints at steps 7, 14, 16 (epoch 1's end), 21, ...: the disk
      // fills after the one of step 16, before the next write (step 21's).
      if (file_exists(path("B/checkpoint.prev.bin")) && step_of(path("B/checkpoint.prev.bin")) == 14) {
        rlimit small = saved;
        small.rlim_cur = 1000;
        setrlimit(RLIMIT_FSIZE, &small);
      }
    };
    msg = error_message([&] { fit(*model, train_, test_, config(path("B")), o); });
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  for (const char* f : {"checkpoint.bin: cannot write the checkpoint of step 21", "File too large",
                        "the checkpoint of step 16 is kept", "--resume"})
    EXPECT_NE(msg.find(f), std::string::npos) << "lacks '" << f << "': " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);
  EXPECT_EQ(step_of(path("B/checkpoint.bin")), 16);
  EXPECT_FALSE(file_exists(path("B/checkpoint.next.bin")));
  auto model = nn::Model::build(mlp_spec(), 7);
  TrainConfig cfg = config(path("B"));
  cfg.resume = true;
  EXPECT_EQ(fit(*model, train_, test_, cfg).resumed_at_step, 16);
  EXPECT_TRUE(a == blob(*model));
}

}  // namespace
}  // namespace pare::train::testing
