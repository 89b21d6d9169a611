// LoRA's merge and gradients (see lora.h).
#include "pare/nn/lora.h"

#include <algorithm>
#include <cmath>

#include "pare/base/error.h"
#include "pare/base/thread_pool.h"
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
  if (out.f32() == base.f32()) {  // in place: the rows below are written before they are read
    const Tensor copy = base.clone();
    lora_merge(out, copy, b, a, scale, mask);
    return;
  }
  const auto [rows, cols] = lora_matrix_dims(base.shape());
  const int64_t rank = a.dim(0);
  const float* am = a.f32();
  const float* m = mask.defined() ? mask.f32() : nullptr;
  for (int64_t o = 0; o < rows; ++o) {
    // Row o accumulates in place, entry by entry in the order of
    // lora_merge_packed's (r ascending from 0, then scale and base), so that
    // a packed weight's entries get these bits.
    float* w = out.f32() + o * cols;
    const float* w0 = base.f32() + o * cols;
    const float* b_row = b.f32() + o * rank;
    std::fill_n(w, cols, 0.0f);
    for (int64_t r = 0; r < rank; ++r) {
      const float br = b_row[r];
      const float* a_row = am + r * cols;
      for (int64_t k = 0; k < cols; ++k) w[k] = std::fma(br, a_row[k], w[k]);
    }
    for (int64_t k = 0; k < cols; ++k) w[k] = std::fma(scale, w[k], w0[k]);
    if (m)
      for (int64_t k = 0; k < cols; ++k)
        if (m[o * cols + k] == 0.0f) w[k] = 0.0f;
  }
}

void lora_merge_packed(float* values, const CsrPattern& pattern, const Tensor& base, const Tensor& b,
                       const Tensor& a, float scale) {
  check_lora_factors(base.shape(), a, b, "lora_merge_packed");
  // (Plain locals, not a structured binding: the lambda below captures them,
  // which clang's C++20 refuses for bindings.)
  const std::pair<int64_t, int64_t> dims = lora_matrix_dims(base.shape());
  const int64_t rows = dims.first, cols = dims.second;
  if (pattern.rows != rows || pattern.cols != cols)
    fail("lora_merge_packed: a pattern of ", pattern.rows, "x", pattern.cols, " for a weight of ", base.shape().str());
  const int64_t rank = a.dim(0);
  const float* w0 = base.f32();
  const float* bm = b.f32();
  const float* am = a.f32();
  // Rows split over the pool; each entry is computed alone, so the split
  // changes no bit.
  thread_pool().parallel_for(rows, [&](int64_t first, int64_t last, int) {
    for (int64_t o = first; o < last; ++o)
      for (int32_t e = pattern.row_ptr[o]; e < pattern.row_ptr[o + 1]; ++e) {
        const int64_t k = pattern.col_idx[e];
        float acc = 0.0f;  // lora_merge's order, entry by entry
        for (int64_t r = 0; r < rank; ++r) acc = std::fma(bm[o * rank + r], am[r * cols + k], acc);
        values[e] = std::fma(scale, acc, w0[o * cols + k]);
      }
  });
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
    const int64_t n = g.numel();  // (Shape::numel multiplies the dims on every call)
    for (int64_t j = 0; j < n; ++j) s[j] = m[j] == 0.0f ? 0.0f : gm[j];
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

void lora_backward_packed(Tensor& grad_b, Tensor& grad_a, const float* g, const CsrPattern& pattern,
                          const Tensor& b, const Tensor& a, float scale) {
  const int64_t rows = pattern.rows, cols = pattern.cols, rank = a.dim(0);
  check_lora_factors(Shape{rows, cols}, a, b, "lora_backward_packed");
  if (grad_a.shape() != a.shape() || grad_b.shape() != b.shape())
    fail("lora_backward_packed: gradients ", grad_a.shape().str(), " and ", grad_b.shape().str(),
         " do not match the factors ", a.shape().str(), " and ", b.shape().str());
  const float* bm = b.f32();
  const float* am = a.f32();
  float* gb = grad_b.f32();
  float* ga = grad_a.f32();
  ThreadPool& pool = thread_pool();
  // grad_b(o, r) = scale * sum over row o's entries of g(o, k) a(r, k): one
  // output per (row, r), rows split over the pool.
  pool.parallel_for(rows, [&](int64_t first, int64_t last, int) {
    for (int64_t o = first; o < last; ++o)
      for (int64_t r = 0; r < rank; ++r) {
        const float* a_row = am + r * cols;
        float s0 = 0, s1 = 0;  // two chains: the sum is latency-bound
        int32_t e = pattern.row_ptr[o];
        const int32_t end = pattern.row_ptr[o + 1];
        for (; e + 1 < end; e += 2) {
          s0 = std::fma(g[e], a_row[pattern.col_idx[e]], s0);
          s1 = std::fma(g[e + 1], a_row[pattern.col_idx[e + 1]], s1);
        }
        if (e < end) s0 = std::fma(g[e], a_row[pattern.col_idx[e]], s0);
        gb[o * rank + r] = scale * (s0 + s1);
      }
  });
  // grad_a(r, k) = scale * sum over column k's entries of b(o, r) g(o, k),
  // by the transpose's CSR (t_col_idx: the row o; t_perm: the entry's place
  // in g), columns split over the pool.
  pool.parallel_for(cols, [&](int64_t first, int64_t last, int) {
    for (int64_t k = first; k < last; ++k)
      for (int64_t r = 0; r < rank; ++r) {
        float s0 = 0, s1 = 0;
        int32_t t = pattern.t_row_ptr[k];
        const int32_t end = pattern.t_row_ptr[k + 1];
        for (; t + 1 < end; t += 2) {
          s0 = std::fma(bm[pattern.t_col_idx[t] * rank + r], g[pattern.t_perm[t]], s0);
          s1 = std::fma(bm[pattern.t_col_idx[t + 1] * rank + r], g[pattern.t_perm[t + 1]], s1);
        }
        if (t < end) s0 = std::fma(bm[pattern.t_col_idx[t] * rank + r], g[pattern.t_perm[t]], s0);
        ga[r * cols + k] = scale * (s0 + s1);
      }
  });
}

}  // namespace pare::nn

