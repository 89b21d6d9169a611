// SELL-16x32 matrices (SellMatrix in src/tensor/sparse.h) and the threaded
// one-sample product ops::sell_spmv.
//
// SellMatrix::from_csr is checked against the layout contract of
// kernels/sparse.h: per block, segments with strictly increasing first
// columns (multiples of 32, below cols), each holding a nonzero in its last
// step; block_slot starting at 0 and growing by 16 * steps; lane_col < 32 and
// inside cols; padding slots 0 (and lanes past rows padding only); within a
// lane of a segment the row's nonzeros first, in increasing column order.
// Scattering the non-padding slots back gives w * mask with every stored
// entry exactly once (test weights are never 0, so padding is the 0 slots).
//
// ops::sell_spmv is compared with kernels::spmm_f32__ref with n = 1 on the
// CSR of the same pattern, within (terms + 4) * 1.2e-7 * (sum of |terms| +
// |beta * prev|) as in sparse_test.cc; the scalar SELL reference
// (sell_spmv_f32__ref) adds the same terms in the same order in double plus
// exact zeros for padding, so it must give the CSR reference's bits. x is
// exactly cols floats followed by an inaccessible page (reading past the last
// segment's end faults), y is followed by sentinels (the last block's store
// must stop at rows). Shapes: rows 1, 15, 16, 17, 33, 300 by cols 1, 31, 32,
// 33, 100, 784, densities 0, 0.05, 0.3, 1, with empty rows, empty 16-row
// blocks, empty 32-column segments and rows holding a whole segment.
// The results must be the same bits on 1 and 2 threads, on a matrix large
// enough for ops::sell_spmv to split the blocks.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/sparse.h"
#include "pare/tensor/ops.h"
#include "pare/tensor/sparse.h"
#include "testing/threads.h"
#include "testing/guarded.h"

namespace pare {
namespace {

using Vec = std::vector<float>;
using kernels::kSellCols;
using kernels::kSellRows;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kSentinels = 64;
constexpr float kSentinel = -12345.0f;

using ::pare::testing::ThreadsFor;

using ::pare::testing::GuardedFloats;

Vec random_vec(Rng& rng, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-1.0f, 1.0f);
  return v;
}

// Never 0, so that the only 0 slots of a layout are padding.
Vec random_weight(Rng& rng, int64_t n) {
  Vec v = random_vec(rng, n);
  for (auto& x : v)
    if (x == 0.0f) x = 0.5f;
  return v;
}

Vec abs_of(const Vec& v) {
  Vec a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

enum MaskFeature : unsigned {
  kEmptyRows = 1,     // every third row empty
  kEmptyBlocks = 2,   // 16-row blocks 1, 4, 7, ... empty
  kEmptySegs = 4,     // 32-column segments 1, 3, 5, ... empty
  kFullSegRows = 8,   // a row holding all of segment 0, the last row all of the last segment
};

Vec make_mask(Rng& rng, int64_t rows, int64_t cols, double density, unsigned features) {
  Vec m(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      bool keep = rng.uniform(0.0f, 1.0f) < density;
      if ((features & kEmptyRows) && i % 3 == 1) keep = false;
      if ((features & kEmptyBlocks) && (i / kSellRows) % 3 == 1) keep = false;
      if ((features & kEmptySegs) && (j / kSellCols) % 2 == 1) keep = false;
      m[i * cols + j] = keep ? 1.0f : 0.0f;
    }
  if (features & kFullSegRows) {
    const int64_t r = std::min<int64_t>(rows - 1, 5);
    for (int64_t j = 0; j < std::min(cols, kSellCols); ++j) m[r * cols + j] = 1.0f;
    const int64_t last = (cols - 1) / kSellCols * kSellCols;
    for (int64_t j = last; j < cols; ++j) m[(rows - 1) * cols + j] = 1.0f;
  }
  return m;
}

std::string features_name(unsigned f) {
  std::string s;
  if (f & kEmptyRows) s += " empty rows";
  if (f & kEmptyBlocks) s += " empty blocks";
  if (f & kEmptySegs) s += " empty segments";
  if (f & kFullSegRows) s += " full segment rows";
  return s;
}

// The layout contract (file comment) and the scatter back to w * mask.
void check_layout(const SellMatrix& a, const CsrPattern& p, const Vec& w, const Vec& mask,
                  const std::string& name) {
  const int64_t rows = p.rows, cols = p.cols;
  ASSERT_EQ(a.rows, rows) << name;
  ASSERT_EQ(a.cols, cols) << name;
  const kernels::SellF32 v = a.view();
  const int64_t blocks = (rows + kSellRows - 1) / kSellRows;
  ASSERT_EQ(v.blocks(), blocks) << name;
  ASSERT_EQ(static_cast<int64_t>(a.block_seg.size()), blocks + 1) << name;
  ASSERT_EQ(static_cast<int64_t>(a.block_slot.size()), blocks + 1) << name;
  ASSERT_EQ(a.seg_col.size(), a.seg_steps.size()) << name;
  ASSERT_EQ(a.lane_col.size(), a.values.size()) << name;
  ASSERT_EQ(a.slots(), static_cast<int64_t>(a.values.size())) << name;
  ASSERT_GE(a.slots(), p.nnz()) << name;
  ASSERT_EQ(a.block_seg[0], 0) << name;
  ASSERT_EQ(a.block_slot[0], 0) << name;
  ASSERT_EQ(a.block_seg[static_cast<size_t>(blocks)], static_cast<int32_t>(a.seg_col.size()))
      << name;
  ASSERT_EQ(a.block_slot[static_cast<size_t>(blocks)], a.slots()) << name;

  std::vector<int> count(static_cast<size_t>(rows * cols), 0);
  Vec dense(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    ASSERT_LE(a.block_seg[b], a.block_seg[b + 1]) << name << " block " << b;
    int64_t slot = a.block_slot[b];
    ASSERT_EQ(slot % kSellRows, 0) << name << " block " << b;
    for (int32_t s = a.block_seg[b]; s < a.block_seg[b + 1]; ++s) {
      const int64_t c0 = a.seg_col[s], steps = a.seg_steps[s];
      ASSERT_EQ(c0 % kSellCols, 0) << name << " segment " << s;
      ASSERT_TRUE(c0 >= 0 && c0 < cols) << name << " segment " << s << " col " << c0;
      if (s > a.block_seg[b]) {
        ASSERT_LT(a.seg_col[s - 1], c0) << name << " segment " << s;
      }
      ASSERT_GE(steps, 1) << name << " segment " << s;
      ASSERT_LE(steps, kSellCols) << name << " segment " << s;
      bool last_step_used = false;
      for (int64_t l = 0; l < kSellRows; ++l) {
        const int64_t r = b * kSellRows + l;
        bool in_padding = false;
        int prev_col = -1;
        for (int64_t k = 0; k < steps; ++k) {
          const int64_t at = slot + k * kSellRows + l;
          const int col = a.lane_col[static_cast<size_t>(at)];
          const float val = a.values[static_cast<size_t>(at)];
          ASSERT_LT(col, kSellCols) << name << " slot " << at;
          ASSERT_LT(c0 + col, cols) << name << " slot " << at;
          if (val == 0.0f) {  // padding
            in_padding = true;
            continue;
          }
          ASSERT_LT(r, rows) << name << " slot " << at << ": a nonzero in a lane past rows";
          ASSERT_FALSE(in_padding) << name << " slot " << at << ": a nonzero after padding";
          ASSERT_GT(col, prev_col) << name << " slot " << at << ": columns not increasing";
          prev_col = col;
          if (k == steps - 1) last_step_used = true;
          const int64_t e = r * cols + c0 + col;
          ++count[static_cast<size_t>(e)];
          dense[static_cast<size_t>(e)] = val;
        }
      }
      ASSERT_TRUE(last_step_used) << name << " segment " << s << ": a step of padding only";
      slot += steps * kSellRows;
    }
    ASSERT_EQ(slot, a.block_slot[b + 1]) << name << " block " << b << ": slots != 16 * steps";
  }
  for (int64_t e = 0; e < rows * cols; ++e) {
    const bool kept = mask[static_cast<size_t>(e)] > 0.0f;
    ASSERT_EQ(count[static_cast<size_t>(e)], kept ? 1 : 0)
        << name << " entry (" << e / cols << ", " << e % cols << ") stored "
        << count[static_cast<size_t>(e)] << " times";
    const float want = kept ? w[static_cast<size_t>(e)] : 0.0f;
    ASSERT_EQ(0, std::memcmp(&want, &dense[static_cast<size_t>(e)], 4))
        << name << " entry (" << e / cols << ", " << e % cols << ")";
  }
}

struct Built {
  CsrPattern p;
  Vec values, abs_values;
  SellMatrix a;
};

Built build(Rng& rng, const Vec& mask, int64_t rows, int64_t cols, Vec* w_out = nullptr) {
  Built b;
  const Vec w = random_weight(rng, rows * cols);
  b.p = CsrPattern::from_mask(rows, cols, mask.data());
  b.values.resize(static_cast<size_t>(b.p.nnz()));
  b.p.gather(w.data(), b.values.data(), nullptr);
  b.abs_values = abs_of(b.values);
  b.a = SellMatrix::from_csr(b.p, b.values.data());
  if (w_out) *w_out = w;
  return b;
}

// ops::sell_spmv (1 and 2 threads) and sell_spmv_f32__ref against
// spmm_f32__ref (n = 1) on the CSR, for one beta.
void check_product(Rng& rng, const Built& m, float beta, const std::string& what) {
  const int64_t rows = m.p.rows, cols = m.p.cols;
  GuardedFloats xg(cols), xabs_g(cols);
  float* x = xg.data();
  float* x_abs = xabs_g.data();
  for (int64_t j = 0; j < cols; ++j) {
    x[j] = rng.uniform(-1.0f, 1.0f);
    x_abs[j] = std::fabs(x[j]);
  }
  const Vec y0 = random_vec(rng, rows);
  Vec want = y0, abs_sum = abs_of(y0);
  kernels::spmm_f32__ref(1, want.data(), 1, m.p.view(m.values.data()), x, 1, beta);
  kernels::spmm_f32__ref(1, abs_sum.data(), 1, m.p.view(m.abs_values.data()), x_abs, 1,
                         std::fabs(beta));

  Vec start = y0;
  start.resize(static_cast<size_t>(rows + kSentinels), kSentinel);
  if (beta == 0.0f)
    for (int64_t r = 0; r < rows; ++r) start[r] = kNaN;  // must not be read

  // The SELL reference: the CSR reference's bits.
  Vec ref = start;
  const kernels::SellF32 v = m.a.view();
  kernels::sell_spmv_f32__ref(0, v.blocks(), ref.data(), v, x, beta);
  for (int64_t r = 0; r < rows; ++r)
    ASSERT_EQ(0, std::memcmp(&ref[r], &want[r], 4))
        << what << ": sell_spmv_f32__ref row " << r << " " << ref[r] << " vs CSR ref " << want[r];

  Vec got[2];
  for (int t = 1; t <= 2; ++t) {
    std::optional<SerialScope> serial;
    if (t == 1) serial.emplace();
    got[t - 1] = start;
    ops::sell_spmv(got[t - 1].data(), m.a, x, beta);
  }
  ASSERT_EQ(0, std::memcmp(got[0].data(), got[1].data(), got[0].size() * 4))
      << what << ": 1 and 2 threads differ";
  for (int64_t i = rows; i < rows + kSentinels; ++i)
    ASSERT_EQ(got[1][i], kSentinel) << what << ": wrote past rows at " << i;
  int failures = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const double tol = static_cast<double>(cols + 4) * 1.2e-7 * abs_sum[r] + 1e-30;
    if (!(std::fabs(static_cast<double>(got[1][r]) - want[r]) <= tol) && failures++ == 0)
      ADD_FAILURE() << what << ": row " << r << " got " << got[1][r] << " want " << want[r]
                    << " (tol " << tol << ")";
  }
}

template <class F>
void for_each_mask(F f) {
  Rng rng(41);
  for (int64_t rows : {1, 15, 16, 17, 33, 300})
    for (int64_t cols : {1, 31, 32, 33, 100, 784})
      for (double density : {0.0, 0.05, 0.3, 1.0})
        for (unsigned features :
             {0u, unsigned{kEmptyRows}, unsigned{kEmptyBlocks}, unsigned{kEmptySegs},
              unsigned{kFullSegRows}, unsigned{kEmptyRows | kEmptyBlocks | kEmptySegs | kFullSegRows}}) {
          std::ostringstream name;
          name << rows << "x" << cols << " density " << density << features_name(features);
          f(rng, rows, cols, make_mask(rng, rows, cols, density, features), name.str());
        }
}

TEST(SellMatrix, FromCsrLayoutHoldsEveryEntryOnce) {
  for_each_mask([](Rng& rng, int64_t rows, int64_t cols, const Vec& mask, const std::string& name) {
    Vec w;
    Built m = build(rng, mask, rows, cols, &w);
    check_layout(m.a, m.p, w, mask, name);
  });
}

// A small layout written out: 17x40, entries (0, 0), (0, 31), (0, 32), (1, 1), (16, 39).
TEST(SellMatrix, FromCsrSmallExample) {
  const int64_t rows = 17, cols = 40;
  Vec mask(rows * cols, 0.0f), w(rows * cols, 0.0f);
  auto set = [&](int64_t r, int64_t c, float v) {
    mask[r * cols + c] = 1.0f;
    w[r * cols + c] = v;
  };
  set(0, 0, 1.0f);
  set(0, 31, 2.0f);
  set(0, 32, 3.0f);
  set(1, 1, 4.0f);
  set(16, 39, 5.0f);
  CsrPattern p = CsrPattern::from_mask(rows, cols, mask.data());
  Vec values(static_cast<size_t>(p.nnz()));
  p.gather(w.data(), values.data(), nullptr);
  SellMatrix a = SellMatrix::from_csr(p, values.data());
  EXPECT_EQ(a.block_seg, (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(a.block_slot, (std::vector<int64_t>{0, 48, 64}));
  EXPECT_EQ(a.seg_col, (std::vector<int32_t>{0, 32, 32}));
  EXPECT_EQ(a.seg_steps, (std::vector<int32_t>{2, 1, 1}));
  ASSERT_EQ(a.slots(), 64);
  Vec want_values(64, 0.0f);
  std::vector<uint8_t> want_cols(64, 0);
  want_values[0] = 1.0f;                      // block 0, segment 0, step 0, lane 0
  want_values[1] = 4.0f, want_cols[1] = 1;    // step 0, lane 1
  want_values[16] = 2.0f, want_cols[16] = 31; // step 1, lane 0
  want_values[32] = 3.0f;                     // segment 32, step 0, lane 0
  want_values[48] = 5.0f, want_cols[48] = 7;  // block 1, segment 32, lane 0
  EXPECT_EQ(a.values, want_values);
  EXPECT_EQ(a.lane_col, want_cols);
  check_layout(a, p, w, mask, "17x40 example");

  GuardedFloats xg(cols);
  float* x = xg.data();
  for (int64_t j = 0; j < cols; ++j) x[j] = static_cast<float>(j + 1);
  Vec y(rows + kSentinels, kSentinel);
  for (int64_t r = 0; r < rows; ++r) y[r] = kNaN;
  ops::sell_spmv(y.data(), a, x, 0.0f);
  Vec want(rows, 0.0f);
  want[0] = 1 * 1 + 2 * 32 + 3 * 33;
  want[1] = 4 * 2;
  want[16] = 5 * 40;
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(y[r], want[r]) << "row " << r;
  for (int64_t i = rows; i < rows + kSentinels; ++i) EXPECT_EQ(y[i], kSentinel) << i;
}

TEST(SellOps, SellSpmvMatchesCsrReference) {
  ThreadsFor two(2);
  for_each_mask([](Rng& rng, int64_t rows, int64_t cols, const Vec& mask, const std::string& name) {
    Built m = build(rng, mask, rows, cols);
    for (float beta : {0.0f, 0.5f, 1.0f})
      check_product(rng, m, beta, name + " beta " + std::to_string(beta));
  });
}

// Large enough for ops::sell_spmv to split the blocks over 2 threads (it
// splits from 2 * slots >= 64 * kParallelMinFlops).
TEST(SellOps, LargeMatrixSameBitsOnOneAndTwoThreads) {
  ThreadsFor two(2);
  Rng rng(43);
  const int64_t rows = 4096, cols = 2048;
  const Vec mask = make_mask(rng, rows, cols, 0.1, 0);
  Vec w;
  Built m = build(rng, mask, rows, cols, &w);
  ASSERT_GE(2.0 * static_cast<double>(m.a.slots()), 64 * ops::kParallelMinFlops)
      << "too few slots (" << m.a.slots() << ") for the threaded path";
  check_layout(m.a, m.p, w, mask, "4096x2048 density 0.1");
  for (float beta : {0.0f, 1.0f})
    check_product(rng, m, beta, "4096x2048 density 0.1 beta " + std::to_string(beta));
}

}  // namespace
}  // namespace pare
