// `pare train --lora-rank` end to end (the test runs the binary): a model
// fine-tuned from a saved one with LoRA is kept by `pare delta` as its
// factors, `pare apply` rebuilds it to the bit (with --int8, from the
// factors' s8 values), and bad LoRA flags fail with one line.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/io/pare_model.h"
#include "pare/nn/lora.h"
#include "pare/train/lora.h"
#include "pare/train/trainer.h"
#include "testing/learnable_csv.h"
#include "testing/run_pare.h"

namespace pare {
namespace {

using json = nlohmann::json;
using pare::testing::expect_one_line_error;
using pare::testing::PareRun;

class LoraCliTest : public pare::testing::PareBinaryTest {
 protected:
  void SetUp() override {
    PareBinaryTest::SetUp();
    std::ofstream(path("train.csv")) << pare::testing::learnable_csv(200, 1);
    std::ofstream(path("test.csv")) << pare::testing::learnable_csv(100, 2);
    std::ofstream(path("mlp.json"))
        << R"({"name": "mlp", "input": [2], "layers": [{"type": "linear", "out": 8}, {"type": "relu"},
              {"type": "linear", "out": 2}]})";
  }
  // `pare train` on the CSVs with `more` flags.
  PareRun train(std::vector<std::string> more) {
    std::vector<std::string> args = {
        "train", "--data", path("train.csv"), "--test", path("test.csv"), "--batch", "16",
        "--lr",  "0.02",   "--quiet"};
    args.insert(args.end(), more.begin(), more.end());
    return run(args);
  }
};

TEST_F(LoraCliTest, DeltaKeepsTheFactorsAndApplyRebuildsTheTunedModel) {
  const PareRun base = train({"--model", path("mlp.json"), "--epochs", "1", "--out", path("base")});
  ASSERT_EQ(base.code, 0) << base.err;
  const PareRun tune = train({"--from", path("base/model.bin"), "--epochs", "1", "--lora-rank", "2",
                              "--lora-alpha", "0.7", "--out", path("tuned")});
  ASSERT_EQ(tune.code, 0) << tune.err;
  const train::SavedLora saved = train::read_lora(path("tuned/model.bin"));
  EXPECT_EQ(saved.rank, 2);
  EXPECT_EQ(saved.scale, 0.35f) << "alpha / rank, which the delta's META must carry exactly";
  ASSERT_EQ(saved.factors.size(), 2u);

  const PareRun delta =
      run({"delta", path("base/model.bin"), path("tuned/model.bin"), "-o", path("v.pdelta")});
  ASSERT_EQ(delta.code, 0) << delta.err;
  EXPECT_NE(delta.out.find("LoRA factors of rank 2 for 2 weights"), std::string::npos) << delta.out;
  // (8 x 2 and 2 x 8 factors of rank 2: 2 * (8 + 2) + 2 * (2 + 8) values.)
  EXPECT_NE(delta.out.find("(40 values)"), std::string::npos) << delta.out;
  const json meta = json::parse(format::read_file(path("v.pdelta")).meta_json);
  EXPECT_EQ(meta["values"], "low-rank");

  const PareRun apply =
      run({"apply", path("base/model.bin"), path("v.pdelta"), "-o", path("v.bin")});
  ASSERT_EQ(apply.code, 0) << apply.err;
  auto tuned = train::load_model(path("tuned/model.bin"));
  auto rebuilt = train::load_model(path("v.bin"));
  auto before = train::load_model(path("base/model.bin"));
  ASSERT_EQ(tuned->parameters().size(), rebuilt->parameters().size());
  int weights_changed = 0;
  for (size_t i = 0; i < tuned->parameters().size(); ++i) {
    const Tensor& t = tuned->parameters()[i]->value();
    EXPECT_EQ(std::memcmp(t.f32(), rebuilt->parameters()[i]->value().f32(), t.nbytes()), 0)
        << tuned->parameters()[i]->name;
    weights_changed +=
        std::memcmp(t.f32(), before->parameters()[i]->value().f32(), t.nbytes()) != 0;
  }
  EXPECT_EQ(weights_changed, 2) << "the two weights train, the biases do not";

  // --json names the factors too.
  const PareRun dj = run(
      {"delta", path("base/model.bin"), path("tuned/model.bin"), "-o", path("j.pdelta"), "--json"});
  ASSERT_EQ(dj.code, 0) << dj.err;
  const json j = json::parse(dj.out);
  EXPECT_EQ(j["lora"]["rank"], 2);
  EXPECT_EQ(j["lora"]["factor_values"], 40);
  EXPECT_EQ(j["changed"], 0);

  // --int8 keeps the factors as s8; apply merges their dequantized values.
  const PareRun i8 = run({"delta", path("base/model.bin"), path("tuned/model.bin"), "-o",
                          path("i8.pdelta"), "--int8"});
  ASSERT_EQ(i8.code, 0) << i8.err;
  EXPECT_NE(i8.out.find("LoRA factors of rank 2"), std::string::npos) << i8.out;
  const format::File f8 = format::read_file(path("i8.pdelta"));
  EXPECT_EQ(json::parse(f8.meta_json)["values"], "low-rank");
  ASSERT_EQ(run({"apply", path("base/model.bin"), path("i8.pdelta"), "-o", path("v8.bin")}).code,
            0);
  auto rebuilt8 = train::load_model(path("v8.bin"));
  for (size_t i = 0; i < before->parameters().size(); ++i) {
    const nn::Parameter& p = *before->parameters()[i];
    Tensor want = p.value().clone();
    if (p.is_weight) {
      Tensor a, b;
      for (const format::Tensor& t : f8.tensors) {
        if (t.name != p.name + ".lora_a" && t.name != p.name + ".lora_b") continue;
        EXPECT_EQ(t.dtype, format::DType::s8) << t.name;
        Tensor v = Tensor::empty(Shape(std::span<const int64_t>(t.dims)));
        for (int64_t j = 0; j < v.numel(); ++j) v.f32()[j] = io::real_value(t, j);
        (t.name.ends_with(".lora_a") ? a : b) = v;
      }
      ASSERT_TRUE(a.defined() && b.defined()) << p.name;
      nn::lora_merge(want, p.value(), b, a, saved.scale, p.mask);
    }
    EXPECT_EQ(std::memcmp(want.f32(), rebuilt8->parameters()[i]->value().f32(), want.nbytes()), 0)
        << p.name;
  }
}

TEST_F(LoraCliTest, BadLoraFlagsFailWithOneLine) {
  expect_one_line_error(train({"--model", path("mlp.json"), "--lora-rank", "-1"}), {"--lora-rank"});
  expect_one_line_error(
      train({"--model", path("mlp.json"), "--lora-rank", "2", "--lora-alpha", "-1"}),
      {"--lora-alpha"});
  expect_one_line_error(
      train({"--model", path("mlp.json"), "--lora-rank", "2", "--update-fraction", "0.1"}),
      {"--lora-rank", "--update-fraction"});
}

}  // namespace
}  // namespace pare
