// The cost ledger (train/cost.h): the FLOPs of one training step against a
// hand count per layer; the "cost" object every finished run logs; energy
// measured from RAPL counters when readable and estimated from CPU time
// otherwise, each labelled; CO2e and money from their settings; bad settings
// refused by flag.
#include "pare/train/cost.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "pare/base/rng.h"
#include "pare/nn/spec.h"
#include "pare/train/trainer.h"
#include "testing/masks.h"
#include "train/train_helpers.h"

namespace pare::train {
namespace {

using json = nlohmann::json;
using testing::expect_error;
using testing::read_lines;

// Masks keeping about half of each weight (testing/masks.h); returns the kept
// counts by weight name.
std::map<std::string, int64_t> half_masks(nn::Model& m, uint64_t seed) {
  Rng rng(seed);
  pare::testing::mask_weights_at_random(m, 0.5f, rng);
  std::map<std::string, int64_t> kept;
  for (const nn::Parameter* p : m.parameters())
    if (p->is_weight) kept[p->name] = static_cast<int64_t>(std::count(p->mask.f32(), p->mask.f32() + p->numel(), 1.0f));
  return kept;
}

// One training step of `model` on a batch of random inputs (values do not
// change the FLOPs), logged to out_dir when given.
TrainResult one_step(nn::Model& model, int64_t batch, const std::string& out_dir = "") {
  std::vector<int64_t> dims{batch};
  dims.insert(dims.end(), model.spec().input.begin(), model.spec().input.end());
  data::Dataset d;
  d.inputs = Tensor::empty(Shape(std::span<const int64_t>(dims)));
  Rng rng(3);
  for (float& v : d.inputs.span_f32()) v = rng.normal();
  d.targets = Tensor::from_i32({batch}, std::vector<int32_t>(static_cast<size_t>(batch), 1));
  d.num_classes = 2;
  d.name = "random";
  TrainConfig cfg;
  cfg.epochs = 1;
  cfg.batch = batch;
  cfg.max_steps = 1;
  cfg.out_dir = out_dir;
  return fit(model, d, {}, cfg);
}

class CostTest : public testing::TempDirTest {};

// One step of a pruned conv net, batch B. Each weight layer does three
// products per step (forward, input gradient, weight gradient), 2 FLOPs per
// multiply-accumulate, and a kept weight multiplies once per sample for a
// linear layer and once per output position for a convolution.
TEST_F(CostTest, OneStepsFlopsMatchAHandCountPerLayer) {
  const nn::ModelSpec spec = nn::parse_model_spec(R"({"name": "c", "input": [1, 10, 10], "layers": [
    {"type": "conv2d", "out": 3, "kernel": 3, "pad": 1}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "conv2d", "out": 4, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
    {"type": "linear", "out": 6}, {"type": "relu"}, {"type": "linear", "out": 2}]})",
                                                  "c.json");
  auto model = nn::Model::build(spec, 1);
  const auto kept = half_masks(*model, 2);
  const int64_t batch = 8;
  // Output positions: conv2d1 10x10 (pad 1); pool -> 5x5; conv2d4 3x3.
  const double hand = 2.0 * batch * 3.0 *
                      (kept.at("conv2d1.weight") * 100.0 + kept.at("conv2d4.weight") * 9.0 +
                       kept.at("linear7.weight") * 1.0 + kept.at("linear9.weight") * 1.0);
  const double dense_hand = 2.0 * batch * 3.0 * (27.0 * 100 + 108.0 * 9 + 216.0 + 12.0);
  const TrainResult r = one_step(*model, batch, path("run"));
  ASSERT_EQ(r.steps, 1);
  EXPECT_DOUBLE_EQ(r.flops, hand);
  EXPECT_DOUBLE_EQ(r.dense_flops, dense_hand);
  EXPECT_DOUBLE_EQ(r.cost.flops, hand);
  // The run log's end event carries the same ledger.
  const auto lines = read_lines(path("run/log.jsonl"));
  const json end = json::parse(lines.back());
  ASSERT_EQ(end.value("event", ""), "end");
  ASSERT_TRUE(end.contains("cost"));
  EXPECT_DOUBLE_EQ(end["cost"]["flops"].get<double>(), hand);
  EXPECT_GT(end["cost"]["joules"].get<double>(), 0.0);
  const std::string method = end["cost"]["energy"]["method"];
  EXPECT_TRUE(method == "rapl-package" || method == "estimated-cpu-time") << method;
  EXPECT_EQ(end["cost"]["energy"]["measured"].get<bool>(), method == "rapl-package");
  EXPECT_FALSE(end["cost"]["energy"]["detail"].get<std::string>().empty());
}

// The same for LeNet-300-100 pruned as a ticket round leaves it: three
// linear layers, each kept weight one multiply-accumulate per sample.
TEST_F(CostTest, LeNet300StepFlopsMatchAHandCount) {
  auto model = nn::Model::build(nn::preset("lenet300"), 4);
  const auto kept = half_masks(*model, 5);
  const int64_t batch = 6;
  const TrainResult r = one_step(*model, batch);
  const double per_layer[3] = {6.0 * batch * kept.at("linear1.weight"), 6.0 * batch * kept.at("linear3.weight"),
                               6.0 * batch * kept.at("linear5.weight")};
  EXPECT_DOUBLE_EQ(r.cost.flops, per_layer[0] + per_layer[1] + per_layer[2]);
  EXPECT_DOUBLE_EQ(r.cost.dense_flops, 6.0 * batch * (784 * 300 + 300 * 100 + 100 * 10));
}

TEST_F(CostTest, EstimateFromCpuTimeWhenNoCounters) {
  CostSettings s;
  s.watts_per_core = 12.5;
  s.grid_g_per_kwh = 400;
  s.pue = 1.5;
  s.price_per_core_hour = 0.1;
  const CostMeter meter(s, EnergyMeter(path("no_powercap"), path("no_stat")));
  Cost c;
  c.seconds = 1800;  // half an hour
  c.cpu_seconds = 720;
  c.threads = 4;
  price(c, meter);
  EXPECT_FALSE(c.energy.measured);
  EXPECT_EQ(c.energy.method, "estimated-cpu-time");
  EXPECT_NE(c.energy.detail.find("no_powercap"), std::string::npos) << c.energy.detail;
  EXPECT_DOUBLE_EQ(c.energy.joules, 720 * 12.5);                      // 9000 J
  EXPECT_NEAR(c.co2e_grams, 9000 / 3.6e6 * 1.5 * 400, 1e-12);         // 1.5 g
  EXPECT_NEAR(c.money, 0.5 * 4 * 0.1, 1e-12);                         // 4 cores for half an hour
  const Cost back = cost_from_json(c.to_json());
  EXPECT_DOUBLE_EQ(back.energy.joules, c.energy.joules);
  EXPECT_EQ(back.energy.method, c.energy.method);
  EXPECT_DOUBLE_EQ(back.money, c.money);
}

TEST_F(CostTest, MeasuredFromRaplCountersWhenReadable) {
  std::filesystem::create_directories(dir_ / "powercap/intel-rapl:0");
  write("powercap/intel-rapl:0/name", "package-0\n");
  write("powercap/intel-rapl:0/energy_uj", "1000000\n");
  write("powercap/intel-rapl:0/max_energy_range_uj", "262143328850\n");
  write("stat", "cpu  100 0 0 900 0 0 0 0\n");
  const CostMeter meter(CostSettings{}, EnergyMeter(path("powercap"), path("stat")));
  write("powercap/intel-rapl:0/energy_uj", "31000000\n");  // 30 J
  write("stat", "cpu  " + std::to_string(100 + 4 * ::sysconf(_SC_CLK_TCK)) + " 0 0 900 0 0 0 0\n");  // 4 s busy
  Cost c;
  c.seconds = 2;
  c.cpu_seconds = 1;
  price(c, meter);
  EXPECT_TRUE(c.energy.measured);
  EXPECT_EQ(c.energy.method, "rapl-package");
  EXPECT_NEAR(c.energy.joules, 30.0 * 0.25, 1e-9);  // a quarter of the busy time
}

TEST_F(CostTest, PowerModelNamesItsBasisAndSumsAddUp) {
  EXPECT_NEAR(core_power_model("AMD EPYC 7B13 64-Core Processor").watts, 280.0 / 64, 1e-12);
  EXPECT_NEAR(core_power_model("AMD EPYC 7B13 64-Core Processor", 25).watts, 280.0 / 64, 1e-12);
  const CorePower zen5 = core_power_model("AMD EPYC", 26);
  EXPECT_NEAR(zen5.watts, 500.0 / 128, 1e-12);
  EXPECT_NE(zen5.basis.find("Zen 5"), std::string::npos) << zen5.basis;
  EXPECT_NEAR(core_power_model("AMD Ryzen 9 5950X", 26).watts, 105.0 / 16, 1e-12);  // the family alone is not EPYC
  EXPECT_NE(core_power_model("Intel(R) Xeon(R) Gold 6248").basis.find("Xeon"), std::string::npos);
  EXPECT_NE(core_power_model("Mystery CPU").basis.find("unknown"), std::string::npos);
  Cost a, b;
  a.flops = 1;
  b.flops = 2;
  a.energy = {3, true, "rapl-package", "", ""};
  b.energy = {4, false, "estimated-cpu-time", "", ""};
  a.co2e_grams = 5;
  b.co2e_grams = 6;
  const Cost s = add(a, b);
  EXPECT_DOUBLE_EQ(s.flops, 3);
  EXPECT_DOUBLE_EQ(s.energy.joules, 7);
  EXPECT_FALSE(s.energy.measured);  // measured only if every part was
  EXPECT_EQ(s.energy.method, "mixed");
  EXPECT_DOUBLE_EQ(s.co2e_grams, 11);
}

TEST_F(CostTest, RegionsSetTheGridIntensity) {
  EXPECT_DOUBLE_EQ(grid_intensity_of("world"), 475.0);
  EXPECT_NEAR(grid_intensity_of("FRA"), 56.0, 0.05);   // Our World in Data 2023, via CodeCarbon 3.3.2
  EXPECT_NEAR(grid_intensity_of("POL"), 661.9, 0.05);
  expect_error([] { grid_intensity_of("Mars"); }, {"--region Mars", "FRA", "--grid-intensity"});
}

TEST_F(CostTest, BadSettingsAreRefusedByFlag) {
  CostSettings s;
  s.pue = 0.5;
  expect_error([&] { s.validate(); }, {"--pue"});
  s = {};
  s.grid_g_per_kwh = -1;
  expect_error([&] { s.validate(); }, {"--grid-intensity"});
  s = {};
  s.price_per_core_hour = std::nan("");
  expect_error([&] { s.validate(); }, {"--price-per-core-hour"});
  s = {};
  s.watts_per_core = -3;
  expect_error([&] { s.validate(); }, {"--watts-per-core"});
}

}  // namespace
}  // namespace pare::train
