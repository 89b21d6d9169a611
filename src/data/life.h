// Conway's Game of Life (rule B3/S23) on a torus, and datasets of
// (board, board after n steps) pairs for learning the rule.
//
// Springer & Kenyon 2020 ("It's hard for neural networks to learn the Game of
// Life") use such pairs with a density drawn per board, which is the default
// here. Boards are square; rows wrap top to bottom and columns left to right.
#pragma once

#include <cstdint>

#include "pare/base/rng.h"
#include "pare/data/dataset.h"

namespace pare::data {

// One generation. The neighbours of (y, x) are the eight cells
// ((y + dy) mod h, (x + dx) mod w), dy, dx in {-1, 0, 1}, not both 0 (on
// boards narrower than 3 a cell can be its own neighbour, counted each time).
// A dead cell with exactly 3 live neighbours is born; a live one with 2 or 3
// survives. out, in: (h, w) row-major, cells 0 or 1.
// REQUIRES: h, w >= 1; out and in do not overlap; every in cell is 0 or 1.
// Thread safety: pure function.
void life_step(int64_t h, int64_t w, uint8_t* out, const uint8_t* in);

struct LifeConfig {
  int64_t size = 32;  // board height and width in cells; >= 1
  int steps = 1;      // generations between input and target; >= 0
  // Probability that a cell starts alive, in [0, 1]; negative means draw it
  // per board uniformly from [density_min, density_max].
  float density = -1;
  float density_min = 0;  // in [0, 1], <= density_max
  float density_max = 1;  // in [0, 1]
};

// `count` random boards: inputs (N, 1, H, W) u8 of 0/1 cells (input_scale 1)
// and targets (N, 1, H, W) u8, each board after cfg.steps steps; num_classes
// 0. Batcher hands them to models as 0.0f / 1.0f.
// Board i is drawn from its own stream, a fork of one value taken from `rng`,
// so the result depends only on the rng state and cfg, never on the thread
// count. Advances `rng` by exactly one draw. Raises Error for an invalid cfg.
Dataset life_boards(int64_t count, const LifeConfig& cfg, Rng& rng);

}  // namespace pare::data
