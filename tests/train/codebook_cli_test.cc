// `pare compress --share-bits K --finetune-epochs N --data D` end to end (the
// test runs the binary): the written .pare keeps the indices and presence of
// plain weight sharing and holds the tuned codebooks and biases; the same
// seed writes the same bytes; bad flag combinations fail with one line.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pare/format/pare_file.h"
#include "pare/io/pare_model.h"
#include "pare/train/trainer.h"
#include "testing/run_pare.h"
#include "train_helpers.h"

namespace pare::train {
namespace {

using json = nlohmann::json;
using pare::testing::expect_one_line_error;
using pare::testing::PareRun;

class CodebookCliTest : public pare::testing::PareBinaryTest {
 protected:
  void SetUp() override {
    PareBinaryTest::SetUp();
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
    save_model(*testing::pruned_mlp(d), path("model.bin"));
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
  const PareRun tuned_run = run(compress("tuned.pare", tune));
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
  expect_one_line_error(run(compress("x.pare", {"--finetune-epochs", "1", "--data", data})),
                        {"--share-bits"});
  expect_one_line_error(
      run(compress("x.pare", {"--int8", "--finetune-epochs", "1", "--data", data})),
      {"--share-bits"});
  expect_one_line_error(run(compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "1"})),
                        {"--data"});
  expect_one_line_error(
      run(compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "0", "--data", data})),
      {"--finetune-epochs", "at least 1"});
  expect_one_line_error(run(compress("x.pare", {"--share-bits", "3", "--lr", "0.01"})),
                        {"--lr", "--finetune-epochs"});
  expect_one_line_error(run(compress("x.pare", {"--share-bits", "3", "--finetune-epochs", "1",
                                                "--data", data, "--lr", "-1"})),
                        {"--lr"});
  EXPECT_FALSE(file_exists(path("x.pare")));
}

}  // namespace
}  // namespace pare::train
