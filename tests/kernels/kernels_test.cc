// The fast kernels against their scalar references (STYLE rule 10), and BLAS
// GEMM against gemm_f32__ref, over edge shapes: empty, one element, odd sizes
// and sizes one off the vector width (16 lanes with AVX-512), with seeded
// random inputs.
//
// Tolerances, |fast - ref| <= atol + rtol |ref| per element:
//   exact   same bits (-0 is not +0; any NaN matches NaN): copies, selects,
//           single adds/multiplies in ref's order
//           (im2col, col2im, pooling, relu, add, mul, scale, broadcasts)
//   fused   the same expression with FMA contraction or one reordered
//           rounding: rtol 1e-6 (axpy, *_backward, sums); optimizer steps
//           add atol 5e-7 for cancellation over three steps
//   exp     the polynomial exp family: rtol 1e-5 (sigmoid, tanh, softmax,
//           bce); the measured error is ~2e-7 (src/kernels/fast/simd.h)
// Every failure message names the kernel, the shape and the first index.
#include "pare/kernels/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "testing/bits.h"

namespace pare::kernels {
namespace {

using Vec = std::vector<float>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Sizes around the vector width and the unrolled body (32), plus large odd ones.
const int64_t kSizes[] = {0, 1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 65, 1000, 1031, 4099};

struct Tol {
  double rtol, atol;
};
constexpr Tol kExact{0, 0};
constexpr Tol kFused{1e-6, 1e-7};
constexpr Tol kExp{1e-5, 1e-7};
// Optimizer state after three steps: operands of magnitude <= 1 that cancel
// (momentum against a new gradient) leave a few ulps of 1 in absolute terms.
constexpr Tol kOptim{1e-6, 5e-7};

Vec random_vec(Rng& rng, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

bool same_value(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }
// Exact: the same bits (so -0 is not +0), or NaN on both sides.
bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b));
}

// All n values close; on failure, the first bad index, both values and how
// many failed.
::testing::AssertionResult all_close(const float* fast, const float* ref, int64_t n, Tol tol,
                                     const std::string& where) {
  const bool exact = tol.rtol == 0 && tol.atol == 0;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    bool ok = exact ? same_bits(fast[i], ref[i])
                    : (same_value(fast[i], ref[i]) ||
                       std::fabs(static_cast<double>(fast[i]) - ref[i]) <=
                           tol.atol + tol.rtol * std::fabs(static_cast<double>(ref[i])));
    if (!ok && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << where << ": " << bad << " of " << n << " values differ; first at index " << first
         << ": fast " << fast[first] << " vs ref " << ref[first] << " (rtol " << tol.rtol
         << ", atol " << tol.atol << ")";
}
::testing::AssertionResult all_close(const Vec& fast, const Vec& ref, Tol tol,
                                     const std::string& where) {
  if (fast.size() != ref.size()) return ::testing::AssertionFailure() << where << ": sizes";
  return all_close(fast.data(), ref.data(), static_cast<int64_t>(fast.size()), tol, where);
}

::testing::AssertionResult close_double(double fast, double ref, double tol,
                                        const std::string& where) {
  if (std::fabs(fast - ref) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << where << ": fast " << fast << " vs ref " << ref << " (|diff| " << std::fabs(fast - ref)
         << " > " << tol << ")";
}

using testing::same_bits;
using testing::same_bytes;

// A kernel run from `start` left `after`; run from zeros it left `inc`. It
// accumulates if after == start + inc up to the rounding of that sum.
// `atol` covers kernels that add several contributions to one element.
::testing::AssertionResult accumulates(const Vec& after, const Vec& start, const Vec& inc,
                                       const std::string& where, double atol = 1e-30) {
  for (size_t i = 0; i < after.size(); ++i) {
    const double want = static_cast<double>(start[i]) + inc[i];
    const double slack = 1e-6 * (std::fabs(start[i]) + std::fabs(inc[i])) + atol;
    if (!(std::fabs(after[i] - want) <= slack))
      return ::testing::AssertionFailure()
             << where << ": does not accumulate at index " << i << ": got " << after[i]
             << ", start " << start[i] << " + increment " << inc[i];
  }
  return ::testing::AssertionSuccess();
}

std::string at(const char* kernel, int64_t n) {
  return std::string(kernel) + " n=" + std::to_string(n);
}

// ---- Elementwise ------------------------------------------------------------------------

using Binary = void (*)(int64_t, float*, const float*, const float*);
using Unary = void (*)(int64_t, float*, const float*);
using Scaled = void (*)(int64_t, float*, const float*, float);

struct BinaryCase {
  const char* name;
  Binary fast, ref;
};
struct UnaryCase {
  const char* name;
  Unary fast, ref;
  float lo, hi;
  Tol tol;
};

TEST(Elementwise, BinaryMatchesRefExactly) {
  const BinaryCase cases[] = {{"add_f32", add_f32, add_f32__ref},
                              {"mul_f32", mul_f32, mul_f32__ref}};
  Rng rng(1);
  for (const auto& c : cases)
    for (int64_t n : kSizes) {
      Vec a = random_vec(rng, n, -3, 3), b = random_vec(rng, n, -3, 3);
      Vec yf(n, kNaN), yr(n, kNaN), y2(n, kNaN);
      c.fast(n, yf.data(), a.data(), b.data());
      c.ref(n, yr.data(), a.data(), b.data());
      EXPECT_TRUE(all_close(yf, yr, kExact, at(c.name, n)));
      c.fast(n, y2.data(), a.data(), b.data());
      EXPECT_TRUE(same_bits(yf, y2)) << at(c.name, n) << ": two calls differ";
      // In place, as nn::Parameter applies its mask: y = y * mask.
      Vec inplace = a;
      c.fast(n, inplace.data(), inplace.data(), b.data());
      EXPECT_TRUE(all_close(inplace, yr, kExact, at(c.name, n) + " in place"));
    }
}

TEST(Elementwise, UnaryMatchesRef) {
  const UnaryCase cases[] = {
      {"relu_f32", relu_f32, relu_f32__ref, -2, 2, kExact},
      {"sigmoid_f32", sigmoid_f32, sigmoid_f32__ref, -20, 20, kExp},
      {"tanh_f32", tanh_f32, tanh_f32__ref, -6, 6, kExp},
  };
  Rng rng(2);
  for (const auto& c : cases)
    for (int64_t n : kSizes) {
      Vec x = random_vec(rng, n, c.lo, c.hi);
      // Values at the edges of the approximations' ranges and of relu.
      const float specials[] = {0.0f, -0.0f,  1e-4f, -3e-3f,  0.49f, 0.51f, -0.5f,
                                9.0f, -30.0f, 90.0f, -100.0f, kInf,  -kInf};
      for (int64_t i = 0; i < n; i += 5) x[i] = specials[(i / 5) % std::size(specials)];
      Vec yf(n, kNaN), yr(n, kNaN), y2(n, kNaN);
      c.fast(n, yf.data(), x.data());
      c.ref(n, yr.data(), x.data());
      EXPECT_TRUE(all_close(yf, yr, c.tol, at(c.name, n)));
      c.fast(n, y2.data(), x.data());
      EXPECT_TRUE(same_bits(yf, y2)) << at(c.name, n) << ": two calls differ";
      Vec inplace = x;
      c.fast(n, inplace.data(), inplace.data());
      EXPECT_TRUE(same_bits(inplace, yf)) << at(c.name, n) << ": in place differs";
    }
}

TEST(Elementwise, ExpFamilyAccuracyOnADenseGrid) {
  // 200k points over the range where sigmoid and tanh are not saturated,
  // with the small-|x| branch of tanh densely covered.
  const int64_t n = 200001;
  Vec x(n), yf(n), yr(n);
  for (int64_t i = 0; i < n; ++i) x[i] = -10.0f + 20.0f * static_cast<float>(i) / (n - 1);
  sigmoid_f32(n, yf.data(), x.data());
  sigmoid_f32__ref(n, yr.data(), x.data());
  EXPECT_TRUE(all_close(yf, yr, {1e-6, 0}, "sigmoid_f32 grid [-10, 10]"));
  tanh_f32(n, yf.data(), x.data());
  tanh_f32__ref(n, yr.data(), x.data());
  EXPECT_TRUE(all_close(yf, yr, {1e-6, 1e-30}, "tanh_f32 grid [-10, 10]"));
  for (int64_t i = 0; i < n; ++i) x[i] = -1.0f + 2.0f * static_cast<float>(i) / (n - 1);
  tanh_f32(n, yf.data(), x.data());
  tanh_f32__ref(n, yr.data(), x.data());
  EXPECT_TRUE(all_close(yf, yr, {1e-6, 1e-30}, "tanh_f32 grid [-1, 1]"));
}

TEST(Elementwise, ScaledMatchesRef) {
  struct Case {
    const char* name;
    Scaled fast, ref;
    bool accumulates;
    Tol tol;
  };
  const Case cases[] = {{"axpy_f32", axpy_f32, axpy_f32__ref, true, kFused},
                        {"scale_f32", scale_f32, scale_f32__ref, false, kExact}};
  Rng rng(3);
  for (const auto& c : cases)
    for (int64_t n : kSizes)
      for (float alpha : {1.0f, -0.37f, 0.0f}) {
        Vec x = random_vec(rng, n, -2, 2), y0 = random_vec(rng, n, -2, 2);
        Vec yf = y0, yr = y0, y2 = y0;
        c.fast(n, yf.data(), x.data(), alpha);
        c.ref(n, yr.data(), x.data(), alpha);
        std::string where = at(c.name, n) + " alpha=" + std::to_string(alpha);
        EXPECT_TRUE(all_close(yf, yr, c.tol, where));
        c.fast(n, y2.data(), x.data(), alpha);
        EXPECT_TRUE(same_bits(yf, y2)) << where << ": two calls differ";
        if (c.accumulates && alpha == 0.0f) {
          EXPECT_TRUE(same_bits(yf, y0)) << where;
        }
      }
}

// dx += f(dy, y): fast and ref from the same non-zero dx, and the increment
// equals what the kernel gives from dx = 0.
using Backward = void (*)(int64_t, float*, const float*, const float*);
TEST(Elementwise, BackwardAccumulatesAndMatchesRef) {
  struct Case {
    const char* name;
    Backward fast, ref;
    float ylo, yhi;
    Tol tol;
  };
  const Case cases[] = {
      {"relu_backward_f32", relu_backward_f32, relu_backward_f32__ref, -1, 1, kExact},
      {"sigmoid_backward_f32", sigmoid_backward_f32, sigmoid_backward_f32__ref, 0, 1, kFused},
      {"tanh_backward_f32", tanh_backward_f32, tanh_backward_f32__ref, -1, 1, kFused},
  };
  Rng rng(4);
  for (const auto& c : cases)
    for (int64_t n : kSizes) {
      Vec dy = random_vec(rng, n, -1, 1), y = random_vec(rng, n, c.ylo, c.yhi);
      for (int64_t i = 0; i < n; i += 7) y[i] = 0.0f;  // relu's kink
      Vec dx0 = random_vec(rng, n, -1, 1);
      for (int64_t i = 3; i < n; i += 11) dx0[i] = -0.0f;
      Vec dxf = dx0, dxr = dx0, dx2 = dx0, inc(n, 0.0f);
      c.fast(n, dxf.data(), dy.data(), y.data());
      c.ref(n, dxr.data(), dy.data(), y.data());
      EXPECT_TRUE(all_close(dxf, dxr, c.tol, at(c.name, n)));
      c.fast(n, dx2.data(), dy.data(), y.data());
      EXPECT_TRUE(same_bits(dxf, dx2)) << at(c.name, n) << ": two calls differ";
      c.fast(n, inc.data(), dy.data(), y.data());
      EXPECT_TRUE(accumulates(dxf, dx0, inc, at(c.name, n)));
    }
}

// dx = dy * (y > 0), overwriting whatever dx held (including NaN).
TEST(Elementwise, ReluMaskOverwritesAndMatchesRef) {
  Rng rng(5);
  for (int64_t n : kSizes) {
    Vec dy = random_vec(rng, n, -1, 1), y = random_vec(rng, n, -1, 1);
    for (int64_t i = 0; i < n; i += 7) y[i] = 0.0f;  // the kink: y = 0 passes nothing
    Vec dxf(n, std::numeric_limits<float>::quiet_NaN()), dxr(n, 1.0f);
    relu_mask_f32(n, dxf.data(), dy.data(), y.data());
    relu_mask_f32__ref(n, dxr.data(), dy.data(), y.data());
    EXPECT_TRUE(same_bits(dxf, dxr)) << at("relu_mask_f32", n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(dxf[i], y[i] > 0.0f ? dy[i] : 0.0f) << at("relu_mask_f32", n) << " at " << i;
  }
}

// ---- Broadcasts and reductions ----------------------------------------------------------

const int64_t kRows[] = {0, 1, 3, 60};
const int64_t kCols[] = {1, 7, 10, 16, 17, 31, 33, 65, 300, 1001};

TEST(Reduce, AddRowsAndSumRows) {
  Rng rng(5);
  for (int64_t m : kRows)
    for (int64_t n : kCols) {
      const std::string where = "m=" + std::to_string(m) + " n=" + std::to_string(n);
      Vec x = random_vec(rng, m * n), b = random_vec(rng, n);
      Vec yf = x, yr = x;
      add_rows_f32(m, n, yf.data(), b.data());
      add_rows_f32__ref(m, n, yr.data(), b.data());
      EXPECT_TRUE(all_close(yf, yr, kExact, "add_rows_f32 " + where));

      Vec out0 = random_vec(rng, n);  // sum_rows accumulates into out
      Vec of = out0, orr = out0, o2 = out0;
      sum_rows_f32(m, n, of.data(), x.data());
      sum_rows_f32__ref(m, n, orr.data(), x.data());
      EXPECT_TRUE(all_close(of, orr, kFused, "sum_rows_f32 " + where));
      sum_rows_f32(m, n, o2.data(), x.data());
      EXPECT_TRUE(same_bits(of, o2)) << "sum_rows_f32 " << where << ": two calls differ";
    }
}

TEST(Reduce, AddChannelsAndSumChannels) {
  Rng rng(6);
  for (int64_t b : {0, 1, 3, 8})
    for (int64_t c : {1, 3, 6, 17})
      for (int64_t p : {1, 7, 16, 33, 100, 576, 1025}) {
        const std::string where =
            "b=" + std::to_string(b) + " c=" + std::to_string(c) + " p=" + std::to_string(p);
        Vec x = random_vec(rng, b * c * p), bias = random_vec(rng, c);
        Vec yf = x, yr = x;
        add_channels_f32(b, c, p, yf.data(), bias.data());
        add_channels_f32__ref(b, c, p, yr.data(), bias.data());
        EXPECT_TRUE(all_close(yf, yr, kExact, "add_channels_f32 " + where));

        Vec out0 = random_vec(rng, c);
        Vec of = out0, orr = out0, o2 = out0;
        sum_channels_f32(b, c, p, of.data(), x.data());
        sum_channels_f32__ref(b, c, p, orr.data(), x.data());
        EXPECT_TRUE(all_close(of, orr, kFused, "sum_channels_f32 " + where));
        sum_channels_f32(b, c, p, o2.data(), x.data());
        EXPECT_TRUE(same_bits(of, o2)) << "sum_channels_f32 " << where << ": two calls differ";
      }
}

TEST(Reduce, SumIsDoubleAccurateAndDeterministic) {
  Rng rng(7);
  for (int64_t n : kSizes) {
    for (float offset : {0.0f, 1000.0f}) {  // offset: large terms, cancellation-free
      Vec x = random_vec(rng, n, -1, 1);
      double abs_sum = 0;
      for (auto& v : x) abs_sum += std::fabs(v += offset);
      const double f = sum_f32(n, x.data()), r = sum_f32__ref(n, x.data());
      EXPECT_TRUE(close_double(f, r, 1e-12 * abs_sum + 1e-300, at("sum_f32", n)));
      const double f2 = sum_f32(n, x.data());
      EXPECT_EQ(std::memcmp(&f, &f2, sizeof f), 0) << at("sum_f32", n) << ": two calls differ";
    }
  }
  // A float accumulator would lose the small terms: 1 + 2^20 * 2^-30.
  Vec x(1 << 20, 0x1p-30f);
  x[0] = 1.0f;
  EXPECT_EQ(sum_f32(static_cast<int64_t>(x.size()), x.data()), 1.0 + (x.size() - 1) * 0x1p-30);
}

TEST(Reduce, SwapOuter) {
  Rng rng(8);
  for (int64_t a : {0, 1, 3, 17, 40})
    for (int64_t b : {1, 2, 16, 33})
      for (int64_t p : {1, 2, 5, 16, 33, 576}) {
        Vec x = random_vec(rng, a * b * p);
        Vec yf(x.size(), kNaN), yr(x.size(), kNaN);
        swap_outer_f32(a, b, p, yf.data(), x.data());
        swap_outer_f32__ref(a, b, p, yr.data(), x.data());
        EXPECT_TRUE(all_close(yf, yr, kExact,
                              "swap_outer_f32 a=" + std::to_string(a) + " b=" + std::to_string(b) +
                                  " p=" + std::to_string(p)));
      }
}

// A block of rows into the matching columns of a wider y (strides), plain or
// accumulating; beta 0 must not read y (NaN there), and nothing outside the
// block's columns may change.
TEST(Reduce, TransposeWithStridesAndAccumulation) {
  Rng rng(9);
  for (int64_t rows : {0, 1, 7, 8, 9, 16, 60, 61})
    for (int64_t cols : {1, 3, 8, 10, 17, 100})
      for (float beta : {0.0f, 1.0f, -0.5f}) {
        const int64_t ldx = cols + 3, ldy = rows + 5, at_col = 2;  // y's block: columns [2, 2 + rows)
        Vec x = random_vec(rng, rows * ldx);
        Vec start = random_vec(rng, cols * ldy);
        if (beta == 0.0f)
          for (int64_t j = 0; j < cols; ++j)
            for (int64_t i = 0; i < rows; ++i) start[j * ldy + at_col + i] = kNaN;
        Vec yf = start, yr = start;
        transpose_f32(rows, cols, yf.data() + at_col, ldy, x.data(), ldx, beta);
        transpose_f32__ref(rows, cols, yr.data() + at_col, ldy, x.data(), ldx, beta);
        const std::string where = "transpose_f32 rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                                  " beta=" + std::to_string(beta);
        EXPECT_TRUE(all_close(yf, yr, beta == 0.0f ? kExact : kFused, where));
        for (int64_t j = 0; j < cols; ++j)
          for (int64_t i = 0; i < rows; ++i) {
            const float want = beta == 0.0f ? x[i * ldx + j] : x[i * ldx + j] + beta * start[j * ldy + at_col + i];
            ASSERT_NEAR(yf[j * ldy + at_col + i], want, 1e-6f) << where << " at " << i << "," << j;
          }
        for (int64_t k = 0; k < cols * ldy; ++k) {
          const int64_t col = k % ldy;
          if (col >= at_col && col < at_col + rows) continue;
          ASSERT_TRUE(same_bits(yf[k], start[k])) << where << " wrote " << k;
        }
      }
}

// ---- Convolution lowering ---------------------------------------------------------------

std::string describe(const Conv2dGeometry& g) {
  std::ostringstream os;
  os << "c=" << g.c << " " << g.h << "x" << g.w << " k=" << g.kh << "x" << g.kw
     << " stride=" << g.stride << " pad=" << g.pad << (g.circular ? " circular" : " zeros");
  return os.str();
}

std::vector<Conv2dGeometry> conv_geometries() {
  std::vector<Conv2dGeometry> out;
  const int64_t sizes[][2] = {{1, 1},  {2, 3},   {5, 5},   {7, 9},
                              {6, 11}, {28, 28}, {32, 32}, {14, 14}};
  for (int64_t c : {1, 3})
    for (const auto& hw : sizes)
      for (int64_t k : {1, 3, 5})
        for (int64_t stride : {1, 2})
          for (int64_t pad : {0, 1, 2})
            for (bool circular : {false, true}) {
              Conv2dGeometry g{.c = c,
                               .h = hw[0],
                               .w = hw[1],
                               .kh = k,
                               .kw = k,
                               .stride = stride,
                               .pad = pad,
                               .circular = circular};
              // (out_h() rounds toward zero, so it is >= 1 for some windows larger
              // than the padded image: those are not convolutions.)
              if (g.h + 2 * pad >= k && g.w + 2 * pad >= k) out.push_back(g);
            }
  // Non-square kernels, padding wider than the image (more wrapped runs than
  // the row plan holds) and a kernel wider than the planned width (16).
  out.push_back({.c = 2, .h = 9, .w = 8, .kh = 3, .kw = 1, .stride = 1, .pad = 1});
  out.push_back(
      {.c = 2, .h = 9, .w = 8, .kh = 1, .kw = 5, .stride = 2, .pad = 2, .circular = true});
  out.push_back(
      {.c = 1, .h = 1, .w = 1, .kh = 3, .kw = 3, .stride = 1, .pad = 5, .circular = true});
  out.push_back(
      {.c = 1, .h = 2, .w = 3, .kh = 3, .kw = 3, .stride = 1, .pad = 6, .circular = false});
  out.push_back(
      {.c = 2, .h = 3, .w = 2, .kh = 3, .kw = 3, .stride = 2, .pad = 7, .circular = true});
  out.push_back({.c = 1, .h = 20, .w = 21, .kh = 17, .kw = 17, .stride = 1, .pad = 1});
  out.push_back(
      {.c = 1, .h = 20, .w = 21, .kh = 17, .kw = 17, .stride = 2, .pad = 3, .circular = true});
  return out;
}

TEST(Conv, Im2colMatchesRefExactlyAndLeavesOtherColumnsAlone) {
  Rng rng(9);
  for (const auto& g : conv_geometries()) {
    const int64_t rows = g.c * g.kh * g.kw, p = g.out_h() * g.out_w();
    const int64_t col0 = 3, ld = col0 + p + 5;  // a slice of a batch-wide matrix
    Vec x = random_vec(rng, g.c * g.h * g.w);
    Vec cf(rows * ld, 7.5f), cr(rows * ld, 7.5f), c2(rows * ld, 7.5f);
    im2col_f32(g, cf.data(), ld, col0, x.data());
    im2col_f32__ref(g, cr.data(), ld, col0, x.data());
    EXPECT_TRUE(all_close(cf, cr, kExact, "im2col_f32 " + describe(g)));
    im2col_f32(g, c2.data(), ld, col0, x.data());
    EXPECT_TRUE(same_bits(cf, c2)) << "im2col_f32 " << describe(g) << ": two calls differ";
  }
}

TEST(Conv, Col2imAccumulatesAndMatchesRefExactly) {
  Rng rng(10);
  for (const auto& g : conv_geometries()) {
    const int64_t rows = g.c * g.kh * g.kw, p = g.out_h() * g.out_w();
    const int64_t col0 = 2, ld = col0 + p + 3;
    Vec dcols = random_vec(rng, rows * ld);
    Vec dx0 = random_vec(rng, g.c * g.h * g.w);
    Vec df = dx0, dr = dx0, d2 = dx0, inc(dx0.size(), 0.0f);
    col2im_f32(g, df.data(), dcols.data(), ld, col0);
    col2im_f32__ref(g, dr.data(), dcols.data(), ld, col0);
    EXPECT_TRUE(all_close(df, dr, kExact, "col2im_f32 " + describe(g)));
    col2im_f32(g, d2.data(), dcols.data(), ld, col0);
    EXPECT_TRUE(same_bits(df, d2)) << "col2im_f32 " << describe(g) << ": two calls differ";
    col2im_f32(g, inc.data(), dcols.data(), ld, col0);
    EXPECT_TRUE(accumulates(df, dx0, inc, "col2im_f32 " + describe(g), 1e-5));
  }
}

TEST(Conv, Col2imIsTheAdjointOfIm2col) {
  // <im2col(x), c> == <x, col2im(c)> for the fast pair, in double.
  Rng rng(11);
  for (const auto& g : conv_geometries()) {
    const int64_t rows = g.c * g.kh * g.kw, p = g.out_h() * g.out_w();
    Vec x = random_vec(rng, g.c * g.h * g.w), c = random_vec(rng, rows * p);
    Vec cols(rows * p), dx(x.size(), 0.0f);
    im2col_f32(g, cols.data(), p, 0, x.data());
    col2im_f32(g, dx.data(), c.data(), p, 0);
    double lhs = 0, rhs = 0, mag = 0;
    for (size_t i = 0; i < c.size(); ++i) lhs += static_cast<double>(cols[i]) * c[i];
    for (size_t i = 0; i < x.size(); ++i) {
      rhs += static_cast<double>(x[i]) * dx[i];
      mag += std::fabs(x[i] * dx[i]);
    }
    EXPECT_NEAR(lhs, rhs, 1e-5 * (mag + 1)) << describe(g);
  }
}

// ---- Pooling ----------------------------------------------------------------------------

std::string describe(const Pool2dGeometry& g) {
  std::ostringstream os;
  os << "c=" << g.c << " " << g.h << "x" << g.w << " k=" << g.k << " stride=" << g.stride;
  return os.str();
}

std::vector<Pool2dGeometry> pool_geometries() {
  std::vector<Pool2dGeometry> out;
  const int64_t sizes[][2] = {{2, 2}, {3, 3}, {5, 7}, {7, 5}, {9, 33}, {24, 24}, {28, 28}, {3, 65}};
  const int64_t windows[][2] = {{2, 2}, {3, 2}, {2, 1}, {3, 3}, {1, 1}};
  for (int64_t c : {1, 3})
    for (const auto& hw : sizes)
      for (const auto& ks : windows) {
        Pool2dGeometry g{.c = c, .h = hw[0], .w = hw[1], .k = ks[0], .stride = ks[1]};
        if (g.h >= g.k && g.w >= g.k) out.push_back(g);
      }
  return out;
}

TEST(Pool, MaxpoolMatchesRefExactlyIncludingTiesAndNaN) {
  Rng rng(12);
  for (const auto& g : pool_geometries())
    for (int variant = 0; variant < 3; ++variant) {
      const int64_t n = g.c * g.h * g.w, m = g.c * g.out_h() * g.out_w();
      Vec x = random_vec(rng, n, -1, 1);
      if (variant == 1) {  // few distinct values: many ties
        for (auto& v : x) v = std::floor(v * 2.0f);
      } else if (variant == 2) {  // -inf and NaN: ref keeps the top-left tap unless one beats -inf
        for (auto& v : x) {
          const float u = rng.uniform();
          v = u < 0.4f ? -kInf : u < 0.6f ? kNaN : v;
        }
      }
      const std::string where =
          "maxpool2d_f32 " + describe(g) + " variant " + std::to_string(variant);
      Vec yf(m, 1.0f), yr(m, 2.0f);
      std::vector<int32_t> af(m, -7), ar(m, -9);
      maxpool2d_f32(g, yf.data(), af.data(), x.data());
      maxpool2d_f32__ref(g, yr.data(), ar.data(), x.data());
      EXPECT_TRUE(all_close(yf, yr, kExact, where));
      for (int64_t i = 0; i < m; ++i) {
        ASSERT_EQ(af[i], ar[i]) << where << ": argmax at output " << i;
        ASSERT_TRUE(same_value(x[g.h * g.w * (i / (g.out_h() * g.out_w())) + af[i]], yf[i]))
            << where << ": y is not x[argmax] at output " << i;
      }

      // Backward from the same argmax, into a non-zero dx.
      Vec dy = random_vec(rng, m), dx0 = random_vec(rng, n);
      Vec df = dx0, dr = dx0;
      maxpool2d_backward_f32(g, df.data(), dy.data(), ar.data());
      maxpool2d_backward_f32__ref(g, dr.data(), dy.data(), ar.data());
      EXPECT_TRUE(all_close(df, dr, kExact, "maxpool2d_backward_f32 " + describe(g)));
      Vec inc(n, 0.0f);
      maxpool2d_backward_f32(g, inc.data(), dy.data(), ar.data());
      EXPECT_TRUE(accumulates(df, dx0, inc, "maxpool2d_backward_f32 " + describe(g), 1e-6));
    }
}

TEST(Pool, AvgpoolMatchesRef) {
  Rng rng(13);
  for (const auto& g : pool_geometries()) {
    const int64_t n = g.c * g.h * g.w, m = g.c * g.out_h() * g.out_w();
    Vec x = random_vec(rng, n);
    Vec yf(m, kNaN), yr(m, kNaN);
    avgpool2d_f32(g, yf.data(), x.data());
    avgpool2d_f32__ref(g, yr.data(), x.data());
    EXPECT_TRUE(all_close(yf, yr, kExact, "avgpool2d_f32 " + describe(g)));

    Vec dy = random_vec(rng, m), dx0 = random_vec(rng, n);
    Vec df = dx0, dr = dx0, inc(n, 0.0f);
    avgpool2d_backward_f32(g, df.data(), dy.data());
    avgpool2d_backward_f32__ref(g, dr.data(), dy.data());
    EXPECT_TRUE(all_close(df, dr, kExact, "avgpool2d_backward_f32 " + describe(g)));
    avgpool2d_backward_f32(g, inc.data(), dy.data());
    EXPECT_TRUE(accumulates(df, dx0, inc, "avgpool2d_backward_f32 " + describe(g), 1e-6));
  }
}

// ---- Losses -----------------------------------------------------------------------------

TEST(Loss, SoftmaxXentMatchesRef) {
  Rng rng(14);
  for (int64_t b : {1, 7, 60, 61})
    for (int64_t k : {1, 2, 10, 15, 16, 17, 33, 100})
      for (float spread : {1.0f, 3.0f, 30.0f}) {  // 30: confident rows, losses near 0
        const std::string where = "softmax_xent_f32 b=" + std::to_string(b) +
                                  " k=" + std::to_string(k) + " spread=" + std::to_string(spread);
        Vec logits = random_vec(rng, b * k, -spread, spread);
        std::vector<int32_t> labels(b);
        for (int64_t i = 0; i < b; ++i) {
          labels[i] = static_cast<int32_t>(rng.below(k));
          if (spread > 10 && i % 2 == 0) logits[i * k + labels[i]] = spread + 5;  // right and sure
        }
        Vec pf(b * k, kNaN), pr(b * k, kNaN), p2(b * k, kNaN);
        const double lf = softmax_xent_f32(b, k, pf.data(), logits.data(), labels.data());
        const double lr = softmax_xent_f32__ref(b, k, pr.data(), logits.data(), labels.data());
        EXPECT_TRUE(all_close(pf, pr, {1e-5, 1e-30}, where + " probs"));
        EXPECT_TRUE(close_double(lf, lr, 1e-5 * std::fabs(lr) + 1e-9, where + " loss"));
        const double l2 = softmax_xent_f32(b, k, p2.data(), logits.data(), labels.data());
        EXPECT_TRUE(same_bits(pf, p2) && std::memcmp(&lf, &l2, sizeof lf) == 0)
            << where << ": two calls differ";

        // Backward accumulates scale * (probs - onehot) into dlogits.
        const float scale = 1.0f / static_cast<float>(b);
        Vec dl0 = random_vec(rng, b * k, -0.1f, 0.1f);
        Vec df = dl0, dr = dl0, inc(b * k, 0.0f);
        softmax_xent_backward_f32(b, k, df.data(), pr.data(), labels.data(), scale);
        softmax_xent_backward_f32__ref(b, k, dr.data(), pr.data(), labels.data(), scale);
        EXPECT_TRUE(all_close(
            df, dr, kFused,
            "softmax_xent_backward_f32 b=" + std::to_string(b) + " k=" + std::to_string(k)));
        softmax_xent_backward_f32(b, k, inc.data(), pr.data(), labels.data(), scale);
        EXPECT_TRUE(accumulates(df, dl0, inc, "softmax_xent_backward_f32 " + where));
      }
}

TEST(Loss, BceLogitsMatchesRef) {
  Rng rng(15);
  std::vector<int64_t> sizes(std::begin(kSizes), std::end(kSizes));
  sizes.push_back(65536 + 3);
  for (int64_t n : sizes)
    for (bool binary_targets : {true, false}) {
      const std::string where =
          at("bce_logits_f32", n) + (binary_targets ? " t in {0,1}" : " t in [0,1]");
      Vec x = random_vec(rng, n, -8, 8), t(n);
      for (auto& v : t) v = binary_targets ? std::floor(rng.uniform() * 2.0f) : rng.uniform();
      const float far[] = {30.0f, -30.0f, 100.0f, -100.0f, 0.0f, 1e-6f};
      for (int64_t i = 0; i < n; i += 9) x[i] = far[(i / 9) % std::size(far)];
      const double lf = bce_logits_f32(n, x.data(), t.data());
      const double lr = bce_logits_f32__ref(n, x.data(), t.data());
      EXPECT_TRUE(close_double(lf, lr, 1e-6 * std::fabs(lr) + 1e-9, where));
      const double l2 = bce_logits_f32(n, x.data(), t.data());
      EXPECT_EQ(std::memcmp(&lf, &l2, sizeof lf), 0) << where << ": two calls differ";

      const float scale = 1.0f / static_cast<float>(n > 0 ? n : 1);
      Vec dl0 = random_vec(rng, n, -1e-3f, 1e-3f);
      Vec df = dl0, dr = dl0, inc(n, 0.0f);
      bce_logits_backward_f32(n, df.data(), x.data(), t.data(), scale);
      bce_logits_backward_f32__ref(n, dr.data(), x.data(), t.data(), scale);
      // Absolute slack: sigmoid's 2e-7 relative error, times scale.
      EXPECT_TRUE(all_close(df, dr, {1e-5, 1e-6 * scale}, at("bce_logits_backward_f32", n)));
      bce_logits_backward_f32(n, inc.data(), x.data(), t.data(), scale);
      EXPECT_TRUE(accumulates(df, dl0, inc, at("bce_logits_backward_f32", n)));

      // Loss and sigmoid(x) - t in one pass; dsig is overwritten (starts NaN).
      Vec gf(n, std::numeric_limits<float>::quiet_NaN()), gr(n);
      const double lg = bce_logits_grad_f32(n, gf.data(), x.data(), t.data());
      const double lgr = bce_logits_grad_f32__ref(n, gr.data(), x.data(), t.data());
      EXPECT_TRUE(close_double(lg, lgr, 1e-6 * std::fabs(lgr) + 1e-9, at("bce_logits_grad_f32", n)));
      EXPECT_TRUE(close_double(lgr, lr, 1e-12 * std::fabs(lr) + 1e-12, at("bce_logits_grad_f32__ref", n)));
      EXPECT_TRUE(all_close(gf, gr, {1e-5, 1e-6}, at("bce_logits_grad_f32", n)));
      Vec g2(n);
      const double lg2 = bce_logits_grad_f32(n, g2.data(), x.data(), t.data());
      EXPECT_EQ(std::memcmp(&lg, &lg2, sizeof lg), 0) << where << ": two calls differ";
      EXPECT_TRUE(same_bits(gf, g2)) << where;
    }
}

TEST(Loss, SqDiffSumMatchesRef) {
  Rng rng(16);
  for (int64_t n : kSizes) {
    Vec a = random_vec(rng, n, -3, 3), b = random_vec(rng, n, -3, 3);
    const double f = sq_diff_sum_f32(n, a.data(), b.data());
    const double r = sq_diff_sum_f32__ref(n, a.data(), b.data());
    EXPECT_TRUE(close_double(f, r, 1e-12 * r + 1e-300, at("sq_diff_sum_f32", n)));
    const double f2 = sq_diff_sum_f32(n, a.data(), b.data());
    EXPECT_EQ(std::memcmp(&f, &f2, sizeof f), 0) << at("sq_diff_sum_f32", n);
  }
}

// ---- Optimizers -------------------------------------------------------------------------

Vec random_mask(Rng& rng, int64_t n) {
  Vec m(n);
  for (auto& v : m) v = rng.uniform() < 0.3f ? 0.0f : 1.0f;
  return m;
}

TEST(Optim, AdamMatchesRefOverSeveralSteps) {
  struct Case {
    const char* name;
    AdamParams p;
  };
  std::vector<Case> cases = {
      {"adam t=1", {.bias_correction1 = 0.1f, .bias_correction2 = 0.001f}},
      {"adam t=1000 lr=1.2e-3",
       {.lr = 1.2e-3f, .bias_correction1 = 1.0f, .bias_correction2 = 0.63f}},
      {"adam l2 decay",
       {.weight_decay = 0.01f, .bias_correction1 = 0.19f, .bias_correction2 = 0.002f}},
      {"adamw",
       {.lr = 3e-3f,
        .weight_decay = 0.05f,
        .decoupled = true,
        .bias_correction1 = 0.5f,
        .bias_correction2 = 0.05f}},
  };
  Rng rng(17);
  for (const auto& c : cases)
    for (int64_t n : kSizes)
      for (bool masked : {false, true}) {
        const std::string where =
            std::string(c.name) + " n=" + std::to_string(n) + (masked ? " masked" : " dense");
        Vec mask = random_mask(rng, n);
        const float* mk = masked ? mask.data() : nullptr;
        Vec w = random_vec(rng, n), m = random_vec(rng, n, -0.1f, 0.1f),
            v = random_vec(rng, n, 0.0f, 0.01f);
        Vec wf = w, mf = m, vf = v, wr = w, mr = m, vr = v;
        for (int step = 0; step < 3; ++step) {
          Vec g = random_vec(rng, n, -1, 1);
          adam_f32(n, wf.data(), mf.data(), vf.data(), g.data(), mk, c.p);
          adam_f32__ref(n, wr.data(), mr.data(), vr.data(), g.data(), mk, c.p);
        }
        EXPECT_TRUE(all_close(wf, wr, kOptim, where + " w"));
        EXPECT_TRUE(all_close(mf, mr, kOptim, where + " m"));
        EXPECT_TRUE(all_close(vf, vr, kOptim, where + " v"));
        for (int64_t i = 0; masked && i < n; ++i) {
          if (mask[i] == 0.0f) {
            ASSERT_TRUE(wf[i] == 0.0f && mf[i] == 0.0f && vf[i] == 0.0f)
                << where << ": masked entry " << i << " is not zero";
          }
        }
        // Same inputs, same bits.
        Vec g = random_vec(rng, n), w2 = wf, m2 = mf, v2 = vf;
        adam_f32(n, wf.data(), mf.data(), vf.data(), g.data(), mk, c.p);
        adam_f32(n, w2.data(), m2.data(), v2.data(), g.data(), mk, c.p);
        EXPECT_TRUE(same_bits(wf, w2) && same_bits(mf, m2) && same_bits(vf, v2)) << where;
      }
}

TEST(Optim, SgdMatchesRef) {
  struct Case {
    const char* name;
    SgdParams p;
  };
  std::vector<Case> cases = {
      {"sgd plain", {.lr = 0.1f}},
      {"sgd decay", {.lr = 0.05f, .weight_decay = 5e-4f}},
      {"sgd momentum first step", {.lr = 0.1f, .momentum = 0.9f, .first_step = true}},
      {"sgd momentum dampening",
       {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 1e-3f}},
      {"sgd nesterov", {.lr = 0.02f, .momentum = 0.8f, .nesterov = true}},
  };
  Rng rng(18);
  for (const auto& c : cases)
    for (int64_t n : kSizes)
      for (bool masked : {false, true}) {
        const std::string where =
            std::string(c.name) + " n=" + std::to_string(n) + (masked ? " masked" : " dense");
        Vec mask = random_mask(rng, n), w = random_vec(rng, n), buf = random_vec(rng, n);
        const float* mk = masked ? mask.data() : nullptr;
        Vec wf = w, bf = buf, wr = w, br = buf;
        for (int step = 0; step < 3; ++step) {
          Vec g = random_vec(rng, n);
          sgd_f32(n, wf.data(), bf.data(), g.data(), mk, c.p);
          sgd_f32__ref(n, wr.data(), br.data(), g.data(), mk, c.p);
        }
        EXPECT_TRUE(all_close(wf, wr, kOptim, where + " w"));
        EXPECT_TRUE(all_close(bf, br, kOptim, where + " buf"));
        if (c.p.momentum == 0.0f) {
          EXPECT_TRUE(same_bits(bf, buf)) << where << ": buf touched";
        }
      }
}

// ---- GEMM (OpenBLAS) against the reference ----------------------------------------------

TEST(Gemm, BlasMatchesRefForAllTransposesBetasAndStrides) {
  const int64_t shapes[][3] = {{1, 1, 1},     {3, 5, 7},    {17, 33, 15}, {16, 16, 16},
                               {1, 17, 1000}, {60, 10, 84}, {65, 31, 63}, {4, 3, 0}};
  Rng rng(19);
  for (const auto& s : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 1.0f})
          for (float alpha : {1.0f, -0.5f}) {
            const int64_t m = s[0], n = s[1], k = s[2];
            std::ostringstream os;
            os << "gemm m=" << m << " n=" << n << " k=" << k << (ta ? " A^T" : " A")
               << (tb ? " B^T" : " B") << " alpha=" << alpha << " beta=" << beta;
            const std::string where = os.str();
            // Stored shapes with leading dimensions wider than the rows.
            const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, lda = a_cols + 3;
            const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n, ldb = b_cols + 2;
            const int64_t ldc = n + 5;
            Vec a = random_vec(rng, a_rows * lda), b = random_vec(rng, b_rows * ldb);
            Vec c0 = random_vec(rng, m * ldc);
            if (beta == 0.0f)  // C must be overwritten, never read
              for (int64_t i = 0; i < m; ++i)
                for (int64_t j = 0; j < n; ++j) c0[i * ldc + j] = kNaN;
            GemmParams p{.trans_a = ta, .trans_b = tb, .alpha = alpha, .beta = beta};
            Vec cf = c0, cr = c0;
            gemm_f32__blas(m, n, k, cf.data(), ldc, a.data(), lda, b.data(), ldb, p);
            gemm_f32__ref(m, n, k, cr.data(), ldc, a.data(), lda, b.data(), ldb, p);
            // Error bound from the magnitudes: |alpha| sum |a||b| + |beta c|.
            Vec abs_a(a.size()), abs_b(b.size()), mag(m * ldc, 0.0f);
            for (size_t i = 0; i < a.size(); ++i) abs_a[i] = std::fabs(a[i]);
            for (size_t i = 0; i < b.size(); ++i) abs_b[i] = std::fabs(b[i]);
            gemm_f32__ref(m, n, k, mag.data(), ldc, abs_a.data(), lda, abs_b.data(), ldb,
                          {.trans_a = ta, .trans_b = tb, .alpha = std::fabs(alpha), .beta = 0.0f});
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < ldc; ++j) {
                const int64_t q = i * ldc + j;
                if (j >= n) {  // padding columns are not C's
                  ASSERT_TRUE(same_bits(cf[q], c0[q]))
                      << where << ": wrote outside C at (" << i << ", " << j << ")";
                  continue;
                }
                ASSERT_TRUE(std::isfinite(cf[q]))
                    << where << ": C(" << i << ", " << j << ") = " << cf[q];
                const double bound =
                    1e-5 * (mag[q] + (beta != 0.0f ? std::fabs(c0[q]) : 0.0)) + 1e-30;
                ASSERT_NEAR(cf[q], cr[q], bound) << where << " at C(" << i << ", " << j << ")";
              }
          }
}

}  // namespace
}  // namespace pare::kernels
