// The Life rule and the parallel board generator.
#include "pare/data/life.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/thread_pool.h"

namespace pare::data {

void life_step(int64_t h, int64_t w, uint8_t* __restrict out, const uint8_t* __restrict in) {
  // Pass 1: every cell off the border ring, as one flat loop over the board
  // so it vectorises even when rows are shorter than a vector (a 32-wide row
  // has only 30 interior cells). Flat indexing makes the cells in columns 0
  // and w-1 read the neighbouring row's far end; pass 2 overwrites them.
  if (h >= 3 && w >= 3) {
    for (int64_t i = w + 1; i < (h - 1) * w - 1; ++i) {
      const uint8_t n = static_cast<uint8_t>(in[i - w - 1] + in[i - w] + in[i - w + 1] + in[i - 1] +
                                             in[i + 1] + in[i + w - 1] + in[i + w] + in[i + w + 1]);
      out[i] = static_cast<uint8_t>((n == 3) | ((n == 2) & in[i]));
    }
  }
  // Pass 2: the border ring (rows 0 and h-1, columns 0 and w-1), whose
  // neighbours wrap around the torus.
  auto cell = [&](int64_t y, int64_t x) {
    const uint8_t* up = in + (y == 0 ? h - 1 : y - 1) * w;
    const uint8_t* mid = in + y * w;
    const uint8_t* dn = in + (y == h - 1 ? 0 : y + 1) * w;
    const int64_t l = x == 0 ? w - 1 : x - 1, r = x == w - 1 ? 0 : x + 1;
    const int n = up[l] + up[x] + up[r] + mid[l] + mid[r] + dn[l] + dn[x] + dn[r];
    out[y * w + x] = static_cast<uint8_t>((n == 3) | ((n == 2) & mid[x]));
  };
  if (h < 3 || w < 3) {
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) cell(y, x);
    return;
  }
  for (int64_t x = 0; x < w; ++x) {
    cell(0, x);
    cell(h - 1, x);
  }
  for (int64_t y = 1; y < h - 1; ++y) {
    cell(y, 0);
    cell(y, w - 1);
  }
}

namespace {

void validate(const LifeConfig& c, int64_t count) {
  if (count < 0) fail("life_boards: count must be >= 0, got ", count);
  if (c.size < 1) fail("LifeConfig.size must be >= 1, got ", c.size);
  if (c.steps < 0) fail("LifeConfig.steps must be >= 0, got ", c.steps);
  if (std::isnan(c.density) || c.density > 1)
    fail("LifeConfig.density must be in [0, 1] (or negative to draw it per board), got ",
         c.density);
  if (c.density < 0 &&
      !(0 <= c.density_min && c.density_min <= c.density_max && c.density_max <= 1))
    fail("LifeConfig.density_min and density_max must satisfy 0 <= min <= max <= 1, got ",
         c.density_min, " and ", c.density_max);
}

}  // namespace

Dataset life_boards(int64_t count, const LifeConfig& cfg, Rng& rng) {
  validate(cfg, count);
  const int64_t s = cfg.size;
  int64_t cells = 0, total = 0;
  if (__builtin_mul_overflow(s, s, &cells) || __builtin_mul_overflow(cells, count, &total) ||
      total > (int64_t{1} << 60))
    fail("life_boards: ", count, " boards of ", s, "x", s, " cells is too many");

  // One draw from the caller's stream seeds every board; board i uses fork(i),
  // which is what makes the boards independent of how the loop is split.
  const Rng base(rng.next_u64());
  Dataset d;
  d.inputs = Tensor::empty({count, 1, s, s}, DType::u8);
  d.targets = Tensor::empty({count, 1, s, s}, DType::u8);
  d.num_classes = 0;
  d.name = "life-" + std::to_string(s) + "x" + std::to_string(s) + "-" + std::to_string(cfg.steps) +
           (cfg.steps == 1 ? "step" : "steps");
  uint8_t* x = d.inputs.data<uint8_t>();
  uint8_t* y = d.targets.data<uint8_t>();

  thread_pool().parallel_for(count, [&](int64_t begin, int64_t end, int) {
    std::vector<uint8_t> a(static_cast<size_t>(cells)), b(static_cast<size_t>(cells));
    for (int64_t i = begin; i < end; ++i) {
      Rng r = base.fork(static_cast<uint64_t>(i));
      const double density =
          cfg.density >= 0 ? cfg.density : r.uniform(cfg.density_min, cfg.density_max);
      // A cell lives when a 32-bit uniform integer is below density * 2^32, so
      // one 64-bit draw decides two cells; density 1 makes every cell live.
      const uint64_t threshold = static_cast<uint64_t>(std::llround(density * 4294967296.0));
      for (int64_t j = 0; j < cells; j += 2) {
        const uint64_t u = r.next_u64();
        a[j] = (u & 0xFFFFFFFFu) < threshold;
        if (j + 1 < cells) a[j + 1] = (u >> 32) < threshold;
      }
      std::memcpy(x + i * cells, a.data(), static_cast<size_t>(cells));
      for (int t = 0; t < cfg.steps; ++t) {
        life_step(s, s, b.data(), a.data());
        std::swap(a, b);
      }
      std::memcpy(y + i * cells, a.data(), static_cast<size_t>(cells));
    }
  });
  return d;
}

}  // namespace pare::data
