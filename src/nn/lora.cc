// LoRA's merge and gradients (see lora.h).
#include "pare/nn/lora.h"

#include "pare/base/error.h"
#include "pare/kernels/kernels.h"

namespace pare::nn {

std::pair<int64_t, int64_t> lora_matrix_dims(const Shape& shape) {
  if (shape.ndim() < 1 || shape[0] < 1) fail("LoRA: a weight of shape ", shape.str(), " has no rows");
  return {shape[0], shape.numel() / shape[0]};
}

void check_lora_factors(const Shape& shape, const Tensor& a, const Tensor& b, const std::string& what) {
  const auto [out, k] = lora_matrix_dims(shape);
  if (a.ndim() != 2 || b.ndim() != 2 || a.dim(1) != k || b.dim(0) != out || a.dim(0) != b.dim(1) ||
      a.dim(0) < 1)
    fail(what, ": LoRA factors A ", a.shape().str(), " and B ", b.shape().str(),
         " do not fit a weight of shape ", shape.str(), " (need A (r, ", k, ") and B (", out, ", r))");
}

void lora_merge(Tensor& out, const Tensor& base, const Tensor& b, const Tensor& a, float scale,
                const Tensor& mask) {
  check_lora_factors(base.shape(), a, b, "lora_merge");
  if (out.shape() != base.shape()) fail("lora_merge: out ", out.shape().str(), " is not the base's shape ", base.shape().str());
  if (mask.defined() && mask.shape() != base.shape())
    fail("lora_merge: mask ", mask.shape().str(), " is not the weight's shape ", base.shape().str());
  const auto [rows, cols] = lora_matrix_dims(base.shape());
  const int64_t rank = a.dim(0);
  if (out.f32() != base.f32()) out.copy_from(base);
  kernels::GemmParams p;
  p.alpha = scale;
  p.beta = 1.0f;
  kernels::gemm_f32__small(rows, cols, rank, out.f32(), cols, b.f32(), rank, a.f32(), cols, p);
  if (mask.defined()) {
    float* w = out.f32();
    const float* m = mask.f32();
    for (int64_t j = 0; j < out.numel(); ++j)
      if (m[j] == 0.0f) w[j] = 0.0f;
  }
}

void lora_backward(Tensor& grad_b, Tensor& grad_a, const Tensor& g, const Tensor& b, const Tensor& a,
                   float scale, const Tensor& mask, Tensor& scratch) {
  check_lora_factors(g.shape(), a, b, "lora_backward");
  if (grad_a.shape() != a.shape() || grad_b.shape() != b.shape())
    fail("lora_backward: gradients ", grad_a.shape().str(), " and ", grad_b.shape().str(), " do not match the factors ",
         a.shape().str(), " and ", b.shape().str());
  if (mask.defined() && mask.shape() != g.shape())
    fail("lora_backward: mask ", mask.shape().str(), " is not the weight's shape ", g.shape().str());
  const auto [rows, cols] = lora_matrix_dims(g.shape());
  const int64_t rank = a.dim(0);
  const float* gm = g.f32();
  if (mask.defined()) {
    if (!scratch.defined() || scratch.numel() < g.numel()) fail("lora_backward: scratch holds ", scratch.numel(), " floats, need ", g.numel());
    float* s = scratch.f32();
    const float* m = mask.f32();
    for (int64_t j = 0; j < g.numel(); ++j) s[j] = m[j] == 0.0f ? 0.0f : gm[j];
    gm = s;
  }
  kernels::GemmParams pb;  // grad_b (out, r) = scale * g' (out, K) a^T (K, r)
  pb.alpha = scale;
  pb.trans_b = true;
  kernels::gemm_f32__small(rows, rank, cols, grad_b.f32(), rank, gm, cols, a.f32(), cols, pb);
  kernels::GemmParams pa;  // grad_a (r, K) = scale * b^T (r, out) g' (out, K)
  pa.alpha = scale;
  pa.trans_a = true;
  kernels::gemm_f32__small(rank, cols, rows, grad_a.f32(), cols, b.f32(), rank, gm, cols, pa);
}

}  // namespace pare::nn
