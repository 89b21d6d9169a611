// Fast CSR kernels (contracts in sparse.h).
//
// Activations are batch-major, so a row of w meets a row of x through its
// column indices: the products vectorise over the nonzeros of a row, gathering
// x (and, for spmm_t, gathering and scattering dx) at col_idx. The gathers and
// the scatter are local to this file, built on simd.h's vector type: AVX-512
// gathers and scatters with masked tails; AVX2 gathers with scalar tails and
// scatters in scalar code; elsewhere everything is the plain loop.
// A scatter within one row is conflict-free because a row's col_idx are
// distinct (sparse.h).
//
// Blocking: spmm and spmm_t walk blocks of kBlock batch rows, so the rows of x
// (dx) being gathered stay in L1 while w streams past once per block; each
// nonzero's index and value are loaded once per block, not once per row.
#include "pare/kernels/fast/simd.h"
#include "pare/kernels/sparse.h"

namespace pare::kernels {

using namespace simd;

namespace {

constexpr int64_t kBlock = 4;

#if defined(__AVX512F__)
using vi32 = __m512i;
inline vi32 load_idx(const int32_t* p) { return _mm512_loadu_si512(p); }
inline vi32 load_idx_tail(const int32_t* p, int64_t r) {
  return _mm512_maskz_loadu_epi32(tail_mask(r), p);
}
inline vf gather(const float* base, vi32 i) { return _mm512_i32gather_ps(i, base, 4); }
inline vf gather_tail(const float* base, vi32 i, int64_t r) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), tail_mask(r), i, base, 4);
}
inline void scatter(float* base, vi32 i, vf v) { _mm512_i32scatter_ps(base, i, v, 4); }
inline void scatter_tail(float* base, vi32 i, vf v, int64_t r) {
  _mm512_mask_i32scatter_ps(base, tail_mask(r), i, v, 4);
}
inline float hsum(vf v) { return _mm512_reduce_add_ps(v); }
#define PARE_SPARSE_SCATTER 1
#elif defined(__AVX2__)
using vi32 = __m256i;
inline vi32 load_idx(const int32_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline vf gather(const float* base, vi32 i) { return _mm256_i32gather_ps(base, i, 4); }
inline float hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

inline float apply_beta(float acc, float beta, float prev) {
  return beta == 0.0f ? acc : acc + beta * prev;
}

// y(b0 + j, r) for j < NB and every row r: dot products of w's rows with the
// NB rows of x starting at x0.
template <int NB>
void spmm_block(float* y, int64_t ldy, const CsrF32& w, const float* x0, int64_t ldx,
                float beta) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t k = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
    float s[NB] = {};
#if defined(PARE_SIMD)
    vf acc[NB];
    for (int j = 0; j < NB; ++j) acc[j] = vzero();
    for (; k + kLanes <= end; k += kLanes) {
      vi32 vi = load_idx(w.col_idx + k);
      vf vv = vload(w.values + k);
      for (int j = 0; j < NB; ++j) acc[j] = vfmadd(vv, gather(x0 + j * ldx, vi), acc[j]);
    }
#if defined(__AVX512F__)
    if (k < end) {
      vi32 vi = load_idx_tail(w.col_idx + k, end - k);
      vf vv = vload_tail(w.values + k, end - k);
      for (int j = 0; j < NB; ++j)
        acc[j] = vfmadd(vv, gather_tail(x0 + j * ldx, vi, end - k), acc[j]);
      k = end;
    }
#endif
    for (int j = 0; j < NB; ++j) s[j] = hsum(acc[j]);
#endif
    for (; k < end; ++k) {
      const int32_t c = w.col_idx[k];
      const float v = w.values[k];
      for (int j = 0; j < NB; ++j) s[j] = fmadd(v, x0[j * ldx + c], s[j]);
    }
    for (int j = 0; j < NB; ++j) {
      float& out = y[j * ldy + r];
      out = apply_beta(s[j], beta, out);
    }
  }
}

// dx(b0 + j, :) += dy(b0 + j, :) w for j < NB.
template <int NB>
void spmm_t_block(float* dx0, int64_t lddx, const CsrF32& w, const float* dy0, int64_t lddy) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t k = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
    float s[NB];
    for (int j = 0; j < NB; ++j) s[j] = dy0[j * lddy + r];
#if defined(PARE_SPARSE_SCATTER)
    for (; k + kLanes <= end; k += kLanes) {
      vi32 vi = load_idx(w.col_idx + k);
      vf vv = vload(w.values + k);
      for (int j = 0; j < NB; ++j) {
        float* p = dx0 + j * lddx;
        scatter(p, vi, vfmadd(vset1(s[j]), vv, gather(p, vi)));
      }
    }
    if (k < end) {
      vi32 vi = load_idx_tail(w.col_idx + k, end - k);
      vf vv = vload_tail(w.values + k, end - k);
      for (int j = 0; j < NB; ++j) {
        float* p = dx0 + j * lddx;
        scatter_tail(p, vi, vfmadd(vset1(s[j]), vv, gather_tail(p, vi, end - k)), end - k);
      }
      k = end;
    }
#endif
    for (; k < end; ++k) {
      const int32_t c = w.col_idx[k];
      const float v = w.values[k];
      for (int j = 0; j < NB; ++j) dx0[j * lddx + c] = fmadd(s[j], v, dx0[j * lddx + c]);
    }
  }
}

}  // namespace

int64_t csr_nnz_f32(int64_t rows, int64_t cols, const float* mask, int64_t ldm) {
  if (mask == nullptr) return rows * cols;
  int64_t n = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* m = mask + i * ldm;
    for (int64_t j = 0; j < cols; ++j) n += m[j] > 0.0f;
  }
  return n;
}

void csr_from_dense_f32(int64_t rows, int64_t cols, int32_t* row_ptr, int32_t* col_idx,
                        float* values, const float* w, int64_t ldw, const float* mask,
                        int64_t ldm) {
  int32_t k = 0;
  row_ptr[0] = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* wi = w + i * ldw;
    if (mask == nullptr) {
      for (int64_t j = 0; j < cols; ++j) {
        col_idx[k] = static_cast<int32_t>(j);
        values[k++] = wi[j];
      }
    } else {
      const float* m = mask + i * ldm;
      for (int64_t j = 0; j < cols; ++j)
        if (m[j] > 0.0f) {
          col_idx[k] = static_cast<int32_t>(j);
          values[k++] = wi[j];
        }
    }
    row_ptr[i + 1] = k;
  }
}

void csr_to_dense_f32(float* w, int64_t ldw, const CsrF32& a) {
  for (int64_t i = 0; i < a.rows; ++i) {
    float* wi = w + i * ldw;
    for (int64_t j = 0; j < a.cols; ++j) wi[j] = 0.0f;
    for (int64_t k = a.row_ptr[i]; k < a.row_ptr[i + 1]; ++k) wi[a.col_idx[k]] = a.values[k];
  }
}

void spmm_f32(int64_t batch, float* y, int64_t ldy, const CsrF32& w, const float* x,
              int64_t ldx, float beta) {
  int64_t b = 0;
  for (; b + kBlock <= batch; b += kBlock)
    spmm_block<kBlock>(y + b * ldy, ldy, w, x + b * ldx, ldx, beta);
  for (; b < batch; ++b) spmm_block<1>(y + b * ldy, ldy, w, x + b * ldx, ldx, beta);
}

void spmm_t_f32(int64_t batch, float* dx, int64_t lddx, const CsrF32& w, const float* dy,
                int64_t lddy, float beta) {
  for (int64_t b = 0; b < batch; ++b) {
    float* row = dx + b * lddx;
    if (beta == 0.0f)
      for (int64_t c = 0; c < w.cols; ++c) row[c] = 0.0f;
    else if (beta != 1.0f)
      for (int64_t c = 0; c < w.cols; ++c) row[c] *= beta;
  }
  int64_t b = 0;
  for (; b + kBlock <= batch; b += kBlock)
    spmm_t_block<kBlock>(dx + b * lddx, lddx, w, dy + b * lddy, lddy);
  for (; b < batch; ++b) spmm_t_block<1>(dx + b * lddx, lddx, w, dy + b * lddy, lddy);
}

void sddmm_f32(int64_t batch, float* g, const CsrF32& w, const float* dy, int64_t lddy,
               const float* x, int64_t ldx, float beta) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t k = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
#if defined(PARE_SIMD)
    for (; k + kLanes <= end; k += kLanes) {
      vi32 vi = load_idx(w.col_idx + k);
      vf a0 = vzero(), a1 = vzero();
      int64_t b = 0;
      for (; b + 2 <= batch; b += 2) {
        a0 = vfmadd(vset1(dy[b * lddy + r]), gather(x + b * ldx, vi), a0);
        a1 = vfmadd(vset1(dy[(b + 1) * lddy + r]), gather(x + (b + 1) * ldx, vi), a1);
      }
      if (b < batch) a0 = vfmadd(vset1(dy[b * lddy + r]), gather(x + b * ldx, vi), a0);
      vf acc = vadd(a0, a1);
      if (beta != 0.0f) acc = vfmadd(vset1(beta), vload(g + k), acc);
      vstore(g + k, acc);
    }
#if defined(__AVX512F__)
    if (k < end) {
      const int64_t n = end - k;
      vi32 vi = load_idx_tail(w.col_idx + k, n);
      vf acc = vzero();
      for (int64_t b = 0; b < batch; ++b)
        acc = vfmadd(vset1(dy[b * lddy + r]), gather_tail(x + b * ldx, vi, n), acc);
      if (beta != 0.0f) acc = vfmadd(vset1(beta), vload_tail(g + k, n), acc);
      vstore_tail(g + k, acc, n);
      k = end;
    }
#endif
#endif
    for (; k < end; ++k) {
      const float* xc = x + w.col_idx[k];
      float acc = 0.0f;
      for (int64_t b = 0; b < batch; ++b) acc = fmadd(dy[b * lddy + r], xc[b * ldx], acc);
      g[k] = apply_beta(acc, beta, g[k]);
    }
  }
}

}  // namespace pare::kernels
