// The pruning extension of the Life study: dead-channel counting and
// shrinking on hand-built masks, bit-exact rewinding, the filter reader on a
// hand-set net that computes Life, and a short real search whose every
// accepted net is checked cell by cell against the rule.
#include "pare/experiments/life_prune.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "pare/autograd/var.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/data/life.h"
#include "pare/prune/prune.h"
#include "testing/temp_dir.h"

namespace pare::experiments {
namespace {

using pare::testing::expect_error;

// Outputs of `model` on (N, 1, S, S) 0/1 boards given as u8.
Tensor outputs(nn::Model& model, const Tensor& boards_u8) {
  const int64_t n = boards_u8.dim(0), cells = boards_u8.numel() / n;
  Tensor x = Tensor::empty(boards_u8.shape());
  const uint8_t* in = boards_u8.data<uint8_t>();
  for (int64_t i = 0; i < n * cells; ++i) x.f32()[i] = in[i];
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  return model.forward(autograd::Var(x), ctx).value().clone();
}

// Cells the model gets wrong on `boards` after one step of Life, decided by
// life_step itself rather than by the targets or evaluate().
int64_t wrong_cells(nn::Model& model, const data::Dataset& boards) {
  const int64_t n = boards.size(), side = boards.inputs.dim(2), cells = side * side;
  const Tensor out = outputs(model, boards.inputs);
  const uint8_t* in = boards.inputs.data<uint8_t>();
  std::vector<uint8_t> next(static_cast<size_t>(cells));
  int64_t wrong = 0;
  for (int64_t b = 0; b < n; ++b) {
    data::life_step(side, side, next.data(), in + b * cells);
    for (int64_t j = 0; j < cells; ++j) wrong += (out.f32()[b * cells + j] > 0.0f) != (next[static_cast<size_t>(j)] == 1);
  }
  return wrong;
}

data::Dataset boards(int64_t count, int64_t side, uint64_t seed) {
  Rng rng(seed);
  return data::life_boards(count, {.size = side, .steps = 1, .density = -1}, rng);
}

void set(nn::Model& m, const std::string& name, std::initializer_list<float> v) {
  nn::Parameter* p = m.find(name);
  ASSERT_NE(p, nullptr) << name;
  ASSERT_EQ(p->numel(), static_cast<int64_t>(v.size())) << name;
  std::copy(v.begin(), v.end(), p->value().f32());
}

// The life net at m = 1 set by hand to compute one step: s = neighbours +
// centre / 2 is in [2.5, 3.5] exactly when the cell lives next;
// a = ReLU(s - 2), b = ReLU(s - 3.25), h = ReLU(a - 3b - 0.25) is positive
// there and 0 elsewhere, and the logit 4h - 0.5 says which.
std::unique_ptr<nn::Model> hand_life_net(int64_t side) {
  auto m = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 1, .board = static_cast<int>(side)}), 0);
  set(*m, "conv2d1.weight", {1, 1, 1, 1, 0.5f, 1, 1, 1, 1, 1, 1, 1, 1, 0.5f, 1, 1, 1, 1});
  set(*m, "conv2d1.bias", {-2, -3.25f});
  set(*m, "conv2d3.weight", {1, -3});
  set(*m, "conv2d3.bias", {-0.25f});
  set(*m, "conv2d5.weight", {4});
  set(*m, "conv2d5.bias", {-0.5f});
  return m;
}

TEST(LifeFilters, TheHandSetNetComputesLifeAndReadsAsANeighbourCounter) {
  auto net = hand_life_net(16);
  EXPECT_EQ(wrong_cells(*net, boards(200, 16, 7)), 0);
  EXPECT_EQ(describe_filters(*net),
            "conv2d1: 3x3, 1 -> 2 channels; live 2\n"
            "  channel 0  bias -2.000\n"
            "    from board\n"
            "        1.000   1.000   1.000\n"
            "        1.000   0.500   1.000\n"
            "        1.000   1.000   1.000\n"
            "      centre 0.500; neighbours 8/8 alive, mean 1.000, max deviation 0.000\n"
            "  channel 1  bias -3.250\n"
            "    from board\n"
            "        1.000   1.000   1.000\n"
            "        1.000   0.500   1.000\n"
            "        1.000   1.000   1.000\n"
            "      centre 0.500; neighbours 8/8 alive, mean 1.000, max deviation 0.000\n"
            "conv2d3: 1x1, 2 -> 1 channels; live 1\n"
            "  channel 0  bias -0.250  from  0: 1.000  1: -3.000\n"
            "conv2d5 (output): 1x1, 1 -> 1 channels; live 1\n"
            "  channel 0  bias -0.500  from  0: 4.000\n");
  const ChannelReduction r = reduce_channels(*net);
  EXPECT_EQ(r.parameters(), 25);
  EXPECT_EQ(r.dense_parameters, 25);
  EXPECT_EQ(r.architecture, "1 -> 2 (3x3) -> 1 (1x1) -> 1 (1x1)");
}

TEST(LifeFilters, PrunedEntriesAndDeadChannelsAreMarked) {
  auto net = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 2, .board = 8}), 3);
  prune::ensure_masks(*net);
  nn::Parameter* w1 = net->find("conv2d1.weight");  // (4, 1, 3, 3)
  for (int64_t j = 0; j < 9; ++j) w1->mask.f32()[9 + j] = j == 4 ? 0.0f : 1.0f;  // channel 1: centre pruned
  nn::Parameter* w2 = net->find("conv2d3.weight");  // (2, 4): nothing reads channels 2, 3
  for (int64_t o = 0; o < 2; ++o) w2->mask.f32()[o * 4 + 2] = w2->mask.f32()[o * 4 + 3] = 0;
  prune::apply_masks(*net);
  const std::string text = describe_filters(*net);
  EXPECT_NE(text.find("conv2d1: 3x3, 1 -> 4 channels; live 2; dead: 2 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("0.119       .  -0.238"), std::string::npos) << text;  // the pruned centre
  EXPECT_NE(text.find("centre pruned; neighbours 8/8 alive"), std::string::npos) << text;
}

// Hand-built masks on the n = 1, m = 2 net (conv 1 -> 4 3x3, conv 4 -> 2 1x1,
// conv 2 -> 1 1x1):
//   layer 1: channel 0 full; channel 1 one weight; channel 2 no weight
//            (constant, read by layer 2); channel 3 full but read by nobody (dead)
//   layer 2: channel 0 reads 0, 1 and 2; channel 1 reads only 2 (so it is
//            constant too: a chain of folds)
//   output:  reads both layer-2 channels
TEST(ChannelReduction, CountsLiveConstantAndDeadChannelsOnAHandBuiltMask) {
  auto net = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 2, .board = 12}), 5);
  prune::ensure_masks(*net);
  float* m1 = net->find("conv2d1.weight")->mask.f32();
  for (int64_t j = 0; j < 36; ++j) m1[j] = (j < 9 || j == 9 + 2 || j >= 27) ? 1.0f : 0.0f;
  float* m2 = net->find("conv2d3.weight")->mask.f32();
  const float layer2[8] = {1, 1, 1, 0,   // channel 0 reads 0, 1, 2
                           0, 0, 1, 0};  // channel 1 reads 2
  std::copy(layer2, layer2 + 8, m2);
  prune::apply_masks(*net);
  // A constant channel must have a bias that lets something through.
  net->find("conv2d1.bias")->value().f32()[2] = 0.7f;
  net->find("conv2d3.bias")->value().f32()[1] = 0.3f;

  const ChannelReduction r = reduce_channels(*net);
  ASSERT_EQ(r.live.size(), 3u);
  EXPECT_EQ(r.live[0], (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(r.constant[0], (std::vector<int64_t>{2}));
  EXPECT_EQ(r.live[1], (std::vector<int64_t>{0}));
  EXPECT_EQ(r.constant[1], (std::vector<int64_t>{1}));
  EXPECT_EQ(r.live[2], (std::vector<int64_t>{0}));
  EXPECT_EQ(r.weights_alive, 9 + 1 + 9 + 4 + 2);
  EXPECT_EQ(r.live_weights, 9 + 1 + 2 + 1);  // constant inputs are folded, not counted
  EXPECT_EQ(r.live_biases, 2 + 1 + 1);
  EXPECT_EQ(r.parameters(), 17);
  EXPECT_EQ(r.architecture, "1 -> 2 (3x3) -> 1 (1x1) -> 1 (1x1)");
  EXPECT_EQ(r.dense_parameters, (2 * 9 + 2) + (2 + 1) + (1 + 1));

  // The shrunk net has those widths and computes the same outputs.
  auto small = shrink_to_live(*net, r);
  EXPECT_EQ(small->num_parameters(), 25);
  const data::Dataset b = boards(20, 12, 9);
  const Tensor big_out = outputs(*net, b.inputs), small_out = outputs(*small, b.inputs);
  ASSERT_EQ(big_out.numel(), small_out.numel());
  for (int64_t i = 0; i < big_out.numel(); ++i) ASSERT_NEAR(big_out.f32()[i], small_out.f32()[i], 1e-5) << i;

  // Cut channel 0 of layer 2 off the output: the whole first layer then
  // feeds nothing that matters and the net is a constant.
  net->find("conv2d5.weight")->mask.f32()[0] = 0;
  const ChannelReduction none = reduce_channels(*net);
  EXPECT_TRUE(none.live[0].empty());
  EXPECT_TRUE(none.live[1].empty());
  EXPECT_EQ(none.parameters(), 1);  // the output bias
  expect_error([&] { shrink_to_live(*net, none); }, {"no live channel", "constant"});
}

TEST(ChannelReduction, RefusesModelsThatAreNotConvChains) {
  auto mlp = nn::Model::build(nn::preset("lenet300"), 0);
  expect_error([&] { reduce_channels(*mlp); }, {"conv2d", "life preset"});
}

TEST(PruneByMagnitude, KeepsTheLargestAndRewindsSurvivorsBitForBit) {
  const auto init = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 4, .board = 8}), 11);
  auto trained = copy_model(*init);
  // "Training": any change of the values will do.
  Rng rng(3);
  for (nn::Parameter* p : trained->parameters())
    for (int64_t j = 0; j < p->numel(); ++j) p->value().f32()[j] += rng.uniform(-1, 1);
  const int64_t total = prune::sparsity(*trained).total, keep = total / 3;
  for (const std::string score : {"magnitude", "lamp"}) {
    SCOPED_TRACE(score);
    auto rewound = prune_by_magnitude(*trained, keep, init.get(), score);
    auto tuned = prune_by_magnitude(*trained, keep, nullptr, score);
    EXPECT_EQ(prune::sparsity(*rewound).kept, keep);
    float smallest_kept = 1e9f;
    std::vector<std::pair<const nn::Parameter*, int64_t>> dropped;
    for (size_t i = 0; i < init->parameters().size(); ++i) {
      const nn::Parameter& r = *rewound->parameters()[i];
      const nn::Parameter& t = *tuned->parameters()[i];
      const nn::Parameter& src = *trained->parameters()[i];
      const nn::Parameter& ini = *init->parameters()[i];
      for (int64_t j = 0; j < r.numel(); ++j) {
        const bool alive = !r.mask.defined() || r.mask.f32()[j] != 0;
        if (alive) {
          ASSERT_EQ(std::memcmp(&r.value().f32()[j], &ini.value().f32()[j], sizeof(float)), 0) << r.name << " " << j;
          ASSERT_EQ(std::memcmp(&t.value().f32()[j], &src.value().f32()[j], sizeof(float)), 0) << t.name << " " << j;
        } else {
          ASSERT_EQ(r.value().f32()[j], 0.0f) << r.name << " " << j;  // +0 or -0: masked
          ASSERT_EQ(t.value().f32()[j], 0.0f) << t.name << " " << j;
        }
        if (r.is_weight && alive) smallest_kept = std::min(smallest_kept, std::fabs(src.value().f32()[j]));
        if (r.is_weight && !alive) dropped.emplace_back(&src, j);
      }
    }
    // Global magnitude: nothing dropped is larger than what is kept.
    if (score == std::string("magnitude")) {
      for (const auto& [p, j] : dropped) EXPECT_LE(std::fabs(p->value().f32()[j]), smallest_kept);
    }
    // LAMP never empties a layer.
    if (score == std::string("lamp")) {
      for (nn::Parameter* p : prune::prunable(*rewound)) EXPECT_GT(prune::alive(*p), 0) << p->name;
    }
  }
  expect_error([&] { prune_by_magnitude(*trained, keep, nullptr, "size"); }, {"magnitude or lamp"});
}

TEST(RankedWeights, RemovingTheFirstKIsWhatPruneByMagnitudeDoes) {
  auto net = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 2, .board = 8}), 21);
  // A tie across layers and within one, so the tie order is tested too.
  net->find("conv2d1.weight")->value().f32()[3] = 0.0625f;
  net->find("conv2d1.weight")->value().f32()[7] = -0.0625f;
  net->find("conv2d3.weight")->value().f32()[1] = 0.0625f;
  for (const std::string score : {"magnitude", "lamp"}) {
    SCOPED_TRACE(score);
    const std::vector<WeightRef> ranking = ranked_weights(*net, score);
    const int64_t alive = prune::sparsity(*net).kept;
    ASSERT_EQ(static_cast<int64_t>(ranking.size()), alive);
    for (int64_t k : {int64_t{1}, int64_t{2}, int64_t{5}, alive / 2}) {
      auto by_rank = remove_weights(*net, {ranking.begin(), ranking.begin() + k}, nullptr);
      auto by_magnitude = prune_by_magnitude(*net, alive - k, nullptr, score);
      const auto a = prune::prunable(*by_rank), b = prune::prunable(*by_magnitude);
      for (size_t i = 0; i < a.size(); ++i)
        for (int64_t j = 0; j < a[i]->numel(); ++j) ASSERT_EQ(a[i]->mask.f32()[j], b[i]->mask.f32()[j]) << k << " " << a[i]->name << " " << j;
    }
  }
}

// The hand-set net of m = 2: layer-1 channels 0 and 1 are the hand filters,
// channel 3 has small weights but nothing reads it (dead), channel 2 no
// weight at all; layer-2 channels 0 and 1 both compute h, and the output
// reads them with 3.9 and 0.1 (4h in all), so channel 1 is redundant.
std::unique_ptr<nn::Model> redundant_life_net(int64_t side) {
  auto m = nn::Model::build(nn::preset("life", {.life_steps = 1, .width = 2, .board = static_cast<int>(side)}), 0);
  prune::ensure_masks(*m);
  nn::Parameter* w1 = m->find("conv2d1.weight");  // (4, 1, 3, 3)
  const float filter[9] = {1, 1, 1, 1, 0.5f, 1, 1, 1, 1};
  for (int64_t j = 0; j < 9; ++j) {
    w1->value().f32()[j] = w1->value().f32()[9 + j] = filter[j];
    w1->mask.f32()[18 + j] = 0;
    w1->value().f32()[27 + j] = 0.01f;
  }
  set(*m, "conv2d1.bias", {-2, -3.25f, 0, 0});
  nn::Parameter* w2 = m->find("conv2d3.weight");  // (2, 4)
  const float w2v[8] = {1, -3, 0, 0, 1, -3, 0, 0}, w2m[8] = {1, 1, 0, 0, 1, 1, 0, 0};
  std::copy(w2v, w2v + 8, w2->value().f32());
  std::copy(w2m, w2m + 8, w2->mask.f32());
  set(*m, "conv2d3.bias", {-0.25f, -0.25f});
  set(*m, "conv2d5.weight", {3.9f, 0.1f});
  set(*m, "conv2d5.bias", {-0.5f});
  prune::apply_masks(*m);
  return m;
}

TEST(EndCandidates, WholeChannelsByInTimesOutNormThenSingleWeightsThatLowerTheCount) {
  auto net = redundant_life_net(16);
  const data::Dataset b = boards(200, 16, 7);
  ASSERT_EQ(wrong_cells(*net, b), 0);
  const ChannelReduction before = reduce_channels(*net);
  EXPECT_EQ(before.architecture, "1 -> 2 (3x3) -> 2 (1x1) -> 1 (1x1)");
  EXPECT_EQ(before.parameters(), 18 + 2 + 4 + 2 + 2 + 1);

  const std::vector<EndCandidate> c = end_candidates(*net, "magnitude", 4, 2);
  std::vector<std::string> labels;
  for (const EndCandidate& e : c) labels.push_back(e.label);
  // Channels by |in|_1 * |out|_1: conv2d3:1 4 * 0.1, conv2d3:0 4 * 3.9,
  // conv2d1:0 8.5 * 2, conv2d1:1 8.5 * 6. Single weights in ranking order:
  // the dead channel's nine (ranked first) lower no count; the smallest
  // live one, the output's 0.1 (the smallest weight's removal, tried
  // already), leaves what removing conv2d3:1 leaves; then the two centres.
  EXPECT_EQ(labels, (std::vector<std::string>{"channel conv2d3:1", "channel conv2d3:0", "channel conv2d1:0",
                                              "channel conv2d1:1", "weight conv2d1.weight[13]",
                                              "weight conv2d1.weight[4]"}));
  const std::vector<WeightRef> ranking = ranked_weights(*net, "magnitude");
  ASSERT_EQ(ranking.size(), 9u + 18 + 4 + 2);
  EXPECT_EQ(ranking[0], (WeightRef{0, 35}));  // a dead weight: removing it changes nothing
  EXPECT_EQ(ranking[9], (WeightRef{2, 1}));   // the output's 0.1
  EXPECT_EQ(c[0].weights.size(), 3u);         // two in, one out
  EXPECT_EQ(c[2].weights.size(), 9u + 2);     // nine from the board, one out to each layer-2 channel

  // The redundant channel goes with its weights: the minimal net, still Life.
  auto minimal = remove_weights(*net, c[0].weights, nullptr);
  EXPECT_EQ(wrong_cells(*minimal, b), 0);
  const ChannelReduction r = reduce_channels(*minimal);
  EXPECT_EQ(r.architecture, "1 -> 2 (3x3) -> 1 (1x1) -> 1 (1x1)");
  EXPECT_EQ(r.parameters(), 25);
  // Bounds, and no candidate that would leave a layer without a live channel.
  EXPECT_EQ(end_candidates(*net, "magnitude", 1, 0).size(), 1u);
  EXPECT_EQ(end_candidates(*net, "magnitude", 0, 0).size(), 0u);
  for (const EndCandidate& e : end_candidates(*minimal, "lamp", 10, 0))
    EXPECT_EQ(e.label.rfind("channel conv2d1:", 0), 0u) << e.label;
}

class LifePruneTest : public pare::testing::TempDirTest {
 protected:
  // n = 1, m = 8 on 32x32 boards, Adam 1e-3, batch 8: seed 0 solves within
  // about 1,100 steps (the short run of life_test.cc).
  LifePruneConfig config(const std::string& out) {
    LifePruneConfig c;
    c.recipe.examples = 1000;
    c.recipe.test_examples = 1000;
    c.recipe.epochs = 32;
    c.n = 1;
    c.m = 8;
    c.seed = 0;
    c.rate = 0.3;
    c.round_epochs = 16;  // 2,000 steps: enough to re-solve from the init
    c.max_trainings = 4;
    c.jobs = 2;
    c.out_dir = path(out);
    return c;
  }
};

TEST_F(LifePruneTest, EveryAcceptedNetSolvesEveryTestBoardAndTheCountFalls) {
  LifePruneConfig c = config("search");
  c.score = "lamp";
  std::vector<PruneStep> reported;
  LifePruneObserver obs;
  obs.on_step = [&](const PruneStep& s) { reported.push_back(s); };
  const LifePruneResult r = run_life_prune(c, obs);
  ASSERT_TRUE(r.dense.success) << "seed 0 did not solve within " << r.dense.steps << " steps";
  ASSERT_EQ(r.searches.size(), 2u);
  EXPECT_EQ(reported.size(), r.searches[0].steps.size() + r.searches[1].steps.size());
  const data::Dataset test = life_data(c.recipe, 1, 0).test;
  for (const PruneSearch& s : r.searches) {
    SCOPED_TRACE(s.mode);
    EXPECT_LE(static_cast<int>(s.steps.size()), c.max_trainings);
    EXPECT_GE(s.rounds, 1);
    int64_t last = 8 * 2 * 9 + 16 * 8 + 8;  // the dense net's weights
    int accepted = 0;
    for (const PruneStep& st : s.steps) {
      EXPECT_EQ(st.alive_before, last);
      EXPECT_EQ(st.alive_after, st.alive_before - st.removed);
      if (!st.solved) continue;
      ++accepted;
      auto net = train::load_model(st.dir + "/model.bin");
      EXPECT_EQ(prune::sparsity(*net).kept, st.alive_after);
      EXPECT_EQ(wrong_cells(*net, test), 0) << st.dir;
      EXPECT_LT(st.alive_after, last);
      last = st.alive_after;
    }
    EXPECT_EQ(accepted, s.rounds);
    EXPECT_EQ(s.smallest.weights_alive, last);
    auto smallest = train::load_model(s.model_path);
    EXPECT_EQ(wrong_cells(*smallest, test), 0);
    EXPECT_EQ(s.verify_exact, 1.0);
    // The shrunk net: the dense architecture reported, and it solves too.
    auto shrunk = train::load_model(s.shrunk_path);
    EXPECT_EQ(wrong_cells(*shrunk, test), 0);
    EXPECT_EQ(shrunk->num_parameters(), s.smallest.dense_parameters);
  }
  for (const char* f : {"/settings.json", "/results.json", "/results.md"})
    EXPECT_TRUE(file_exists(c.out_dir + f)) << f;

  // Restarted: every training is found on disk, and the results are the same.
  const LifePruneResult again = run_life_prune(c);
  ASSERT_EQ(again.searches.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(again.searches[i].steps.size(), r.searches[i].steps.size());
    for (const PruneStep& st : again.searches[i].steps) EXPECT_TRUE(st.skipped);
    EXPECT_EQ(again.searches[i].smallest.weights_alive, r.searches[i].smallest.weights_alive);
  }
  EXPECT_EQ(again.markdown, r.markdown);
  c.rate = 0.25;
  expect_error([&] { run_life_prune(c); }, {"other settings", "--out"});
}

// n = 1, m = 4, seed 0, fine-tuned with LAMP: after six rounds the net is
// 1 -> 2 -> 2 -> 1 (28 parameters); no single weight by the ranking can go,
// but a whole middle channel can (training 16), which gives the minimal
// architecture. Every accepted net still solves every test board.
TEST_F(LifePruneTest, TheEndCandidatesReachTheMinimalNetAndAcceptOnlySolvingNets) {
  LifePruneConfig c = config("end");
  c.m = 4;
  c.modes = {"finetune"};
  c.score = "lamp";
  c.rate = 0.4;
  c.round_epochs = 8;
  c.max_trainings = 16;
  const LifePruneResult r = run_life_prune(c);
  ASSERT_TRUE(r.dense.success);
  ASSERT_EQ(r.searches.size(), 1u);
  const PruneSearch& s = r.searches[0];
  const data::Dataset test = life_data(c.recipe, 1, 0).test;
  int ends_tried = 0, ends_accepted = 0;
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const PruneStep& st = s.steps[i];
    if (st.candidate != "ranked") {
      ++ends_tried;
      // Only after the same round's single smallest weight failed.
      ASSERT_GT(i, 0u);
      const PruneStep& prev = s.steps[i - 1];
      EXPECT_EQ(prev.round, st.round);
      EXPECT_FALSE(prev.solved);
      EXPECT_TRUE(prev.candidate != "ranked" || prev.removed == 1) << prev.dir;
    }
    if (!st.solved) continue;
    ends_accepted += st.candidate != "ranked";
    auto net = train::load_model(st.dir + "/model.bin");
    EXPECT_EQ(prune::sparsity(*net).kept, st.alive_after);
    EXPECT_EQ(wrong_cells(*net, test), 0) << st.dir;
  }
  EXPECT_GE(ends_tried, 1);
  EXPECT_GE(ends_accepted, 1);
  EXPECT_EQ(s.steps.back().candidate.rfind("channel ", 0), 0u) << s.steps.back().candidate;
  EXPECT_LE(s.smallest.parameters(), 25);
  EXPECT_EQ(s.smallest.architecture, "1 -> 2 (3x3) -> 1 (1x1) -> 1 (1x1)");
  EXPECT_EQ(s.verify_exact, 1.0);
  EXPECT_EQ(wrong_cells(*train::load_model(s.model_path), test), 0);
  EXPECT_NE(r.markdown.find("| channel conv2d3:"), std::string::npos);

  // Restarted: the same candidates are found on disk by their labels.
  const LifePruneResult again = run_life_prune(c);
  ASSERT_EQ(again.searches[0].steps.size(), s.steps.size());
  for (size_t i = 0; i < s.steps.size(); ++i) {
    EXPECT_TRUE(again.searches[0].steps[i].skipped);
    EXPECT_EQ(again.searches[0].steps[i].candidate, s.steps[i].candidate);
  }
  EXPECT_EQ(again.markdown, r.markdown);
}

TEST_F(LifePruneTest, RewindModeTrainsTheMaskFromTheDenseNetsInit) {
  LifePruneConfig c = config("rewind");
  c.modes = {"rewind"};
  c.max_trainings = 1;
  const LifePruneResult r = run_life_prune(c);
  ASSERT_EQ(r.searches.size(), 1u);
  ASSERT_EQ(r.searches[0].steps.size(), 1u);
  // The first round's run started from the dense init under the mask:
  // replaying its start bit for bit gives the same trained net.
  const PruneStep& st = r.searches[0].steps[0];
  auto dense = train::load_model(c.out_dir + "/dense/model.bin");
  const auto init = life_model(c.recipe, 1, 8, 0);
  auto start = prune_by_magnitude(*dense, st.alive_after, init.get());
  LifeRecipe rr = c.recipe;
  rr.epochs = c.round_epochs;
  SerialScope serial;
  run_life(rr, 1, 8, 0, *start, path("replay"));
  EXPECT_EQ(read_file(path("replay/model.bin")), read_file(st.dir + "/model.bin"));

  // A larger training budget continues the study where it stopped.
  c.max_trainings = 2;
  const LifePruneResult more = run_life_prune(c);
  ASSERT_EQ(more.searches[0].steps.size(), 2u);
  EXPECT_TRUE(more.searches[0].steps[0].skipped);
  EXPECT_FALSE(more.searches[0].steps[1].skipped);
  EXPECT_NE(read_file(c.out_dir + "/settings.json").find("\"max_trainings\": 2"), std::string::npos);
}

TEST_F(LifePruneTest, TheTicketTestRunsThreeArmsOnTheSameBoards) {
  LifePruneConfig c = config("ticket");
  c.modes = {"rewind"};
  c.max_trainings = 1;
  c.tries = 2;
  c.test_epochs = 2;
  c.recipe.examples = 500;
  std::vector<std::string> arms;
  LifePruneObserver obs;
  obs.on_try = [&](const std::string& arm, const LifeRun&) { arms.push_back(arm); };
  const LifePruneResult r = run_life_prune(c, obs);
  if (!r.dense.success) GTEST_SKIP() << "the dense net did not solve on 500 boards";
  ASSERT_EQ(r.ticket_test.size(), 3u);
  EXPECT_EQ(arms.size(), 6u);
  EXPECT_EQ(r.ticket_test[0].arm, "ticket");
  EXPECT_EQ(r.ticket_test[2].arm, "minimal");
  EXPECT_EQ(r.ticket_test[2].parameters, 25);
  for (const TicketArm& a : r.ticket_test) {
    ASSERT_EQ(a.runs.size(), 2u);
    EXPECT_EQ(a.runs[1].seed, c.try_seed + 1);
    const Interval ci = wilson_interval(a.successes, 2);
    EXPECT_EQ(a.ci.lo, ci.lo);
    EXPECT_EQ(a.ci.hi, ci.hi);
  }
  EXPECT_EQ(r.ticket_test[2].runs[0].m, 1);
  EXPECT_NE(r.markdown.find("## Ticket test"), std::string::npos);
}

TEST_F(LifePruneTest, BadSettingsAreRefusedWithTheFlag) {
  LifePruneConfig c = config("bad");
  c.modes = {"rewind", "prune"};
  expect_error([&] { run_life_prune(c); }, {"--modes", "prune"});
  c = config("bad");
  c.rate = 1;
  expect_error([&] { run_life_prune(c); }, {"--rate"});
  c = config("bad");
  c.score = "size";
  expect_error([&] { run_life_prune(c); }, {"--score"});
  c = config("bad");
  c.max_trainings = 0;
  expect_error([&] { run_life_prune(c); }, {"--max-trainings"});
  c = config("bad");
  c.channels = -1;
  expect_error([&] { run_life_prune(c); }, {"--channels"});
  c = config("bad");
  c.alternatives = -1;
  expect_error([&] { run_life_prune(c); }, {"--alternatives"});
  c = config("bad");
  c.out_dir.clear();
  expect_error([&] { run_life_prune(c); }, {"--out"});
}

}  // namespace
}  // namespace pare::experiments
