// SELL-16x32 one-sample product (src/kernels/sparse.h): sell_spmv_f32, fast
// and reference, over layouts built by SellMatrix::from_csr (tensor/sparse.h)
// from random masks: rows around the 16-row block (1, 15, 16, 17, 33, 100),
// cols around the 32-column segment (1, 31, 32, 33, 100), densities 0, 0.1,
// 0.5 and 1, every third row emptied or not.
//
// The reference is checked against a dense double-precision product of
// w * mask, and the fast variant against the reference, each within
// (terms + 3) * 1.2e-7 * (sum of |terms| + |beta * prev|) as in
// sparse_test.cc; beta 0 (over NaN), 0.5 and 1. Block ranges [b0, b1): rows of
// the range get the same bits as a full-range call, every other row and the
// sentinels after y are left alone. x sits at the end of a page followed by
// an inaccessible page, so reading past cols faults.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/kernels/sparse.h"
#include "pare/tensor/sparse.h"
#include "testing/guarded.h"

namespace pare::kernels {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int64_t kSentinels = 64;  // floats after y's rows that must stay untouched
constexpr float kSentinel = -12345.0f;

using ::pare::testing::GuardedFloats;

float nonzero_uniform(Rng& rng) {
  float v = rng.uniform(-1.0f, 1.0f);
  return v == 0.0f ? 0.5f : v;
}

struct Case {
  int64_t rows, cols;
  Vec w, mask;  // (rows, cols)
  CsrPattern pattern;
  Vec values;  // pattern order
  SellMatrix sell;
  std::string name;
};

Case make_case(Rng& rng, int64_t rows, int64_t cols, double density, bool empty_rows) {
  Case c{rows, cols, Vec(static_cast<size_t>(rows * cols)), Vec(static_cast<size_t>(rows * cols)),
         {}, {}, {}, {}};
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      c.w[i * cols + j] = nonzero_uniform(rng);
      bool keep = rng.uniform(0.0f, 1.0f) < density && !(empty_rows && i % 3 == 1);
      c.mask[i * cols + j] = keep ? 1.0f : 0.0f;
    }
  c.pattern = CsrPattern::from_mask(rows, cols, c.mask.data());
  c.values.resize(static_cast<size_t>(c.pattern.nnz()));
  c.pattern.gather(c.w.data(), c.values.data(), nullptr);
  c.sell = SellMatrix::from_csr(c.pattern, c.values.data());
  std::ostringstream name;
  name << rows << "x" << cols << " density " << density << (empty_rows ? " empty rows" : "");
  c.name = name.str();
  return c;
}

template <class F>
void for_each_case(F f) {
  Rng rng(31);
  for (int64_t rows : {1, 15, 16, 17, 33, 100})
    for (int64_t cols : {1, 31, 32, 33, 100})
      for (double density : {0.0, 0.1, 0.5, 1.0})
        for (bool empty_rows : {false, true}) {
          Case c = make_case(rng, rows, cols, density, empty_rows);
          f(rng, c);
        }
}

using SellFn = void (*)(int64_t, int64_t, float*, const SellF32&, const float*, float);

// y (rows) followed by kSentinels sentinels.
Vec with_sentinels(const Vec& y) {
  Vec out = y;
  out.resize(y.size() + kSentinels, kSentinel);
  return out;
}

void check_sentinels(const Vec& y, int64_t rows, const std::string& what) {
  for (int64_t i = rows; i < rows + kSentinels; ++i)
    ASSERT_EQ(y[i], kSentinel) << what << ": wrote past rows at " << i;
}

TEST(SellKernels, MatchDenseProductAndEachOther) {
  for_each_case([](Rng& rng, const Case& c) {
    GuardedFloats xg(c.cols);
    float* x = xg.data();
    for (int64_t j = 0; j < c.cols; ++j) x[j] = rng.uniform(-1.0f, 1.0f);
    Vec y0(static_cast<size_t>(c.rows));
    for (auto& v : y0) v = rng.uniform(-1.0f, 1.0f);
    const SellF32 a = c.sell.view();
    ASSERT_EQ(a.blocks(), (c.rows + 15) / 16) << c.name;
    for (float beta : {0.0f, 0.5f, 1.0f}) {
      Vec got[2];
      int v = 0;
      for (auto [fn, variant] :
           {std::pair<SellFn, const char*>{sell_spmv_f32__ref, "ref"}, {sell_spmv_f32, "fast"}}) {
        Vec y = with_sentinels(y0);
        if (beta == 0.0f)
          for (int64_t r = 0; r < c.rows; ++r) y[r] = kNaN;  // must not be read
        fn(0, a.blocks(), y.data(), a, x, beta);
        const std::string what =
            std::string("sell_spmv_f32 ") + variant + " " + c.name + " beta " + std::to_string(beta);
        check_sentinels(y, c.rows, what);
        int failures = 0;
        for (int64_t r = 0; r < c.rows; ++r) {
          double exact = 0, abs_sum = 0;
          for (int64_t j = 0; j < c.cols; ++j)
            if (c.mask[r * c.cols + j] > 0) {
              const double t = static_cast<double>(c.w[r * c.cols + j]) * x[j];
              exact += t;
              abs_sum += std::fabs(t);
            }
          if (beta != 0.0f) {
            exact += beta * static_cast<double>(y0[r]);
            abs_sum += std::fabs(beta * static_cast<double>(y0[r]));
          }
          const double tol = static_cast<double>(c.cols + 3) * 1.2e-7 * abs_sum + 1e-30;
          if (!(std::fabs(y[r] - exact) <= tol) && failures++ == 0)
            ADD_FAILURE() << what << ": row " << r << " got " << y[r] << " want " << exact
                          << " (tol " << tol << ")";
        }
        got[v++] = y;
      }
      // Fast against the reference (the reference accumulates in double).
      int failures = 0;
      for (int64_t r = 0; r < c.rows; ++r) {
        double abs_sum = std::fabs(beta * static_cast<double>(y0[r]));
        for (int64_t j = 0; j < c.cols; ++j)
          if (c.mask[r * c.cols + j] > 0)
            abs_sum += std::fabs(static_cast<double>(c.w[r * c.cols + j]) * x[j]);
        const double tol = static_cast<double>(c.cols + 3) * 1.2e-7 * abs_sum + 1e-30;
        if (!(std::fabs(static_cast<double>(got[1][r]) - got[0][r]) <= tol) && failures++ == 0)
          ADD_FAILURE() << "sell_spmv_f32 fast vs ref " << c.name << " beta " << beta << ": row "
                        << r << " fast " << got[1][r] << " ref " << got[0][r] << " (tol " << tol
                        << ")";
      }
    }
  });
}

// Every range [b0, b1) of blocks, empty ones included: the range's rows get
// the bits of a full-range call, other rows and the sentinels keep theirs.
TEST(SellKernels, BlockRangesTouchOnlyTheirRows) {
  Rng rng(37);
  for (int64_t rows : {1, 16, 17, 33, 64, 79})
    for (int64_t cols : {1, 33, 100})
      for (double density : {0.0, 0.3, 1.0}) {
        Case c = make_case(rng, rows, cols, density, true);
        GuardedFloats xg(c.cols);
        float* x = xg.data();
        for (int64_t j = 0; j < c.cols; ++j) x[j] = rng.uniform(-1.0f, 1.0f);
        Vec y0(static_cast<size_t>(rows));
        for (auto& v : y0) v = rng.uniform(-1.0f, 1.0f);
        const SellF32 a = c.sell.view();
        const int64_t blocks = a.blocks();
        for (float beta : {0.0f, 0.5f, 1.0f})
          for (auto [fn, variant] : {std::pair<SellFn, const char*>{sell_spmv_f32__ref, "ref"},
                                     {sell_spmv_f32, "fast"}}) {
            Vec full = with_sentinels(y0);
            fn(0, blocks, full.data(), a, x, beta);
            for (int64_t b0 = 0; b0 <= blocks; ++b0)
              for (int64_t b1 = b0; b1 <= blocks; ++b1) {
                std::ostringstream what;
                what << "sell_spmv_f32 " << variant << " " << c.name << " beta " << beta
                     << " blocks [" << b0 << ", " << b1 << ")";
                Vec y = with_sentinels(y0);
                const int64_t r0 = b0 * 16, r1 = std::min(b1 * 16, rows);
                if (beta == 0.0f)
                  for (int64_t r = r0; r < r1; ++r) y[r] = kNaN;
                fn(b0, b1, y.data(), a, x, beta);
                check_sentinels(y, rows, what.str());
                for (int64_t r = 0; r < rows; ++r) {
                  const float want = r >= r0 && r < r1 ? full[r] : y0[r];
                  ASSERT_EQ(0, std::memcmp(&want, &y[r], 4))
                      << what.str() << ": row " << r << " got " << y[r] << " want " << want;
                }
              }
          }
      }
}

}  // namespace
}  // namespace pare::kernels
