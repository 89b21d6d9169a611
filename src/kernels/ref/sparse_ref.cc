// Scalar reference CSR kernels (contracts in sparse.h): plain loops, sums in
// double, compiled without auto-vectorisation like ref.cc.
#include "pare/kernels/sparse.h"

namespace pare::kernels {

namespace {
bool kept(const float* mask, int64_t ldm, int64_t i, int64_t j) {
  return mask == nullptr || mask[i * ldm + j] > 0.0f;
}
float with_beta(double acc, float beta, float prev) {
  return beta == 0.0f ? static_cast<float>(acc) : static_cast<float>(acc) + beta * prev;
}
}  // namespace

int64_t csr_nnz_f32__ref(int64_t rows, int64_t cols, const float* mask, int64_t ldm) {
  int64_t n = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) n += kept(mask, ldm, i, j) ? 1 : 0;
  return n;
}

void csr_from_dense_f32__ref(int64_t rows, int64_t cols, int32_t* row_ptr, int32_t* col_idx,
                             float* values, const float* w, int64_t ldw, const float* mask,
                             int64_t ldm) {
  int64_t k = 0;
  row_ptr[0] = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j)
      if (kept(mask, ldm, i, j)) {
        col_idx[k] = static_cast<int32_t>(j);
        values[k] = w[i * ldw + j];
        ++k;
      }
    row_ptr[i + 1] = static_cast<int32_t>(k);
  }
}

void csr_to_dense_f32__ref(float* w, int64_t ldw, const CsrF32& a) {
  for (int64_t i = 0; i < a.rows; ++i) {
    for (int64_t j = 0; j < a.cols; ++j) w[i * ldw + j] = 0.0f;
    for (int64_t k = a.row_ptr[i]; k < a.row_ptr[i + 1]; ++k) w[i * ldw + a.col_idx[k]] = a.values[k];
  }
}

void spmm_f32__ref(int64_t n, float* y, int64_t ldy, const CsrF32& w, const float* x,
                   int64_t ldx, float beta) {
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k)
        acc += static_cast<double>(w.values[k]) * x[w.col_idx[k] * ldx + j];
      float& out = y[r * ldy + j];
      out = with_beta(acc, beta, out);
    }
}

void spmm_t_f32__ref(int64_t n, float* dx, int64_t lddx, const CsrF32& w, const float* dy,
                     int64_t lddy, float beta) {
  for (int64_t c = 0; c < w.cols; ++c)
    for (int64_t j = 0; j < n; ++j) {
      // Column c of w, found by a search of each row (slow, obviously right).
      double acc = 0;
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k)
          if (w.col_idx[k] == c) acc += static_cast<double>(w.values[k]) * dy[r * lddy + j];
      float& out = dx[c * lddx + j];
      out = with_beta(acc, beta, out);
    }
}

void sddmm_f32__ref(int64_t n, float* g, const CsrF32& w, const float* dy, int64_t lddy,
                    const float* x, int64_t ldx, float beta) {
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k) {
      double acc = 0;
      for (int64_t j = 0; j < n; ++j)
        acc += static_cast<double>(dy[r * lddy + j]) * x[w.col_idx[k] * ldx + j];
      g[k] = with_beta(acc, beta, g[k]);
    }
}

void sell_spmv_f32__ref(int64_t b0, int64_t b1, float* y, const SellF32& a, const float* x,
                        float beta) {
  for (int64_t b = b0; b < b1; ++b) {
    double acc[kSellRows] = {};
    int64_t slot = a.block_slot[b];
    for (int32_t s = a.block_seg[b]; s < a.block_seg[b + 1]; ++s)
      for (int32_t k = 0; k < a.seg_steps[s]; ++k)
        for (int64_t l = 0; l < kSellRows; ++l, ++slot) {
          const int64_t c = a.seg_col[s] + a.lane_col[slot];
          acc[l] += static_cast<double>(a.values[slot]) * x[c];  // padding: 0 * x
        }
    for (int64_t l = 0; l < kSellRows && b * kSellRows + l < a.rows; ++l) {
      float& out = y[b * kSellRows + l];
      out = with_beta(acc[l], beta, out);
    }
  }
}

}  // namespace pare::kernels
