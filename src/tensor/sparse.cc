// CsrPattern building and the threaded CSR products (contracts in sparse.h).
#include "pare/tensor/sparse.h"

#include <algorithm>
#include <limits>

#include "pare/base/error.h"
#include "pare/tensor/ops.h"

namespace pare {

CsrPattern CsrPattern::from_mask(int64_t rows, int64_t cols, const float* mask) {
  if (rows < 0 || cols < 0 || rows * cols > std::numeric_limits<int32_t>::max())
    fail("sparse pattern: a (", rows, ", ", cols,
         ") weight has more entries than 32-bit indices address");
  CsrPattern p;
  p.rows = rows;
  p.cols = cols;
  const int64_t nnz = kernels::csr_nnz_f32(rows, cols, mask, cols);
  p.row_ptr.resize(static_cast<size_t>(rows + 1));
  p.col_idx.resize(static_cast<size_t>(nnz));
  p.pos.resize(static_cast<size_t>(nnz));
  // The values array of csr_from_dense is not needed: fill pos through it
  // instead, from the flat index of each entry.
  int32_t k = 0;
  p.row_ptr[0] = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* m = mask + i * cols;
    for (int64_t j = 0; j < cols; ++j)
      if (m[j] > 0.0f) {
        p.col_idx[static_cast<size_t>(k)] = static_cast<int32_t>(j);
        p.pos[static_cast<size_t>(k++)] = static_cast<int32_t>(i * cols + j);
      }
    p.row_ptr[static_cast<size_t>(i + 1)] = k;
  }
  // The transpose by counting sort on the column: walking the rows in order
  // keeps each transposed row's column (= original row) indices increasing.
  p.t_row_ptr.assign(static_cast<size_t>(cols + 1), 0);
  for (int32_t c : p.col_idx) ++p.t_row_ptr[static_cast<size_t>(c) + 1];
  for (int64_t c = 0; c < cols; ++c)
    p.t_row_ptr[static_cast<size_t>(c + 1)] += p.t_row_ptr[static_cast<size_t>(c)];
  p.t_col_idx.resize(static_cast<size_t>(nnz));
  p.t_perm.resize(static_cast<size_t>(nnz));
  std::vector<int32_t> next(p.t_row_ptr.begin(), p.t_row_ptr.end() - 1);
  for (int64_t i = 0; i < rows; ++i)
    for (int32_t e = p.row_ptr[static_cast<size_t>(i)]; e < p.row_ptr[static_cast<size_t>(i + 1)];
         ++e) {
      const int32_t at = next[static_cast<size_t>(p.col_idx[static_cast<size_t>(e)])]++;
      p.t_col_idx[static_cast<size_t>(at)] = static_cast<int32_t>(i);
      p.t_perm[static_cast<size_t>(at)] = e;
    }
  return p;
}

void CsrPattern::gather(const float* w, float* values, float* t_values) const {
  const int64_t n = nnz();
  const int32_t* at = pos.data();
  if (values)
    for (int64_t k = 0; k < n; ++k) values[k] = w[at[k]];
  if (t_values)
    for (int64_t k = 0; k < n; ++k) t_values[k] = w[at[t_perm[static_cast<size_t>(k)]]];
}

void CsrPattern::gather_t(const float* values, float* t_values) const {
  const int64_t n = nnz();
  const int32_t* perm = t_perm.data();
  for (int64_t k = 0; k < n; ++k) t_values[k] = values[perm[k]];
}

void CsrPattern::scatter(const float* values, float* w) const {
  const int64_t n = nnz();
  const int32_t* at = pos.data();
  for (int64_t k = 0; k < n; ++k) w[at[k]] = values[k];
}

void CsrPattern::scatter_add(const float* values, float* w) const {
  const int64_t n = nnz();
  const int32_t* at = pos.data();
  for (int64_t k = 0; k < n; ++k) w[at[k]] += values[k];
}

namespace ops {

namespace {

// Calls fn(sub, r0) for chunks of w's rows with about equal nonzeros, in
// parallel when the product (nnz * n multiply-adds) pays for the hand-off;
// `sub` views rows [r0, r1) (its row_ptr still indexes w's col_idx/values).
template <typename Fn>
void for_row_chunks(const kernels::CsrF32& w, int64_t n, Fn&& fn) {
  const int64_t nnz = w.nnz();
  const int parts = num_threads();
  const double flops = 2.0 * static_cast<double>(nnz) * static_cast<double>(n) +
                       static_cast<double>(w.rows) * static_cast<double>(n);
  if (parts < 2 || w.rows < 2 || flops < 64 * kParallelMinFlops) {
    fn(w, int64_t{0});
    return;
  }
  thread_pool().parallel_for(parts, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      // First row whose nonzeros start at or after the chunk's share.
      auto row_at = [&](int64_t part) -> int64_t {
        if (part == 0) return 0;
        if (part == parts) return w.rows;
        const int64_t target = nnz * part / parts;
        return std::lower_bound(w.row_ptr, w.row_ptr + w.rows, target) - w.row_ptr;
      };
      const int64_t r0 = row_at(c), r1 = row_at(c + 1);
      if (r1 <= r0) continue;
      kernels::CsrF32 sub{r1 - r0, w.cols, w.row_ptr + r0, w.col_idx, w.values};
      fn(sub, r0);
    }
  });
}

}  // namespace

void spmm(int64_t n, float* y, int64_t ldy, const kernels::CsrF32& w, const float* x,
          int64_t ldx, float beta) {
  for_row_chunks(w, n, [&](const kernels::CsrF32& sub, int64_t r0) {
    kernels::spmm_f32(n, y + r0 * ldy, ldy, sub, x, ldx, beta);
  });
}

void sddmm(int64_t n, float* g, const kernels::CsrF32& w, const float* dy, int64_t lddy,
           const float* x, int64_t ldx, float beta) {
  for_row_chunks(w, n, [&](const kernels::CsrF32& sub, int64_t r0) {
    kernels::sddmm_f32(n, g, sub, dy + r0 * lddy, lddy, x, ldx, beta);
  });
}

}  // namespace ops
}  // namespace pare
