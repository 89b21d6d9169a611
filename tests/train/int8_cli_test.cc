// `pare compress --int8 --calibrate` and `pare eval --int8` on a small conv net
// end to end (the test runs the binary): percentile calibration and
// quantization-aware fine-tuning are recorded in META, the integer net runs the
// convolutions and scores like the float net, pruned weights stay pruned; bad
// flag values and combinations fail with one line naming the flag.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pare/base/file.h"
#include "pare/format/pare_file.h"
#include "pare/train/trainer.h"
#include "testing/masks.h"
#include "testing/run_pare.h"

namespace pare::train {
namespace {

using json = nlohmann::json;
using pare::testing::expect_one_line_error;
using pare::testing::PareRun;

nn::ModelSpec cnn() {
  nn::ModelSpec spec;
  spec.name = "int8_cli_cnn";
  spec.input = {1, 8, 8};
  spec.layers = {nn::LayerSpec{.type = "conv2d", .out = 4, .kernel = 3, .pad = 1},
                 nn::LayerSpec{.type = "relu"}, nn::LayerSpec{.type = "maxpool", .kernel = 2},
                 nn::LayerSpec{.type = "flatten"}, nn::LayerSpec{.type = "linear", .out = 4}};
  return spec;
}

class Int8CliTest : public pare::testing::PareBinaryTest {
 protected:
  void SetUp() override {
    PareBinaryTest::SetUp();
    // 8x8 images whose class is the brightest quadrant, as a CSV (64 pixels,
    // then the label), and a conv net trained on it with its linear layer
    // half pruned.
    const int64_t n = 400;
    data::Dataset d;
    d.inputs = Tensor::empty({n, 1, 8, 8});
    d.targets = Tensor::empty({n}, DType::i32);
    d.num_classes = 4;
    Rng rng(11);
    std::ostringstream csv;
    for (int64_t i = 0; i < n; ++i) {
      const int c = static_cast<int>(rng.below(4));
      for (int64_t p = 0; p < 64; ++p) {
        const int quad = (p / 8 >= 4 ? 2 : 0) + (p % 8 >= 4 ? 1 : 0);
        const float v = rng.normal() + (quad == c ? 1.0f : 0.0f);
        d.inputs.f32()[i * 64 + p] = v;
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.9g,", static_cast<double>(v));
        csv << buf;
      }
      d.targets.data<int32_t>()[i] = c;
      csv << c << "\n";
    }
    std::ofstream(path("quad.csv")) << csv.str();
    auto m = nn::Model::build(cnn(), 5);
    pare::testing::mask_at_random(*m->find("linear5.weight"), 0.5f, rng);
    TrainConfig cfg;
    cfg.epochs = 3;
    cfg.batch = 20;
    cfg.optimizer.lr = 1e-2f;
    fit(*m, d, {}, cfg);
    save_model(*m, path("model.bin"));
  }

  std::vector<std::string> compress(const std::string& out, std::vector<std::string> more) {
    std::vector<std::string> args = {"compress", path("model.bin"), "-o", path(out), "--json"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  json eval(const std::string& file, bool int8) {
    std::vector<std::string> args = {"eval", path(file), "--data", path("quad.csv"), "--json"};
    if (int8) args.push_back("--int8");
    const PareRun r = run(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? json::parse(r.out) : json::object();
  }
};

TEST_F(Int8CliTest, PercentileAndQatFilesRunTheConvolutionsOnInt8) {
  const json flt = eval("model.bin", false);
  ASSERT_TRUE(flt.contains("accuracy"));
  ASSERT_GT(flt["accuracy"].get<double>(), 0.6);  // the net learned the task
  const std::vector<std::string> cal = {"--int8", "--calibrate", "--data", path("quad.csv")};
  struct Case {
    std::string file;
    std::vector<std::string> flags;
  };
  const Case cases[] = {
      {"mm.pare", {}},
      {"pc.pare", {"--calibration", "percentile", "--percentile", "99.5"}},
      {"qat.pare", {"--qat-epochs", "2", "--qat-lr", "1e-3", "--qat-batch", "20"}},
      {"ema.pare", {"--qat-epochs", "1", "--qat-ema", "0.05"}}};
  for (const Case& c : cases) {
    std::vector<std::string> flags = cal;
    flags.insert(flags.end(), c.flags.begin(), c.flags.end());
    const PareRun w = run(compress(c.file, flags));
    ASSERT_EQ(w.code, 0) << c.file << ": " << w.err;
    const format::File f = format::read_file(path(c.file));
    const json meta = json::parse(f.meta_json);
    const json& acts = meta["activations"];
    EXPECT_TRUE(acts.contains("conv2d1")) << c.file;
    EXPECT_TRUE(acts.contains("linear5")) << c.file;
    EXPECT_EQ(acts["method"], c.file == "pc.pare" ? "percentile" : "minmax") << c.file;
    if (c.file == "pc.pare") {
      EXPECT_DOUBLE_EQ(acts["percentile"].get<double>(), 99.5);
    }
    const bool qat = c.file == "qat.pare" || c.file == "ema.pare";
    EXPECT_EQ(meta.contains("qat"), qat) << c.file;
    if (qat) {
      EXPECT_EQ(meta["qat"]["steps"].get<int64_t>(), c.file == "qat.pare" ? 2 * 20 : 400 / 60 + 1);
    }
    // Pruned weights stay pruned (QAT included): half of linear5's 64 x 4.
    for (const format::Tensor& t : f.tensors) {
      if (t.name == "linear5.weight") {
        EXPECT_EQ(t.dtype, format::DType::s8);
        EXPECT_LT(t.present_count(), 256 * 3 / 4) << c.file;
      }
    }
    const json q = eval(c.file, true);
    EXPECT_EQ(q["kernels"], "int8") << c.file;
    EXPECT_EQ(q["conv_layers"], 1) << c.file;
    EXPECT_NEAR(q["accuracy"].get<double>(), flt["accuracy"].get<double>(), 0.05) << c.file;
  }
  // The percentile grid of the first layer is no wider than the min-max one.
  const json mm = json::parse(format::read_file(path("mm.pare")).meta_json)["activations"];
  const json pc = json::parse(format::read_file(path("pc.pare")).meta_json)["activations"];
  EXPECT_LT(pc["conv2d1"]["scale"].get<double>(), mm["conv2d1"]["scale"].get<double>());
}

TEST_F(Int8CliTest, BadValuesAndCombinationsFailWithOneLine) {
  const std::vector<std::string> cal = {"--int8", "--calibrate", "--data", path("quad.csv")};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> a = cal;
    a.insert(a.end(), more.begin(), more.end());
    return compress("x.pare", a);
  };
  expect_one_line_error(run(with({"--calibration", "percentile", "--percentile", "0"})),
                        {"--percentile", "(0, 100]"});
  expect_one_line_error(run(with({"--calibration", "percentile", "--percentile", "101"})),
                        {"--percentile"});
  expect_one_line_error(run(with({"--calibration", "kl"})),
                        {"--calibration kl", "minmax or percentile"});
  expect_one_line_error(run(with({"--percentile", "99"})),
                        {"--percentile goes with --calibration percentile"});
  expect_one_line_error(run(with({"--qat-epochs", "1", "--qat-lr", "-1"})), {"--qat-lr"});
  expect_one_line_error(run(with({"--qat-epochs", "1", "--qat-ema", "1"})), {"--qat-ema"});
  expect_one_line_error(run(compress("x.pare", {"--int8", "--qat-epochs", "1"})),
                        {"--qat-epochs", "--calibrate"});
  expect_one_line_error(run(compress("x.pare", {"--int8", "--calibration", "percentile"})),
                        {"--calibration", "--calibrate"});
  EXPECT_FALSE(std::ifstream(path("x.pare")).good());  // nothing written
}

}  // namespace
}  // namespace pare::train
