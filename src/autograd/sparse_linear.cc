// Sparse linear layer: linear() on a pruned weight, computed on its nonzeros.
//
// The CSR products want feature-major activations (kernels/sparse.h), while
// ops pass batch-major (B, features) tensors, so the op transposes at its
// boundaries: O(B * features) each, small beside the products it replaces
// (a dense layer's product is O(B * in * out)). The products' outputs are
// transposed chunk by chunk by the threads that computed them
// (ops::spmm_transposed); the inputs by ops::transpose, split too. With
// B == 1 the two layouts are the same memory and nothing is transposed.
//
//   forward          yt (out, B) = W xt (in, B);   y = yt^T + b
//   input gradient   dxt (in, B) = W^T dyt          (the pattern's transpose)
//   weight gradient  g (nnz,) = (dyt xt^T) at the pattern
//
// Two storages of W's values: the dense (out, in) weight, gathered at the
// pattern per call and its gradient added back at the pattern (sparse_linear),
// or packed (nnz,) in pattern order, which the products read directly and
// whose gradient receives g as is (sparse_linear_packed: what training uses;
// no gather, no scatter, and the optimizer then updates nnz contiguous values).
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
  ops::transpose(batch, features, t.f32(), batch, x.f32(), features, 0.0f);
  return t;
}

// w: the dense (out, in) weight, or with `packed` its (nnz,) values.
Var sparse_linear_on(const char* op, const Var& x, const Var& w, const Var& b,
                     std::shared_ptr<const CsrPattern> pattern, bool packed) {
  PARE_CHECK(pattern, op, ": no pattern");
  const CsrPattern& p = *pattern;
  if (packed) {
    if (w.value().ndim() != 1 || w.dim(0) != p.nnz())
      fail(op, ": values ", w.shape().str(), " do not fit a pattern with ", p.nnz(),
           " entries");
  } else if (w.value().ndim() != 2 || p.rows != w.dim(0) || p.cols != w.dim(1)) {
    fail(op, ": pattern (", p.rows, ", ", p.cols, ") does not match weight ", w.shape().str());
  }
  if (x.value().ndim() != 2 || x.dim(1) != p.cols)
    fail(op, ": input ", x.shape().str(), " does not fit a (", p.rows, ", ", p.cols,
         ") weight (expected input (B, ", p.cols, "))");
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != p.rows))
    fail(op, ": bias ", b.shape().str(), " does not fit a (", p.rows, ", ", p.cols, ") weight");
  const int64_t batch = x.dim(0), in = p.cols, out = p.rows;
  Tensor values = w.value();
  if (!packed) {
    values = Tensor::empty({p.nnz()});
    p.gather(w.value().f32(), values.f32(), nullptr);
  }
  Tensor xt = feature_major(x.value());
  Tensor y = Tensor::empty({batch, out});
  if (batch == 1) {
    ops::spmm(1, y.f32(), 1, p.view(values.f32()), xt.f32(), 1, 0.0f);
  } else {
    Tensor yt = Tensor::empty({out, batch});
    ops::spmm_transposed(batch, y.f32(), out, 0.0f, yt.f32(), p.view(values.f32()), xt.f32(), batch);
  }
  if (b.defined()) kernels::add_rows_f32(batch, out, y.f32(), b.value().f32());
  return Var::make(y, op, {x, w, b}, [batch, in, out, pattern, xt, packed](Node& self) {
    const CsrPattern& p = *pattern;
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    const float* dy = self.grad.f32();
    // dy feature-major, for the two products (not when only the bias learns).
    const bool products = p.nnz() > 0 && (x.requires_grad || w.requires_grad);
    const Tensor dyt = products ? feature_major(self.grad) : Tensor();
    if (x.requires_grad && p.nnz() > 0) {
      Tensor t_values = Tensor::empty({p.nnz()});
      if (packed)
        p.gather_t(w.value.f32(), t_values.f32());
      else
        p.gather(w.value.f32(), nullptr, t_values.f32());
      float* dx = x.ensure_grad().f32();
      if (batch == 1) {
        ops::spmm(1, dx, 1, p.view_t(t_values.f32()), dyt.f32(), 1, 1.0f);
      } else {
        Tensor dxt = Tensor::empty({in, batch});
        ops::spmm_transposed(batch, dx, in, 1.0f, dxt.f32(), p.view_t(t_values.f32()), dyt.f32(), batch);
      }
    } else if (x.requires_grad) {
      x.ensure_grad();  // a fully pruned weight passes no gradient back
    }
    if (w.requires_grad && p.nnz() > 0) {
      if (packed) {  // straight into the values' gradient
        ops::sddmm(batch, w.ensure_grad().f32(), p.view(nullptr), dyt.f32(), batch, xt.f32(),
                   batch, 1.0f);
      } else {
        Tensor g = Tensor::empty({p.nnz()});
        ops::sddmm(batch, g.f32(), p.view(nullptr), dyt.f32(), batch, xt.f32(), batch, 0.0f);
        p.scatter_add(g.f32(), w.ensure_grad().f32());
      }
    } else if (w.requires_grad) {
      w.ensure_grad();
    }
    if (self.inputs.size() > 2 && self.inputs[2] && self.inputs[2]->requires_grad)
      kernels::sum_rows_f32(batch, out, self.inputs[2]->ensure_grad().f32(), dy);
  });
}

}  // namespace

Var sparse_linear(const Var& x, const Var& w, const Var& b,
                  std::shared_ptr<const CsrPattern> pattern) {
  return sparse_linear_on("sparse_linear", x, w, b, std::move(pattern), /*packed=*/false);
}

Var sparse_linear_packed(const Var& x, const Var& values, const Var& b,
                         std::shared_ptr<const CsrPattern> pattern) {
  return sparse_linear_on("sparse_linear_packed", x, values, b, std::move(pattern),
                          /*packed=*/true);
}

Var sell_linear(const Var& x, std::shared_ptr<const SellMatrix> w, const Var& b) {
  PARE_CHECK(w, "sell_linear: no weight");
  if (x.value().ndim() != 2 || x.dim(0) != 1 || x.dim(1) != w->cols)
    fail("sell_linear: input ", x.shape().str(), " does not fit a (", w->rows, ", ", w->cols,
         ") weight (expected (1, ", w->cols, "))");
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != w->rows))
    fail("sell_linear: bias ", b.shape().str(), " does not fit a (", w->rows, ", ", w->cols,
         ") weight");
  if (grad_enabled() && (x.requires_grad() || (b.defined() && b.requires_grad())))
    fail("sell_linear: inference only, but a gradient is required (use sparse_linear)");
  Tensor y = Tensor::empty({1, w->rows});
  ops::sell_spmv(y.f32(), *w, x.value().f32(), 0.0f);
  if (b.defined()) kernels::add_rows_f32(1, w->rows, y.f32(), b.value().f32());
  return Var(y);
}

}  // namespace pare::autograd
