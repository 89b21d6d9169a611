// Game of Life: the rule against a naive reference, known patterns across
// the torus seam, and the board generator's determinism.
#include "pare/data/life.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>
#include <vector>

#include "testing/temp_dir.h"
#include "pare/base/thread_pool.h"
#include "pare/data/batcher.h"

namespace pare::data {
namespace {

using testing::expect_error;
using Board = std::vector<uint8_t>;

// The reference twin: every neighbour index taken modulo the board size.
Board reference_step(int64_t h, int64_t w, const Board& in) {
  Board out(in.size());
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      int n = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx)
          if (dy || dx) n += in[((y + dy + h) % h) * w + (x + dx + w) % w];
      out[y * w + x] = n == 3 || (n == 2 && in[y * w + x]);
    }
  return out;
}

Board step(int64_t h, int64_t w, const Board& in, int steps = 1) {
  Board a = in, b(in.size());
  for (int i = 0; i < steps; ++i) {
    life_step(h, w, b.data(), a.data());
    std::swap(a, b);
  }
  return a;
}

// A board with the given live cells, coordinates taken modulo the size.
Board board(int64_t h, int64_t w, std::vector<std::pair<int64_t, int64_t>> live) {
  Board b(h * w, 0);
  for (auto [y, x] : live) b[((y % h + h) % h) * w + (x % w + w) % w] = 1;
  return b;
}

TEST(Life, MatchesReferenceOnRandomBoards) {
  Rng rng(42);
  for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {1, 7}, {7, 1}, {2, 2}, {2, 3}, {3, 5}, {8, 8}, {17, 33}, {32, 64}, {5, 100}}) {
    for (int trial = 0; trial < 5; ++trial) {
      Board b(h * w);
      const float density = rng.uniform();
      for (auto& c : b) c = rng.uniform() < density;
      EXPECT_EQ(step(h, w, b), reference_step(h, w, b)) << h << "x" << w << " trial " << trial;
    }
  }
}

TEST(Life, NeighboursCountedAcrossTheWrap) {
  // (0,0)'s neighbours (7,7), (7,0), (0,7) all lie across the seams: birth.
  Board b = board(8, 8, {{7, 7}, {7, 0}, {0, 7}});
  EXPECT_EQ(step(8, 8, b)[0], 1);
  // Two of them only: no birth.
  EXPECT_EQ(step(8, 8, board(8, 8, {{7, 7}, {0, 7}}))[0], 0);
  // A live corner cell with two wrapped neighbours survives; with four it dies.
  EXPECT_EQ(step(8, 8, board(8, 8, {{0, 0}, {7, 7}, {1, 7}}))[0], 1);
  EXPECT_EQ(step(8, 8, board(8, 8, {{0, 0}, {7, 7}, {1, 7}, {7, 1}, {1, 1}}))[0], 0);
}

TEST(Life, BlinkerOscillatesAcrossTheSeam) {
  const Board horizontal = board(6, 6, {{2, 5}, {2, 0}, {2, 1}});
  const Board vertical = board(6, 6, {{1, 0}, {2, 0}, {3, 0}});
  EXPECT_EQ(step(6, 6, horizontal), vertical);
  EXPECT_EQ(step(6, 6, vertical), horizontal);
  EXPECT_EQ(step(6, 6, horizontal, 2), horizontal);
}

TEST(Life, StillLifesStay) {
  const std::vector<Board> still = {
      board(8, 8, {{0, 0}, {0, 7}, {7, 0}, {7, 7}}),                  // block split over 4 corners
      board(8, 8, {{1, 2}, {1, 3}, {2, 1}, {2, 4}, {3, 2}, {3, 3}}),  // beehive
      board(8, 8, {{7, 1}, {0, 0}, {0, 2}, {1, 1}}),                  // tub across the top seam
      board(8, 8, {}),                                                // empty
  };
  for (size_t i = 0; i < still.size(); ++i) EXPECT_EQ(step(8, 8, still[i], 5), still[i]) << i;
}

TEST(Life, GliderCrossesTheSeamAndReturns) {
  constexpr int64_t n = 10;
  // Moves one cell down and right every 4 generations.
  const std::vector<std::pair<int64_t, int64_t>> glider = {{0, 1}, {1, 2}, {2, 0}, {2, 1}, {2, 2}};
  auto shifted = [&](int64_t k) {
    std::vector<std::pair<int64_t, int64_t>> cells;
    for (auto [y, x] : glider) cells.push_back({y + 6 + k, x + 6 + k});  // starts near the edge
    return board(n, n, cells);
  };
  Board b = shifted(0);
  for (int64_t k = 1; k <= n; ++k) {
    b = step(n, n, b, 4);
    ASSERT_EQ(b, shifted(k)) << "after " << 4 * k << " steps";
  }
  EXPECT_EQ(b, shifted(0)) << "back home after 4 * size steps";
}

TEST(LifeBoards, ShapesAndTargetsFollowTheRule) {
  Rng rng(7);
  LifeConfig cfg;
  cfg.size = 12;
  cfg.steps = 3;
  Dataset d = life_boards(20, cfg, rng);
  EXPECT_EQ(d.inputs.shape(), Shape({20, 1, 12, 12}));
  EXPECT_EQ(d.targets.shape(), Shape({20, 1, 12, 12}));
  // One byte per cell, a quarter of f32; batches convert them.
  ASSERT_EQ(d.inputs.dtype(), DType::u8);
  ASSERT_EQ(d.targets.dtype(), DType::u8);
  EXPECT_EQ(d.inputs.nbytes() + d.targets.nbytes(), 2u * 20 * 144);
  EXPECT_EQ(d.input_scale, 1.0);
  EXPECT_EQ(d.num_classes, 0);
  EXPECT_NO_THROW(validate(d));
  std::vector<double> densities;
  for (int64_t i = 0; i < 20; ++i) {
    Board b(144);
    for (int j = 0; j < 144; ++j) {
      const uint8_t v = d.inputs.data<uint8_t>()[i * 144 + j];
      ASSERT_TRUE(v == 0 || v == 1);
      b[j] = v;
    }
    Board want = step(12, 12, b, 3);
    for (int j = 0; j < 144; ++j) ASSERT_EQ(d.targets.data<uint8_t>()[i * 144 + j], want[j]) << i;
    densities.push_back(std::accumulate(b.begin(), b.end(), 0.0) / 144);
  }
  // Density drawn per board: the boards should not all look alike.
  auto [lo, hi] = std::minmax_element(densities.begin(), densities.end());
  EXPECT_GT(*hi - *lo, 0.3);

  // Models see f32 0.0 / 1.0 cells for inputs and targets alike.
  Batcher batches(d, 20, /*shuffle=*/false);
  Rng order(0);
  batches.start_epoch(order);
  Tensor x, y;
  ASSERT_TRUE(batches.next(x, y));
  ASSERT_EQ(x.dtype(), DType::f32);
  ASSERT_EQ(y.dtype(), DType::f32);
  EXPECT_EQ(x.shape(), d.inputs.shape());
  EXPECT_EQ(y.shape(), d.targets.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    ASSERT_EQ(x.f32()[i], static_cast<float>(d.inputs.data<uint8_t>()[i]));
    ASSERT_EQ(y.f32()[i], static_cast<float>(d.targets.data<uint8_t>()[i]));
  }
}

TEST(LifeBoards, FixedDensityExtremes) {
  Rng rng(1);
  auto cells = [](const Tensor& t) {
    const auto* p = t.data<uint8_t>();
    return std::vector<uint8_t>(p, p + t.numel());
  };
  Dataset full = life_boards(3, {.size = 5, .steps = 0, .density = 1}, rng);
  EXPECT_EQ(cells(full.inputs), std::vector<uint8_t>(75, 1));
  EXPECT_EQ(cells(full.targets), std::vector<uint8_t>(75, 1));  // 0 steps: target = input
  Dataset none = life_boards(3, {.size = 5, .steps = 2, .density = 0}, rng);
  EXPECT_EQ(cells(none.inputs), std::vector<uint8_t>(75, 0));
}

TEST(LifeBoards, DeterministicAndIndependentOfThreads) {
  const LifeConfig cfg{.size = 16, .steps = 2};
  const int saved = num_threads();
  set_num_threads(1);
  Rng r1(123);
  Dataset one = life_boards(257, cfg, r1);
  set_num_threads(2);
  Rng r2(123);
  Dataset two = life_boards(257, cfg, r2);
  set_num_threads(saved);
  ASSERT_EQ(one.inputs.nbytes(), two.inputs.nbytes());
  EXPECT_EQ(std::memcmp(one.inputs.raw(), two.inputs.raw(), one.inputs.nbytes()), 0);
  EXPECT_EQ(std::memcmp(one.targets.raw(), two.targets.raw(), one.targets.nbytes()), 0);
  // The caller's stream advanced exactly once, and the next call differs.
  EXPECT_EQ(r1.counter(), 1u);
  Dataset again = life_boards(257, cfg, r1);
  EXPECT_NE(std::memcmp(one.inputs.raw(), again.inputs.raw(), one.inputs.nbytes()), 0);
  Rng r3(124);
  Dataset other = life_boards(257, cfg, r3);
  EXPECT_NE(std::memcmp(one.inputs.raw(), other.inputs.raw(), one.inputs.nbytes()), 0);
}

TEST(LifeBoards, InvalidConfig) {
  Rng rng(0);
  expect_error([&] { life_boards(1, {.size = 0}, rng); }, {"LifeConfig.size", "got 0"});
  expect_error([&] { life_boards(1, {.steps = -1}, rng); }, {"LifeConfig.steps"});
  expect_error([&] { life_boards(1, {.density = 1.5f}, rng); }, {"LifeConfig.density", "1.5"});
  expect_error([&] { life_boards(1, {.density_min = 0.8f, .density_max = 0.2f}, rng); },
               {"density_min", "0.8", "0.2"});
  expect_error([&] { life_boards(-1, {}, rng); }, {"count", "-1"});
  expect_error([&] { life_boards(int64_t{1} << 40, {.size = 1 << 20}, rng); }, {"too many"});
}

}  // namespace
}  // namespace pare::data
