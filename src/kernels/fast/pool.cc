// Fast pooling kernels (contracts in kernels.h).
//
// The 2x2 window with stride 2 (LeNet, most CNNs) has an AVX-512 path: 16
// outputs at a time from two 32-float loads per input row, split into the
// even and odd columns by one permute each. Other windows, and machines
// without AVX-512, take the general loops.
//
// Versus ref/: max pooling and its backward are exact (same values, same
// argmax, first maximum on ties, NaN handled as ref does); average pooling
// adds in ref's order and is exact up to the sign of a zero.
#include <limits>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

namespace {

#if defined(__AVX512F__)
// Columns [0, 2r) of one input row (r <= 16) as even and odd lanes.
inline void load_pairs(const float* src, int64_t r, vf* even, vf* odd) {
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int64_t m = 2 * r;
  vf lo = vload_tail(src, m < 16 ? m : 16);
  vf hi = vload_tail(src + 16, m > 16 ? m - 16 : 0);
  *even = _mm512_permutex2var_ps(lo, ie, hi);
  *odd = _mm512_permutex2var_ps(lo, io, hi);
}

void maxpool_2x2(const Pool2dGeometry& g, float* y, int32_t* argmax, const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w(), w = g.w;
  const vf neg_inf = vset1(-std::numeric_limits<float>::infinity());
  const __m512i iota2 =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i off_b = _mm512_set1_epi32(1), off_c = _mm512_set1_epi32(static_cast<int32_t>(w)),
                off_d = _mm512_set1_epi32(static_cast<int32_t>(w + 1));
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * g.h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = plane + 2 * oy * w;
      float* yrow = y + (ch * oh + oy) * ow;
      int32_t* arow = argmax + (ch * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox += 16) {
        const int64_t r = ow - ox < 16 ? ow - ox : 16;
        vf a, b, c, d;
        load_pairs(r0 + 2 * ox, r, &a, &b);
        load_pairs(r0 + w + 2 * ox, r, &c, &d);
        // Window taps in ref's order with a strict >, starting from -inf.
        __mmask16 m = _mm512_cmp_ps_mask(a, neg_inf, _CMP_GT_OQ);
        vf best = _mm512_mask_mov_ps(neg_inf, m, a);
        __m512i off = _mm512_setzero_si512();
        m = _mm512_cmp_ps_mask(b, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, m, b);
        off = _mm512_mask_mov_epi32(off, m, off_b);
        m = _mm512_cmp_ps_mask(c, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, m, c);
        off = _mm512_mask_mov_epi32(off, m, off_c);
        m = _mm512_cmp_ps_mask(d, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, m, d);
        off = _mm512_mask_mov_epi32(off, m, off_d);
        // No tap above -inf (all -inf or NaN): ref reports the top-left tap.
        best = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(best, neg_inf, _CMP_GT_OQ), best);
        const __m512i base = _mm512_set1_epi32(static_cast<int32_t>(2 * oy * w + 2 * ox));
        const __m512i at = _mm512_add_epi32(_mm512_add_epi32(base, iota2), off);
        vstore_tail(yrow + ox, best, r);
        _mm512_mask_storeu_epi32(arow + ox, tail_mask(r), at);
      }
    }
  }
}

void avgpool_2x2(const Pool2dGeometry& g, float* y, const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w(), w = g.w;
  const vf quarter = vset1(0.25f);
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * g.h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = plane + 2 * oy * w;
      float* yrow = y + (ch * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox += 16) {
        const int64_t r = ow - ox < 16 ? ow - ox : 16;
        vf a, b, c, d;
        load_pairs(r0 + 2 * ox, r, &a, &b);
        load_pairs(r0 + w + 2 * ox, r, &c, &d);
        vstore_tail(yrow + ox, vmul(vadd(vadd(vadd(a, b), c), d), quarter), r);
      }
    }
  }
}

void avgpool_2x2_backward(const Pool2dGeometry& g, float* dx, const float* dy) {
  const int64_t oh = g.out_h(), ow = g.out_w(), w = g.w;
  const vf quarter = vset1(0.25f);
  const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i dup_hi =
      _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
  for (int64_t ch = 0; ch < g.c; ++ch) {
    float* plane = dx + ch * g.h * w;
    for (int64_t oy = 0; oy < oh; ++oy) {
      float* r0 = plane + 2 * oy * w;
      const float* drow = dy + (ch * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox += 16) {
        const int64_t r = ow - ox < 16 ? ow - ox : 16;
        const int64_t m = 2 * r, m0 = m < 16 ? m : 16, m1 = m - m0;
        vf d = vmul(vload_tail(drow + ox, r), quarter);
        vf lo = _mm512_permutexvar_ps(dup_lo, d), hi = _mm512_permutexvar_ps(dup_hi, d);
        // All four loads before the stores: with w < 32 the rows' vectors
        // overlap, and a load behind an overlapping masked store stalls.
        float* a = r0 + 2 * ox;
        float* b = a + w;
        const vf a0 = vadd(vload_tail(a, m0), lo), a1 = vadd(vload_tail(a + 16, m1), hi);
        const vf b0 = vadd(vload_tail(b, m0), lo), b1 = vadd(vload_tail(b + 16, m1), hi);
        vstore_tail(a, a0, m0);
        vstore_tail(a + 16, a1, m1);
        vstore_tail(b, b0, m0);
        vstore_tail(b + 16, b1, m1);
      }
    }
  }
}

bool is_2x2(const Pool2dGeometry& g) { return g.k == 2 && g.stride == 2; }
#endif

}  // namespace

void maxpool2d_f32(const Pool2dGeometry& g, float* y, int32_t* argmax, const float* x) {
#if defined(__AVX512F__)
  if (is_2x2(g)) return maxpool_2x2(g, y, argmax, x);
#endif
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * g.h * g.w;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t corner = (oy * g.stride) * g.w + ox * g.stride;
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_at = corner;
        for (int64_t ky = 0; ky < g.k; ++ky) {
          const float* row = plane + corner + ky * g.w;
          for (int64_t kx = 0; kx < g.k; ++kx)
            if (row[kx] > best) {
              best = row[kx];
              best_at = corner + ky * g.w + kx;
            }
        }
        y[(ch * oh + oy) * ow + ox] = plane[best_at];
        argmax[(ch * oh + oy) * ow + ox] = static_cast<int32_t>(best_at);
      }
  }
}

void maxpool2d_backward_f32(const Pool2dGeometry& g, float* dx, const float* dy,
                            const int32_t* argmax) {
  // A scatter-add, scalar and in ref's order: windows may overlap (stride <
  // k), and at ~1 cycle per output it already runs at ref's speed. (An AVX-512
  // 2x2 version with masked adds was no faster: with rows narrower than 32
  // floats, each row's loads overlap the previous row's masked stores, and
  // such a load waits for the store to retire.)
  const int64_t plane_out = g.out_h() * g.out_w(), hw = g.h * g.w;
  for (int64_t ch = 0; ch < g.c; ++ch) {
    float* plane = dx + ch * hw;
    const float* d = dy + ch * plane_out;
    const int32_t* at = argmax + ch * plane_out;
    for (int64_t q = 0; q < plane_out; ++q) plane[at[q]] += d[q];
  }
}

void avgpool2d_f32(const Pool2dGeometry& g, float* y, const float* x) {
#if defined(__AVX512F__)
  if (is_2x2(g)) return avgpool_2x2(g, y, x);
#endif
  const int64_t oh = g.out_h(), ow = g.out_w();
  const float inv = 1.0f / static_cast<float>(g.k * g.k);
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const float* corner = x + (ch * g.h + oy * g.stride) * g.w + ox * g.stride;
        float acc = 0;
        for (int64_t ky = 0; ky < g.k; ++ky)
          for (int64_t kx = 0; kx < g.k; ++kx) acc += corner[ky * g.w + kx];
        y[(ch * oh + oy) * ow + ox] = acc * inv;
      }
}

void avgpool2d_backward_f32(const Pool2dGeometry& g, float* dx, const float* dy) {
#if defined(__AVX512F__)
  if (is_2x2(g)) return avgpool_2x2_backward(g, dx, dy);
#endif
  const int64_t oh = g.out_h(), ow = g.out_w();
  const float inv = 1.0f / static_cast<float>(g.k * g.k);
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const float d = dy[(ch * oh + oy) * ow + ox] * inv;
        float* corner = dx + (ch * g.h + oy * g.stride) * g.w + ox * g.stride;
        for (int64_t ky = 0; ky < g.k; ++ky)
          for (int64_t kx = 0; kx < g.k; ++kx) corner[ky * g.w + kx] += d;
      }
}

}  // namespace pare::kernels
