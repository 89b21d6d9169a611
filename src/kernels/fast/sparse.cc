// Fast CSR kernels (contracts in sparse.h).
//
// Activations are feature-major (x: (cols, n)), so each nonzero (r, c, v) of w
// meets a contiguous row of x (dx): spmm broadcasts v against x's row c into
// register accumulators for y's row r, spmm_t is one axpy of dy's row r into
// dx's row c, sddmm one dot product of dy's row r with x's row c; all three
// vectorise over n through simd.h, with masked (AVX-512) or scalar tails.
// For n == 1 (one sample) there is nothing to vectorise over, so spmm and
// spmm_t instead vectorise over a row's nonzeros: gathers of x at col_idx
// (AVX-512 and AVX2) and, for spmm_t, scatters into dx (AVX-512; conflict-free
// because a row's col_idx are distinct, sparse.h). These gathers are local to
// this file, built on simd.h's vector type.
#include "pare/kernels/fast/simd.h"
#include "pare/kernels/sparse.h"

namespace pare::kernels {

using namespace simd;

namespace {

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

// The entries of row r in column block b of `blocks` (1: the whole row):
// rows take w's column blocks only when their nonzeros per block reach
// `min_run` on average, since each (row, block) costs a y row's load and
// store (spmm) or dy's row and a tail of single reductions (sddmm), which
// short runs do not repay (LeNet-300-100's first layer, batch 60,
// kernels_bench: spmm blocked is 1.2x slower at 5 % density, 6.4 per run, and
// 1.3x faster at 50 %, 64 per run; runs of about 20 (spmm) and 16 (sddmm) are
// where it starts to pay). The choice is the row's own, so it does not depend
// on how the rows are split across threads (nor, then, do the bits).
struct RowBlocks {
  const CsrF32& w;
  int64_t blocks, min_nnz;
  RowBlocks(const CsrF32& m, int64_t min_run)
      : w(m), blocks(m.block_ptr ? m.col_blocks() : 1), min_nnz(min_run * m.col_blocks()) {
    // With no row long enough, one pass over the rows, not one per block.
    bool any = false;
    for (int64_t r = 0; r < w.rows && !any && blocks > 1; ++r) any = blocked(r);
    if (!any) blocks = 1;
  }
  bool blocked(int64_t r) const { return blocks > 1 && w.row_ptr[r + 1] - w.row_ptr[r] >= min_nnz; }
  // Entries [begin, end) of row r in block b (may be empty); false for b > 0
  // of a row not blocked, which block 0 did whole.
  bool range(int64_t r, int64_t b, int64_t& begin, int64_t& end) const {
    if (blocked(r)) {
      const int32_t* at = w.block_ptr + r * (w.col_blocks() + 1) + b;  // kernels/sparse.h
      begin = at[0], end = at[1];
    } else {
      if (b > 0) return false;
      begin = w.row_ptr[r], end = w.row_ptr[r + 1];
    }
    return true;
  }
};

inline float apply_beta(float acc, float beta, float prev) {
  return beta == 0.0f ? acc : acc + beta * prev;
}

// dx(c) += dy(r, 0) w(r, c) for every nonzero, with n == 1 and dx contiguous.
void spmv_t(float* dx, const CsrF32& w, const float* dy, int64_t lddy) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t k = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
    const float s = dy[r * lddy];
#if defined(PARE_SPARSE_SCATTER)
    for (; k + kLanes <= end; k += kLanes) {
      vi32 vi = load_idx(w.col_idx + k);
      scatter(dx, vi, vfmadd(vset1(s), vload(w.values + k), gather(dx, vi)));
    }
    if (k < end) {
      const int64_t t = end - k;
      vi32 vi = load_idx_tail(w.col_idx + k, t);
      scatter_tail(dx, vi, vfmadd(vset1(s), vload_tail(w.values + k, t), gather_tail(dx, vi, t)),
                   t);
      k = end;
    }
#endif
    for (; k < end; ++k) dx[w.col_idx[k]] = fmadd(s, w.values[k], dx[w.col_idx[k]]);
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

namespace {

// y(r, j0 .. j0 + NV * kLanes) for every row r (NV vectors of accumulators;
// with kTail the last one only t lanes wide, 1..kLanes: AVX-512's masked
// loads, so that n = 60, LeNet's batch, is one pass over the CSR instead of
// four, each value broadcast once). Column block by column block when the
// view has block_ptr (kernels/sparse.h): block 0 starts each y row from 0 (or
// beta y), later blocks add to what is stored.
#if defined(PARE_SIMD)
template <int NV, bool kTail>
void spmm_cols(int64_t j0, int64_t t, float* y, int64_t ldy, const CsrF32& w, const float* x,
               int64_t ldx, float beta) {
  const RowBlocks rb(w, 20);
#if defined(__AVX512F__)
  const __mmask16 mt = tail_mask(kTail ? t : kLanes);
  auto load = [&](const float* p, int i) {
    return kTail && i == NV - 1 ? _mm512_maskz_loadu_ps(mt, p + i * kLanes) : vload(p + i * kLanes);
  };
  auto store = [&](float* p, int i, vf v) {
    if (kTail && i == NV - 1)
      _mm512_mask_storeu_ps(p + i * kLanes, mt, v);
    else
      vstore(p + i * kLanes, v);
  };
#else
  static_assert(!kTail, "masked tails need AVX-512");
  (void)t;
  auto load = [](const float* p, int i) { return vload(p + i * kLanes); };
  auto store = [](float* p, int i, vf v) { vstore(p + i * kLanes, v); };
#endif
  // acc += the nonzeros [k, end) of one row against x's rows, in two sets of
  // accumulators (even and odd nonzeros): one set is a chain of dependent
  // FMAs, one per nonzero, FMA latency apart; two halve that.
  auto accumulate = [&](vf* acc, int64_t k, int64_t end) {
    vf odd[NV];
    for (int i = 0; i < NV; ++i) odd[i] = vzero();
    for (; k + 2 <= end; k += 2) {
      const vf v0 = vset1(w.values[k]), v1 = vset1(w.values[k + 1]);
      const float* x0 = x + w.col_idx[k] * ldx + j0;
      const float* x1 = x + w.col_idx[k + 1] * ldx + j0;
      for (int i = 0; i < NV; ++i) {
        acc[i] = vfmadd(v0, load(x0, i), acc[i]);
        odd[i] = vfmadd(v1, load(x1, i), odd[i]);
      }
    }
    if (k < end) {
      const vf v = vset1(w.values[k]);
      const float* xr = x + w.col_idx[k] * ldx + j0;
      for (int i = 0; i < NV; ++i) acc[i] = vfmadd(v, load(xr, i), acc[i]);
    }
    for (int i = 0; i < NV; ++i) acc[i] = vadd(acc[i], odd[i]);
  };
  for (int64_t b = 0; b < rb.blocks; ++b) {
    for (int64_t r = 0; r < w.rows; ++r) {
      int64_t k, end;
      if (!rb.range(r, b, k, end) || (b > 0 && k == end)) continue;
      float* yr = y + r * ldy + j0;
      vf acc[NV];
      for (int i = 0; i < NV; ++i) acc[i] = b > 0 ? load(yr, i) : vzero();
      accumulate(acc, k, end);
      for (int i = 0; i < NV; ++i) {
        if (b == 0 && beta != 0.0f) acc[i] = vfmadd(vset1(beta), load(yr, i), acc[i]);
        store(yr, i, acc[i]);
      }
    }
  }
}
#endif

// Columns [j0, n) one at a time (the tail, and everything without PARE_SIMD).
void spmm_cols_scalar(int64_t j0, int64_t n, float* y, int64_t ldy, const CsrF32& w,
                      const float* x, int64_t ldx, float beta) {
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t j = j0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k)
        acc = fmadd(w.values[k], x[w.col_idx[k] * ldx + j], acc);
      float& out = y[r * ldy + j];
      out = apply_beta(acc, beta, out);
    }
}

// y(r, 0) for every r with n == 1 and x contiguous: a gathered dot product per row.
void spmv(float* y, int64_t ldy, const CsrF32& w, const float* x, float beta) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t k = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
    float s = 0.0f;
#if defined(PARE_SIMD)
    vf acc = vzero();
    for (; k + kLanes <= end; k += kLanes)
      acc = vfmadd(vload(w.values + k), gather(x, load_idx(w.col_idx + k)), acc);
#if defined(__AVX512F__)
    if (k < end) {
      acc = vfmadd(vload_tail(w.values + k, end - k),
                   gather_tail(x, load_idx_tail(w.col_idx + k, end - k), end - k), acc);
      k = end;
    }
#endif
    s = hsum(acc);
#endif
    for (; k < end; ++k) s = fmadd(w.values[k], x[w.col_idx[k]], s);
    y[r * ldy] = apply_beta(s, beta, y[r * ldy]);
  }
}

// y(0, :n) += a * x(0, :n)
inline void axpy_row(int64_t n, float* y, const float* x, float a) {
  int64_t j = 0;
#if defined(PARE_SIMD)
  const vf av = vset1(a);
  for (; j + kLanes <= n; j += kLanes) vstore(y + j, vfmadd(av, vload(x + j), vload(y + j)));
#if defined(__AVX512F__)
  if (j < n) {
    vstore_tail(y + j, vfmadd(av, vload_tail(x + j, n - j), vload_tail(y + j, n - j)), n - j);
    return;
  }
#endif
#endif
  for (; j < n; ++j) y[j] = fmadd(a, x[j], y[j]);
}

inline float dot_row(int64_t n, const float* a, const float* b) {
  int64_t j = 0;
  float s = 0.0f;
#if defined(PARE_SIMD)
  if (n >= kLanes) {
    vf a0 = vzero(), a1 = vzero();
    for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
      a0 = vfmadd(vload(a + j), vload(b + j), a0);
      a1 = vfmadd(vload(a + j + kLanes), vload(b + j + kLanes), a1);
    }
    for (; j + kLanes <= n; j += kLanes) a0 = vfmadd(vload(a + j), vload(b + j), a0);
#if defined(__AVX512F__)
    if (j < n) {
      a1 = vfmadd(vload_tail(a + j, n - j), vload_tail(b + j, n - j), a1);
      j = n;
    }
#endif
    s = hsum(vadd(a0, a1));
  }
#endif
  for (; j < n; ++j) s = fmadd(a[j], b[j], s);
  return s;
}

}  // namespace

void spmm_f32(int64_t n, float* y, int64_t ldy, const CsrF32& w, const float* x, int64_t ldx,
              float beta) {
  if (n == 1 && ldx == 1) return spmv(y, ldy, w, x, beta);
  int64_t j = 0;
#if defined(PARE_SIMD)
  for (; j + 4 * kLanes <= n; j += 4 * kLanes)
    spmm_cols<4, false>(j, kLanes, y, ldy, w, x, ldx, beta);
#if defined(__AVX512F__)
  if (j < n) {
    const int64_t rest = n - j;
    const int64_t t = rest - (rest - 1) / kLanes * kLanes;  // lanes of the last vector, 1..16
    switch ((rest + kLanes - 1) / kLanes) {
      case 1: spmm_cols<1, true>(j, t, y, ldy, w, x, ldx, beta); break;
      case 2: spmm_cols<2, true>(j, t, y, ldy, w, x, ldx, beta); break;
      case 3: spmm_cols<3, true>(j, t, y, ldy, w, x, ldx, beta); break;
      default: spmm_cols<4, true>(j, t, y, ldy, w, x, ldx, beta); break;
    }
    j = n;
  }
#else
  for (; j + kLanes <= n; j += kLanes) spmm_cols<1, false>(j, kLanes, y, ldy, w, x, ldx, beta);
#endif
#endif
  spmm_cols_scalar(j, n, y, ldy, w, x, ldx, beta);
}

void spmm_t_f32(int64_t n, float* dx, int64_t lddx, const CsrF32& w, const float* dy,
                int64_t lddy, float beta) {
  for (int64_t c = 0; c < w.cols; ++c) {
    float* row = dx + c * lddx;
    if (beta == 0.0f)
      for (int64_t j = 0; j < n; ++j) row[j] = 0.0f;
    else if (beta != 1.0f)
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
  if (n == 1 && lddx == 1) return spmv_t(dx, w, dy, lddy);
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* dyr = dy + r * lddy;
    for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k)
      axpy_row(n, dx + w.col_idx[k] * lddx, dyr, w.values[k]);
  }
}

#if defined(__AVX512F__)
namespace {

// Lane q of the result = the sum of the lanes of v[q]: 16 horizontal sums in
// 15 adds and 30 shuffles (a transpose-and-add tree) instead of 16 separate
// reductions.
inline vf reduce16(const vf* v) {
  vf t[8], u[4], w[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: one partial sum of each of 4 vectors
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 2; ++i)  // add pairs of 128-bit lanes
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// sddmm for n <= NV * 16: dy's row stays in NV registers (the last one t
// lanes wide) while the row's nonzeros stream x's rows past it; the dot
// products are reduced 16 at a time (reduce16), the rest of a row's run one
// by one (a partial reduce16 costs more: 1.1x at 50 % density, 1.2x at 2 %).
// Column block by column block when the view has block_ptr
// (kernels/sparse.h), so that x's rows come from L1.
template <int NV>
void sddmm_small(int64_t t, float* g, const CsrF32& w, const float* dy, int64_t lddy,
                 const float* x, int64_t ldx, float beta) {
  const __mmask16 mt = tail_mask(t);
  const RowBlocks rb(w, 16);
  for (int64_t b = 0; b < rb.blocks; ++b) {
    for (int64_t r = 0; r < w.rows; ++r) {
      int64_t k, end;
      if (!rb.range(r, b, k, end) || k == end) continue;
      const float* dyr = dy + r * lddy;
      vf d[NV];
      for (int i = 0; i < NV - 1; ++i) d[i] = vload(dyr + i * kLanes);
      d[NV - 1] = _mm512_maskz_loadu_ps(mt, dyr + (NV - 1) * kLanes);
      auto dot = [&](int64_t e) {
        const float* xr = x + w.col_idx[e] * ldx;
        vf acc = _mm512_mul_ps(d[NV - 1], _mm512_maskz_loadu_ps(mt, xr + (NV - 1) * kLanes));
        for (int i = 0; i < NV - 1; ++i) acc = vfmadd(d[i], vload(xr + i * kLanes), acc);
        return acc;
      };
      for (; k + kLanes <= end; k += kLanes) {
        vf s[kLanes];
        for (int q = 0; q < kLanes; ++q) s[q] = dot(k + q);
        vf sums = reduce16(s);
        if (beta != 0.0f) sums = vfmadd(vset1(beta), vload(g + k), sums);
        vstore(g + k, sums);
      }
      for (; k < end; ++k) g[k] = apply_beta(hsum(dot(k)), beta, g[k]);
    }
  }
}

}  // namespace
#endif

void sddmm_f32(int64_t n, float* g, const CsrF32& w, const float* dy, int64_t lddy,
               const float* x, int64_t ldx, float beta) {
#if defined(__AVX512F__)
  if (n >= 1 && n <= 4 * kLanes) {
    const int64_t t = n - (n - 1) / kLanes * kLanes;
    switch ((n + kLanes - 1) / kLanes) {
      case 1: return sddmm_small<1>(t, g, w, dy, lddy, x, ldx, beta);
      case 2: return sddmm_small<2>(t, g, w, dy, lddy, x, ldx, beta);
      case 3: return sddmm_small<3>(t, g, w, dy, lddy, x, ldx, beta);
      default: return sddmm_small<4>(t, g, w, dy, lddy, x, ldx, beta);
    }
  }
#endif
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* dyr = dy + r * lddy;
    for (int64_t k = w.row_ptr[r]; k < w.row_ptr[r + 1]; ++k)
      g[k] = apply_beta(dot_row(n, dyr, x + w.col_idx[k] * ldx), beta, g[k]);
  }
}

void sell_spmv_f32(int64_t b0, int64_t b1, float* y, const SellF32& a, const float* x,
                   float beta) {
#if defined(__AVX512F__)
  for (int64_t b = b0; b < b1; ++b) {
    vf acc = vzero(), acc2 = vzero();  // two chains: a permute + FMA per step
    const uint8_t* col = a.lane_col + a.block_slot[b];
    const float* val = a.values + a.block_slot[b];
    for (int32_t s = a.block_seg[b]; s < a.block_seg[b + 1]; ++s) {
      // x's segment in two registers; past the last column reads as 0.
      const int64_t c0 = a.seg_col[s];
      const int64_t left = a.cols - c0;
      const vf lo = left >= kLanes ? vload(x + c0) : vload_tail(x + c0, left);
      const vf hi = left >= 2 * kLanes ? vload(x + c0 + kLanes)
                    : left > kLanes    ? vload_tail(x + c0 + kLanes, left - kLanes)
                                       : vzero();
      const int32_t steps = a.seg_steps[s];
      int32_t k = 0;
      for (; k + 2 <= steps; k += 2, col += 2 * kLanes, val += 2 * kLanes) {
        const __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(col)));
        const __m512i i1 =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(col + kLanes)));
        acc = vfmadd(vload(val), _mm512_permutex2var_ps(lo, i0, hi), acc);
        acc2 = vfmadd(vload(val + kLanes), _mm512_permutex2var_ps(lo, i1, hi), acc2);
      }
      if (k < steps) {
        const __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(col)));
        acc = vfmadd(vload(val), _mm512_permutex2var_ps(lo, i0, hi), acc);
        col += kLanes;
        val += kLanes;
      }
    }
    acc = vadd(acc, acc2);
    float* yb = y + b * kSellRows;
    const int64_t lanes = a.rows - b * kSellRows < kSellRows ? a.rows - b * kSellRows : kSellRows;
    if (beta != 0.0f) acc = vfmadd(vset1(beta), vload_tail(yb, lanes), acc);
    vstore_tail(yb, acc, lanes);
  }
#else
  sell_spmv_f32__ref(b0, b1, y, a, x, beta);  // the layout is built for 16-lane permutes
#endif
}

}  // namespace pare::kernels
