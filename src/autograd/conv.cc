// 2-D convolution as im2col + one GEMM over the whole batch.
//
// Legend: B batch, C input channels, OC output channels, H/W input size,
// KH/KW kernel size, OH/OW output size, P = OH*OW, K = C*KH*KW, N = B*P.
//
// Forward:  cols: (K, N) holds every image's patches side by side (image i at
//           columns [i*P, (i+1)*P)), yt: (OC, N) = w: (OC, K) cols, then
//           y: (B, OC, P) = yt with the outer axes swapped, plus bias.
// Backward: dyt: (OC, N) = dy swapped;  dw += dyt cols^T;  db += sum of dy
//           over B and P;  dcols = w^T dyt, scattered back per image (col2im).
// cols is kept for the backward pass only when w needs a gradient; x's value
// is never needed (cols replaces it).
//
// 1x1 kernels with stride 1 and no padding need no lowering: image i viewed as
// x_i: (C, H*W) already is its patch matrix, so the forward and dx are one
// GEMM per image straight between the input and output buffers (no copies),
// and only dw, which sums over images, swaps x and dy to (C, N) and (OC, N).
#include <algorithm>

#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

namespace {

// c_i: (M, N) = op(a) op(b_i) (+ beta c_i) for i in [0, batch), with a shared.
// Parallel over the batch when there is one image per thread or more (each
// GEMM on one thread), otherwise each product is split by ops::gemm.
// Per-image outputs are disjoint, so either way is deterministic.
void gemm_per_image(int64_t batch, int64_t m, int64_t n, int64_t k, float* c, int64_t c_stride,
                    int64_t ldc, const float* a, int64_t lda, const float* b, int64_t b_stride,
                    int64_t ldb, kernels::GemmParams p) {
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (batch >= num_threads()) {
    ops::parallel_range(batch, flops, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        kernels::gemm_f32__blas(m, n, k, c + i * c_stride, ldc, a, lda, b + i * b_stride, ldb, p);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i)
      ops::gemm(m, n, k, c + i * c_stride, ldc, a, lda, b + i * b_stride, ldb, p);
  }
}

void check_conv_shapes(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt) {
  if (x.value().ndim() != 4) fail("conv2d: input must be (B, C, H, W), got ", x.shape().str());
  if (w.value().ndim() != 4)
    fail("conv2d: weight must be (OC, C, KH, KW), got ", w.shape().str());
  if (x.dim(1) != w.dim(1))
    fail("conv2d: input ", x.shape().str(), " has ", x.dim(1), " channels but weight ",
         w.shape().str(), " expects ", w.dim(1));
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != w.dim(0)))
    fail("conv2d: bias ", b.shape().str(), " does not fit weight ", w.shape().str(),
         " (expected (", w.dim(0), "))");
  if (opt.stride < 1) fail("conv2d: stride must be >= 1, got ", opt.stride);
  if (opt.pad < 0) fail("conv2d: padding must be >= 0, got ", opt.pad);
  const int64_t h = x.dim(2), wd = x.dim(3);
  if (opt.circular && (opt.pad >= h || opt.pad >= wd))
    fail("conv2d: circular padding ", opt.pad, " must be smaller than the input ",
         x.shape().str(), " (it wraps around once)");
  if (w.dim(2) > h + 2 * opt.pad || w.dim(3) > wd + 2 * opt.pad)
    fail("conv2d: kernel ", w.dim(2), "x", w.dim(3), " does not fit input ", x.shape().str(),
         " with padding ", opt.pad);
}

}  // namespace

Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt) {
  check_conv_shapes(x, w, b, opt);
  kernels::Conv2dGeometry g;
  g.c = x.dim(1), g.h = x.dim(2), g.w = x.dim(3);
  g.kh = w.dim(2), g.kw = w.dim(3);
  g.stride = opt.stride, g.pad = opt.pad, g.circular = opt.circular;
  const int64_t batch = x.dim(0), oc = w.dim(0), oh = g.out_h(), ow = g.out_w();
  const int64_t p = oh * ow, k = g.c * g.kh * g.kw, n = batch * p, plane_in = g.c * g.h * g.w;
  Tensor y = Tensor::empty({batch, oc, oh, ow});
  const float* bias = b.defined() ? b.value().f32() : nullptr;

  if (g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0) {
    // y_i: (OC, P) = w: (OC, C) x_i: (C, P)
    gemm_per_image(batch, oc, p, k, y.f32(), oc * p, p, w.value().f32(), k, x.value().f32(), k * p,
                   p, {});
    if (bias) kernels::add_channels_f32(batch, oc, p, y.f32(), bias);
    return Var::make(y, "conv2d", {x, w, b}, [batch, oc, k, p, n](Node& self) {
      Node& x = *self.inputs[0];
      Node& w = *self.inputs[1];
      Node* b = self.inputs[2].get();
      const float* dy = self.grad.f32();
      if (x.requires_grad)  // dx_i: (C, P) += w^T: (C, OC) dy_i: (OC, P)
        gemm_per_image(batch, k, p, oc, x.ensure_grad().f32(), k * p, p, w.value.f32(), k, dy,
                       oc * p, p, {.trans_a = true, .beta = 1.0f});
      if (w.requires_grad) {  // dw: (OC, C) += dyt: (OC, N) xt^T, xt: (C, N)
        Tensor dyt = Tensor::empty({oc, n});
        Tensor xt = Tensor::empty({k, n});
        kernels::swap_outer_f32(batch, oc, p, dyt.f32(), dy);
        kernels::swap_outer_f32(batch, k, p, xt.f32(), x.value.f32());
        ops::gemm(oc, k, n, w.ensure_grad().f32(), k, dyt.f32(), n, xt.f32(), n,
                  {.trans_b = true, .beta = 1.0f});
      }
      if (b && b->requires_grad) kernels::sum_channels_f32(batch, oc, p, b->ensure_grad().f32(), dy);
    });
  }

  // cols: (K, N), image i at columns [i*P, (i+1)*P).
  Tensor cols = Tensor::empty({k, n});
  {
    const float* xp = x.value().f32();
    float* cp = cols.f32();
    ops::parallel_range(batch, static_cast<double>(k * p), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) kernels::im2col_f32(g, cp, n, i * p, xp + i * plane_in);
    });
  }
  {
    // yt: (OC, N) = w: (OC, K) cols: (K, N); then y: (B, OC, P).
    Tensor yt = Tensor::empty({oc, n});
    ops::gemm(oc, n, k, yt.f32(), n, w.value().f32(), k, cols.f32(), n, {});
    kernels::swap_outer_f32(oc, batch, p, y.f32(), yt.f32());
  }
  if (bias) kernels::add_channels_f32(batch, oc, p, y.f32(), bias);

  if (!w.requires_grad()) cols = Tensor();  // the backward pass only needs it for dw
  return Var::make(y, "conv2d", {x, w, b},
                   [g, cols, batch, oc, k, p, n, plane_in](Node& self) {
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    Node* b = self.inputs[2].get();
    const float* dy = self.grad.f32();
    if (b && b->requires_grad) kernels::sum_channels_f32(batch, oc, p, b->ensure_grad().f32(), dy);
    if (!w.requires_grad && !x.requires_grad) return;
    Tensor dyt = Tensor::empty({oc, n});  // (OC, N)
    kernels::swap_outer_f32(batch, oc, p, dyt.f32(), dy);
    if (w.requires_grad)  // dw: (OC, K) += dyt: (OC, N) cols^T
      ops::gemm(oc, k, n, w.ensure_grad().f32(), k, dyt.f32(), n, cols.f32(), n,
                {.trans_b = true, .beta = 1.0f});
    if (x.requires_grad) {
      // dcols: (K, N) = w^T: (K, OC) dyt: (OC, N). cols is dead once dw is
      // done (backward runs once per graph), so its buffer is reused.
      Tensor dcols = cols.defined() ? cols : Tensor::empty({k, n});
      ops::gemm(k, n, oc, dcols.f32(), n, w.value.f32(), k, dyt.f32(), n, {.trans_a = true});
      float* dx = x.ensure_grad().f32();
      const float* dc = dcols.f32();
      ops::parallel_range(batch, static_cast<double>(k * p), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) kernels::col2im_f32(g, dx + i * plane_in, dc, n, i * p);
      });
    }
  });
}

}  // namespace pare::autograd
