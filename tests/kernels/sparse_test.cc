// CSR kernels (src/kernels/sparse.h): the builder round trip, and spmm, spmm_t
// and sddmm, fast and reference, against a dense double-precision product of
// w * mask, with feature-major activations, over edge shapes: rows, cols and n
// (the batch) of 1, odd, one off the vector width and the 4-vector block;
// densities 0 (fully empty), 0.1, 0.5 and 1 (fully dense); every other row
// emptied; tight and padded row strides; beta 0 (over NaN), 0.5 and 1.
//
// Tolerance: each output's error against the exact value is at most
// (terms + 3) * 1.2e-7 * (sum of |terms| + |beta * prev|), a bound for any
// summation order with or without FMA; the CSR builder and its inverse are exact.
#include "pare/kernels/sparse.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "testing/bits.h"

namespace pare::kernels {
namespace {

using Vec = std::vector<float>;
using Idx = std::vector<int32_t>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Dense {
  int64_t rows, cols, ld;
  Vec w, mask;  // (rows, ld); mask 0/1
};

Dense random_dense(Rng& rng, int64_t rows, int64_t cols, double density, bool empty_rows) {
  Dense d{rows, cols, cols + 3, {}, {}};
  d.w.assign(static_cast<size_t>(rows * d.ld), kNaN);  // padding must never be read
  d.mask.assign(static_cast<size_t>(rows * d.ld), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      d.w[i * d.ld + j] = rng.uniform(-1.0f, 1.0f);
      bool keep = rng.uniform(0.0f, 1.0f) < density && !(empty_rows && i % 2 == 1);
      d.mask[i * d.ld + j] = keep ? 1.0f : 0.0f;
    }
  return d;
}

struct Csr {
  Idx row_ptr, col_idx;
  Vec values;
  CsrF32 view(int64_t rows, int64_t cols) const {
    return {rows, cols, row_ptr.data(), col_idx.data(), values.data()};
  }
};

template <class Nnz, class Build>
Csr build(const Dense& d, Nnz nnz_fn, Build build_fn) {
  int64_t nnz = nnz_fn(d.rows, d.cols, d.mask.data(), d.ld);
  Csr c{Idx(static_cast<size_t>(d.rows + 1)), Idx(static_cast<size_t>(nnz)),
        Vec(static_cast<size_t>(nnz))};
  build_fn(d.rows, d.cols, c.row_ptr.data(), c.col_idx.data(), c.values.data(), d.w.data(), d.ld,
           d.mask.data(), d.ld);
  return c;
}

Vec random_vec(Rng& rng, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-1.0f, 1.0f);
  return v;
}

// Checks got against exact with the bound in the file comment.
struct Expect {
  std::string what;
  int failures = 0;
  void check(int64_t i, float got, double exact, double abs_sum, int64_t terms) {
    double tol = static_cast<double>(terms + 3) * 1.2e-7 * abs_sum + 1e-30;
    if (!(std::fabs(got - exact) <= tol) && failures++ == 0)
      ADD_FAILURE() << what << ": index " << i << " got " << got << " want " << exact
                    << " (tol " << tol << ")";
  }
};

const int64_t kRows[] = {1, 3, 17, 33};
const int64_t kCols[] = {1, 7, 16, 17, 50};
const int64_t kBatch[] = {1, 3, 8, 15, 16, 17, 33, 64, 65, 70};
const double kDensity[] = {0.0, 0.1, 0.5, 1.0};

template <class F>
void for_each_case(F f) {
  Rng rng(7);
  for (int64_t rows : kRows)
    for (int64_t cols : kCols)
      for (double density : kDensity)
        for (bool empty_rows : {false, true}) {
          Dense d = random_dense(rng, rows, cols, density, empty_rows);
          std::ostringstream name;
          name << rows << "x" << cols << " density " << density << (empty_rows ? " empty rows" : "");
          f(rng, d, name.str());
        }
}

TEST(SparseKernels, CsrRoundTripIsExact) {
  for_each_case([](Rng&, const Dense& d, const std::string& name) {
    Csr ref = build(d, csr_nnz_f32__ref, csr_from_dense_f32__ref);
    Csr fast = build(d, csr_nnz_f32, csr_from_dense_f32);
    ASSERT_EQ(ref.row_ptr, fast.row_ptr) << name;
    ASSERT_EQ(ref.col_idx, fast.col_idx) << name;
    ASSERT_TRUE(testing::same_bits(ref.values, fast.values)) << name;
    for (int64_t i = 0; i < d.rows; ++i)
      for (int64_t k = ref.row_ptr[i] + 1; k < ref.row_ptr[i + 1]; ++k)
        ASSERT_LT(ref.col_idx[k - 1], ref.col_idx[k]) << name;
    for (auto to_dense : {csr_to_dense_f32__ref, csr_to_dense_f32}) {
      Vec back(d.w.size(), kNaN);
      to_dense(back.data(), d.ld, ref.view(d.rows, d.cols));
      for (int64_t i = 0; i < d.rows; ++i)
        for (int64_t j = 0; j < d.cols; ++j) {
          float want = d.mask[i * d.ld + j] > 0 ? d.w[i * d.ld + j] : 0.0f;
          ASSERT_EQ(0, std::memcmp(&want, &back[i * d.ld + j], 4)) << name << " at " << i << "," << j;
        }
    }
  });
}

TEST(SparseKernels, NullMaskKeepsEveryEntry) {
  Rng rng(3);
  Dense d = random_dense(rng, 5, 9, 1.0, false);
  ASSERT_EQ(45, csr_nnz_f32(5, 9, nullptr, 0));
  ASSERT_EQ(45, csr_nnz_f32__ref(5, 9, nullptr, 0));
  Csr a{Idx(6), Idx(45), Vec(45)}, b{Idx(6), Idx(45), Vec(45)};
  csr_from_dense_f32(5, 9, a.row_ptr.data(), a.col_idx.data(), a.values.data(), d.w.data(), d.ld,
                     nullptr, 0);
  csr_from_dense_f32__ref(5, 9, b.row_ptr.data(), b.col_idx.data(), b.values.data(), d.w.data(),
                          d.ld, nullptr, 0);
  EXPECT_EQ(a.row_ptr, b.row_ptr);
  EXPECT_EQ(a.col_idx, b.col_idx);
  EXPECT_EQ(a.values, b.values);
}

using SpmmFn = void (*)(int64_t, float*, int64_t, const CsrF32&, const float*, int64_t, float);
using SddmmFn = void (*)(int64_t, float*, const CsrF32&, const float*, int64_t, const float*,
                         int64_t, float);

// Row strides: the width itself (so n == 1 takes the contiguous fast path) and padded.
const int64_t kPads[] = {0, 3};

// y: (rows, n) = (w*mask) x: (cols, n) + beta y, against the dense product.
TEST(SparseKernels, SpmmMatchesDenseProduct) {
  for_each_case([](Rng& rng, const Dense& d, const std::string& name) {
    Csr c = build(d, csr_nnz_f32__ref, csr_from_dense_f32__ref);
    for (int64_t n : kBatch)
      for (int64_t pad : kPads) {
        const int64_t ldx = n + pad, ldy = n + pad;
        Vec x = random_vec(rng, d.cols * ldx), y0 = random_vec(rng, d.rows * ldy);
        for (float beta : {0.0f, 0.5f})
          for (auto [fn, variant] : {std::pair<SpmmFn, const char*>{spmm_f32__ref, "ref"},
                                     {spmm_f32, "fast"}}) {
            Vec y = y0;
            if (beta == 0.0f)
              for (int64_t r = 0; r < d.rows; ++r)
                for (int64_t j = 0; j < n; ++j) y[r * ldy + j] = kNaN;
            fn(n, y.data(), ldy, c.view(d.rows, d.cols), x.data(), ldx, beta);
            Expect e{std::string("spmm_f32 ") + variant + " " + name + " n " +
                     std::to_string(n) + " pad " + std::to_string(pad) + " beta " +
                     std::to_string(beta)};
            for (int64_t r = 0; r < d.rows; ++r) {
              for (int64_t j = 0; j < n; ++j) {
                double exact = 0, abs_sum = 0;
                for (int64_t l = 0; l < d.cols; ++l)
                  if (d.mask[r * d.ld + l] > 0) {
                    double t = static_cast<double>(d.w[r * d.ld + l]) * x[l * ldx + j];
                    exact += t;
                    abs_sum += std::fabs(t);
                  }
                if (beta != 0.0f) {
                  exact += beta * static_cast<double>(y0[r * ldy + j]);
                  abs_sum += std::fabs(beta * y0[r * ldy + j]);
                }
                e.check(r * ldy + j, y[r * ldy + j], exact, abs_sum, d.cols);
              }
              for (int64_t j = n; j < ldy; ++j)  // padding is left alone
                ASSERT_EQ(y[r * ldy + j], y0[r * ldy + j]) << e.what << " padding";
            }
          }
      }
  });
}

// dx: (cols, n) = (w*mask)^T dy: (rows, n) + beta dx.
TEST(SparseKernels, SpmmTransposedMatchesDenseProduct) {
  for_each_case([](Rng& rng, const Dense& d, const std::string& name) {
    Csr c = build(d, csr_nnz_f32__ref, csr_from_dense_f32__ref);
    for (int64_t n : kBatch)
      for (int64_t pad : kPads) {
        const int64_t lddy = n + pad, lddx = n + pad;
        Vec dy = random_vec(rng, d.rows * lddy), dx0 = random_vec(rng, d.cols * lddx);
        for (float beta : {0.0f, 0.5f, 1.0f})
          for (auto [fn, variant] : {std::pair<SpmmFn, const char*>{spmm_t_f32__ref, "ref"},
                                     {spmm_t_f32, "fast"}}) {
            Vec dx = dx0;
            if (beta == 0.0f)
              for (int64_t l = 0; l < d.cols; ++l)
                for (int64_t j = 0; j < n; ++j) dx[l * lddx + j] = kNaN;
            fn(n, dx.data(), lddx, c.view(d.rows, d.cols), dy.data(), lddy, beta);
            Expect e{std::string("spmm_t_f32 ") + variant + " " + name + " n " +
                     std::to_string(n) + " pad " + std::to_string(pad) + " beta " +
                     std::to_string(beta)};
            for (int64_t l = 0; l < d.cols; ++l) {
              for (int64_t j = 0; j < n; ++j) {
                double exact = 0, abs_sum = 0;
                for (int64_t r = 0; r < d.rows; ++r)
                  if (d.mask[r * d.ld + l] > 0) {
                    double t = static_cast<double>(dy[r * lddy + j]) * d.w[r * d.ld + l];
                    exact += t;
                    abs_sum += std::fabs(t);
                  }
                if (beta != 0.0f) {
                  exact += beta * static_cast<double>(dx0[l * lddx + j]);
                  abs_sum += std::fabs(beta * dx0[l * lddx + j]);
                }
                e.check(l * lddx + j, dx[l * lddx + j], exact, abs_sum, d.rows);
              }
              for (int64_t j = n; j < lddx; ++j)
                ASSERT_EQ(dx[l * lddx + j], dx0[l * lddx + j]) << e.what << " padding";
            }
          }
      }
  });
}

// g: (nnz,) = (dy x^T) at the stored entries + beta g, dy: (rows, n), x: (cols, n).
TEST(SparseKernels, SddmmMatchesDenseProductAtNonzeros) {
  for_each_case([](Rng& rng, const Dense& d, const std::string& name) {
    Csr c = build(d, csr_nnz_f32__ref, csr_from_dense_f32__ref);
    const int64_t nnz = static_cast<int64_t>(c.values.size());
    for (int64_t n : kBatch)
      for (int64_t pad : kPads) {
        const int64_t lddy = n + pad, ldx = n + pad + 1;
        Vec dy = random_vec(rng, d.rows * lddy), x = random_vec(rng, d.cols * ldx);
        Vec g0 = random_vec(rng, nnz);
        for (float beta : {0.0f, 0.5f})
          for (auto [fn, variant] : {std::pair<SddmmFn, const char*>{sddmm_f32__ref, "ref"},
                                     {sddmm_f32, "fast"}}) {
            Vec g = beta == 0.0f ? Vec(static_cast<size_t>(nnz), kNaN) : g0;
            fn(n, g.data(), c.view(d.rows, d.cols), dy.data(), lddy, x.data(), ldx, beta);
            Expect e{std::string("sddmm_f32 ") + variant + " " + name + " n " +
                     std::to_string(n) + " pad " + std::to_string(pad) + " beta " +
                     std::to_string(beta)};
            for (int64_t r = 0; r < d.rows; ++r)
              for (int64_t k = c.row_ptr[r]; k < c.row_ptr[r + 1]; ++k) {
                const int64_t l = c.col_idx[k];
                double exact = 0, abs_sum = 0;
                for (int64_t j = 0; j < n; ++j) {
                  double t = static_cast<double>(dy[r * lddy + j]) * x[l * ldx + j];
                  exact += t;
                  abs_sum += std::fabs(t);
                }
                if (beta != 0.0f) {
                  exact += beta * static_cast<double>(g0[k]);
                  abs_sum += std::fabs(beta * g0[k]);
                }
                e.check(k, g[k], exact, abs_sum, n);
              }
          }
      }
  });
}

// Column blocks (kernels/sparse.h's block_ptr): spmm and sddmm with block_ptr
// against the exact product, on matrices wider than a block (127 .. 520
// columns) whose rows have different densities, so that some rows take the
// blocks and others are done whole (the fast kernels decide per row by its
// nonzeros per block), including empty rows and rows empty in some blocks;
// on the whole matrix and on views of rows [r0, r1) (block_ptr moved with
// row_ptr, as tensor/sparse.h splits work across threads). The builder here
// is the definition: the first entry of the row at column >= b * 128.
Idx column_blocks(const Csr& c, int64_t rows, int64_t cols) {
  const int64_t blocks = (cols + kCsrBlockCols - 1) / kCsrBlockCols;
  Idx out;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      int32_t k = c.row_ptr[r];
      while (k < c.row_ptr[r + 1] && c.col_idx[k] < b * kCsrBlockCols) ++k;
      out.push_back(k);
    }
    out.push_back(c.row_ptr[r + 1]);
  }
  return out;
}

TEST(SparseKernels, ColumnBlockedProductsMatchDenseProduct) {
  Rng rng(13);
  int blocked_rows = 0, whole_rows = 0;
  for (int64_t cols : {127, 128, 129, 300, 520})
    for (double top : {0.05, 0.6, 1.0}) {
      const int64_t rows = 37;
      // Row r's density rises from 0 to `top`; rows 5 and 6 are empty.
      Dense d{rows, cols, cols + 2, Vec(static_cast<size_t>(rows * (cols + 2)), kNaN),
              Vec(static_cast<size_t>(rows * (cols + 2)), 0.0f)};
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) {
          d.w[r * d.ld + j] = rng.uniform(-1.0f, 1.0f);
          const double density = top * static_cast<double>(r) / (rows - 1);
          d.mask[r * d.ld + j] = rng.uniform(0.0f, 1.0f) < density && r != 5 && r != 6 ? 1.0f : 0.0f;
        }
      Csr c = build(d, csr_nnz_f32__ref, csr_from_dense_f32__ref);
      const Idx blocks = column_blocks(c, rows, cols);
      const int64_t per_row = (cols + kCsrBlockCols - 1) / kCsrBlockCols + 1;
      for (int64_t r = 0; r < rows; ++r)
        (c.row_ptr[r + 1] - c.row_ptr[r] >= 20 * (per_row - 1) && per_row > 2 ? blocked_rows
                                                                               : whole_rows)++;
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {4, 30}})
        for (int64_t n : {1, 15, 16, 60, 64, 70})
          for (float beta : {0.0f, 0.5f}) {
            CsrF32 w{r1 - r0, cols, c.row_ptr.data() + r0, c.col_idx.data(), c.values.data(),
                     blocks.data() + r0 * per_row};
            const int64_t ld = n + 3;
            Vec x = random_vec(rng, cols * ld), dy = random_vec(rng, rows * ld);
            Vec y0 = random_vec(rng, rows * ld), g0 = random_vec(rng, c.values.size());
            Vec y = y0, g = beta == 0.0f ? Vec(g0.size(), kNaN) : g0;
            if (beta == 0.0f)
              for (int64_t r = r0; r < r1; ++r)
                for (int64_t j = 0; j < n; ++j) y[r * ld + j] = kNaN;
            spmm_f32(n, y.data() + r0 * ld, ld, w, x.data(), ld, beta);
            sddmm_f32(n, g.data(), w, dy.data() + r0 * ld, ld, x.data(), ld, beta);
            std::ostringstream name;
            name << rows << "x" << cols << " top density " << top << " rows [" << r0 << ", " << r1
                 << ") n " << n << " beta " << beta;
            Expect ey{"spmm_f32 blocked " + name.str()}, eg{"sddmm_f32 blocked " + name.str()};
            for (int64_t r = 0; r < rows; ++r) {
              const bool inside = r >= r0 && r < r1;
              for (int64_t j = 0; j < ld; ++j) {
                if (!inside || j >= n) {  // outside the view, and padding: untouched
                  ASSERT_TRUE(std::isnan(y0[r * ld + j]) ? std::isnan(y[r * ld + j])
                                                         : y[r * ld + j] == y0[r * ld + j])
                      << ey.what << " wrote outside the view at " << r << "," << j;
                  continue;
                }
                double exact = beta * static_cast<double>(y0[r * ld + j]);
                double abs_sum = std::fabs(exact);
                for (int64_t l = 0; l < cols; ++l)
                  if (d.mask[r * d.ld + l] > 0) {
                    const double t = static_cast<double>(d.w[r * d.ld + l]) * x[l * ld + j];
                    exact += t;
                    abs_sum += std::fabs(t);
                  }
                ey.check(r * ld + j, y[r * ld + j], exact, abs_sum, cols);
              }
              for (int64_t k = c.row_ptr[r]; k < c.row_ptr[r + 1]; ++k) {
                if (!inside) {
                  ASSERT_TRUE(beta == 0.0f ? std::isnan(g[k]) : g[k] == g0[k])
                      << eg.what << " wrote entry " << k << " outside the view";
                  continue;
                }
                double exact = beta * static_cast<double>(g0[k]);
                double abs_sum = std::fabs(exact);
                for (int64_t j = 0; j < n; ++j) {
                  const double t = static_cast<double>(dy[r * ld + j]) * x[c.col_idx[k] * ld + j];
                  exact += t;
                  abs_sum += std::fabs(t);
                }
                eg.check(k, g[k], exact, abs_sum, n);
              }
            }
          }
    }
  // Both kinds of rows were met (20 nonzeros per block: spmm's threshold).
  EXPECT_GT(blocked_rows, 50);
  EXPECT_GT(whole_rows, 50);
}

// A larger case at LeNet-300-100's first layer (300x784, 90% sparse, batch 60),
// fast against reference.
TEST(SparseKernels, LenetShapeFastMatchesRef) {
  Rng rng(11);
  Dense d = random_dense(rng, 300, 784, 0.1, false);
  Csr c = build(d, csr_nnz_f32, csr_from_dense_f32);
  CsrF32 w = c.view(300, 784);
  const int64_t n = 60;  // feature-major: x (784, 60), y and dy (300, 60)
  Vec x = random_vec(rng, 784 * n), dy = random_vec(rng, 300 * n);
  Vec y1(300 * n), y2(300 * n), dx1(784 * n), dx2(784 * n);
  Vec g1(c.values.size()), g2(c.values.size());
  spmm_f32__ref(n, y1.data(), n, w, x.data(), n, 0.0f);
  spmm_f32(n, y2.data(), n, w, x.data(), n, 0.0f);
  spmm_t_f32__ref(n, dx1.data(), n, w, dy.data(), n, 0.0f);
  spmm_t_f32(n, dx2.data(), n, w, dy.data(), n, 0.0f);
  sddmm_f32__ref(n, g1.data(), w, dy.data(), n, x.data(), n, 0.0f);
  sddmm_f32(n, g2.data(), w, dy.data(), n, x.data(), n, 0.0f);
  auto close = [](const Vec& a, const Vec& b, const char* what) {
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(a[i]))) << what << " at " << i;
  };
  close(y1, y2, "spmm_f32");
  close(dx1, dx2, "spmm_t_f32");
  close(g1, g2, "sddmm_f32");
}

}  // namespace
}  // namespace pare::kernels
