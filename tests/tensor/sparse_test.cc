// CSR patterns and the threaded sparse products (src/tensor/sparse.h).
//
// CsrPattern::from_mask is checked against its definition: the stored entries
// are exactly the mask's entries > 0 (0/1 masks and masks with other values),
// in row-major order (pos = row * cols + col, increasing), and the transpose
// arrays describe the dense transpose of the mask, with t_perm mapping each
// transposed entry back to its own. gather, view and view_t are checked by
// scattering back to dense (w * mask and its transpose).
//
// ops::spmm and ops::sddmm are compared with the scalar references of
// kernels/sparse.h (which accumulate in double) within the kernels' bound:
// (terms + 4) * 1.2e-7 * (sum of |terms| + |beta * prev|), the sum of |terms|
// being the same reference product on absolute values. Their results must be
// the same bits with 1 and with 2 threads (the header's promise), including
// on a shape big enough for every thread to get rows (300x784, batch 60).
#include "pare/tensor/sparse.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/kernels.h"
#include "pare/kernels/sparse.h"
#include "testing/errors.h"
#include "testing/threads.h"
#include "testing/bits.h"

namespace pare {
namespace {

using Vec = std::vector<float>;
using testing::same_bits;
using testing::same_bytes;
using Idx = std::vector<int32_t>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using ::pare::testing::ThreadsFor;

Vec random_vec(Rng& rng, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(-1.0f, 1.0f);
  return v;
}

// A (rows, cols) 0/1 mask with the given density; `empty_rows` clears every
// third row, `empty_cols` every fourth column.
Vec random_mask(Rng& rng, int64_t rows, int64_t cols, double density, bool empty_rows,
                bool empty_cols) {
  Vec m(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      bool keep = rng.uniform(0.0f, 1.0f) < density;
      if (empty_rows && i % 3 == 1) keep = false;
      if (empty_cols && j % 4 == 2) keep = false;
      m[i * cols + j] = keep ? 1.0f : 0.0f;
    }
  return m;
}

struct MaskCase {
  int64_t rows, cols;
  Vec mask;
  std::string name;
};

const int64_t kRows[] = {1, 2, 3, 17, 33, 64};
const int64_t kCols[] = {1, 5, 16, 17, 65};
const double kDensity[] = {0.0, 0.05, 0.3, 0.9, 1.0};

template <class F>
void for_each_mask(F f) {
  Rng rng(21);
  for (int64_t rows : kRows)
    for (int64_t cols : kCols)
      for (double density : kDensity)
        for (int empties = 0; empties < 4; ++empties) {
          const bool er = empties & 1, ec = empties & 2;
          std::ostringstream name;
          name << rows << "x" << cols << " density " << density << (er ? " empty rows" : "")
               << (ec ? " empty cols" : "");
          f(rng, MaskCase{rows, cols, random_mask(rng, rows, cols, density, er, ec), name.str()});
        }
}

// The CSR arrays of a dense (rows, cols) mask by the kernels' reference builder.
struct RefCsr {
  Idx row_ptr, col_idx;
};
RefCsr ref_csr(int64_t rows, int64_t cols, const Vec& mask) {
  const int64_t nnz = kernels::csr_nnz_f32__ref(rows, cols, mask.data(), cols);
  RefCsr c{Idx(static_cast<size_t>(rows + 1)), Idx(static_cast<size_t>(nnz))};
  Vec values(static_cast<size_t>(nnz));
  kernels::csr_from_dense_f32__ref(rows, cols, c.row_ptr.data(), c.col_idx.data(), values.data(),
                                   mask.data(), cols, mask.data(), cols);
  return c;
}

Vec transpose(int64_t rows, int64_t cols, const Vec& a) {
  Vec t(a.size());
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[j * rows + i] = a[i * cols + j];
  return t;
}

// Checks a pattern's arrays against the mask, entry by entry.
void check_pattern(const CsrPattern& p, int64_t rows, int64_t cols, const Vec& mask,
                   const std::string& name) {
  ASSERT_EQ(p.rows, rows) << name;
  ASSERT_EQ(p.cols, cols) << name;
  int64_t count = 0;
  for (float m : mask) count += m > 0.0f;
  ASSERT_EQ(p.nnz(), count) << name;
  ASSERT_EQ(static_cast<int64_t>(p.pos.size()), count) << name;
  EXPECT_DOUBLE_EQ(p.density(), static_cast<double>(count) / static_cast<double>(rows * cols))
      << name;

  // Forward CSR: the same arrays as the reference builder's, and pos the flat
  // index of each entry, strictly increasing.
  RefCsr want = ref_csr(rows, cols, mask);
  ASSERT_EQ(p.row_ptr, want.row_ptr) << name;
  ASSERT_EQ(p.col_idx, want.col_idx) << name;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = p.row_ptr[i]; k < p.row_ptr[i + 1]; ++k) {
      ASSERT_EQ(p.pos[k], i * cols + p.col_idx[k]) << name << " entry " << k;
      ASSERT_GT(mask[p.pos[k]], 0.0f) << name << " entry " << k;
      if (k > 0) {
        ASSERT_LT(p.pos[k - 1], p.pos[k]) << name << " entry " << k;
      }
    }

  // Transpose: the CSR of the dense transpose of the mask.
  RefCsr want_t = ref_csr(cols, rows, transpose(rows, cols, mask));
  ASSERT_EQ(p.t_row_ptr, want_t.row_ptr) << name;
  ASSERT_EQ(p.t_col_idx, want_t.col_idx) << name;
  // t_perm: a permutation of [0, nnz) mapping transposed entry (c, r) to the
  // entry (r, c) of the pattern.
  ASSERT_EQ(static_cast<int64_t>(p.t_perm.size()), count) << name;
  std::vector<bool> seen(static_cast<size_t>(count), false);
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t k = p.t_row_ptr[c]; k < p.t_row_ptr[c + 1]; ++k) {
      const int32_t e = p.t_perm[k];
      ASSERT_TRUE(e >= 0 && e < count) << name << " t_perm[" << k << "] = " << e;
      ASSERT_FALSE(seen[e]) << name << " t_perm repeats " << e;
      seen[e] = true;
      ASSERT_EQ(p.pos[e], int64_t{p.t_col_idx[k]} * cols + c) << name << " t_perm[" << k << "]";
    }
}

TEST(CsrPattern, FromMaskMatchesTheMaskAndItsTranspose) {
  for_each_mask([](Rng&, const MaskCase& m) {
    CsrPattern p = CsrPattern::from_mask(m.rows, m.cols, m.mask.data());
    check_pattern(p, m.rows, m.cols, m.mask, m.name);
  });
}

// An entry is stored iff mask > 0: other positive values count, negative
// values and -0 do not.
TEST(CsrPattern, StoresEntriesGreaterThanZero) {
  const Vec mask = {0.5f, -1.0f, 0.0f, 2.0f,   //
                    -0.0f, 1e-30f, 1.0f, -0.5f, //
                    0.0f, 0.0f, 0.0f, 0.0f};
  CsrPattern p = CsrPattern::from_mask(3, 4, mask.data());
  EXPECT_EQ(p.row_ptr, (Idx{0, 2, 4, 4}));
  EXPECT_EQ(p.col_idx, (Idx{0, 3, 1, 2}));
  EXPECT_EQ(p.pos, (Idx{0, 3, 5, 6}));
  EXPECT_EQ(p.t_row_ptr, (Idx{0, 1, 2, 3, 4}));
  EXPECT_EQ(p.t_col_idx, (Idx{0, 1, 1, 0}));
  EXPECT_EQ(p.t_perm, (Idx{0, 2, 3, 1}));
  check_pattern(p, 3, 4, Vec{1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0}, "3x4 non-binary mask");
}

// The check happens before the mask is read (here a single float).
TEST(CsrPattern, RejectsShapesBeyondInt32Indices) {
  const float one = 1.0f;
  testing::expect_error([&] { CsrPattern::from_mask(int64_t{1} << 16, int64_t{1} << 15, &one); },
                        {"65536", "32768"});
  testing::expect_error([&] { CsrPattern::from_mask(1, int64_t{1} << 31, &one); }, {"2147483648"});
  testing::expect_error([&] { CsrPattern::from_mask(int64_t{3} << 30, 1, &one); }, {});
}

// gather puts w's values in CSR order and in the transpose's order; the views
// scatter back to w * mask and to its transpose.
TEST(CsrPattern, GatherAndViewsGiveTheMaskedWeightAndItsTranspose) {
  for_each_mask([](Rng& rng, const MaskCase& m) {
    CsrPattern p = CsrPattern::from_mask(m.rows, m.cols, m.mask.data());
    Vec w = random_vec(rng, m.rows * m.cols);
    Vec masked(w.size()), masked_t;
    for (size_t i = 0; i < w.size(); ++i) masked[i] = m.mask[i] > 0 ? w[i] : 0.0f;
    masked_t = transpose(m.rows, m.cols, masked);
    // w outside the mask may hold anything: gather must not read it.
    for (size_t i = 0; i < w.size(); ++i)
      if (!(m.mask[i] > 0)) w[i] = kNaN;

    const size_t nnz = static_cast<size_t>(p.nnz());
    Vec values(nnz, kNaN), t_values(nnz, kNaN);
    p.gather(w.data(), values.data(), t_values.data());
    for (size_t k = 0; k < nnz; ++k) {
      ASSERT_EQ(values[k], w[p.pos[k]]) << m.name << " values[" << k << "]";
      ASSERT_EQ(t_values[k], w[p.pos[p.t_perm[k]]]) << m.name << " t_values[" << k << "]";
    }

    kernels::CsrF32 v = p.view(values.data()), vt = p.view_t(t_values.data());
    ASSERT_EQ(v.rows, m.rows);
    ASSERT_EQ(v.cols, m.cols);
    ASSERT_EQ(v.nnz(), p.nnz());
    ASSERT_EQ(vt.rows, m.cols);
    ASSERT_EQ(vt.cols, m.rows);
    ASSERT_EQ(vt.nnz(), p.nnz());
    Vec dense(w.size(), kNaN), dense_t(w.size(), kNaN);
    kernels::csr_to_dense_f32__ref(dense.data(), m.cols, v);
    kernels::csr_to_dense_f32__ref(dense_t.data(), m.rows, vt);
    ASSERT_EQ(0, std::memcmp(dense.data(), masked.data(), w.size() * 4)) << m.name;
    ASSERT_EQ(0, std::memcmp(dense_t.data(), masked_t.data(), w.size() * 4)) << m.name;

    // Either output may be null.
    Vec only(nnz, kNaN), only_t(nnz, kNaN);
    p.gather(w.data(), only.data(), nullptr);
    p.gather(w.data(), nullptr, only_t.data());
    p.gather(w.data(), nullptr, nullptr);
    ASSERT_TRUE(same_bytes(only.data(), values.data(), nnz * 4)) << m.name;
    ASSERT_TRUE(same_bytes(only_t.data(), t_values.data(), nnz * 4)) << m.name;
  });
}

// got within (terms + 4) * 1.2e-7 * abs_sum of want (the reference).
struct Expect {
  std::string what;
  int failures = 0;
  void check(int64_t i, float got, float want, double abs_sum, int64_t terms) {
    const double tol = static_cast<double>(terms + 4) * 1.2e-7 * abs_sum + 1e-30;
    if (!(std::fabs(static_cast<double>(got) - want) <= tol) && failures++ == 0)
      ADD_FAILURE() << what << ": index " << i << " got " << got << " want " << want << " (tol "
                    << tol << ")";
  }
};

Vec abs_of(const Vec& v) {
  Vec a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}



const int64_t kBatch[] = {1, 3, 16, 17, 60};

// One spmm case: y (w.rows, n) with row stride ldy = w x (w.cols, n) + beta y0,
// for 1 and 2 threads, against the reference; padding columns left alone.
// ref(n, y, ldy, x, ldx, beta, abs) is the reference of the same product, on
// absolute values when `abs` (spmm_f32__ref on w itself, or spmm_t_f32__ref
// on the untransposed view for a view_t).
template <class Ref>
void check_spmm(Rng& rng, int64_t n, const kernels::CsrF32& w, Ref ref, int64_t pad, float beta,
                const std::string& what) {
  const int64_t ldx = n + pad, ldy = n + 2 * pad;
  Vec x = random_vec(rng, w.cols * ldx), y0 = random_vec(rng, w.rows * ldy);
  Vec want = y0, abs_sum = abs_of(y0);
  ref(n, want.data(), ldy, x.data(), ldx, beta, false);
  ref(n, abs_sum.data(), ldy, abs_of(x).data(), ldx, std::fabs(beta), true);
  Vec start = y0;
  if (beta == 0.0f)
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t j = 0; j < n; ++j) start[r * ldy + j] = kNaN;  // must not be read
  Vec got[2];
  for (int t = 1; t <= 2; ++t) {
    std::optional<SerialScope> serial;
    if (t == 1) serial.emplace();
    got[t - 1] = start;
    ops::spmm(n, got[t - 1].data(), ldy, w, x.data(), ldx, beta);
  }
  ASSERT_TRUE(same_bits(got[0], got[1])) << what << ": 1 and 2 threads differ";
  Expect e{what};
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t j = 0; j < n; ++j)
      e.check(r * ldy + j, got[1][r * ldy + j], want[r * ldy + j], abs_sum[r * ldy + j], w.cols);
    for (int64_t j = n; j < ldy; ++j)
      ASSERT_EQ(got[1][r * ldy + j], y0[r * ldy + j]) << what << " padding";
  }
}

// w's values in CSR order and in the transpose's order (by gather), their
// absolute values, and, for the references, an independent CSR of the dense
// transpose (w * mask)^T built by the kernels' reference builder.
struct Gathered {
  Vec values, t_values, abs_values, abs_t_values;
  Idx ref_t_row_ptr, ref_t_col_idx;
  Vec ref_t_values, ref_t_abs_values;
};
Gathered gathered(const CsrPattern& p, const Vec& w, const Vec& mask) {
  Gathered g;
  g.values.resize(static_cast<size_t>(p.nnz()));
  g.t_values.resize(static_cast<size_t>(p.nnz()));
  p.gather(w.data(), g.values.data(), g.t_values.data());
  g.abs_values = abs_of(g.values);
  g.abs_t_values = abs_of(g.t_values);
  const Vec wt = transpose(p.rows, p.cols, w), mt = transpose(p.rows, p.cols, mask);
  g.ref_t_row_ptr.resize(static_cast<size_t>(p.cols + 1));
  g.ref_t_col_idx.resize(static_cast<size_t>(p.nnz()));
  g.ref_t_values.resize(static_cast<size_t>(p.nnz()));
  kernels::csr_from_dense_f32__ref(p.cols, p.rows, g.ref_t_row_ptr.data(),
                                   g.ref_t_col_idx.data(), g.ref_t_values.data(), wt.data(),
                                   p.rows, mt.data(), p.rows);
  g.ref_t_abs_values = abs_of(g.ref_t_values);
  return g;
}

// References for check_spmm: w x (spmm on view) and w^T x (spmm on view_t).
auto forward_ref(const CsrPattern& p, const Gathered& g) {
  return [&p, &g](int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx, float beta,
                  bool abs) {
    kernels::spmm_f32__ref(n, y, ldy, p.view((abs ? g.abs_values : g.values).data()), x, ldx,
                           beta);
  };
}
auto transposed_ref(const CsrPattern& p, const Gathered& g) {
  return [&p, &g](int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx, float beta,
                  bool abs) {
    const kernels::CsrF32 t{p.cols, p.rows, g.ref_t_row_ptr.data(), g.ref_t_col_idx.data(),
                            (abs ? g.ref_t_abs_values : g.ref_t_values).data()};
    kernels::spmm_f32__ref(n, y, ldy, t, x, ldx, beta);
  };
}
// As transposed_ref through spmm_t_f32__ref on the pattern's own view (slow:
// a search per output; small shapes only).
auto transposed_ref_slow(const CsrPattern& p, const Gathered& g) {
  return [&p, &g](int64_t n, float* y, int64_t ldy, const float* x, int64_t ldx, float beta,
                  bool abs) {
    kernels::spmm_t_f32__ref(n, y, ldy, p.view((abs ? g.abs_values : g.values).data()), x, ldx,
                             beta);
  };
}

std::string case_name(const std::string& what, const std::string& mask, int64_t n, int64_t pad,
                      float beta) {
  std::ostringstream s;
  s << what << " " << mask << " n " << n << " pad " << pad << " beta " << beta;
  return s.str();
}

TEST(SparseOps, SpmmMatchesReference) {
  ThreadsFor two(2);
  for_each_mask([](Rng& rng, const MaskCase& m) {
    CsrPattern p = CsrPattern::from_mask(m.rows, m.cols, m.mask.data());
    Gathered g = gathered(p, random_vec(rng, m.rows * m.cols), m.mask);
    for (int64_t n : kBatch)
      for (int64_t pad : {0, 3})
        for (float beta : {0.0f, 0.5f, 1.0f})
          check_spmm(rng, n, p.view(g.values.data()), forward_ref(p, g), pad, beta,
                     case_name("spmm", m.name, n, pad, beta));
  });
}

// spmm on view_t is the input-gradient product w^T dy: compare it with
// spmm_f32__ref on the CSR of the dense transpose, and (n <= 3) with
// spmm_t_f32__ref on the pattern's own view.
TEST(SparseOps, SpmmOnTransposeViewMatchesTransposedReference) {
  ThreadsFor two(2);
  for_each_mask([](Rng& rng, const MaskCase& m) {
    CsrPattern p = CsrPattern::from_mask(m.rows, m.cols, m.mask.data());
    Gathered g = gathered(p, random_vec(rng, m.rows * m.cols), m.mask);
    for (int64_t n : kBatch)
      for (int64_t pad : {0, 3})
        for (float beta : {0.0f, 1.0f})
          if (n <= 3)
            check_spmm(rng, n, p.view_t(g.t_values.data()), transposed_ref_slow(p, g), pad,
                       beta, case_name("spmm on view_t (spmm_t ref)", m.name, n, pad, beta));
          else
            check_spmm(rng, n, p.view_t(g.t_values.data()), transposed_ref(p, g), pad, beta,
                       case_name("spmm on view_t", m.name, n, pad, beta));
  });
}

// g (nnz,) = (dy x^T) at the pattern's entries + beta g0, 1 and 2 threads.
void check_sddmm(Rng& rng, const CsrPattern& p, int64_t n, int64_t pad, float beta,
                 const std::string& what) {
  const int64_t lddy = n + pad, ldx = n + 2 * pad;
  const int64_t nnz = p.nnz();
  Vec dy = random_vec(rng, p.rows * lddy), x = random_vec(rng, p.cols * ldx);
  Vec g0 = random_vec(rng, nnz);
  // sddmm does not read w's values: pass NaN.
  Vec nan_values(static_cast<size_t>(nnz), kNaN);
  const kernels::CsrF32 w = p.view(nan_values.data());
  Vec want = g0, abs_sum = abs_of(g0);
  kernels::sddmm_f32__ref(n, want.data(), w, dy.data(), lddy, x.data(), ldx, beta);
  kernels::sddmm_f32__ref(n, abs_sum.data(), w, abs_of(dy).data(), lddy, abs_of(x).data(), ldx,
                          std::fabs(beta));
  Vec got[2];
  for (int t = 1; t <= 2; ++t) {
    std::optional<SerialScope> serial;
    if (t == 1) serial.emplace();
    got[t - 1] = beta == 0.0f ? Vec(static_cast<size_t>(nnz), kNaN) : g0;
    ops::sddmm(n, got[t - 1].data(), w, dy.data(), lddy, x.data(), ldx, beta);
  }
  ASSERT_TRUE(same_bits(got[0], got[1])) << what << ": 1 and 2 threads differ";
  Expect e{what};
  for (int64_t k = 0; k < nnz; ++k) e.check(k, got[1][k], want[k], abs_sum[k], n);
}

TEST(SparseOps, SddmmMatchesReference) {
  ThreadsFor two(2);
  for_each_mask([](Rng& rng, const MaskCase& m) {
    CsrPattern p = CsrPattern::from_mask(m.rows, m.cols, m.mask.data());
    for (int64_t n : kBatch)
      for (int64_t pad : {0, 3})
        for (float beta : {0.0f, 0.5f, 1.0f})
          check_sddmm(rng, p, n, pad, beta, case_name("sddmm", m.name, n, pad, beta));
  });
}

// LeNet-300-100's first layer at batch 60 and 1: enough rows and nonzeros for
// both threads to take a share; also a 1x784 and a 784x1 matrix (fewer rows
// than threads on one side).
// spmm_transposed is ops::spmm (checked against the reference above) then
// the transpose into y's columns (plain, or added with beta 1): the same bits
// on one and two threads, y's padding columns untouched, y never read with
// beta 0.
TEST(SparseOps, SpmmTransposedIsSpmmThenTransposeOnEveryThreadCount) {
  ThreadsFor two(2);
  Rng rng(6);
  struct Shape2 {
    int64_t rows, cols;
  };
  for (Shape2 s : {Shape2{300, 784}, Shape2{100, 300}, Shape2{7, 5}, Shape2{1, 784}, Shape2{784, 1}})
    for (double density : {0.0, 0.05, 0.3, 1.0})
      for (int64_t n : {1, 7, 60})
        for (float beta : {0.0f, 1.0f}) {
          std::ostringstream what;
          what << s.rows << "x" << s.cols << " density " << density << " n " << n << " beta " << beta;
          Vec mask = random_mask(rng, s.rows, s.cols, density, true, false);
          CsrPattern p = CsrPattern::from_mask(s.rows, s.cols, mask.data());
          Gathered g = gathered(p, random_vec(rng, s.rows * s.cols), mask);
          const kernels::CsrF32 w = p.view(g.values.data());
          const int64_t ldx = n + 1, ldy = s.rows + 3;
          Vec x = random_vec(rng, s.cols * ldx), y0 = random_vec(rng, n * ldy);
          Vec yt(static_cast<size_t>(s.rows * n)), want = y0;
          ops::spmm(n, yt.data(), n, w, x.data(), ldx, 0.0f);
          kernels::transpose_f32(s.rows, n, want.data(), ldy, yt.data(), n, beta);
          Vec start = y0;
          if (beta == 0.0f)
            for (int64_t b = 0; b < n; ++b)
              for (int64_t r = 0; r < s.rows; ++r) start[b * ldy + r] = kNaN;
          for (int t = 1; t <= 2; ++t) {
            std::optional<SerialScope> serial;
            if (t == 1) serial.emplace();
            Vec got = start, scratch(static_cast<size_t>(s.rows * n), kNaN);
            ops::spmm_transposed(n, got.data(), ldy, beta, scratch.data(), w, x.data(), ldx);
            ASSERT_TRUE(same_bits(got, want)) << what.str() << " on " << t << " thread(s)";
          }
        }
}

TEST(SparseOps, LargeShapesMatchReferenceOnEveryThreadCount) {
  ThreadsFor two(2);
  Rng rng(5);
  struct Shape2 {
    int64_t rows, cols;
  };
  for (Shape2 s : {Shape2{300, 784}, Shape2{1, 784}, Shape2{784, 1}, Shape2{100, 300}})
    for (double density : {0.05, 0.3, 1.0}) {
      Vec mask = random_mask(rng, s.rows, s.cols, density, true, false);
      CsrPattern p = CsrPattern::from_mask(s.rows, s.cols, mask.data());
      check_pattern(p, s.rows, s.cols, mask, "large");
      Gathered g = gathered(p, random_vec(rng, s.rows * s.cols), mask);
      for (int64_t n : {1, 60}) {
        std::ostringstream name;
        name << s.rows << "x" << s.cols << " density " << density;
        check_spmm(rng, n, p.view(g.values.data()), forward_ref(p, g), 0, 0.0f,
                   case_name("spmm", name.str(), n, 0, 0.0f));
        check_spmm(rng, n, p.view_t(g.t_values.data()), transposed_ref(p, g), 0, 0.0f,
                   case_name("spmm on view_t", name.str(), n, 0, 0.0f));
        check_sddmm(rng, p, n, 0, 0.0f, case_name("sddmm", name.str(), n, 0, 0.0f));
        check_sddmm(rng, p, n, 1, 1.0f, case_name("sddmm", name.str(), n, 1, 1.0f));
      }
    }
}

}  // namespace
}  // namespace pare
