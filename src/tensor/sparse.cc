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
  p.block_ptr = csr_column_blocks(rows, cols, p.row_ptr.data(), p.col_idx.data());
  p.t_block_ptr = csr_column_blocks(cols, rows, p.t_row_ptr.data(), p.t_col_idx.data());
  return p;
}

std::vector<int32_t> csr_column_blocks(int64_t rows, int64_t cols, const int32_t* row_ptr,
                                       const int32_t* col_idx) {
  const int64_t blocks = kernels::CsrF32{rows, cols}.col_blocks();
  std::vector<int32_t> out(static_cast<size_t>(rows * (blocks + 1)));
  for (int64_t r = 0; r < rows; ++r) {
    int32_t* at = out.data() + r * (blocks + 1);
    int32_t k = row_ptr[r];
    for (int64_t b = 0; b < blocks; ++b) {
      at[b] = k;  // the first entry at column >= b * kCsrBlockCols
      while (k < row_ptr[r + 1] && col_idx[k] < (b + 1) * kernels::kCsrBlockCols) ++k;
    }
    at[blocks] = row_ptr[r + 1];
  }
  return out;
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

SellMatrix SellMatrix::from_csr(const CsrPattern& p, const float* values) {
  using kernels::kSellCols;
  using kernels::kSellRows;
  SellMatrix a;
  a.rows = p.rows;
  a.cols = p.cols;
  const int64_t blocks = (p.rows + kSellRows - 1) / kSellRows;
  a.block_seg.push_back(0);
  a.block_slot.push_back(0);
  // Per block: walk the 16 rows' nonzeros segment by segment (each row's
  // col_idx is increasing, so a cursor per row suffices).
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * kSellRows, lanes = std::min(kSellRows, p.rows - r0);
    int64_t cursor[kSellRows], end[kSellRows];
    for (int64_t l = 0; l < kSellRows; ++l) {
      cursor[l] = l < lanes ? p.row_ptr[static_cast<size_t>(r0 + l)] : 0;
      end[l] = l < lanes ? p.row_ptr[static_cast<size_t>(r0 + l + 1)] : 0;
    }
    while (true) {
      int64_t seg = -1;  // the lowest segment any row still has a nonzero in
      for (int64_t l = 0; l < lanes; ++l)
        if (cursor[l] < end[l]) {
          const int64_t s = p.col_idx[static_cast<size_t>(cursor[l])] / kSellCols;
          seg = seg < 0 ? s : std::min(seg, s);
        }
      if (seg < 0) break;
      int64_t count[kSellRows] = {}, steps = 0;
      for (int64_t l = 0; l < lanes; ++l) {
        while (cursor[l] + count[l] < end[l] &&
               p.col_idx[static_cast<size_t>(cursor[l] + count[l])] / kSellCols == seg)
          ++count[l];
        steps = std::max(steps, count[l]);
      }
      const size_t at = a.values.size();
      a.values.resize(at + static_cast<size_t>(steps * kSellRows), 0.0f);
      a.lane_col.resize(at + static_cast<size_t>(steps * kSellRows), 0);
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t k = 0; k < count[l]; ++k) {
          const int64_t e = cursor[l] + k;
          const size_t slot = at + static_cast<size_t>(k * kSellRows + l);
          a.values[slot] = values[e];
          a.lane_col[slot] =
              static_cast<uint8_t>(p.col_idx[static_cast<size_t>(e)] - seg * kSellCols);
        }
      for (int64_t l = 0; l < lanes; ++l) cursor[l] += count[l];
      a.seg_col.push_back(static_cast<int32_t>(seg * kSellCols));
      a.seg_steps.push_back(static_cast<int32_t>(steps));
    }
    a.block_seg.push_back(static_cast<int32_t>(a.seg_col.size()));
    a.block_slot.push_back(static_cast<int64_t>(a.values.size()));
  }
  return a;
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
  // Work in FLOP-equivalents: a nonzero costs a vector's worth of lanes even
  // when n is smaller (with n = 1 each one is a gathered load), so count at
  // least 16 columns. Below ~1 MFLOP the hand-off and the second core's cold
  // caches cost more than the split saves (LeNet-300-100 at 95% sparsity,
  // batch 60, two threads: a step took 138 us splitting every product above
  // 0.13 MFLOP, 93 us splitting none, 76 us splitting those above 1 MFLOP).
  const double work = 2.0 * static_cast<double>(nnz) * static_cast<double>(std::max<int64_t>(n, 16)) +
                      static_cast<double>(w.rows) * static_cast<double>(n);
  if (parts < 2 || w.rows < 2 || work < 32 * kParallelMinFlops) {
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
      kernels::CsrF32 sub{r1 - r0, w.cols, w.row_ptr + r0, w.col_idx, w.values,
                          w.block_ptr ? w.block_ptr + r0 * (w.col_blocks() + 1) : nullptr};
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

void spmm_transposed(int64_t n, float* y, int64_t ldy, float beta, float* scratch,
                     const kernels::CsrF32& w, const float* x, int64_t ldx) {
  for_row_chunks(w, n, [&](const kernels::CsrF32& sub, int64_t r0) {
    kernels::spmm_f32(n, scratch + r0 * n, n, sub, x, ldx, 0.0f);
    kernels::transpose_f32(sub.rows, n, y + r0, ldy, scratch + r0 * n, n, beta);
  });
}

void sell_spmv(float* y, const SellMatrix& a, const float* x, float beta) {
  const kernels::SellF32 v = a.view();
  const int64_t blocks = v.blocks();
  const int parts = num_threads();
  // A slot costs about a FLOP-equivalent per lane (one permute and FMA per 16).
  if (parts < 2 || blocks < 2 || 2.0 * static_cast<double>(a.slots()) < 64 * kParallelMinFlops) {
    kernels::sell_spmv_f32(0, blocks, y, v, x, beta);
    return;
  }
  const int64_t* slot = a.block_slot.data();
  thread_pool().parallel_for(parts, [&](int64_t c0, int64_t c1, int) {
    for (int64_t c = c0; c < c1; ++c) {
      auto block_at = [&](int64_t part) -> int64_t {
        if (part == 0) return 0;
        if (part == parts) return blocks;
        return std::lower_bound(slot, slot + blocks, a.slots() * part / parts) - slot;
      };
      const int64_t b0 = block_at(c), b1 = block_at(c + 1);
      if (b1 > b0) kernels::sell_spmv_f32(b0, b1, y, v, x, beta);
    }
  });
}

}  // namespace ops
}  // namespace pare
