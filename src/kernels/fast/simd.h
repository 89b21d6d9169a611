// SIMD layer of the fast kernels (private to src/kernels/fast/; not a public header).
//
// One vector type `vf` and a few inline operations on it, so that a kernel is
// written once: 16 lanes with AVX-512, 8 with AVX2, and no PARE_SIMD at all
// elsewhere (the kernels then run their plain loops, which the compiler may
// still vectorise). AVX-512 kernels finish with a masked tail; the others
// with a scalar tail.
//
// Also the polynomial exp and what is built on it (sigmoid, tanh,
// log1p(exp(-|x|))), each in vector and scalar form. The scalar forms evaluate
// the same polynomial, so a value does not depend on whether it fell into a
// vector body or a tail.
//
// Accuracy, measured against double-precision libm on 2^24 evenly spaced points
// of each range (vector and scalar forms agree bit for bit, with and without
// AVX-512):
//   exp_*                x in [-87, 88]   max relative error 8.4e-8  (< 1 ulp)
//   sigmoid_*            x in [-80, 80]   max relative error 1.5e-7
//   tanh_*               x in [-10, 10]   max relative error 1.5e-7
//   log1p_exp_neg_abs_*  x in [-30, 30]   max relative error 2.2e-7
// Beyond the ranges the results saturate correctly: exp overflows to +inf and
// underflows to 0 through denormals (where relative accuracy is lost, absolute
// error < 1e-44), sigmoid goes to 0 or 1, tanh to +-1. NaN in gives NaN out.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
// GCC 12's AVX-512 headers trip its own -Wuninitialized (`__m512 __Y = __Y;`,
// GCC PR 105593, fixed in 12.3/13); the warnings point into the header, so
// silencing them around the include keeps them on for pare's code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace pare::kernels::simd {

// ---- Scalar building blocks ---------------------------------------------------------------
// a * b + c with one rounding where the hardware has FMA (as the vector code does).
inline float fmadd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite split in
// two constants, so n * kLn2Hi is exact for |n| < 2^15), |r| <= ln2 / 2. exp(r) is
// Cephes' expf polynomial: 1 + r + r^2 P(r), P of degree 5.
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
inline constexpr float kExpP0 = 1.9875691500e-4f, kExpP1 = 1.3981999507e-3f,
                       kExpP2 = 8.3334519073e-3f, kExpP3 = 4.1665795894e-2f,
                       kExpP4 = 1.6666665459e-1f, kExpP5 = 5.0000001201e-1f;
// Clamp that keeps n in [-150, 129]: wide enough for +inf and 0 to come out of
// the scaling, narrow enough for the exponent arithmetic below.
inline constexpr float kExpLo = -104.0f, kExpHi = 89.0f;

inline float exp_poly(float r) {
  float p = fmadd(kExpP0, r, kExpP1);
  p = fmadd(p, r, kExpP2);
  p = fmadd(p, r, kExpP3);
  p = fmadd(p, r, kExpP4);
  p = fmadd(p, r, kExpP5);
  return fmadd(p, r * r, r) + 1.0f;
}

// 2^n as two factors 2^(n>>1) * 2^(n - (n>>1)), each a normal float for n in
// [-150, 129], so that the product over- and underflows the way exp must.
inline float exp_scalar(float x) {
  if (x != x) return x;
  x = std::fmin(std::fmax(x, kExpLo), kExpHi);
  float n = std::nearbyint(x * kLog2e);
  float r = fmadd(-n, kLn2Hi, x);
  r = fmadd(-n, kLn2Lo, r);
  int32_t ni = static_cast<int32_t>(n), n1 = ni >> 1, n2 = ni - n1;
  float s1 = std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  float s2 = std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  return exp_poly(r) * s1 * s2;
}

inline float sigmoid_scalar(float x) { return 1.0f / (1.0f + exp_scalar(-x)); }

// tanh: for |x| < 0.5 its Taylor series up to x^13 (alternating, first omitted
// term < 1e-7 relative); above, (1 - e) / (1 + e) with e = exp(-2|x|), where the
// cancellation in 1 - e costs at most ~2 ulp because e < 0.37.
inline constexpr float kTanhSmall = 0.5f;
inline constexpr float kTanhC3 = -0.333333333f, kTanhC5 = 0.133333333f, kTanhC7 = -0.0539682540f,
                       kTanhC9 = 0.0218694885f, kTanhC11 = -0.00886323552f,
                       kTanhC13 = 0.00359212803f;
inline float tanh_scalar(float x) {
  float ax = std::fabs(x);
  if (ax < kTanhSmall) {
    float x2 = x * x;
    float p = fmadd(kTanhC13, x2, kTanhC11);
    p = fmadd(p, x2, kTanhC9);
    p = fmadd(p, x2, kTanhC7);
    p = fmadd(p, x2, kTanhC5);
    p = fmadd(p, x2, kTanhC3);
    return fmadd(p * x2, x, x);
  }
  float e = exp_scalar(-2.0f * ax);
  return std::copysign((1.0f - e) / (1.0f + e), x);
}

// log1p(exp(-|x|)), the soft part of binary cross-entropy with logits.
// With e = exp(-|x|) in (0, 1] and s = e / (2 + e) in (0, 1/3]:
// log1p(e) = 2 atanh(s) = 2s (1 + s^2/3 + s^4/5 + ... + s^12/13) + O(s^14/15);
// the truncation is below 1.5e-8 relative, and the result keeps full relative
// accuracy when e is tiny (no 1 + e rounding to 1).
inline float log1p_series(float s) {
  float s2 = s * s;
  float p = fmadd(1.0f / 13.0f, s2, 1.0f / 11.0f);
  p = fmadd(p, s2, 1.0f / 9.0f);
  p = fmadd(p, s2, 1.0f / 7.0f);
  p = fmadd(p, s2, 1.0f / 5.0f);
  p = fmadd(p, s2, 1.0f / 3.0f);
  float two_s = s + s;
  return fmadd(p * s2, two_s, two_s);
}
inline float log1p_exp_neg_abs_scalar(float x) {
  float e = exp_scalar(-std::fabs(x));
  return log1p_series(e / (2.0f + e));
}

// ---- Vector layer ---------------------------------------------------------------------------
#if defined(__AVX512F__)
#define PARE_SIMD 1
inline constexpr int kLanes = 16;
using vf = __m512;
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline vf vset1(float x) { return _mm512_set1_ps(x); }
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
inline vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
// max/min return the SECOND operand when either is NaN (x86 semantics): with a
// constant first, NaN passes through; vmax(x, 0) is exactly `x > 0 ? x : 0`.
inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
inline vf vabs(vf a) { return _mm512_abs_ps(a); }
inline vf vsqrt(vf a) { return _mm512_sqrt_ps(a); }
// `c ? a : b` lane by lane, for a comparison mask c.
using vmask = __mmask16;
inline vmask vlt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
inline vmask vgt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline vmask vneq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
inline vf vselect(vmask c, vf a, vf b) { return _mm512_mask_blend_ps(c, b, a); }
inline vf vcopysign(vf mag, vf sign) {
  const __m512i s = _mm512_set1_epi32(INT32_MIN);
  return _mm512_castsi512_ps(
      _mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(sign), s, 0xD8));
}
// Masked loads/stores for the tail of a loop: lanes [0, r), r in [0, 16].
inline __mmask16 tail_mask(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
inline vf vload_tail(const float* p, int64_t r) { return _mm512_maskz_loadu_ps(tail_mask(r), p); }
inline void vstore_tail(float* p, vf v, int64_t r) { _mm512_mask_storeu_ps(p, tail_mask(r), v); }
// Widening to double (for double accumulators): low and high 8 lanes.
inline __m512d vlo_pd(vf v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
inline __m512d vhi_pd(vf v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }

inline vf exp_v(vf x) {
  x = vmax(vset1(kExpLo), vmin(vset1(kExpHi), x));
  vf n =
      _mm512_roundscale_ps(vmul(x, vset1(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = vfnmadd(n, vset1(kLn2Hi), x);
  r = vfnmadd(n, vset1(kLn2Lo), r);
  vf p = vfmadd(vset1(kExpP0), r, vset1(kExpP1));
  p = vfmadd(p, r, vset1(kExpP2));
  p = vfmadd(p, r, vset1(kExpP3));
  p = vfmadd(p, r, vset1(kExpP4));
  p = vfmadd(p, r, vset1(kExpP5));
  p = vadd(vfmadd(p, vmul(r, r), r), vset1(1.0f));
  return _mm512_scalef_ps(p, n);  // p * 2^n, with IEEE overflow and gradual underflow
}

#elif defined(__AVX2__)
#define PARE_SIMD 1
inline constexpr int kLanes = 8;
using vf = __m256;
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline vf vset1(float x) { return _mm256_set1_ps(x); }
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
#if defined(__FMA__)
inline vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
#else
inline vf vfmadd(vf a, vf b, vf c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_sub_ps(c, _mm256_mul_ps(a, b)); }
#endif
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
inline vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline vf vsqrt(vf a) { return _mm256_sqrt_ps(a); }
using vmask = __m256;
inline vmask vlt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline vmask vgt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline vmask vneq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
inline vf vselect(vmask c, vf a, vf b) { return _mm256_blendv_ps(b, a, c); }
inline vf vcopysign(vf mag, vf sign) {
  const vf s = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign));
}
inline __m256d vlo_pd(vf v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
inline __m256d vhi_pd(vf v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }

inline vf exp_v(vf x) {
  x = vmax(vset1(kExpLo), vmin(vset1(kExpHi), x));
  vf n = _mm256_round_ps(vmul(x, vset1(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = vfnmadd(n, vset1(kLn2Hi), x);
  r = vfnmadd(n, vset1(kLn2Lo), r);
  vf p = vfmadd(vset1(kExpP0), r, vset1(kExpP1));
  p = vfmadd(p, r, vset1(kExpP2));
  p = vfmadd(p, r, vset1(kExpP3));
  p = vfmadd(p, r, vset1(kExpP4));
  p = vfmadd(p, r, vset1(kExpP5));
  p = vadd(vfmadd(p, vmul(r, r), r), vset1(1.0f));
  __m256i ni = _mm256_cvtps_epi32(n);  // NaN lanes give INT_MIN; p is NaN there anyway
  __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return vmul(vmul(p, s1), s2);
}

#else
// No SIMD: the same names on one float, so that kernels written against the
// vector layer still compile; their vector loops are compiled out.
inline constexpr int kLanes = 1;
using vf = float;
using vmask = bool;
inline vf vset1(float x) { return x; }
inline vf vzero() { return 0.0f; }
inline vf vadd(vf a, vf b) { return a + b; }
inline vf vsub(vf a, vf b) { return a - b; }
inline vf vmul(vf a, vf b) { return a * b; }
inline vf vdiv(vf a, vf b) { return a / b; }
inline vf vfmadd(vf a, vf b, vf c) { return fmadd(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return fmadd(-a, b, c); }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vabs(vf a) { return std::fabs(a); }
inline vf vsqrt(vf a) { return std::sqrt(a); }
inline vmask vlt(vf a, vf b) { return a < b; }
inline vmask vgt(vf a, vf b) { return a > b; }
inline vmask vneq(vf a, vf b) { return a != b; }
inline vf vselect(vmask c, vf a, vf b) { return c ? a : b; }
inline vf exp_v(vf x) { return exp_scalar(x); }
inline vf sigmoid_v(vf x) { return sigmoid_scalar(x); }
inline vf tanh_v(vf x) { return tanh_scalar(x); }
inline vf log1p_exp_neg_abs_v(vf x) { return log1p_exp_neg_abs_scalar(x); }
#endif

#if defined(PARE_SIMD)
inline vf sigmoid_v(vf x) {
  const vf one = vset1(1.0f);
  return vdiv(one, vadd(one, exp_v(vsub(vzero(), x))));
}

inline vf tanh_v(vf x) {
  vf ax = vabs(x), x2 = vmul(x, x);
  vf p = vfmadd(vset1(kTanhC13), x2, vset1(kTanhC11));
  p = vfmadd(p, x2, vset1(kTanhC9));
  p = vfmadd(p, x2, vset1(kTanhC7));
  p = vfmadd(p, x2, vset1(kTanhC5));
  p = vfmadd(p, x2, vset1(kTanhC3));
  vf small = vfmadd(vmul(p, x2), x, x);
  const vf one = vset1(1.0f);
  vf e = exp_v(vmul(vset1(-2.0f), ax));
  vf big = vcopysign(vdiv(vsub(one, e), vadd(one, e)), x);
  return vselect(vlt(ax, vset1(kTanhSmall)), small, big);
}

inline vf log1p_exp_neg_abs_v(vf x) {
  vf e = exp_v(vsub(vzero(), vabs(x)));
  vf s = vdiv(e, vadd(vset1(2.0f), e));
  vf s2 = vmul(s, s);
  vf p = vfmadd(vset1(1.0f / 13.0f), s2, vset1(1.0f / 11.0f));
  p = vfmadd(p, s2, vset1(1.0f / 9.0f));
  p = vfmadd(p, s2, vset1(1.0f / 7.0f));
  p = vfmadd(p, s2, vset1(1.0f / 5.0f));
  p = vfmadd(p, s2, vset1(1.0f / 3.0f));
  vf two_s = vadd(s, s);
  return vfmadd(vmul(p, s2), two_s, two_s);
}
#endif

// ---- Loops shared by the kernels ------------------------------------------------------------
// Maps over n lanes: a vector body, then a masked (AVX-512) or scalar tail.
// `vfn` takes and returns vf (a generic lambda), `sfn` is its scalar twin.
// y[i] = f(x[i])
template <class V, class S>
inline void map1(int64_t n, float* y, const float* x, V vfn, S sfn) {
  int64_t i = 0;
#if defined(PARE_SIMD)
  for (; i + kLanes <= n; i += kLanes) vstore(y + i, vfn(vload(x + i)));
#if defined(__AVX512F__)
  if (i < n) vstore_tail(y + i, vfn(vload_tail(x + i, n - i)), n - i);
  return;
#endif
#endif
  for (; i < n; ++i) y[i] = sfn(x[i]);
}

// y[i] = f(a[i], b[i])
template <class V, class S>
inline void map2(int64_t n, float* y, const float* a, const float* b, V vfn, S sfn) {
  int64_t i = 0;
#if defined(PARE_SIMD)
  for (; i + kLanes <= n; i += kLanes) vstore(y + i, vfn(vload(a + i), vload(b + i)));
#if defined(__AVX512F__)
  if (i < n) vstore_tail(y + i, vfn(vload_tail(a + i, n - i), vload_tail(b + i, n - i)), n - i);
  return;
#endif
#endif
  for (; i < n; ++i) y[i] = sfn(a[i], b[i]);
}

// y[i] = f(y[i], a[i], b[i])   (the accumulating backward kernels)
template <class V, class S>
inline void map3(int64_t n, float* y, const float* a, const float* b, V vfn, S sfn) {
  int64_t i = 0;
#if defined(PARE_SIMD)
  for (; i + kLanes <= n; i += kLanes) vstore(y + i, vfn(vload(y + i), vload(a + i), vload(b + i)));
#if defined(__AVX512F__)
  if (i < n) {
    const int64_t r = n - i;
    vstore_tail(y + i, vfn(vload_tail(y + i, r), vload_tail(a + i, r), vload_tail(b + i, r)), r);
  }
  return;
#endif
#endif
  for (; i < n; ++i) y[i] = sfn(y[i], a[i], b[i]);
}

// Runs of floats, short ones (a row of a 10x10 image) included: one masked
// load/store pair covers up to 16 floats without a call to memcpy.
inline void copy_floats(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) vstore_tail(dst + i, vload_tail(src + i, n - i), n - i);
#else
  if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
#endif
}
inline void zero_floats(float* dst, int64_t n) {
#if defined(__AVX512F__)
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_setzero_ps());
  if (i < n) vstore_tail(dst + i, _mm512_setzero_ps(), n - i);
#else
  if (n > 0) std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
#endif
}
// dst += src
inline void add_floats(float* dst, const float* src, int64_t n) {
  map2(
      n, dst, dst, src, [](auto a, auto b) { return vadd(a, b); },
      [](float a, float b) { return a + b; });
}

// Sum of floats in double, in a fixed order (same input, same bits): vector
// lanes widened to double and kept in separate accumulators, combined at the
// end by a fixed tree.
struct DoubleSum {
#if defined(__AVX512F__)
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  __m512d a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
  void add(const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) add2(vload(x + i), vload(x + i + 16));
    for (; i < n; i += 16) add1(vload_tail(x + i, n - i < 16 ? n - i : 16));
  }
  void add1(vf v) {
    a0 = _mm512_add_pd(a0, vlo_pd(v));
    a1 = _mm512_add_pd(a1, vhi_pd(v));
  }
  void add2(vf u, vf v) {
    add1(u);
    a2 = _mm512_add_pd(a2, vlo_pd(v));
    a3 = _mm512_add_pd(a3, vhi_pd(v));
  }
  double total() const {
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  }
#elif defined(__AVX2__)
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  __m256d a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  double tail = 0;
  void add(const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) add2(vload(x + i), vload(x + i + 8));
    for (; i + 8 <= n; i += 8) add1(vload(x + i));
    for (; i < n; ++i) tail += x[i];
  }
  void add1(vf v) {
    a0 = _mm256_add_pd(a0, vlo_pd(v));
    a1 = _mm256_add_pd(a1, vhi_pd(v));
  }
  void add2(vf u, vf v) {
    add1(u);
    a2 = _mm256_add_pd(a2, vlo_pd(v));
    a3 = _mm256_add_pd(a3, vhi_pd(v));
  }
  double total() const {
    __m256d s = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h))) + tail;
  }
#else
  double a[4] = {0, 0, 0, 0};
  void add(const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int l = 0; l < 4; ++l) a[l] += x[i + l];
    for (; i < n; ++i) a[0] += x[i];
  }
  double total() const { return (a[0] + a[1]) + (a[2] + a[3]); }
#endif
};

}  // namespace pare::kernels::simd
