// Fast broadcast, reduction and layout kernels (contracts in kernels.h).
//
// Sums accumulate in double like ref/, but over several vector accumulators
// combined by a fixed tree (simd::DoubleSum): the order differs from ref's
// left-to-right sum, never from one call to the next. Broadcast adds are
// bit-identical to ref.
#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

void add_rows_f32(int64_t m, int64_t n, float* y, const float* b) {
  for (int64_t i = 0; i < m; ++i) add_floats(y + i * n, b, n);
}

// Column blocks of 32 (AVX-512) kept in four double accumulators while the
// rows stream past: each row contributes two contiguous loads per block.
void sum_rows_f32(int64_t m, int64_t n, float* out, const float* x) {
  int64_t j = 0;
#if defined(__AVX512F__)
  for (; j < n; j += 32) {
    const int64_t r = n - j < 32 ? n - j : 32;
    const int64_t r0 = r < 16 ? r : 16, r1 = r - r0;
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < m; ++i) {
      const float* row = x + i * n + j;
      vf u = vload_tail(row, r0);
      vf v = vload_tail(row + 16, r1);  // mask 0 when r1 == 0: no access
      a0 = _mm512_add_pd(a0, vlo_pd(u));
      a1 = _mm512_add_pd(a1, vhi_pd(u));
      a2 = _mm512_add_pd(a2, vlo_pd(v));
      a3 = _mm512_add_pd(a3, vhi_pd(v));
    }
    vf s0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a0)), _mm512_cvtpd_ps(a1), 1);
    vf s1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a2)), _mm512_cvtpd_ps(a3), 1);
    vstore_tail(out + j, vadd(vload_tail(out + j, r0), s0), r0);
    vstore_tail(out + j + 16, vadd(vload_tail(out + j + 16, r1), s1), r1);
  }
#else
  constexpr int64_t kBlock = 32;
  for (; j < n; j += kBlock) {
    const int64_t r = n - j < kBlock ? n - j : kBlock;
    double acc[kBlock] = {};
    for (int64_t i = 0; i < m; ++i) {
      const float* row = x + i * n + j;
      for (int64_t l = 0; l < r; ++l) acc[l] += row[l];
    }
    for (int64_t l = 0; l < r; ++l) out[j + l] += static_cast<float>(acc[l]);
  }
#endif
}

void add_channels_f32(int64_t b, int64_t c, int64_t p, float* y, const float* bias) {
  for (int64_t i = 0; i < b; ++i)
    for (int64_t ch = 0; ch < c; ++ch) {
      float* run = y + (i * c + ch) * p;
      const float v = bias[ch];
      map1(
          p, run, run, [v](auto u) { return vadd(u, vset1(v)); }, [v](float u) { return u + v; });
    }
}

void sum_channels_f32(int64_t b, int64_t c, int64_t p, float* out, const float* x) {
  for (int64_t ch = 0; ch < c; ++ch) {
    DoubleSum acc;
    for (int64_t i = 0; i < b; ++i) acc.add(x + (i * c + ch) * p, p);
    out[ch] += static_cast<float>(acc.total());
  }
}

double sum_f32(int64_t n, const float* x) {
  DoubleSum acc;
  acc.add(x, n);
  return acc.total();
}

// y: (b, a, p) = x: (a, b, p). Runs of p floats move as blocks; p == 1 is a
// plain matrix transpose (transpose_f32).
#if defined(__AVX2__)
namespace {
// y (8, 8) with row stride ldy = the transpose of x (8, 8) with row stride ldx
// (+ beta y when kAccumulate), in registers: unpack pairs of rows, shuffle
// pairs of pairs, swap 128-bit halves.
template <bool kAccumulate>
inline void transpose8x8(const float* x, int64_t ldx, float* y, int64_t ldy, float beta) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(x + i * ldx);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  auto store = [&](float* to, __m256 v) {
    if constexpr (kAccumulate) v = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(to), v);
    _mm256_storeu_ps(to, v);
  };
  for (int i = 0; i < 4; ++i) {
    store(y + i * ldy, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
    store(y + (i + 4) * ldy, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
  }
}
}  // namespace
#endif

void transpose_f32(int64_t rows, int64_t cols, float* y, int64_t ldy, const float* x, int64_t ldx,
                   float beta) {
  // v + beta y with one rounding, as the 8x8 blocks compute it.
  auto one = [&](int64_t i, int64_t j) {
    const float v = x[i * ldx + j];
    y[j * ldy + i] = beta == 0.0f ? v : fmadd(beta, y[j * ldy + i], v);
  };
#if defined(__AVX2__)
  // Whole 8x8 blocks in registers; the ragged right and bottom edges below.
  const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t i0 = 0; i0 < r8; i0 += 8)
    for (int64_t j0 = 0; j0 < c8; j0 += 8) {
      if (beta == 0.0f)
        transpose8x8<false>(x + i0 * ldx + j0, ldx, y + j0 * ldy + i0, ldy, beta);
      else
        transpose8x8<true>(x + i0 * ldx + j0, ldx, y + j0 * ldy + i0, ldy, beta);
    }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = i < r8 ? c8 : 0; j < cols; ++j) one(i, j);
#else
  // 16x16 tiles, so that both sides stay in cache.
  constexpr int64_t kTile = 16;
  for (int64_t i0 = 0; i0 < rows; i0 += kTile)
    for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
      const int64_t i1 = i0 + kTile < rows ? i0 + kTile : rows;
      const int64_t j1 = j0 + kTile < cols ? j0 + kTile : cols;
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) one(i, j);
    }
#endif
}

void swap_outer_f32(int64_t a, int64_t b, int64_t p, float* y, const float* x) {
  if (p == 1) return transpose_f32(a, b, y, a, x, b, 0.0f);
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j) copy_floats(y + (j * a + i) * p, x + (i * b + j) * p, p);
}

}  // namespace pare::kernels
