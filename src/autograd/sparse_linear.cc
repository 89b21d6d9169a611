// Sparse linear layer: linear() on a pruned weight, computed on its nonzeros.
//
// The CSR products want feature-major activations (kernels/sparse.h), while
// ops pass batch-major (B, features) tensors, so the op transposes at its
// boundaries: O(B * features) each, small beside the products it replaces
// (a dense layer's product is O(B * in * out)). With B == 1 the two layouts
// are the same memory and nothing is transposed.
//
//   forward          yt (out, B) = W xt (in, B);   y = yt^T + b
//   input gradient   dxt (in, B) = W^T dyt          (the pattern's transpose)
//   weight gradient  g (nnz,) = (dyt xt^T) at the pattern;  dw[pos] += g
#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

namespace {

// (B, f) -> (f, B); with B == 1 the same memory (no copy).
Tensor feature_major(const Tensor& x) {
  const int64_t batch = x.dim(0), features = x.dim(1);
  if (batch == 1) return x.reshape({features, 1});
  Tensor t = Tensor::empty({features, batch});
  kernels::swap_outer_f32(batch, features, 1, t.f32(), x.f32());
  return t;
}

}  // namespace

Var sparse_linear(const Var& x, const Var& w, const Var& b,
                  std::shared_ptr<const CsrPattern> pattern) {
  if (x.value().ndim() != 2 || w.value().ndim() != 2 || x.dim(1) != w.dim(1))
    fail("sparse_linear: input ", x.shape().str(), " does not fit weight ", w.shape().str(),
         " (expected input (B, ", w.value().ndim() == 2 ? w.dim(1) : -1, "))");
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != w.dim(0)))
    fail("sparse_linear: bias ", b.shape().str(), " does not fit weight ", w.shape().str());
  PARE_CHECK(pattern, "sparse_linear: no pattern");
  if (pattern->rows != w.dim(0) || pattern->cols != w.dim(1))
    fail("sparse_linear: pattern (", pattern->rows, ", ", pattern->cols,
         ") does not match weight ", w.shape().str());
  const int64_t batch = x.dim(0), in = x.dim(1), out = w.dim(0);
  const CsrPattern& p = *pattern;
  Tensor values = Tensor::empty({p.nnz()});
  p.gather(w.value().f32(), values.f32(), nullptr);
  Tensor xt = feature_major(x.value());
  Tensor y = Tensor::empty({batch, out});
  if (batch == 1) {
    ops::spmm(1, y.f32(), 1, p.view(values.f32()), xt.f32(), 1, 0.0f);
  } else {
    Tensor yt = Tensor::empty({out, batch});
    ops::spmm(batch, yt.f32(), batch, p.view(values.f32()), xt.f32(), batch, 0.0f);
    kernels::swap_outer_f32(out, batch, 1, y.f32(), yt.f32());
  }
  if (b.defined()) kernels::add_rows_f32(batch, out, y.f32(), b.value().f32());
  return Var::make(y, "sparse_linear", {x, w, b},
                   [batch, in, out, pattern, xt](Node& self) {
    const CsrPattern& p = *pattern;
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    const float* dy = self.grad.f32();
    Tensor dyt = feature_major(self.grad);
    if (x.requires_grad && p.nnz() > 0) {
      Tensor t_values = Tensor::empty({p.nnz()});
      p.gather(w.value.f32(), nullptr, t_values.f32());
      float* dx = x.ensure_grad().f32();
      if (batch == 1) {
        ops::spmm(1, dx, 1, p.view_t(t_values.f32()), dyt.f32(), 1, 1.0f);
      } else {
        Tensor dxt = Tensor::empty({in, batch});
        ops::spmm(batch, dxt.f32(), batch, p.view_t(t_values.f32()), dyt.f32(), batch, 0.0f);
        Tensor dxb = Tensor::empty({batch, in});
        kernels::swap_outer_f32(in, batch, 1, dxb.f32(), dxt.f32());
        kernels::axpy_f32(batch * in, dx, dxb.f32(), 1.0f);
      }
    } else if (x.requires_grad) {
      x.ensure_grad();  // a fully pruned weight passes no gradient back
    }
    if (w.requires_grad && p.nnz() > 0) {
      Tensor g = Tensor::empty({p.nnz()});
      ops::sddmm(batch, g.f32(), p.view(nullptr), dyt.f32(), batch, xt.f32(), batch, 0.0f);
      float* dw = w.ensure_grad().f32();
      const float* gk = g.f32();
      const int32_t* pos = p.pos.data();
      for (int64_t k = 0; k < p.nnz(); ++k) dw[pos[k]] += gk[k];
    } else if (w.requires_grad) {
      w.ensure_grad();
    }
    if (self.inputs.size() > 2 && self.inputs[2] && self.inputs[2]->requires_grad)
      kernels::sum_rows_f32(batch, out, self.inputs[2]->ensure_grad().f32(), dy);
  });
}

}  // namespace pare::autograd
