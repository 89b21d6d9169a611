// Fast loss kernels (contracts in kernels.h).
//
// softmax_xent: a row of up to 16 classes (MNIST's 10) lives in one AVX-512
// register: masked load, max, polynomial exp, sum in double, divide, masked
// store; wider rows go through the general three-pass loop. Row losses use
// log(z) in double, so a confident row (loss near 0) keeps its relative
// accuracy. bce_logits: log1p(exp(-|x|)) by simd.h's series (<= 2.2e-7
// relative), per-element terms in float summed in double accumulators.
// sq_diff_sum works in double throughout. All sums use a fixed order.
//
// Tolerances versus ref/ (which works in double): probabilities and losses
// within ~3e-7 relative; the backward kernels are fused multiply-adds of the
// same expressions.
#include <cmath>
#include <limits>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// probs = softmax(row) for any k; returns z = sum exp(row - max) in double.
double softmax_row(int64_t k, float* pr, const float* row, float* max_out) {
  float mx = row[0];
  for (int64_t j = 1; j < k; ++j) mx = mx < row[j] ? row[j] : mx;
  map1(
      k, pr, row, [mx](auto v) { return exp_v(vsub(v, vset1(mx))); },
      [mx](float v) { return exp_scalar(v - mx); });
  DoubleSum acc;
  acc.add(pr, k);
  const double z = acc.total();
  const float zf = static_cast<float>(z);
  map1(
      k, pr, pr, [zf](auto v) { return vdiv(v, vset1(zf)); }, [zf](float v) { return v / zf; });
  *max_out = mx;
  return z;
}

float bce_term(float x, float t) {
  return fmadd(-x, t, x > 0.0f ? x : 0.0f) + log1p_exp_neg_abs_scalar(x);
}
#if defined(PARE_SIMD)
vf bce_term_v(vf x, vf t) { return vadd(vfnmadd(x, t, vmax(x, vzero())), log1p_exp_neg_abs_v(x)); }
#endif

}  // namespace

double softmax_xent_f32(int64_t b, int64_t k, float* probs, const float* logits,
                        const int32_t* labels) {
  double total = 0;
  for (int64_t i = 0; i < b; ++i) {
    const float* row = logits + i * k;
    float* pr = probs + i * k;
#if defined(__AVX512F__)
    if (k <= 16) {
      const __mmask16 m = tail_mask(k);
      const vf x = _mm512_mask_loadu_ps(vset1(kNegInf), m, row);
      const float mx = _mm512_reduce_max_ps(x);
      const vf e = _mm512_maskz_mov_ps(m, exp_v(vsub(x, vset1(mx))));
      const double z = _mm512_reduce_add_pd(_mm512_add_pd(vlo_pd(e), vhi_pd(e)));
      vstore_tail(pr, vdiv(e, vset1(static_cast<float>(z))), k);
      total += std::log(z) - (row[labels[i]] - mx);
      continue;
    }
#endif
    float mx;
    const double z = softmax_row(k, pr, row, &mx);
    total += std::log(z) - (row[labels[i]] - mx);
  }
  return total;
}

// dlogits += scale * (probs - onehot), as one flat pass over b*k values
// (rows of 10 are too short for a vector each: masked per-row stores would
// stall the next row's load) plus a fix-up of the b label positions. Their
// old values are stashed first, in blocks of rows on the stack, so each value
// is still one fused fmadd(scale, p - onehot, d) as in the per-element form.
void softmax_xent_backward_f32(int64_t b, int64_t k, float* dlogits, const float* probs,
                               const int32_t* labels, float scale) {
  constexpr int64_t kBlock = 256;
  float stash[kBlock];
  for (int64_t r0 = 0; r0 < b; r0 += kBlock) {
    const int64_t rows = b - r0 < kBlock ? b - r0 : kBlock;
    float* dl = dlogits + r0 * k;
    const float* pr = probs + r0 * k;
    const int32_t* lab = labels + r0;
    for (int64_t i = 0; i < rows; ++i) stash[i] = dl[i * k + lab[i]];
    map2(
        rows * k, dl, dl, pr, [scale](auto d, auto p) { return vfmadd(vset1(scale), p, d); },
        [scale](float d, float p) { return fmadd(scale, p, d); });
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t at = i * k + lab[i];
      dl[at] = fmadd(scale, pr[at] - 1.0f, stash[i]);
    }
  }
}

double bce_logits_f32(int64_t n, const float* logits, const float* targets) {
  int64_t i = 0;
  DoubleSum acc;
#if defined(PARE_SIMD)
  for (; i + 2 * kLanes <= n; i += 2 * kLanes)
    acc.add2(bce_term_v(vload(logits + i), vload(targets + i)),
             bce_term_v(vload(logits + i + kLanes), vload(targets + i + kLanes)));
#if defined(__AVX512F__)
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const vf t = bce_term_v(vload_tail(logits + i, r), vload_tail(targets + i, r));
    acc.add1(_mm512_maskz_mov_ps(tail_mask(r), t));  // padding lanes would add log 2
  }
#endif
#endif
  double tail = 0;
  for (; i < n; ++i) tail += bce_term(logits[i], targets[i]);
  return acc.total() + tail;
}

void bce_logits_backward_f32(int64_t n, float* dlogits, const float* logits, const float* targets,
                             float scale) {
  map3(
      n, dlogits, logits, targets,
      [scale](auto d, auto x, auto t) { return vfmadd(vset1(scale), vsub(sigmoid_v(x), t), d); },
      [scale](float d, float x, float t) { return fmadd(scale, sigmoid_scalar(x) - t, d); });
}

namespace {

// With e = exp(-|x|), one reciprocal r = 1 / ((1 + e)(2 + e)) gives both
// 1 / (1 + e) = (2 + e) r, for sigmoid(x) (that, or e times it for x < 0),
// and s = e / (2 + e) = e (1 + e) r, for log1p(e) by simd.h's series.
float bce_grad_term(float x, float t, float* dsig) {
  const float e = exp_scalar(-std::fabs(x));
  const float d1 = 1.0f + e, d2 = 2.0f + e;
  const float r = 1.0f / (d1 * d2);
  const float inv1 = d2 * r;
  *dsig = (x >= 0.0f ? inv1 : e * inv1) - t;
  return fmadd(-x, t, x > 0.0f ? x : 0.0f) + log1p_series(e * d1 * r);
}
#if defined(PARE_SIMD)
[[gnu::always_inline]] inline vf bce_grad_term_v(vf x, vf t, vf* dsig) {
  const vf one = vset1(1.0f);
  const vf e = exp_v(vsub(vzero(), vabs(x)));
  const vf d1 = vadd(one, e), d2 = vadd(vset1(2.0f), e);
  const vf r = vdiv(one, vmul(d1, d2));
  const vf inv1 = vmul(d2, r);
  *dsig = vsub(vselect(vlt(x, vzero()), vmul(e, inv1), inv1), t);
  const vf s = vmul(vmul(e, d1), r);
  const vf s2 = vmul(s, s);
  vf p = vfmadd(vset1(1.0f / 13.0f), s2, vset1(1.0f / 11.0f));
  p = vfmadd(p, s2, vset1(1.0f / 9.0f));
  p = vfmadd(p, s2, vset1(1.0f / 7.0f));
  p = vfmadd(p, s2, vset1(1.0f / 5.0f));
  p = vfmadd(p, s2, vset1(1.0f / 3.0f));
  const vf two_s = vadd(s, s);
  return vadd(vfnmadd(x, t, vmax(x, vzero())), vfmadd(vmul(p, s2), two_s, two_s));
}
#endif

}  // namespace

double bce_logits_grad_f32(int64_t n, float* dsig, const float* logits, const float* targets) {
  int64_t i = 0;
  DoubleSum acc;
#if defined(PARE_SIMD)
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    vf d0, d1;
    const vf t0 = bce_grad_term_v(vload(logits + i), vload(targets + i), &d0);
    const vf t1 = bce_grad_term_v(vload(logits + i + kLanes), vload(targets + i + kLanes), &d1);
    vstore(dsig + i, d0);
    vstore(dsig + i + kLanes, d1);
    acc.add2(t0, t1);
  }
#if defined(__AVX512F__)
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    vf d;
    const vf t = bce_grad_term_v(vload_tail(logits + i, r), vload_tail(targets + i, r), &d);
    vstore_tail(dsig + i, d, r);
    acc.add1(_mm512_maskz_mov_ps(tail_mask(r), t));  // padding lanes would add log 2
  }
#endif
#endif
  double tail = 0;
  for (; i < n; ++i) tail += bce_grad_term(logits[i], targets[i], dsig + i);
  return acc.total() + tail;
}

double sq_diff_sum_f32(int64_t n, const float* a, const float* b) {
#if defined(__AVX512F__)
  __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  auto acc = [](__m512d s, __m512d u, __m512d v) {
    const __m512d d = _mm512_sub_pd(u, v);
    return _mm512_fmadd_pd(d, d, s);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const vf a0 = vload(a + i), b0 = vload(b + i), a1 = vload(a + i + 16), b1 = vload(b + i + 16);
    s0 = acc(s0, vlo_pd(a0), vlo_pd(b0));
    s1 = acc(s1, vhi_pd(a0), vhi_pd(b0));
    s2 = acc(s2, vlo_pd(a1), vlo_pd(b1));
    s3 = acc(s3, vhi_pd(a1), vhi_pd(b1));
  }
  for (; i < n; i += 16) {  // zero padding lanes add 0
    const int64_t r = n - i < 16 ? n - i : 16;
    const vf a0 = vload_tail(a + i, r), b0 = vload_tail(b + i, r);
    s0 = acc(s0, vlo_pd(a0), vlo_pd(b0));
    s1 = acc(s1, vhi_pd(a0), vhi_pd(b0));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
#else
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) {
      const double d = static_cast<double>(a[i + l]) - b[i + l];
      s[l] += d * d;
    }
  for (; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    s[0] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
#endif
}

}  // namespace pare::kernels
