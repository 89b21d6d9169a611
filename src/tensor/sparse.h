// An owned CSR pattern for a pruned weight, and the threaded sparse products
// on it (the kernels of kernels/sparse.h split across the pool).
//
// A pattern is built once from a 0/1 mask (when the mask changes, not per
// step) and holds only structure: the values stay in the dense weight tensor
// (the parameter store's blob, which optimizers, checkpoints and pruning
// read), and a sparse op gathers them at `pos` into CSR order before each
// product, O(nnz). The pattern also keeps the CSR of the transpose, so the
// input gradient w^T dy is again a row-parallel product (no two threads add
// into the same output row) instead of a scatter.
#pragma once

#include <cstdint>
#include <vector>

#include "pare/kernels/sparse.h"

namespace pare {

struct CsrPattern {
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> row_ptr;  // (rows + 1,)
  std::vector<int32_t> col_idx;  // (nnz,), increasing within a row
  std::vector<int32_t> pos;      // (nnz,): row * cols + col, increasing (row-major order)
  // CSR of the transpose (cols, rows): entry k of it is entry t_perm[k] of this.
  std::vector<int32_t> t_row_ptr, t_col_idx, t_perm;
  // Column blocks of this and of the transpose (kernels/sparse.h's block_ptr).
  std::vector<int32_t> block_ptr, t_block_ptr;

  // The entries of `mask`: (rows, cols), row-major, with mask > 0.
  // Raises Error when rows * cols does not fit the int32 indices.
  static CsrPattern from_mask(int64_t rows, int64_t cols, const float* mask);
  int64_t nnz() const { return static_cast<int64_t>(col_idx.size()); }
  double density() const {
    return rows > 0 && cols > 0 ? static_cast<double>(nnz()) / static_cast<double>(rows * cols) : 0.0;
  }
  // Views with values in CSR order (values: (nnz,)), of w and of w^T
  // (t_values: (nnz,) in the transpose's order).
  kernels::CsrF32 view(const float* values) const {
    return {rows, cols, row_ptr.data(), col_idx.data(), values, block_ptr.data()};
  }
  kernels::CsrF32 view_t(const float* t_values) const {
    return {cols, rows, t_row_ptr.data(), t_col_idx.data(), t_values, t_block_ptr.data()};
  }
  // values[k] = w[pos[k]]; t_values[k] = w[pos[t_perm[k]]] (either may be null).
  void gather(const float* w, float* values, float* t_values) const;
  // t_values[k] = values[t_perm[k]]: packed values in the transpose's order.
  void gather_t(const float* values, float* t_values) const;
  // w[pos[k]] = values[k] (the other entries of w untouched).
  void scatter(const float* values, float* w) const;
  // w[pos[k]] += values[k].
  void scatter_add(const float* values, float* w) const;
};

// kernels::CsrF32's block_ptr for a (rows, cols) CSR: (rows * (col_blocks + 1),).
std::vector<int32_t> csr_column_blocks(int64_t rows, int64_t cols, const int32_t* row_ptr,
                                       const int32_t* col_idx);

// A weight in the SELL-16x32 layout of kernels/sparse.h (values included),
// for one-sample inference: built once from a pattern and its packed values.
struct SellMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> block_seg, seg_col, seg_steps;
  std::vector<int64_t> block_slot;
  std::vector<uint8_t> lane_col;
  std::vector<float> values;

  // values: (pattern.nnz(),) in pattern order.
  static SellMatrix from_csr(const CsrPattern& pattern, const float* values);
  kernels::SellF32 view() const {
    return {rows, cols, block_seg.data(), block_slot.data(), seg_col.data(),
            seg_steps.data(), lane_col.data(), values.data()};
  }
  int64_t slots() const { return static_cast<int64_t>(values.size()); }
};

namespace ops {

// The products of kernels/sparse.h (same arguments), split across the pool
// by rows of the output, each chunk holding about the same number of
// nonzeros. Every output element is computed by one thread in one order, so
// the bits do not depend on the thread count.
void spmm(int64_t n, float* y, int64_t ldy, const kernels::CsrF32& w, const float* x,
          int64_t ldx, float beta);
void sddmm(int64_t n, float* g, const kernels::CsrF32& w, const float* dy, int64_t lddy,
           const float* x, int64_t ldx, float beta);
// y: (n, w.rows), row stride ldy, = (w x)^T + beta y: spmm into `scratch`
// (w.rows, n), and each chunk of rows transposed into y's matching columns
// by the thread that computed it, while they are in its cache (a sparse
// linear layer's batch-major output, or its input gradient with beta 1).
void spmm_transposed(int64_t n, float* y, int64_t ldy, float beta, float* scratch,
                     const kernels::CsrF32& w, const float* x, int64_t ldx);
// y: (a.rows,) = a x (+ beta y): kernels::sell_spmv_f32 split by row blocks
// with about equal slots per chunk (bits independent of the thread count).
void sell_spmv(float* y, const SellMatrix& a, const float* x, float beta);

}  // namespace ops
}  // namespace pare
