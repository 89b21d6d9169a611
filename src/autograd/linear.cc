// Linear layer and matrix product, forward and backward through threaded GEMM.
#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

Var linear(const Var& x, const Var& w, const Var& b) {
  if (x.value().ndim() != 2 || w.value().ndim() != 2 || x.dim(1) != w.dim(1))
    fail("linear: input ", x.shape().str(), " does not fit weight ", w.shape().str(),
         " (expected input (B, ", w.value().ndim() == 2 ? w.dim(1) : -1, "))");
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != w.dim(0)))
    fail("linear: bias ", b.shape().str(), " does not fit weight ", w.shape().str());
  const int64_t batch = x.dim(0), in = x.dim(1), out = w.dim(0);
  Tensor y = Tensor::empty({batch, out});
  ops::gemm(batch, out, in, y.f32(), out, x.value().f32(), in, w.value().f32(), in,
            {.trans_b = true});
  if (b.defined()) kernels::add_rows_f32(batch, out, y.f32(), b.value().f32());
  return Var::make(y, "linear", {x, w, b}, [batch, in, out](Node& self) {
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    const float* dy = self.grad.f32();
    if (x.requires_grad)  // dx: (B, in) += dy: (B, out) w: (out, in)
      ops::gemm(batch, in, out, x.ensure_grad().f32(), in, dy, out, w.value.f32(), in,
                {.beta = 1.0f});
    if (w.requires_grad)  // dw: (out, in) += dy^T x
      ops::gemm(out, in, batch, w.ensure_grad().f32(), in, dy, out, x.value.f32(), in,
                {.trans_a = true, .beta = 1.0f});
    if (self.inputs.size() > 2 && self.inputs[2] && self.inputs[2]->requires_grad)
      kernels::sum_rows_f32(batch, out, self.inputs[2]->ensure_grad().f32(), dy);
  });
}

Var matmul(const Var& a, const Var& b) {
  if (a.value().ndim() != 2 || b.value().ndim() != 2 || a.dim(1) != b.dim(0))
    fail("matmul: cannot multiply ", a.shape().str(), " by ", b.shape().str());
  const int64_t m = a.dim(0), k = a.dim(1), n = b.dim(1);
  Tensor c = Tensor::empty({m, n});
  ops::gemm(m, n, k, c.f32(), n, a.value().f32(), k, b.value().f32(), n, {});
  return Var::make(c, "matmul", {a, b}, [m, k, n](Node& self) {
    Node& a = *self.inputs[0];
    Node& b = *self.inputs[1];
    const float* dc = self.grad.f32();
    if (a.requires_grad)  // da: (M, K) += dc: (M, N) b^T
      ops::gemm(m, k, n, a.ensure_grad().f32(), k, dc, n, b.value.f32(), n,
                {.trans_b = true, .beta = 1.0f});
    if (b.requires_grad)  // db: (K, N) += a^T dc
      ops::gemm(k, n, m, b.ensure_grad().f32(), n, a.value.f32(), k, dc, n,
                {.trans_a = true, .beta = 1.0f});
  });
}

}  // namespace pare::autograd
