// Fast int8 kernels (contracts in quant.h).
//
// Paths, chosen at build time by the macros simd.h uses:
//   AVX-512 VNNI (+BW, VL)  qgemm: vpdpbusd, 4 u8 x s8 products per int32 lane,
//                           64 per instruction, on a 4x4 tile of (x row, w row)
//                           dot products reduced at the end; byte tails masked.
//   AVX2 (and AVX-512 without VNNI)  qgemm: bytes widened to int16 and
//                           multiplied pairwise into int32 (vpmaddwd): exact,
//                           unlike vpmaddubsw, which saturates 255*127*2 in int16.
//   neither                 plain loops.
// All integer sums wrap mod 2^32 (unsigned or vector arithmetic), which is
// what the reference's int64 sums reduce to, so the outputs are bit-identical.
// The float stages round in the order quant.h fixes (IEEE division, round to
// nearest even, fma), so they are bit-identical as well.
// Sparse products: spmv gathers x at col_idx (4-byte gathers, masked off the
// last 3 columns, which a row's increasing col_idx can only touch at its end;
// those few nonzeros go scalar); spmm (feature-major) broadcasts each nonzero
// against a contiguous row of x, vectorised over the batch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/quant.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define PARE_QUANT_VNNI 1
#endif
#if defined(__AVX512BW__) && defined(__AVX512VL__)
#define PARE_QUANT_AVX512 1
#elif defined(__AVX2__)
#define PARE_QUANT_AVX2 1
#endif

namespace pare::kernels {

using namespace simd;

namespace {

// ---- Scalar pieces, identical to the reference's ----------------------------------------
inline int32_t quantize_one(float x, float scale, int32_t zp, float lo, float hi) {
  float v = std::nearbyint(x / scale) + static_cast<float>(zp);
  if (!(v >= lo)) v = lo;
  if (v > hi) v = hi;
  return static_cast<int32_t>(v);
}
inline int32_t wrap_sub_mul(uint32_t s, int32_t zp, int32_t sum) {
  return static_cast<int32_t>(s - static_cast<uint32_t>(zp) * static_cast<uint32_t>(sum));
}

// ---- Vector quantizer: clamp(rne(x / scale) + zp, lo, hi) as int32 lanes ------------------
#if defined(__AVX512F__)
inline __m512i quantize_v(vf x, vf scale, vf zp, vf lo, vf hi) {
  vf v = _mm512_roundscale_ps(vdiv(x, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = vmin(vmax(vadd(v, zp), lo), hi);  // max(NaN, lo) = lo
  return _mm512_cvttps_epi32(v);
}
#elif defined(__AVX2__)
inline __m256i quantize_v(vf x, vf scale, vf zp, vf lo, vf hi) {
  vf v = _mm256_round_ps(vdiv(x, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = vmin(vmax(vadd(v, zp), lo), hi);
  return _mm256_cvttps_epi32(v);
}
// Low bytes of 8 int32 lanes -> 8 bytes at p.
inline void store_bytes8(void* p, __m256i v) {
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, -1);
  __m256i b = _mm256_shuffle_epi8(v, pick);
  b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
  _mm_storel_epi64(static_cast<__m128i*>(p), _mm256_castsi256_si128(b));
}
#endif

// q (bytes) = quantize of x: (n,) with the clamp [lo, hi].
template <class T>
void quantize_bytes(int64_t n, T* q, const float* x, float scale, int32_t zp, float lo,
                    float hi) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const vf vs = vset1(scale), vz = vset1(static_cast<float>(zp)), vlo = vset1(lo),
           vhi = vset1(hi);
  for (; i + 16 <= n; i += 16)
    _mm512_mask_cvtepi32_storeu_epi8(q + i, 0xFFFF, quantize_v(vload(x + i), vs, vz, vlo, vhi));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m,
                                     quantize_v(vload_tail(x + i, n - i), vs, vz, vlo, vhi));
  }
  return;
#elif defined(__AVX2__)
  const vf vs = vset1(scale), vz = vset1(static_cast<float>(zp)), vlo = vset1(lo),
           vhi = vset1(hi);
  for (; i + 8 <= n; i += 8) store_bytes8(q + i, quantize_v(vload(x + i), vs, vz, vlo, vhi));
#endif
  for (; i < n; ++i) q[i] = static_cast<T>(quantize_one(x[i], scale, zp, lo, hi));
}

float abs_max(int64_t n, const float* x) {
  int64_t i = 0;
  float m = 0.0f;
#if defined(PARE_SIMD)
  vf vm = vzero();
  for (; i + kLanes <= n; i += kLanes) vm = vmax(vm, vabs(vload(x + i)));
  alignas(64) float lanes[kLanes];
  vstore(lanes, vm);
  for (float v : lanes) m = std::fmax(m, v);
#endif
  for (; i < n; ++i) m = std::fmax(m, std::fabs(x[i]));
  return m;
}

// ---- Dense product tiles: acc (MR, NR) at (x rows, w rows) -------------------------------
#if defined(PARE_QUANT_VNNI) || defined(PARE_QUANT_AVX512)
// [sum a, sum b, sum c, sum d] of four vectors of int32 lanes.
inline __m128i reduce4(__m128i a, __m128i b, __m128i c, __m128i d) {
  return _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d));
}
inline __m128i fold512(__m512i v) {
  __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
#elif defined(PARE_QUANT_AVX2)
inline __m128i reduce4(__m128i a, __m128i b, __m128i c, __m128i d) {
  return _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d));
}
inline __m128i fold256(__m256i v) {
  return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}
#endif

struct TileArgs {
  int64_t k, ldacc, ldx, ldw;
  const int32_t* wsum;
  int32_t zx;
};

#if defined(PARE_QUANT_AVX512)
// 512-bit tile: 64 bytes of k per step (vpdpbusd with VNNI, else widened
// vpmaddwd over 32 bytes twice), masked byte loads for the k tail.
inline __m512i dot_step(__m512i c, __m512i a, __m512i b) {
#if defined(PARE_QUANT_VNNI)
  return _mm512_dpbusd_epi32(c, a, b);
#else
  const __m512i a0 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(a));
  const __m512i a1 = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(a, 1));
  const __m512i b0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(b));
  const __m512i b1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(b, 1));
  return _mm512_add_epi32(c, _mm512_add_epi32(_mm512_madd_epi16(a0, b0), _mm512_madd_epi16(a1, b1)));
#endif
}

template <int MR, int NR>
void tile(int32_t* acc, const uint8_t* x, const int8_t* w, const TileArgs& t) {
  __m512i c[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i][j] = _mm512_setzero_si512();
  int64_t l = 0;
  for (; l + 64 <= t.k; l += 64) {
    __m512i b[NR];
    for (int j = 0; j < NR; ++j) b[j] = _mm512_loadu_si512(w + j * t.ldw + l);
    for (int i = 0; i < MR; ++i) {
      const __m512i a = _mm512_loadu_si512(x + i * t.ldx + l);
      for (int j = 0; j < NR; ++j) c[i][j] = dot_step(c[i][j], a, b[j]);
    }
  }
  if (l < t.k) {
    const __mmask64 m = ~0ull >> (64 - (t.k - l));
    __m512i b[NR];
    for (int j = 0; j < NR; ++j) b[j] = _mm512_maskz_loadu_epi8(m, w + j * t.ldw + l);
    for (int i = 0; i < MR; ++i) {
      const __m512i a = _mm512_maskz_loadu_epi8(m, x + i * t.ldx + l);
      for (int j = 0; j < NR; ++j) c[i][j] = dot_step(c[i][j], a, b[j]);
    }
  }
  const __mmask8 nm = static_cast<__mmask8>((1u << NR) - 1u);
  const __m128i corr =
      t.zx != 0 ? _mm_mullo_epi32(_mm_set1_epi32(t.zx), _mm_maskz_loadu_epi32(nm, t.wsum))
                : _mm_setzero_si128();
  for (int i = 0; i < MR; ++i) {
    __m128i f[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                    _mm_setzero_si128()};
    for (int j = 0; j < NR; ++j) f[j] = fold512(c[i][j]);
    const __m128i s = _mm_sub_epi32(reduce4(f[0], f[1], f[2], f[3]), corr);
    _mm_mask_storeu_epi32(acc + i * t.ldacc, nm, s);
  }
}
constexpr int kMr = 4, kNr = 4;
#elif defined(PARE_QUANT_AVX2)
// 256-bit tile: 16 bytes of k per step widened to int16, vpmaddwd into int32;
// the k tail (< 16) in scalar.
template <int MR, int NR>
void tile(int32_t* acc, const uint8_t* x, const int8_t* w, const TileArgs& t) {
  __m256i c[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i][j] = _mm256_setzero_si256();
  int64_t l = 0;
  for (; l + 16 <= t.k; l += 16) {
    __m256i b[NR];
    for (int j = 0; j < NR; ++j)
      b[j] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j * t.ldw + l)));
    for (int i = 0; i < MR; ++i) {
      const __m256i a = _mm256_cvtepu8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i * t.ldx + l)));
      for (int j = 0; j < NR; ++j) c[i][j] = _mm256_add_epi32(c[i][j], _mm256_madd_epi16(a, b[j]));
    }
  }
  for (int i = 0; i < MR; ++i) {
    alignas(16) uint32_t tail[4] = {0, 0, 0, 0};
    for (int j = 0; j < NR; ++j) {
      for (int64_t q = l; q < t.k; ++q)
        tail[j] += static_cast<uint32_t>(x[i * t.ldx + q] * w[j * t.ldw + q]);
      if (t.zx != 0) tail[j] -= static_cast<uint32_t>(t.zx) * static_cast<uint32_t>(t.wsum[j]);
    }
    __m128i f[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(),
                    _mm_setzero_si128()};
    for (int j = 0; j < NR; ++j) f[j] = fold256(c[i][j]);
    alignas(16) int32_t out[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(out),
                    _mm_add_epi32(reduce4(f[0], f[1], f[2], f[3]),
                                  _mm_load_si128(reinterpret_cast<const __m128i*>(tail))));
    for (int j = 0; j < NR; ++j) acc[i * t.ldacc + j] = out[j];
  }
}
constexpr int kMr = 2, kNr = 4;
#endif

#if defined(PARE_QUANT_AVX512) || defined(PARE_QUANT_AVX2)
using TileFn = void (*)(int32_t*, const uint8_t*, const int8_t*, const TileArgs&);
template <int MR>
constexpr TileFn tile_for(int nr) {
  return nr == 1 ? tile<MR, 1> : nr == 2 ? tile<MR, 2> : nr == 3 ? tile<MR, 3> : tile<MR, 4>;
}
TileFn pick_tile(int mr, int nr) {
  if constexpr (kMr == 4) {
    if (mr == 4) return tile_for<4>(nr);
    if (mr == 3) return tile_for<3>(nr);
  }
  return mr == 2 ? tile_for<2>(nr) : tile_for<1>(nr);
}
#endif

// ---- Sparse helpers ----------------------------------------------------------------------
// The row's nonzeros [p0, end) whose 4-byte gather at x + col stays inside x:
// those before the trailing ones with col > cols - 4 (at most 3, increasing).
inline int64_t gather_safe_end(const CsrS8& w, int64_t p0, int64_t end) {
  while (end > p0 && w.col_idx[end - 1] > w.cols - 4) --end;
  return end;
}

}  // namespace

// ---- Quantizers ----------------------------------------------------------------------------
void quantize_weights_per_channel_s8(int64_t rows, int64_t cols, int8_t* q, float* scales,
                                     const float* w) {
  for (int64_t r = 0; r < rows; ++r) {
    float scale = abs_max(cols, w + r * cols) / 127.0f;
    if (scale == 0.0f) scale = 1.0f;
    scales[r] = scale;
    quantize_bytes(cols, q + r * cols, w + r * cols, scale, 0, -127.0f, 127.0f);
  }
}

void dequantize_weights_per_channel_s8(int64_t rows, int64_t cols, float* w, const int8_t* q,
                                       const float* scales) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scales[r];
    for (int64_t j = 0; j < cols; ++j) w[r * cols + j] = static_cast<float>(q[r * cols + j]) * s;
  }
}

void quantize_per_tensor_u8(int64_t n, uint8_t* q, const float* x, float scale,
                            int32_t zero_point) {
  quantize_bytes(n, q, x, scale, zero_point, 0.0f, 255.0f);
}

void quantize_per_tensor_s8(int64_t n, int8_t* q, const float* x, float scale,
                            int32_t zero_point) {
  quantize_bytes(n, q, x, scale, zero_point, -128.0f, 127.0f);
}

void dequantize_u8_f32(int64_t n, float* x, const uint8_t* q, float scale, int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] - zero_point) * scale;
}

void dequantize_s8_f32(int64_t n, float* x, const int8_t* q, float scale, int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] - zero_point) * scale;
}

void sum_rows_s8(int64_t rows, int64_t cols, int32_t* sums, const int8_t* q, int64_t ldq) {
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t s = 0;
    for (int64_t j = 0; j < cols; ++j) s += static_cast<uint32_t>(q[r * ldq + j]);
    sums[r] = static_cast<int32_t>(s);
  }
}

void csr_row_sums_s8(int32_t* sums, const CsrS8& w) {
  for (int64_t r = 0; r < w.rows; ++r) {
    uint32_t s = 0;
    for (int64_t p = w.row_ptr[r]; p < w.row_ptr[r + 1]; ++p)
      s += static_cast<uint32_t>(w.values[p]);
    sums[r] = static_cast<int32_t>(s);
  }
}

// ---- Dense product -------------------------------------------------------------------------
void qgemm_u8s8_s32(int64_t m, int64_t n, int64_t k, int32_t* acc, int64_t ldacc,
                    const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                    const int32_t* w_row_sums, int32_t x_zero_point) {
#if defined(PARE_QUANT_AVX512) || defined(PARE_QUANT_AVX2)
  // Output channels outer: a block of kNr weight rows stays in L1 while every
  // activation row passes it, so the weight is read from memory once.
  for (int64_t j0 = 0; j0 < n; j0 += kNr) {
    const int nr = static_cast<int>(n - j0 < kNr ? n - j0 : kNr);
    const TileArgs t{k, ldacc, ldx, ldw, w_row_sums ? w_row_sums + j0 : nullptr, x_zero_point};
    for (int64_t i0 = 0; i0 < m; i0 += kMr) {
      const int mr = static_cast<int>(m - i0 < kMr ? m - i0 : kMr);
      pick_tile(mr, nr)(acc + i0 * ldacc + j0, x + i0 * ldx, w + j0 * ldw, t);
    }
  }
#else
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      uint32_t s = 0;
      for (int64_t l = 0; l < k; ++l)
        s += static_cast<uint32_t>(x[i * ldx + l] * w[j * ldw + l]);
      acc[i * ldacc + j] = x_zero_point != 0 ? wrap_sub_mul(s, x_zero_point, w_row_sums[j])
                                             : static_cast<int32_t>(s);
    }
#endif
}

// ---- Output stages -------------------------------------------------------------------------
void requantize_s32_to_u8(int64_t m, int64_t n, uint8_t* y, int64_t ldy, const int32_t* acc,
                          int64_t ldacc, const int32_t* bias, const RequantParams& p) {
  const float lo = p.relu ? static_cast<float>(p.zero_point) : 0.0f;
  for (int64_t i = 0; i < m; ++i) {
    const int32_t* a = acc + i * ldacc;
    uint8_t* yr = y + i * ldy;
    int64_t j = 0;
#if defined(__AVX512F__)
    const vf one = vset1(1.0f), vz = vset1(static_cast<float>(p.zero_point)), vlo = vset1(lo),
             vhi = vset1(255.0f);
    for (; j < n; j += 16) {
      const __mmask16 m16 = tail_mask(n - j < 16 ? n - j : 16);
      __m512i t = _mm512_maskz_loadu_epi32(m16, a + j);
      if (bias) t = _mm512_add_epi32(t, _mm512_maskz_loadu_epi32(m16, bias + j));
      const vf v = vmul(_mm512_cvtepi32_ps(t), _mm512_maskz_loadu_ps(m16, p.multiplier + j));
      _mm512_mask_cvtepi32_storeu_epi8(yr + j, m16, quantize_v(v, one, vz, vlo, vhi));
    }
#elif defined(__AVX2__)
    const vf one = vset1(1.0f), vz = vset1(static_cast<float>(p.zero_point)), vlo = vset1(lo),
             vhi = vset1(255.0f);
    for (; j + 8 <= n; j += 8) {
      __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j));
      if (bias)
        t = _mm256_add_epi32(t, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + j)));
      const vf v = vmul(_mm256_cvtepi32_ps(t), vload(p.multiplier + j));
      store_bytes8(yr + j, quantize_v(v, one, vz, vlo, vhi));
    }
#endif
    for (; j < n; ++j) {
      const uint32_t t = static_cast<uint32_t>(a[j]) + (bias ? static_cast<uint32_t>(bias[j]) : 0u);
      const float v = static_cast<float>(static_cast<int32_t>(t)) * p.multiplier[j];
      yr[j] = static_cast<uint8_t>(quantize_one(v, 1.0f, p.zero_point, lo, 255.0f));
    }
  }
}

void dequantize_s32_to_f32(int64_t m, int64_t n, float* y, int64_t ldy, const int32_t* acc,
                           int64_t ldacc, const float* w_scales, float x_scale,
                           const float* bias) {
  for (int64_t i = 0; i < m; ++i) {
    const int32_t* a = acc + i * ldacc;
    float* yr = y + i * ldy;
    int64_t j = 0;
#if defined(__AVX512F__)
    const vf xs = vset1(x_scale);
    for (; j < n; j += 16) {
      const __mmask16 m16 = tail_mask(n - j < 16 ? n - j : 16);
      const vf s = vmul(xs, _mm512_maskz_loadu_ps(m16, w_scales + j));
      const vf b = bias ? _mm512_maskz_loadu_ps(m16, bias + j) : vzero();
      const vf v = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m16, a + j));
      _mm512_mask_storeu_ps(yr + j, m16, _mm512_fmadd_ps(v, s, b));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    const vf xs = vset1(x_scale);
    for (; j + 8 <= n; j += 8) {
      const vf s = vmul(xs, vload(w_scales + j));
      const vf b = bias ? vload(bias + j) : vzero();
      const vf v = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)));
      vstore(yr + j, _mm256_fmadd_ps(v, s, b));
    }
#endif
    for (; j < n; ++j)
      yr[j] = std::fma(static_cast<float>(a[j]), x_scale * w_scales[j], bias ? bias[j] : 0.0f);
  }
}

// ---- Sparse products ---------------------------------------------------------------------
void csr_from_dense_s8(int64_t rows, int64_t cols, int32_t* row_ptr, int32_t* col_idx,
                       int8_t* values, const int8_t* q, int64_t ldq, const float* mask,
                       int64_t ldm) {
  int64_t k = 0;
  row_ptr[0] = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j)
      if (mask == nullptr || mask[i * ldm + j] > 0.0f) {
        col_idx[k] = static_cast<int32_t>(j);
        values[k] = q[i * ldq + j];
        ++k;
      }
    row_ptr[i + 1] = static_cast<int32_t>(k);
  }
}

void spmv_u8s8_s32(int32_t* acc, const CsrS8& w, const uint8_t* x, const int32_t* w_row_sums,
                   int32_t x_zero_point) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t p = w.row_ptr[r];
    const int64_t end = w.row_ptr[r + 1];
    uint32_t s = 0;
#if defined(PARE_QUANT_AVX512)
    const int64_t vend = gather_safe_end(w, p, end);
    __m512i vs = _mm512_setzero_si512();
    const __m512i lo8 = _mm512_set1_epi32(0xFF);
    for (; p < vend; p += 16) {
      const __mmask16 m16 = tail_mask(vend - p < 16 ? vend - p : 16);
      const __m512i idx = _mm512_maskz_loadu_epi32(m16, w.col_idx + p);
      const __m512i xv = _mm512_and_si512(
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m16, idx, x, 1), lo8);
      const __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m16, w.values + p));
      vs = _mm512_add_epi32(vs, _mm512_madd_epi16(xv, v));  // x (zero-extended) * v
    }
    p = vend;
    s = static_cast<uint32_t>(_mm512_reduce_add_epi32(vs));
#elif defined(PARE_QUANT_AVX2)
    const int64_t vend = gather_safe_end(w, p, end);
    __m256i vs = _mm256_setzero_si256();
    const __m256i lo8 = _mm256_set1_epi32(0xFF);
    for (; p + 8 <= vend; p += 8) {
      const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_idx + p));
      const __m256i xv = _mm256_and_si256(
          _mm256_i32gather_epi32(reinterpret_cast<const int*>(x), idx, 1), lo8);
      const __m256i v = _mm256_cvtepi8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.values + p)));
      vs = _mm256_add_epi32(vs, _mm256_madd_epi16(xv, v));
    }
    alignas(32) uint32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), vs);
    for (uint32_t l : lanes) s += l;
#endif
    for (; p < end; ++p)
      s += static_cast<uint32_t>(static_cast<int32_t>(w.values[p]) * x[w.col_idx[p]]);
    acc[r] = x_zero_point != 0 ? wrap_sub_mul(s, x_zero_point, w_row_sums[r])
                               : static_cast<int32_t>(s);
  }
}

void spmm_u8s8_s32(int64_t n, int32_t* acc, int64_t ldacc, const CsrS8& w, const uint8_t* x,
                   int64_t ldx, const int32_t* w_row_sums, int32_t x_zero_point) {
  if (n == 1 && ldacc == 1 && ldx == 1) return spmv_u8s8_s32(acc, w, x, w_row_sums, x_zero_point);
  for (int64_t r = 0; r < w.rows; ++r) {
    const int64_t p0 = w.row_ptr[r], end = w.row_ptr[r + 1];
    const uint32_t corr = x_zero_point != 0 ? static_cast<uint32_t>(x_zero_point) *
                                                  static_cast<uint32_t>(w_row_sums[r])
                                            : 0u;
    int32_t* ar = acc + r * ldacc;
    int64_t b = 0;
#if defined(PARE_QUANT_AVX512)
    // 64 batch columns per block in four int32 vectors; the last block masked.
    const __m512i vcorr = _mm512_set1_epi32(static_cast<int32_t>(corr));
    for (; b < n; b += 64) {
      __mmask16 mk[4];
      for (int t = 0; t < 4; ++t) {
        const int64_t left = n - b - 16 * t;
        mk[t] = tail_mask(left <= 0 ? 0 : left < 16 ? left : 16);
      }
      __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
      for (int64_t p = p0; p < end; ++p) {
        const uint8_t* xr = x + w.col_idx[p] * ldx + b;
        const __m512i v = _mm512_set1_epi32(w.values[p]);
        c0 = _mm512_add_epi32(c0, _mm512_madd_epi16(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk[0], xr)), v));
        c1 = _mm512_add_epi32(c1, _mm512_madd_epi16(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk[1], xr + 16)), v));
        c2 = _mm512_add_epi32(c2, _mm512_madd_epi16(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk[2], xr + 32)), v));
        c3 = _mm512_add_epi32(c3, _mm512_madd_epi16(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk[3], xr + 48)), v));
      }
      _mm512_mask_storeu_epi32(ar + b, mk[0], _mm512_sub_epi32(c0, vcorr));
      _mm512_mask_storeu_epi32(ar + b + 16, mk[1], _mm512_sub_epi32(c1, vcorr));
      _mm512_mask_storeu_epi32(ar + b + 32, mk[2], _mm512_sub_epi32(c2, vcorr));
      _mm512_mask_storeu_epi32(ar + b + 48, mk[3], _mm512_sub_epi32(c3, vcorr));
    }
#elif defined(PARE_QUANT_AVX2)
    const __m256i vcorr = _mm256_set1_epi32(static_cast<int32_t>(corr));
    for (; b + 16 <= n; b += 16) {
      __m256i c0 = _mm256_setzero_si256(), c1 = c0;
      for (int64_t p = p0; p < end; ++p) {
        const uint8_t* xr = x + w.col_idx[p] * ldx + b;
        const __m256i v = _mm256_set1_epi32(w.values[p]);
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(xr))), v));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(xr + 8))), v));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ar + b), _mm256_sub_epi32(c0, vcorr));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ar + b + 8), _mm256_sub_epi32(c1, vcorr));
    }
#endif
    for (; b < n; ++b) {
      uint32_t s = 0;
      for (int64_t p = p0; p < end; ++p)
        s += static_cast<uint32_t>(static_cast<int32_t>(w.values[p]) * x[w.col_idx[p] * ldx + b]);
      ar[b] = static_cast<int32_t>(s - corr);
    }
  }
}

// ---- Convolution lowering ------------------------------------------------------------------
// Row by row of the output plane: the output columns whose tap falls inside
// the image, [lo, hi), are one strided (with stride 1, contiguous) copy; the
// few at the borders take the pad value or wrap.
void im2col_u8(const Conv2dGeometry& g, uint8_t* cols, int64_t ld, int64_t col0,
               const uint8_t* x, uint8_t pad) {
  const int64_t oh = g.out_h(), ow = g.out_w(), s = g.stride;
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        uint8_t* row = cols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        // ix = ox * s + off lies in [0, w) for ox in [lo, hi).
        const int64_t off = kx - g.pad;
        const int64_t lo = std::min(ow, off >= 0 ? 0 : (-off + s - 1) / s);
        const int64_t hi = std::max(lo, std::min(ow, g.w - off <= 0 ? 0 : (g.w - off + s - 1) / s));
        for (int64_t oy = 0; oy < oh; ++oy, row += ow) {
          int64_t iy = oy * s - g.pad + ky;
          if (g.circular) {
            iy = ((iy % g.h) + g.h) % g.h;
          } else if (iy < 0 || iy >= g.h) {
            std::memset(row, pad, static_cast<size_t>(ow));
            continue;
          }
          const uint8_t* src = x + (ch * g.h + iy) * g.w;
          for (int64_t ox = 0; ox < lo; ++ox)
            row[ox] = g.circular ? src[(((ox * s + off) % g.w) + g.w) % g.w] : pad;
          if (s == 1) {
            if (hi > lo) std::memcpy(row + lo, src + lo + off, static_cast<size_t>(hi - lo));
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) row[ox] = src[ox * s + off];
          }
          for (int64_t ox = hi; ox < ow; ++ox)
            row[ox] = g.circular ? src[(ox * s + off) % g.w] : pad;
        }
      }
}

// ---- Dense product over k-quads ---------------------------------------------------------
// Four x4 rows of 16 columns at a time: per quad q, one broadcast of w's four
// bytes and one vpdpbusd per 16 columns (64 bytes of x4); the column tail
// masked. Without VNNI, a plain loop the compiler may vectorise.
void pack_k4_u8(int64_t k, int64_t n, uint8_t* x4, const uint8_t* x, int64_t ldx) {
  const int64_t full = k / 4;
  for (int64_t q = 0; q < full; ++q) {
    const uint8_t* r0 = x + 4 * q * ldx;
    const uint8_t* r1 = r0 + ldx;
    const uint8_t* r2 = r1 + ldx;
    const uint8_t* r3 = r2 + ldx;
    uint8_t* d = x4 + q * n * 4;
    for (int64_t j = 0; j < n; ++j) {
      d[4 * j] = r0[j];
      d[4 * j + 1] = r1[j];
      d[4 * j + 2] = r2[j];
      d[4 * j + 3] = r3[j];
    }
  }
  if (full * 4 < k) {
    uint8_t* d = x4 + full * n * 4;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t r = 0; r < 4; ++r) d[4 * j + r] = 4 * full + r < k ? x[(4 * full + r) * ldx + j] : 0;
  }
}

void qgemm_s8u8k4_s32(int64_t m, int64_t n, int64_t k4, int32_t* acc, int64_t ldacc,
                      const int8_t* w, int64_t ldw, const uint8_t* x4,
                      const int32_t* w_row_sums, int32_t x_zero_point) {
  for (int64_t i = 0; i < m; ++i) {
    const int8_t* wi = w + i * ldw;
    const int32_t corr = x_zero_point != 0
                             ? static_cast<int32_t>(static_cast<uint32_t>(x_zero_point) *
                                                    static_cast<uint32_t>(w_row_sums[i]))
                             : 0;
    int32_t* ai = acc + i * ldacc;
    int64_t j = 0;
#if defined(PARE_QUANT_VNNI)
    const __m512i vcorr = _mm512_set1_epi32(corr);
    for (; j < n; j += 64) {
      __mmask16 mk[4];
      for (int t = 0; t < 4; ++t) {
        const int64_t left = n - j - 16 * t;
        mk[t] = tail_mask(left <= 0 ? 0 : left < 16 ? left : 16);
      }
      __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
      for (int64_t q = 0; q < k4; ++q) {
        int32_t quad;
        std::memcpy(&quad, wi + 4 * q, 4);
        const __m512i b = _mm512_set1_epi32(quad);
        const uint8_t* xq = x4 + (q * n + j) * 4;
        c0 = _mm512_dpbusd_epi32(c0, _mm512_maskz_loadu_epi32(mk[0], xq), b);
        c1 = _mm512_dpbusd_epi32(c1, _mm512_maskz_loadu_epi32(mk[1], xq + 64), b);
        c2 = _mm512_dpbusd_epi32(c2, _mm512_maskz_loadu_epi32(mk[2], xq + 128), b);
        c3 = _mm512_dpbusd_epi32(c3, _mm512_maskz_loadu_epi32(mk[3], xq + 192), b);
      }
      _mm512_mask_storeu_epi32(ai + j, mk[0], _mm512_sub_epi32(c0, vcorr));
      _mm512_mask_storeu_epi32(ai + j + 16, mk[1], _mm512_sub_epi32(c1, vcorr));
      _mm512_mask_storeu_epi32(ai + j + 32, mk[2], _mm512_sub_epi32(c2, vcorr));
      _mm512_mask_storeu_epi32(ai + j + 48, mk[3], _mm512_sub_epi32(c3, vcorr));
    }
#endif
    for (; j < n; ++j) {
      uint32_t s = 0;
      for (int64_t q = 0; q < k4; ++q)
        for (int64_t r = 0; r < 4; ++r)
          s += static_cast<uint32_t>(static_cast<int32_t>(wi[4 * q + r]) * x4[(q * n + j) * 4 + r]);
      ai[j] = static_cast<int32_t>(s - static_cast<uint32_t>(corr));
    }
  }
}

}  // namespace pare::kernels
