// Fast optimizer updates (contracts in kernels.h): one fused pass over w, m, v
// (Adam) or w, buf (SGD), with the loop-invariant choices (mask or not,
// decoupled decay, momentum) hoisted out of the loop as template arguments.
//
// Versus ref/: same formulas with FMA contraction; Adam multiplies by
// 1/sqrt(bias_correction2) instead of dividing by its root and computes
// step * (m / denom) rather than (step * m) / denom. Each is a rounding or
// two, < 1e-6 relative. Masked-out entries are exactly 0, as in ref.
#include <cmath>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

namespace {

struct AdamConsts {
  float b1, c1, b2, c2, wd, decay, step, inv_sqrt_bc2, eps;
  explicit AdamConsts(const AdamParams& p)
      : b1(p.beta1),
        c1(1.0f - p.beta1),
        b2(p.beta2),
        c2(1.0f - p.beta2),
        wd(p.weight_decay),
        decay(p.lr * p.weight_decay),
        step(p.lr / p.bias_correction1),
        inv_sqrt_bc2(1.0f / std::sqrt(p.bias_correction2)),
        eps(p.eps) {}
};

// One Adam step on a single value; the vector body below mirrors it op by op.
template <bool Decoupled>
inline void adam_scalar(const AdamConsts& k, float& w, float& m, float& v, float g) {
  float grad = g;
  if constexpr (Decoupled)
    w = fmadd(-k.decay, w, w);
  else
    grad = fmadd(k.wd, w, g);
  m = fmadd(k.b1, m, k.c1 * grad);
  v = fmadd(k.b2, v, k.c2 * grad * grad);
  const float denom = fmadd(std::sqrt(v), k.inv_sqrt_bc2, k.eps);
  w = fmadd(-k.step, m / denom, w);
}

#if defined(PARE_SIMD)
// AdamConsts broadcast to vectors, and adam_scalar on vectors op by op.
struct AdamVecConsts {
  vf b1, c1, b2, c2, wd, decay, step, inv_sqrt_bc2, eps;
  explicit AdamVecConsts(const AdamConsts& k)
      : b1(vset1(k.b1)), c1(vset1(k.c1)), b2(vset1(k.b2)), c2(vset1(k.c2)), wd(vset1(k.wd)),
        decay(vset1(k.decay)), step(vset1(k.step)), inv_sqrt_bc2(vset1(k.inv_sqrt_bc2)),
        eps(vset1(k.eps)) {}
};
template <bool Decoupled>
inline void adam_vector(const AdamVecConsts& k, vf& wv, vf& mv, vf& vv, vf gv) {
  vf grad = gv;
  if constexpr (Decoupled)
    wv = vfnmadd(k.decay, wv, wv);
  else
    grad = vfmadd(k.wd, wv, gv);
  mv = vfmadd(k.b1, mv, vmul(k.c1, grad));
  vv = vfmadd(k.b2, vv, vmul(vmul(k.c2, grad), grad));
  const vf denom = vfmadd(vsqrt(vv), k.inv_sqrt_bc2, k.eps);
  wv = vfnmadd(k.step, vdiv(mv, denom), wv);
}
#endif

template <bool Decoupled, bool Masked>
void adam_loop(int64_t n, float* w, float* m, float* v, const float* g, const float* mask,
               const AdamConsts& k) {
  int64_t i = 0;
#if defined(PARE_SIMD)
  const AdamVecConsts kv(k);
  // In-register step on vectors; `keep` (Masked only) zeroes the masked-out lanes.
  auto body = [&](vf& wv, vf& mv, vf& vv, vf gv, vf maskv) {
    adam_vector<Decoupled>(kv, wv, mv, vv, gv);
    if constexpr (Masked) {
      const vmask keep = vneq(maskv, vzero());
      wv = vselect(keep, wv, vzero());
      mv = vselect(keep, mv, vzero());
      vv = vselect(keep, vv, vzero());
    }
  };
  for (; i + kLanes <= n; i += kLanes) {
    vf wv = vload(w + i), mv = vload(m + i), vv = vload(v + i);
    body(wv, mv, vv, vload(g + i), Masked ? vload(mask + i) : vzero());
    vstore(w + i, wv);
    vstore(m + i, mv);
    vstore(v + i, vv);
  }
#if defined(__AVX512F__)
  if (i < n) {
    const int64_t r = n - i;
    vf wv = vload_tail(w + i, r), mv = vload_tail(m + i, r), vv = vload_tail(v + i, r);
    body(wv, mv, vv, vload_tail(g + i, r), Masked ? vload_tail(mask + i, r) : vzero());
    vstore_tail(w + i, wv, r);
    vstore_tail(m + i, mv, r);
    vstore_tail(v + i, vv, r);
  }
  return;
#endif
#endif
  for (; i < n; ++i) {
    if (Masked && mask[i] == 0.0f) {
      w[i] = m[i] = v[i] = 0.0f;
      continue;
    }
    adam_scalar<Decoupled>(k, w[i], m[i], v[i], g[i]);
  }
}

template <bool Momentum, bool Masked>
void sgd_loop(int64_t n, float* w, float* buf, const float* g, const float* mask,
              const SgdParams& p) {
  const float damp = 1.0f - p.dampening;
  int64_t i = 0;
#if defined(PARE_SIMD)
  const vf lr = vset1(p.lr), wd = vset1(p.weight_decay), mom = vset1(p.momentum),
           dampv = vset1(damp);
  auto body = [&](vf& wv, vf& bv, vf gv, vf maskv) {
    vf d = vfmadd(wd, wv, gv);
    if constexpr (Momentum) {
      bv = p.first_step ? d : vfmadd(mom, bv, vmul(dampv, d));
      d = p.nesterov ? vfmadd(mom, bv, d) : bv;
    }
    wv = vfnmadd(lr, d, wv);
    if constexpr (Masked) {
      const vmask keep = vneq(maskv, vzero());
      wv = vselect(keep, wv, vzero());
      if constexpr (Momentum) bv = vselect(keep, bv, vzero());
    }
  };
  for (; i + kLanes <= n; i += kLanes) {
    vf wv = vload(w + i), bv = Momentum ? vload(buf + i) : vzero();
    body(wv, bv, vload(g + i), Masked ? vload(mask + i) : vzero());
    vstore(w + i, wv);
    if constexpr (Momentum) vstore(buf + i, bv);
  }
#if defined(__AVX512F__)
  if (i < n) {
    const int64_t r = n - i;
    vf wv = vload_tail(w + i, r), bv = Momentum ? vload_tail(buf + i, r) : vzero();
    body(wv, bv, vload_tail(g + i, r), Masked ? vload_tail(mask + i, r) : vzero());
    vstore_tail(w + i, wv, r);
    if constexpr (Momentum) vstore_tail(buf + i, bv, r);
  }
  return;
#endif
#endif
  for (; i < n; ++i) {
    if (Masked && mask[i] == 0.0f) {
      w[i] = 0.0f;
      if (Momentum) buf[i] = 0.0f;
      continue;
    }
    float d = fmadd(p.weight_decay, w[i], g[i]);
    if constexpr (Momentum) {
      buf[i] = p.first_step ? d : fmadd(p.momentum, buf[i], damp * d);
      d = p.nesterov ? fmadd(p.momentum, buf[i], d) : buf[i];
    }
    w[i] = fmadd(-p.lr, d, w[i]);
  }
}

}  // namespace

void adam_f32(int64_t n, float* w, float* m, float* v, const float* g, const float* mask,
              const AdamParams& p) {
  const AdamConsts k(p);
  if (p.decoupled)
    mask ? adam_loop<true, true>(n, w, m, v, g, mask, k)
         : adam_loop<true, false>(n, w, m, v, g, mask, k);
  else
    mask ? adam_loop<false, true>(n, w, m, v, g, mask, k)
         : adam_loop<false, false>(n, w, m, v, g, mask, k);
}

void sgd_f32(int64_t n, float* w, float* buf, const float* g, const float* mask,
             const SgdParams& p) {
  const bool momentum = p.momentum != 0.0f;
  if (momentum)
    mask ? sgd_loop<true, true>(n, w, buf, g, mask, p)
         : sgd_loop<true, false>(n, w, buf, g, mask, p);
  else
    mask ? sgd_loop<false, true>(n, w, buf, g, mask, p)
         : sgd_loop<false, false>(n, w, buf, g, mask, p);
}

namespace {
// 16 entries at a time through gathers and scatters (AVX-512; the indices
// are distinct, so the scatters do not collide), the rest one by one.
template <bool Decoupled>
void adam_at_loop(int64_t n, const int32_t* idx, float* w, float* m, float* v, const float* g,
                  const AdamConsts& k) {
  int64_t e = 0;
#if defined(__AVX512F__)
  const AdamVecConsts kv(k);
  alignas(64) float wo[kLanes], mo[kLanes], vo[kLanes];
  for (; e + kLanes <= n; e += kLanes) {
    const __m512i at = _mm512_loadu_si512(idx + e);
    vf wv = _mm512_i32gather_ps(at, w, 4), mv = _mm512_i32gather_ps(at, m, 4),
       vv = _mm512_i32gather_ps(at, v, 4);
    adam_vector<Decoupled>(kv, wv, mv, vv, _mm512_i32gather_ps(at, g, 4));
    // Scalar stores: AVX-512 scatters cost twice as much here (measured).
    vstore(wo, wv);
    vstore(mo, mv);
    vstore(vo, vv);
    for (int q = 0; q < kLanes; ++q) {
      const int32_t i = idx[e + q];
      w[i] = wo[q];
      m[i] = mo[q];
      v[i] = vo[q];
    }
  }
#endif
  for (; e < n; ++e) {
    const int32_t i = idx[e];
    adam_scalar<Decoupled>(k, w[i], m[i], v[i], g[i]);
  }
}
}  // namespace

void adam_at_f32(int64_t n, const int32_t* idx, float* w, float* m, float* v, const float* g,
                 const AdamParams& p) {
  const AdamConsts k(p);
  p.decoupled ? adam_at_loop<true>(n, idx, w, m, v, g, k) : adam_at_loop<false>(n, idx, w, m, v, g, k);
}

void sgd_at_f32(int64_t n, const int32_t* idx, float* w, float* buf, const float* g,
                const SgdParams& p) {
  // One entry at a time through the dense loop's scalar path.
  for (int64_t e = 0; e < n; ++e) {
    const int32_t i = idx[e];
    if (p.momentum != 0.0f)
      sgd_loop<true, false>(1, w + i, buf + i, g + i, nullptr, p);
    else
      sgd_loop<false, false>(1, w + i, nullptr, g + i, nullptr, p);
  }
}

}  // namespace pare::kernels
