// `pare compress --share-bits K --finetune-epochs N --data D` end to end (the
// test runs the binary): the written .pare keeps the indices and presence of
// plain weight sharing and holds the tuned codebooks and biases; the same
// seed writes the same bytes; bad flag combinations fail with one line.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pare/format/pare_file.h"
#include "pare/io/pare_model.h"
#include "pare/train/trainer.h"
#include "testing/masks.h"
#include "train_helpers.h"

extern char** environ;

namespace pare::train {
namespace {

using json = nlohmann::json;

struct Outcome {
  int code = -1;  // exit code; -1: killed by a signal
  std::string out, err;
};

class CodebookCliTest : public testing::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    set_num_threads(2);
    // The plane problem as a CSV (8 features, then the label) and a model
    // trained on it with its first layer half pruned.
    const data::Dataset d = testing::plane_dataset(512, 1);
    std::ostringstream csv;
    const float* x = d.inputs.f32();
    for (int64_t i = 0; i < d.size(); ++i) {
      for (int64_t j = 0; j < 8; ++j) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.9g,", static_cast<double>(x[i * 8 + j]));
        csv << buf;
      }
      csv << d.targets.data<int32_t>()[i] << "\n";
    }
    std::ofstream(path("plane.csv")) << csv.str();
    auto m = nn::Model::build(testing::mlp_spec(16), 3);
    Rng rng(4);
    pare::testing::mask_at_random(*m->find("linear1.weight"), 0.5f, rng);
    TrainConfig cfg;
    cfg.epochs = 3;
    cfg.batch = 32;
    cfg.optimizer.lr = 1e-2f;
    fit(*m, d, {}, cfg);
    save_model(*m, path("model.bin"));
  }

  Outcome run(std::vector<std::string> args) {
    args.insert(args.begin(), PARE_BIN);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string out = path("run.out"), err = path("run.err");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, PARE_BIN, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(rc, 0) << "cannot start " << PARE_BIN;
    int status = 0;
    waitpid(pid, &status, 0);
    Outcome r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  // A clean failure: exit code 1 and one line "pare: error: ..." naming every fragment.
  void expect_one_line_error(const std::vector<std::string>& args,
                             std::initializer_list<std::string> fragments) {
    const Outcome r = run(args);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.err.rfind("pare: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    for (const std::string& f : fragments)
      EXPECT_NE(r.err.find(f), std::string::npos) << "lacks '" << f << "': " << r.err;
  }

  std::vector<std::string> compress(const std::string& out, std::vector<std::string> more) {
    std::vector<std::string> args = {"compress", path("model.bin"), "-o", path(out)};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }
};

TEST_F(CodebookCliTest, WritesTheTunedCodebooksOverTheIndicesOfPlainSharing) {
  const std::vector<std::string> tune = {
      "--share-bits", "2",    "--finetune-epochs", "2",  "--data", path("plane.csv"),
      "--lr",         "3e-3", "--batch",           "32", "--seed", "7",
      "--json"};
  ASSERT_EQ(run(compress("plain.pare", {"--share-bits", "2", "--json"})).code, 0);
  const Outcome tuned_run = run(compress("tuned.pare", tune));
  ASSERT_EQ(tuned_run.code, 0) << tuned_run.err;
  // --json prints one JSON document; the fine-tuning adds no lines of its own.
  EXPECT_TRUE(json::parse(tuned_run.out).is_object()) << tuned_run.out;
  const format::File plain = format::read_file(path("plain.pare"));
  const format::File tuned = format::read_file(path("tuned.pare"));
  ASSERT_EQ(plain.tensors.size(), tuned.tensors.size());
  int shared = 0;
  for (size_t i = 0; i < plain.tensors.size(); ++i) {
    const format::Tensor& a = plain.tensors[i];
    const format::Tensor& b = tuned.tensors[i];
    ASSERT_EQ(a.name, b.name);
    EXPECT_EQ(a.quant.kind, b.quant.kind) << a.name;
    if (a.quant.kind == format::QuantKind::codebook) {
      ++shared;
      EXPECT_EQ(b.values, a.values) << a.name << ": the indices must not change";
      EXPECT_EQ(b.present, a.present) << a.name;
      EXPECT_EQ(b.quant.bits, 2) << a.name;
      EXPECT_NE(b.quant.centroids, a.quant.centroids)
          << a.name << ": the codebook should have trained";
    } else {
      EXPECT_NE(b.values, a.values) << a.name << ": the biases should have trained";
    }
  }
  EXPECT_EQ(shared, 2);
  const json meta = json::parse(tuned.meta_json);
  ASSERT_TRUE(meta.contains("codebook_finetune")) << tuned.meta_json;
  EXPECT_EQ(meta["codebook_finetune"]["steps"], 2 * 16);
  EXPECT_LT(meta["codebook_finetune"]["train_loss"].get<double>(),
            meta["codebook_finetune"]["train_loss_before"].get<double>());
  // The same seed and thread count write the same tensors, to the bit (META
  // differs in the seconds it took).
  ASSERT_EQ(run(compress("again.pare", tune)).code, 0);
  const format::File again = format::read_file(path("again.pare"));
  ASSERT_EQ(again.tensors.size(), tuned.tensors.size());
  for (size_t i = 0; i < again.tensors.size(); ++i) {
    EXPECT_TRUE(again.tensors[i].values == tuned.tensors[i].values) << again.tensors[i].name;
    EXPECT_TRUE(again.tensors[i].quant.centroids == tuned.tensors[i].quant.centroids)
        << again.tensors[i].name;
  }
}

TEST_F(CodebookCliTest, BadSettingsFailWithOneLine) {
  const std::string data = path("plane.csv");
  expect_one_line_error(compress("x.pare", {"--finetune-epochs", "1", "--data", data}),
                        {"--share-bits"});
  expect_one_line_error(compress("x.pare", {"--int8", "--finetune-epochs", "1", "--data", data}),
                        {"--share-bits"});
  expect_one_line_error(compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "1"}),
                        {"--data"});
  expect_one_line_error(
      compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "0", "--data", data}),
      {"--finetune-epochs", "at least 1"});
  expect_one_line_error(compress("x.pare", {"--share-bits", "3", "--lr", "0.01"}),
                        {"--lr", "--finetune-epochs"});
  expect_one_line_error(compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "1", "--data",
                                            data, "--lr", "-1"}),
                        {"--lr"});
  EXPECT_FALSE(file_exists(path("x.pare")));
}

}  // namespace
}  // namespace pare::train
