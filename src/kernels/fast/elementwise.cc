// Fast elementwise kernels (contracts in kernels.h).
//
// Each kernel is one map over n lanes (simd.h): a vector body, then a masked
// (AVX-512) or scalar tail that computes the same expression. No __restrict:
// callers run some of these in place (mul_f32(n, y, y, mask)), which is safe
// because every lane is read before it is written.
//
// Versus ref/: add, mul, scale, relu and relu_backward are bit-identical; axpy
// and the *_backward products are fused (one rounding fewer); sigmoid and tanh
// use the polynomial exp of simd.h (<= 1.5e-7 relative error).
#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

void add_f32(int64_t n, float* y, const float* a, const float* b) {
  map2(
      n, y, a, b, [](auto u, auto v) { return vadd(u, v); },
      [](float u, float v) { return u + v; });
}

void mul_f32(int64_t n, float* y, const float* a, const float* b) {
  map2(
      n, y, a, b, [](auto u, auto v) { return vmul(u, v); },
      [](float u, float v) { return u * v; });
}

void axpy_f32(int64_t n, float* y, const float* x, float alpha) {
  map2(
      n, y, y, x, [alpha](auto yv, auto xv) { return vfmadd(vset1(alpha), xv, yv); },
      [alpha](float yv, float xv) { return fmadd(alpha, xv, yv); });
}

void scale_f32(int64_t n, float* y, const float* x, float alpha) {
  map1(
      n, y, x, [alpha](auto v) { return vmul(vset1(alpha), v); },
      [alpha](float v) { return alpha * v; });
}

void relu_f32(int64_t n, float* y, const float* x) {
  // vmax(x, 0) returns 0 for NaN and -0, exactly as `x > 0 ? x : 0`.
  map1(
      n, y, x, [](auto v) { return vmax(v, vzero()); },
      [](float v) { return v > 0.0f ? v : 0.0f; });
}

void relu_backward_f32(int64_t n, float* dx, const float* dy, const float* y) {
  // Lanes with y <= 0 keep dx untouched (not dx + 0, which would turn -0 into +0).
  map3(
      n, dx, dy, y,
      [](auto d, auto g, auto out) { return vselect(vgt(out, vzero()), vadd(d, g), d); },
      [](float d, float g, float out) { return out > 0.0f ? d + g : d; });
}

void relu_mask_f32(int64_t n, float* dx, const float* dy, const float* y) {
  map2(
      n, dx, dy, y,
      [](auto g, auto out) { return vselect(vgt(out, vzero()), g, vzero()); },
      [](float g, float out) { return out > 0.0f ? g : 0.0f; });
}

void sigmoid_f32(int64_t n, float* y, const float* x) {
  map1(
      n, y, x, [](auto v) { return sigmoid_v(v); }, sigmoid_scalar);
}

void sigmoid_backward_f32(int64_t n, float* dx, const float* dy, const float* y) {
  map3(
      n, dx, dy, y,
      [](auto d, auto g, auto s) { return vfmadd(vmul(g, s), vsub(vset1(1.0f), s), d); },
      [](float d, float g, float s) { return fmadd(g * s, 1.0f - s, d); });
}

void tanh_f32(int64_t n, float* y, const float* x) {
  map1(
      n, y, x, [](auto v) { return tanh_v(v); }, tanh_scalar);
}

void tanh_backward_f32(int64_t n, float* dx, const float* dy, const float* y) {
  map3(
      n, dx, dy, y, [](auto d, auto g, auto t) { return vfmadd(g, vfnmadd(t, t, vset1(1.0f)), d); },
      [](float d, float g, float t) { return fmadd(g, fmadd(-t, t, 1.0f), d); });
}

}  // namespace pare::kernels
