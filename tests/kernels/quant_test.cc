// int8 kernels (src/kernels/quant.h): every integer output of the fast variant
// is compared bit for bit with the reference (and every float output too: the
// contract fixes each rounding), over edge shapes around the vector widths (16
// floats, 64 bytes of k, 4x4 tiles, 64-column sparse blocks): 1, odd, multiples
// and one off them, k = 1 and k = 2^16 at the extremes of the int32 bound.
// The references are checked in turn against independent computations:
// rounding ties (half to even), saturation at both ends, NaN and infinities,
// all-zero rows, the zero-point correction against a double-precision sum of
// (x - zx) w, the sparse products against the dense one, and the dequantized
// product against the float product within the quantization error bound.
#include "pare/kernels/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "pare/base/rng.h"
#include "pare/kernels/sparse.h"

namespace pare::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
const int64_t kSizes[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 784};

std::vector<float> random_floats(Rng& rng, int64_t n, float lo, float hi) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}
template <class T>
std::vector<T> random_ints(Rng& rng, int64_t n, int lo, int hi) {
  std::vector<T> v(static_cast<size_t>(n));
  // In 64 bits: hi - lo of the int32 range overflows int.
  for (auto& x : v) x = static_cast<T>(int64_t{lo} + static_cast<int64_t>(rng.below(uint64_t(int64_t{hi} - lo + 1))));
  return v;
}
template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

TEST(QuantTest, WeightsPerChannelFastMatchesRefAndScheme) {
  Rng rng(1);
  for (int64_t rows : {1, 3, 17})
    for (int64_t cols : kSizes) {
      if (cols == 0) continue;
      std::vector<float> w = random_floats(rng, rows * cols, -2.0f, 2.0f);
      for (int64_t j = 0; j < cols; ++j) w[j] = 0.0f;  // row 0 all zero
      std::vector<int8_t> q(w.size()), q2(w.size());
      std::vector<float> s(rows), s2(rows), back(w.size()), back2(w.size());
      quantize_weights_per_channel_s8__ref(rows, cols, q.data(), s.data(), w.data());
      quantize_weights_per_channel_s8(rows, cols, q2.data(), s2.data(), w.data());
      ASSERT_TRUE(same_bytes(q, q2)) << rows << "x" << cols;
      ASSERT_TRUE(same_bytes(s, s2)) << rows << "x" << cols;
      dequantize_weights_per_channel_s8__ref(rows, cols, back.data(), q.data(), s.data());
      dequantize_weights_per_channel_s8(rows, cols, back2.data(), q.data(), s.data());
      ASSERT_TRUE(same_bytes(back, back2));
      EXPECT_EQ(s[0], 1.0f);
      for (int64_t j = 0; j < cols; ++j) EXPECT_EQ(q[j], 0);
      for (int64_t r = 1; r < rows; ++r) {
        float amax = 0;
        int hit = 0;
        for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(w[r * cols + j]));
        EXPECT_EQ(s[r], amax / 127.0f);
        for (int64_t j = 0; j < cols; ++j) {
          const int v = q[r * cols + j];
          ASSERT_LE(std::abs(v), 127);
          hit += std::abs(v) == 127;
          EXPECT_LE(std::fabs(back[r * cols + j] - w[r * cols + j]), 0.5f * s[r] * 1.0001f);
        }
        EXPECT_GE(hit, 1);  // the largest |w| maps to +-127
      }
    }
}

TEST(QuantTest, WeightTiesRoundHalfToEven) {
  // max |w| = 127 gives scale 1, so w = j + 0.5 are exact ties.
  std::vector<float> w = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 3.49f};
  const int8_t want[] = {127, 0, 2, 2, 0, -2, -2, 126, -126, 3};
  const int64_t n = static_cast<int64_t>(w.size());
  for (auto fn : {quantize_weights_per_channel_s8__ref, quantize_weights_per_channel_s8}) {
    std::vector<int8_t> q(w.size());
    float s;
    fn(1, n, q.data(), &s, w.data());
    EXPECT_EQ(s, 1.0f);
    for (int64_t j = 0; j < n; ++j) EXPECT_EQ(q[j], want[j]) << j;
  }
}

TEST(QuantTest, PerTensorTiesSaturationAndNaN) {
  // scale 0.5: x = 0.25 (2j + 1) are ties at j + 0.5.
  const std::vector<float> x = {0.25f, 0.75f, 1.25f, -0.25f, -0.75f, -1.25f, 1e9f, -1e9f,
                                kInf,  -kInf, kNaN,  63.75f, -64.25f, 0.0f, -0.0f, 200.0f};
  const int32_t zp_u8 = 100, zp_s8 = -3;
  for (int rep = 0; rep < 5; ++rep) {  // pad past the vector width so ties hit body and tail
    std::vector<float> xs;
    for (int r = 0; r <= rep; ++r) xs.insert(xs.end(), x.begin(), x.end());
    xs.resize(xs.size() - static_cast<size_t>(rep));
    const int64_t n = static_cast<int64_t>(xs.size());
    std::vector<uint8_t> u(n), u2(n);
    std::vector<int8_t> s(n), s2(n);
    quantize_per_tensor_u8__ref(n, u.data(), xs.data(), 0.5f, zp_u8);
    quantize_per_tensor_u8(n, u2.data(), xs.data(), 0.5f, zp_u8);
    quantize_per_tensor_s8__ref(n, s.data(), xs.data(), 0.5f, zp_s8);
    quantize_per_tensor_s8(n, s2.data(), xs.data(), 0.5f, zp_s8);
    ASSERT_TRUE(same_bytes(u, u2));
    ASSERT_TRUE(same_bytes(s, s2));
    for (int64_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(xs[i]) / 0.5;
      double r = std::nearbyint(v);  // default mode: half to even
      double ue = std::isnan(v) ? 0 : std::clamp(r + zp_u8, 0.0, 255.0);
      double se = std::isnan(v) ? -128 : std::clamp(r + zp_s8, -128.0, 127.0);
      EXPECT_EQ(u[i], static_cast<int>(ue)) << "x = " << xs[i];
      EXPECT_EQ(s[i], static_cast<int>(se)) << "x = " << xs[i];
    }
  }
  EXPECT_EQ(std::nearbyint(0.5), 0.0);  // the test's own oracle rounds to even
}

TEST(QuantTest, PerTensorRandomFastMatchesRefAndDequantize) {
  Rng rng(2);
  for (int64_t n : kSizes) {
    std::vector<float> x = random_floats(rng, n, -3.0f, 5.0f);
    std::vector<uint8_t> u(n), u2(n);
    std::vector<int8_t> s(n), s2(n);
    quantize_per_tensor_u8__ref(n, u.data(), x.data(), 0.03f, 91);
    quantize_per_tensor_u8(n, u2.data(), x.data(), 0.03f, 91);
    quantize_per_tensor_s8__ref(n, s.data(), x.data(), 0.03f, -37);
    quantize_per_tensor_s8(n, s2.data(), x.data(), 0.03f, -37);
    ASSERT_TRUE(same_bytes(u, u2)) << n;
    ASSERT_TRUE(same_bytes(s, s2)) << n;
    std::vector<float> d(n), d2(n), e(n), e2(n);
    dequantize_u8_f32__ref(n, d.data(), u.data(), 0.03f, 91);
    dequantize_u8_f32(n, d2.data(), u.data(), 0.03f, 91);
    dequantize_s8_f32__ref(n, e.data(), s.data(), 0.03f, -37);
    dequantize_s8_f32(n, e2.data(), s.data(), 0.03f, -37);
    ASSERT_TRUE(same_bytes(d, d2));
    ASSERT_TRUE(same_bytes(e, e2));
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(d[i], static_cast<float>(u[i] - 91) * 0.03f);
      // within half a step where not saturated (u8 covers [-2.73, 4.92])
      if (x[i] > -2.7f && x[i] < 4.9f) {
        EXPECT_LE(std::fabs(d[i] - x[i]), 0.0151f);
      }
    }
  }
}

struct Gemm {
  int64_t m, n, k, ldx, ldw, ldacc;
  std::vector<uint8_t> x;
  std::vector<int8_t> w;
  std::vector<int32_t> sums;
};

// Runs both variants, checks bit-equality and the reference against a double sum.
void check_gemm(const Gemm& g, int32_t zx) {
  std::vector<int32_t> a(g.m * g.ldacc, -7), a2(g.m * g.ldacc, -7);
  qgemm_u8s8_s32__ref(g.m, g.n, g.k, a.data(), g.ldacc, g.x.data(), g.ldx, g.w.data(), g.ldw,
                      g.sums.data(), zx);
  qgemm_u8s8_s32(g.m, g.n, g.k, a2.data(), g.ldacc, g.x.data(), g.ldx, g.w.data(), g.ldw,
                 g.sums.data(), zx);
  ASSERT_TRUE(same_bytes(a, a2)) << g.m << "x" << g.n << "x" << g.k << " zx " << zx;
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < g.k; ++l)
        s += (static_cast<double>(g.x[i * g.ldx + l]) - zx) * g.w[j * g.ldw + l];
      ASSERT_EQ(a[i * g.ldacc + j], static_cast<int32_t>(s)) << i << "," << j;
    }
  for (int64_t i = 0; i < g.m; ++i)  // padding untouched
    for (int64_t j = g.n; j < g.ldacc; ++j) ASSERT_EQ(a2[i * g.ldacc + j], -7);
}

Gemm make_gemm(Rng& rng, int64_t m, int64_t n, int64_t k, int pad) {
  Gemm g{m, n, k, k + pad, k + 2 * pad, n + pad, {}, {}, {}};
  g.x = random_ints<uint8_t>(rng, m * g.ldx, 0, 255);
  g.w = random_ints<int8_t>(rng, n * g.ldw, -128, 127);
  g.sums.resize(n);
  sum_rows_s8__ref(n, k, g.sums.data(), g.w.data(), g.ldw);
  std::vector<int32_t> s2(n);
  sum_rows_s8(n, k, s2.data(), g.w.data(), g.ldw);
  EXPECT_TRUE(same_bytes(g.sums, s2));
  return g;
}

TEST(QuantTest, QgemmEdgeShapes) {
  Rng rng(3);
  for (int64_t m : {1, 2, 3, 4, 5, 7, 9})
    for (int64_t n : {1, 3, 4, 5, 8, 9, 17})
      for (int64_t k : {1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 784})
        for (int pad : {0, 5}) {
          Gemm g = make_gemm(rng, m, n, k, pad);
          for (int32_t zx : {0, 1, 128, 255}) check_gemm(g, zx);
        }
}

TEST(QuantTest, QgemmLargeKAtTheInt32Bound) {
  // k = 2^16 with every product at its extreme: |sum| = 255 * 128 * 2^16 < 2^31.
  const int64_t k = 65536;
  Rng rng(4);
  for (int8_t wv : {int8_t{-128}, int8_t{127}})
    for (int32_t zx : {0, 255}) {
      Gemm g{2, 5, k, k, k, 5, std::vector<uint8_t>(2 * k, 255), std::vector<int8_t>(5 * k, wv),
             std::vector<int32_t>(5)};
      for (int64_t l = 0; l < k; ++l) g.x[k + l] = 0;  // second row all zero
      sum_rows_s8(5, k, g.sums.data(), g.w.data(), k);
      check_gemm(g, zx);
    }
  Gemm g = make_gemm(rng, 3, 6, k + 1, 0);
  check_gemm(g, 77);
}

TEST(QuantTest, RequantizeTiesSaturationRelu) {
  Rng rng(5);
  for (int64_t m : {1, 3})
    for (int64_t n : kSizes) {
      if (n == 0) continue;
      std::vector<int32_t> acc = random_ints<int32_t>(rng, m * n, -100000, 100000);
      std::vector<int32_t> bias = random_ints<int32_t>(rng, n, -5000, 5000);
      std::vector<float> mult = random_floats(rng, n, 1e-4f, 3e-3f);
      mult[0] = 0.5f;  // exact ties for odd acc + bias
      acc[m * n - 1] = -2'000'000'000;
      acc[0] = 2'000'000'000;  // (the same entry when m * n == 1)
      for (bool relu : {false, true})
        for (bool with_bias : {false, true}) {
          const RequantParams p{.multiplier = mult.data(), .zero_point = 60, .relu = relu};
          const int32_t* b = with_bias ? bias.data() : nullptr;
          std::vector<uint8_t> y(m * n), y2(m * n);
          requantize_s32_to_u8__ref(m, n, y.data(), n, acc.data(), n, b, p);
          requantize_s32_to_u8(m, n, y2.data(), n, acc.data(), n, b, p);
          ASSERT_TRUE(same_bytes(y, y2)) << m << "x" << n;
          EXPECT_EQ(y[0], 255);
          if (n > 1 || m > 1) {
            EXPECT_EQ(y[m * n - 1], relu ? 60 : 0);
          }
          for (int64_t i = 0; i < m; ++i) {  // column 0: multiplier 0.5, exact in double
            const int64_t t = static_cast<int64_t>(acc[i * n]) + (b ? b[0] : 0);
            const double lo = relu ? 60 : 0;
            const double want = std::clamp(std::nearbyint(0.5 * static_cast<double>(static_cast<float>(t))) + 60, lo, 255.0);
            EXPECT_EQ(y[i * n], static_cast<int>(want)) << "acc + bias = " << t;
          }
        }
    }
  // explicit ties: (acc + bias) * 0.5 = k + 0.5
  std::vector<int32_t> acc = {1, 3, 5, -1, -3, -5, -119, -121};
  const uint8_t want[] = {60, 62, 62, 60, 58, 58, 0, 0};  // -59.5 -> -60 -> 0; -60.5 -> -60 -> 0
  std::vector<float> mult(8, 0.5f);
  std::vector<uint8_t> y(8);
  requantize_s32_to_u8(1, 8, y.data(), 8, acc.data(), 8, nullptr, {.multiplier = mult.data(), .zero_point = 60});
  for (int j = 0; j < 8; ++j) EXPECT_EQ(y[j], want[j]) << j;
}

TEST(QuantTest, DequantizeAccFastMatchesRef) {
  Rng rng(6);
  for (int64_t n : kSizes) {
    if (n == 0) continue;
    std::vector<int32_t> acc = random_ints<int32_t>(rng, 2 * n, -2'000'000'000, 2'000'000'000);
    std::vector<float> ws = random_floats(rng, n, 1e-4f, 1e-2f), bias = random_floats(rng, n, -1, 1);
    for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
      std::vector<float> y(2 * n), y2(2 * n);
      dequantize_s32_to_f32__ref(2, n, y.data(), n, acc.data(), n, ws.data(), 0.02f, b);
      dequantize_s32_to_f32(2, n, y2.data(), n, acc.data(), n, ws.data(), 0.02f, b);
      ASSERT_TRUE(same_bytes(y, y2)) << n;
    }
  }
}

// Float x (m, k), w (n, k), bias: quantize, integer product, dequantize; the
// result within the quantization error bound of the exact float product.
TEST(QuantTest, DequantizedProductWithinQuantizationBound) {
  Rng rng(7);
  for (int64_t m : {1, 5, 60})
    for (int64_t n : {1, 10, 33})
      for (int64_t k : {1, 17, 300, 784}) {
        std::vector<float> x = random_floats(rng, m * k, -0.4f, 2.8f);  // asymmetric range
        std::vector<float> w = random_floats(rng, n * k, -0.3f, 0.3f);
        std::vector<float> bias = random_floats(rng, n, -0.1f, 0.1f);
        const float lo = -0.4f, hi = 2.8f, sx = (hi - lo) / 255.0f;
        const int32_t zx = static_cast<int32_t>(std::nearbyint(-lo / sx));
        std::vector<uint8_t> xq(m * k);
        std::vector<int8_t> wq(n * k);
        std::vector<float> sw(n), y(m * n);
        std::vector<int32_t> sums(n), acc(m * n);
        quantize_per_tensor_u8(m * k, xq.data(), x.data(), sx, zx);
        quantize_weights_per_channel_s8(n, k, wq.data(), sw.data(), w.data());
        sum_rows_s8(n, k, sums.data(), wq.data(), k);
        qgemm_u8s8_s32(m, n, k, acc.data(), n, xq.data(), k, wq.data(), k, sums.data(), zx);
        dequantize_s32_to_f32(m, n, y.data(), n, acc.data(), n, sw.data(), sx, bias.data());
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double exact = bias[j], fq = bias[j], bound = 0;
            for (int64_t l = 0; l < k; ++l) {
              const double xv = x[i * k + l], wv = w[j * k + l];
              exact += xv * wv;
              fq += (static_cast<double>(xq[i * k + l]) - zx) * sx * (wq[j * k + l] * static_cast<double>(sw[j]));
              bound += std::fabs(xv) * sw[j] / 2 + std::fabs(wv) * sx / 2 + sx * sw[j] / 4;
            }
            const double got = y[i * n + j];
            // the fake-quant value in double: only float rounding of the output stage apart
            ASSERT_NEAR(got, fq, 4e-7 * (std::fabs(fq) + std::fabs(bias[j])) + 1e-6) << i << "," << j;
            ASSERT_LE(std::fabs(got - exact), bound * 1.001 + 1e-6) << i << "," << j << " k " << k;
          }
      }
}

// ---- Sparse -----------------------------------------------------------------------------
TEST(QuantTest, SparseMatchesDenseAndFastMatchesRef) {
  Rng rng(8);
  for (int64_t rows : {1, 5, 17})
    for (int64_t cols : {1, 3, 4, 5, 7, 8, 17, 300, 784})
      for (double density : {0.0, 0.1, 0.5, 1.0}) {
        std::vector<int8_t> q = random_ints<int8_t>(rng, rows * cols, -128, 127);
        std::vector<float> mask(rows * cols);
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j)
            mask[i * cols + j] = (rng.uniform() < density && i % 3 != 1) ? 1.0f : 0.0f;
        if (rows > 2 && cols > 3 && density > 0)  // last columns exercise the gather guard
          for (int64_t j = cols - 3; j < cols; ++j) mask[2 * cols + j] = 1.0f;
        const int64_t nnz = csr_nnz_f32(rows, cols, mask.data(), cols);
        std::vector<int32_t> rp(rows + 1), ci(nnz);
        std::vector<int8_t> vals(nnz), dense(rows * cols), rebuilt(rows * cols, 0);
        csr_from_dense_s8(rows, cols, rp.data(), ci.data(), vals.data(), q.data(), cols, mask.data(), cols);
        for (int64_t i = 0; i < rows * cols; ++i) dense[i] = mask[i] > 0 ? q[i] : 0;
        // The CSR holds exactly the kept entries, columns increasing in each row.
        ASSERT_EQ(rp[0], 0);
        ASSERT_EQ(rp[rows], nnz);
        for (int64_t i = 0; i < rows; ++i)
          for (int32_t p = rp[i]; p < rp[i + 1]; ++p) {
            ASSERT_TRUE(p == rp[i] || ci[p] > ci[p - 1]);
            ASSERT_GT(mask[i * cols + ci[p]], 0.0f);
            rebuilt[i * cols + ci[p]] = vals[p];
          }
        ASSERT_TRUE(same_bytes(rebuilt, dense));
        const CsrS8 w{rows, cols, rp.data(), ci.data(), vals.data()};
        std::vector<int32_t> sums(rows), sums2(rows), dsums(rows);
        csr_row_sums_s8__ref(sums.data(), w);
        csr_row_sums_s8(sums2.data(), w);
        sum_rows_s8__ref(rows, cols, dsums.data(), dense.data(), cols);
        ASSERT_TRUE(same_bytes(sums, sums2) && same_bytes(sums, dsums));
        for (int64_t n : {1, 2, 15, 16, 17, 60, 64, 65, 130})
          for (int32_t zx : {0, 200}) {
            std::vector<uint8_t> xb = random_ints<uint8_t>(rng, n * cols, 0, 255);  // batch-major (n, cols)
            std::vector<uint8_t> xf(cols * (n + 3));                                  // feature-major, padded
            for (int64_t b = 0; b < n; ++b)
              for (int64_t c = 0; c < cols; ++c) xf[c * (n + 3) + b] = xb[b * cols + c];
            std::vector<int32_t> want(n * rows);
            qgemm_u8s8_s32__ref(n, rows, cols, want.data(), rows, xb.data(), cols, dense.data(), cols, dsums.data(), zx);
            std::vector<int32_t> a(rows * (n + 2), -7), a2(rows * (n + 2), -7);
            spmm_u8s8_s32__ref(n, a.data(), n + 2, w, xf.data(), n + 3, sums.data(), zx);
            spmm_u8s8_s32(n, a2.data(), n + 2, w, xf.data(), n + 3, sums.data(), zx);
            ASSERT_TRUE(same_bytes(a, a2)) << rows << "x" << cols << " d " << density << " n " << n;
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t b = 0; b < n; ++b) ASSERT_EQ(a[r * (n + 2) + b], want[b * rows + r]);
            std::vector<int32_t> v(rows), v2(rows);
            spmv_u8s8_s32__ref(v.data(), w, xb.data(), sums.data(), zx);
            spmv_u8s8_s32(v2.data(), w, xb.data(), sums.data(), zx);
            ASSERT_TRUE(same_bytes(v, v2)) << rows << "x" << cols << " d " << density;
            for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(v[r], want[r]);
          }
      }
}

// im2col_u8: fast equals ref byte for byte over geometries with zero and
// circular padding (wider than the image too), strides and 1x1 kernels, at a
// column offset in a wider matrix; and the ref equals the float im2col of the
// same image, with the pad value where im2col puts zeros.
TEST(QuantTest, Im2colMatchesRefAndFloatIm2col) {
  Rng rng(21);
  struct G { int64_t c, h, w, k, stride, pad; bool circular; };
  const G geoms[] = {{1, 28, 28, 5, 1, 2, false}, {6, 12, 12, 5, 1, 0, false},
                     {2, 8, 8, 3, 1, 1, true},    {3, 7, 5, 3, 2, 1, false},
                     {2, 4, 4, 3, 1, 5, true},    {4, 6, 6, 1, 1, 0, false},
                     {1, 3, 3, 3, 2, 2, false},   {2, 5, 9, 2, 3, 1, true},
                     {1, 6, 7, 3, 2, 4, false},   {2, 9, 4, 4, 3, 3, true}};
  for (const G& s : geoms) {
    const Conv2dGeometry g{.c = s.c, .h = s.h, .w = s.w, .kh = s.k, .kw = s.k,
                           .stride = s.stride, .pad = s.pad, .circular = s.circular};
    const int64_t p = g.out_h() * g.out_w(), k = s.c * s.k * s.k, col0 = 3, ld = col0 + p + 2;
    const std::vector<uint8_t> x = random_ints<uint8_t>(rng, s.c * s.h * s.w, 0, 255);
    const uint8_t pad = 77;
    std::vector<uint8_t> a(static_cast<size_t>(k * ld), 9), b(a.size(), 9);
    im2col_u8__ref(g, a.data(), ld, col0, x.data(), pad);
    im2col_u8(g, b.data(), ld, col0, x.data(), pad);
    ASSERT_TRUE(same_bytes(a, b)) << s.c << " " << s.h << "x" << s.w << " k" << s.k << " s" << s.stride
                                  << " p" << s.pad << (s.circular ? " circular" : "");
    // The float lowering of x + 1 (so that a real 0 is never confused with padding).
    std::vector<float> xf(x.size()), cols(static_cast<size_t>(k * p));
    for (size_t i = 0; i < x.size(); ++i) xf[i] = x[i] + 1.0f;
    im2col_f32__ref(g, cols.data(), p, 0, xf.data());
    for (int64_t r = 0; r < k; ++r) {
      for (int64_t j = 0; j < ld; ++j) {
        const uint8_t got = a[static_cast<size_t>(r * ld + j)];
        if (j < col0 || j >= col0 + p) {
          ASSERT_EQ(got, 9);  // outside the columns: untouched
          continue;
        }
        const float f = cols[static_cast<size_t>(r * p + j - col0)];
        ASSERT_EQ(got, f == 0.0f ? pad : static_cast<int>(f) - 1) << r << "," << j;
      }
    }
  }
}

// pack_k4_u8 and qgemm_s8u8k4_s32: fast equals ref bit for bit over k around
// whole quads (1, 3, 4, 5, 25, 150), n around the 16- and 64-column blocks, with
// and without a zero point; the ref equals an int64 sum of (x - zx) w over the
// unpacked x, and the packed tail is zero.
TEST(QuantTest, Qgemm4MatchesRefAndTheUnpackedProduct) {
  Rng rng(31);
  for (int64_t k : {1, 3, 4, 5, 25, 150})
    for (int64_t n : {1, 15, 16, 17, 63, 64, 65, 130})
      for (int64_t m : {1, 6})
        for (int32_t zx : {0, 131}) {
          const int64_t k4 = (k + 3) / 4, ldx = n + 2, ldw = 4 * k4 + 4;
          const std::vector<uint8_t> x = random_ints<uint8_t>(rng, k * ldx, 0, 255);
          std::vector<int8_t> w = random_ints<int8_t>(rng, m * ldw, -128, 127);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t c = k; c < ldw; ++c) w[static_cast<size_t>(i * ldw + c)] = c < 4 * k4 ? 0 : 99;
          std::vector<uint8_t> a(static_cast<size_t>(k4 * n * 4), 7), b(a.size(), 8);
          pack_k4_u8__ref(k, n, a.data(), x.data(), ldx);
          pack_k4_u8(k, n, b.data(), x.data(), ldx);
          ASSERT_TRUE(same_bytes(a, b)) << k << "x" << n;
          for (int64_t j = 0; j < n; ++j)
            for (int64_t r = k; r < 4 * k4; ++r) ASSERT_EQ(a[static_cast<size_t>(((r / 4) * n + j) * 4 + r % 4)], 0);
          std::vector<int32_t> sums(static_cast<size_t>(m));
          sum_rows_s8__ref(m, k, sums.data(), w.data(), ldw);
          std::vector<int32_t> ra(static_cast<size_t>(m * n)), fa(ra.size());
          qgemm_s8u8k4_s32__ref(m, n, k4, ra.data(), n, w.data(), ldw, a.data(), sums.data(), zx);
          qgemm_s8u8k4_s32(m, n, k4, fa.data(), n, w.data(), ldw, a.data(), sums.data(), zx);
          ASSERT_TRUE(same_bytes(ra, fa)) << m << "x" << n << "x" << k << " zx " << zx;
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              int64_t want = 0;
              for (int64_t l = 0; l < k; ++l)
                want += (static_cast<int64_t>(x[static_cast<size_t>(l * ldx + j)]) - zx) * w[static_cast<size_t>(i * ldw + l)];
              ASSERT_EQ(ra[static_cast<size_t>(i * n + j)], want) << i << "," << j;
            }
        }
}

}  // namespace
}  // namespace pare::kernels
