// 2-D convolution, lowered one of two ways depending on its size, with an
// optional fused ReLU (applied to each image's output while it is in cache;
// the backward pass masks dy by the output once, and no separate activation
// tensor or gradient buffer exists).
//
// Legend: B batch, C input channels, OC output channels, H/W input size,
// KH/KW kernel size, OH/OW output size, P = OH*OW, K = C*KH*KW, N = B*P.
//
// Image by image, when each image's output plane is large enough (P >= 96,
// use_per_image: LeNet-5, the Life nets, the Conv-2 preset), through the
// small-GEMM kernel, each image's patches lowered into a (K, P) scratch:
// Forward:  cols_i: (K, P) = im2col(x_i);  y_i: (OC, P) = w: (OC, K) cols_i,
//           written straight into y's slice of (B, OC, P), plus bias.
// Backward: db += sum of dy_i over P;  dw += dy_i: (OC, P) cols_i^T, with
//           cols_i lowered again from x (no (K, N) matrix is kept);
//           dcols_i: (K, P) = w^T dy_i, scattered into dx_i (col2im).
// The images are split over the thread pool; each chunk of images sums its
// own dw terms and the chunks are added in chunk order, so a given thread
// count always gives the same bits. 1x1 kernels with stride 1 and no padding
// need no lowering: x_i viewed as (C, H*W) already is cols_i, and dx_i takes
// w^T dy_i directly.
//
// Otherwise (small planes, where per-image products are too short) the whole
// batch is lowered and multiplied in one BLAS GEMM:
// Forward:  cols: (K, N) holds every image's patches side by side (image i at
//           columns [i*P, (i+1)*P)), yt: (OC, N) = w: (OC, K) cols, then
//           y: (B, OC, P) = yt with the outer axes swapped, plus bias.
// Backward: dyt: (OC, N) = dy swapped;  dw += dyt cols^T;  db += sum of dy
//           over B and P;  dcols = w^T dyt, scattered back per image (col2im).
// cols is kept for the backward pass only when w needs a gradient; x's value
// is never needed (cols replaces it). 1x1 kernels with stride 1 and no
// padding skip the lowering: the forward and dx are one GEMM per image
// straight between the input and output buffers (no copies), and only dw,
// which sums over images, swaps x and dy to (C, N) and (OC, N).
//
// sparse_conv2d: a pruned filter bank as a CSR (OC, K) matrix, on the batched
// lowering (cols: (K, N)): yt = W cols by spmm, dw only at the pattern by
// SDDMM of dyt against cols, dcols = W^T dyt by spmm on the pattern's
// transpose. The columns are the batch's N = B*P patches, so every product
// vectorises over long contiguous rows.
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

namespace {

// When the per-image path is used. Its GEMMs run along P (the N of the
// forward and input-gradient products, the K of the weight gradient), so what
// decides is P, not the channel counts. Forward + backward of one conv layer
// (dx included except for 1-channel inputs), batch 60, one thread, per image
// vs batched, in ms:
//   P = 784: 1->6 5x5 0.57 vs 0.99;  64->64 3x3 69 vs 143;  128->128 3x3 243 vs 445
//   P = 196: 64->256 3x3 71 vs 103;  P = 144: 16->16 3x3 1.62 vs 1.97
//   P = 100: 6->16 5x5 1.12 vs 1.32;  16->16 3x3 1.44 vs 1.42
//   P = 64:  16->16 3x3 1.02 vs 1.00;  32->64 3x3 4.84 vs 4.82
//   P = 49:  6->16 3x3 0.39 vs 0.32;  128->128 3x3 34 vs 33
// K and OC are capped at the largest sizes measured.
constexpr int64_t kPerImageMinP = 96;
constexpr int64_t kPerImageMaxK = 1152;
constexpr int64_t kPerImageMaxOc = 256;

bool use_per_image(int64_t oc, int64_t k, int64_t p) {
  return p >= kPerImageMinP && k <= kPerImageMaxK && oc <= kPerImageMaxOc;
}

bool is_pointwise(const kernels::Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
}

// Sizes of one per-image convolution.
struct ImageConv {
  kernels::Conv2dGeometry g;
  int64_t oc, k, p, plane_in;
  bool pointwise;
  double flops() const { return 2.0 * static_cast<double>(oc * k * p); }
};

// y: (B, OC, P) = w cols_i (+ bias) for every image, split over the pool.
void conv_forward_per_image(const ImageConv& c, int64_t batch, float* y, const float* x,
                            const float* w, const float* bias, bool relu) {
  auto images = [&](int64_t lo, int64_t hi) {
    Tensor scratch = c.pointwise ? Tensor() : empty_apart({c.k, c.p}, y);
    for (int64_t i = lo; i < hi; ++i) {
      const float* xi = x + i * c.plane_in;
      const float* cols = xi;
      if (!c.pointwise) {
        kernels::im2col_f32(c.g, scratch.f32(), c.p, 0, xi);
        cols = scratch.f32();
      }
      // Bias and ReLU in the GEMM's epilogue: y_i is written once.
      kernels::gemm_f32__small(c.oc, c.p, c.k, y + i * c.oc * c.p, c.p, w, c.k, cols, c.p,
                               {.bias = bias, .relu = relu});
    }
  };
  ops::parallel_range(batch, c.flops() + static_cast<double>(c.k * c.p), images);
}

// dw: (OC, K) += sum_i dy_i cols_i^T (when dw is set) and dx += col2im(w^T dy_i)
// (when dx is set), images split over the pool; cols_i is lowered again from
// x. Measured on LeNet-5, this costs the same as keeping every image's cols
// from the forward pass (a (B, K, P) tensor read back from L3), without the
// memory. Chunk 0 accumulates into dw directly, chunk t > 0 into a partial
// that is added after the loop in chunk order. db is summed by the dw GEMM
// (sum_a) when there is one. For pointwise convolutions dx is written, not
// accumulated, with dx_beta (Node::grad_for_write), and masked by dx_mask
// (x's value, when x's own backward masks its gradient by it) in the same
// pass; relu_y (this convolution's fused ReLU) is null when dy is already
// masked.
void conv_backward_per_image(const ImageConv& c, int64_t batch, float* dw, float* db, float* dx,
                             float dx_beta, const float* dx_mask, const float* dy, const float* x,
                             const float* w, const float* relu_y) {
  const int64_t wn = c.oc * c.k;
  ThreadPool& pool = thread_pool();
  const int parts = pool.num_threads();
  const double cost =
      c.flops() * ((dw ? 1 : 0) + (dx ? 1 : 0)) + 2.0 * static_cast<double>(c.k * c.p);
  const bool split =
      parts > 1 && batch > 1 && static_cast<double>(batch) * cost >= ops::kParallelMinFlops;
  Tensor partials = split && dw ? Tensor::empty({parts - 1, wn}) : Tensor();
  Tensor db_partials = split && db ? Tensor::zeros({parts - 1, c.oc}) : Tensor();
  std::vector<char> ran(static_cast<size_t>(parts), 0);
  auto images = [&](int64_t lo, int64_t hi, int chunk) {
    ran[static_cast<size_t>(chunk)] = 1;
    float* dw_chunk = chunk == 0 ? dw : partials.f32() + (chunk - 1) * wn;
    float* db_chunk = chunk == 0 ? db : (db ? db_partials.f32() + (chunk - 1) * c.oc : nullptr);
    // One buffer for cols_i and then dcols_i: cols_i is dead once dw has it.
    Tensor scratch = c.pointwise ? Tensor() : empty_apart({c.k, c.p}, dy);
    float* buf = c.pointwise ? nullptr : scratch.f32();
    Tensor masked = relu_y ? empty_apart({c.oc, c.p}, dy) : Tensor();
    for (int64_t i = lo; i < hi; ++i) {
      const float* dyi = dy + i * c.oc * c.p;
      if (relu_y) {  // the fused ReLU: dy_i masked by the output, in cache
        kernels::relu_mask_f32(c.oc * c.p, masked.f32(), dyi, relu_y + i * c.oc * c.p);
        dyi = masked.f32();
      }
      if (db_chunk && !dw) kernels::sum_channels_f32(1, c.oc, c.p, db_chunk, dyi);
      const float* xi = x + i * c.plane_in;
      if (dw) {
        const float* cols = xi;
        if (!c.pointwise) {
          kernels::im2col_f32(c.g, buf, c.p, 0, xi);
          cols = buf;
        }
        // A partial starts at the chunk's first image (beta 0: never zeroed).
        const float beta = chunk != 0 && i == lo ? 0.0f : 1.0f;
        kernels::gemm_f32__small(c.oc, c.k, c.p, dw_chunk, c.k, dyi, c.p, cols, c.p,
                                 {.trans_b = true, .beta = beta, .sum_a = db_chunk});
      }
      if (dx) {
        float* dxi = dx + i * c.plane_in;
        if (c.pointwise) {  // dx_i: (C, P) = w^T dy_i (+ dx_i), masked by x_i
          kernels::gemm_f32__small(
              c.k, c.p, c.oc, dxi, c.p, w, c.k, dyi, c.p,
              {.trans_a = true, .beta = dx_beta, .mask = dx_mask ? dx_mask + i * c.plane_in : nullptr,
               .ldm = c.p});
        } else {
          kernels::gemm_f32__small(c.k, c.p, c.oc, buf, c.p, w, c.k, dyi, c.p, {.trans_a = true});
          kernels::col2im_f32(c.g, dxi, buf, c.p, 0);
        }
      }
    }
  };
  if (split)
    pool.parallel_for(batch, images);
  else
    images(0, batch, 0);
  for (int t = 1; t < parts; ++t) {
    if (!ran[static_cast<size_t>(t)]) continue;
    if (dw) kernels::add_f32(wn, dw, dw, partials.f32() + (t - 1) * wn);
    if (db) kernels::add_f32(c.oc, db, db, db_partials.f32() + (t - 1) * c.oc);
  }
}

// c_i: (M, N) = op(a) op(b_i) (+ beta c_i) for i in [0, batch), with a shared.
// Parallel over the batch when there is one image per thread or more (each
// GEMM whole on one thread: small per-image products gain nothing from a
// further split), otherwise each product is split by ops::gemm.
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

// The gradient to propagate through the convolution itself: with a fused
// ReLU, dy masked by the output (y > 0 exactly where the pre-activation was),
// unless the consumers wrote it masked already; `holder` keeps the masked
// copy alive.
const float* conv_output_grad(Node& self, bool relu, Tensor& holder) {
  if (!relu || self.grad_premasked) return self.grad.f32();
  holder = Tensor::empty(self.value.shape());
  kernels::relu_mask_f32(self.value.numel(), holder.f32(), self.grad.f32(), self.value.f32());
  return holder.f32();
}

// Marks a convolution's output whose backward masks its gradient by the
// output (a fused ReLU), so that consumers may write that gradient masked.
Var with_relu_mark(Var out, bool relu) {
  if (relu && out.node()) out.node()->relu_masks_grad = true;
  return out;
}

// Raises Error naming `op` when the shapes do not fit; ws: the weight's shape.
void check_conv_shapes(const char* op, const Var& x, const Shape& ws, const Var& b,
                       const Conv2dOptions& opt) {
  if (x.value().ndim() != 4) fail(op, ": input must be (B, C, H, W), got ", x.shape().str());
  if (ws.ndim() != 4) fail(op, ": weight must be (OC, C, KH, KW), got ", ws.str());
  if (x.dim(1) != ws[1])
    fail(op, ": input ", x.shape().str(), " has ", x.dim(1), " channels but weight ", ws.str(),
         " expects ", ws[1]);
  if (b.defined() && (b.value().ndim() != 1 || b.dim(0) != ws[0]))
    fail(op, ": bias ", b.shape().str(), " does not fit weight ", ws.str(), " (expected (",
         ws[0], "))");
  if (opt.stride < 1) fail(op, ": stride must be >= 1, got ", opt.stride);
  if (opt.pad < 0) fail(op, ": padding must be >= 0, got ", opt.pad);
  const int64_t h = x.dim(2), wd = x.dim(3);
  if (opt.circular && (opt.pad >= h || opt.pad >= wd))
    fail(op, ": circular padding ", opt.pad, " must be smaller than the input ",
         x.shape().str(), " (it wraps around once)");
  if (ws[2] > h + 2 * opt.pad || ws[3] > wd + 2 * opt.pad)
    fail(op, ": kernel ", ws[2], "x", ws[3], " does not fit input ", x.shape().str(),
         " with padding ", opt.pad);
}

}  // namespace

Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt) {
  check_conv_shapes("conv2d", x, w.shape(), b, opt);
  kernels::Conv2dGeometry g;
  g.c = x.dim(1), g.h = x.dim(2), g.w = x.dim(3);
  g.kh = w.dim(2), g.kw = w.dim(3);
  g.stride = opt.stride, g.pad = opt.pad, g.circular = opt.circular;
  const int64_t batch = x.dim(0), oc = w.dim(0), oh = g.out_h(), ow = g.out_w();
  const int64_t p = oh * ow, k = g.c * g.kh * g.kw, n = batch * p, plane_in = g.c * g.h * g.w;
  Tensor y = empty_apart({batch, oc, oh, ow}, x.value().f32());
  const float* bias = b.defined() ? b.value().f32() : nullptr;

  if (use_per_image(oc, k, p)) {
    const ImageConv c{
        .g = g, .oc = oc, .k = k, .p = p, .plane_in = plane_in, .pointwise = is_pointwise(g)};
    conv_forward_per_image(c, batch, y.f32(), x.value().f32(), w.value().f32(), bias, opt.relu);
    Var out = Var::make(y, "conv2d", {x, w, b}, [c, batch, relu = opt.relu](Node& self) {
      Node& x = *self.inputs[0];
      Node& w = *self.inputs[1];
      Node* b = self.inputs[2].get();
      // dx: a pointwise convolution writes it whole, masked when x's own
      // backward would mask it (a ReLU fused into the convolution before).
      float* dx = nullptr;
      float dx_beta = 1.0f;
      const bool mask_dx = c.pointwise && x.relu_masks_grad;
      if (x.requires_grad)
        dx = c.pointwise ? x.grad_for_write(dx_beta, mask_dx) : x.ensure_grad().f32();
      // Everything per image, the fused ReLU's mask and the bias gradient
      // included, so each image's dy is read while it is in cache.
      conv_backward_per_image(c, batch, w.requires_grad ? w.ensure_grad().f32() : nullptr,
                              b && b->requires_grad ? b->ensure_grad().f32() : nullptr, dx,
                              dx_beta, mask_dx ? x.value.f32() : nullptr, self.grad.f32(),
                              x.value.f32(), w.value.f32(),
                              relu && !self.grad_premasked ? self.value.f32() : nullptr);
    });
    return with_relu_mark(std::move(out), opt.relu);
  }

  if (is_pointwise(g)) {
    // y_i: (OC, P) = w: (OC, C) x_i: (C, P)
    gemm_per_image(batch, oc, p, k, y.f32(), oc * p, p, w.value().f32(), k, x.value().f32(), k * p,
                   p, {});
    if (bias) kernels::add_channels_f32(batch, oc, p, y.f32(), bias);
    if (opt.relu) kernels::relu_f32(y.numel(), y.f32(), y.f32());
    Var out = Var::make(y, "conv2d", {x, w, b}, [batch, oc, k, p, n, relu = opt.relu](Node& self) {
      Node& x = *self.inputs[0];
      Node& w = *self.inputs[1];
      Node* b = self.inputs[2].get();
      Tensor masked;
      const float* dy = conv_output_grad(self, relu, masked);
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
    return with_relu_mark(std::move(out), opt.relu);
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
  if (opt.relu) kernels::relu_f32(y.numel(), y.f32(), y.f32());

  if (!w.requires_grad()) cols = Tensor();  // the backward pass only needs it for dw
  Var out = Var::make(y, "conv2d", {x, w, b},
                   [g, cols, batch, oc, k, p, n, plane_in, relu = opt.relu](Node& self) {
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    Node* b = self.inputs[2].get();
    Tensor masked;
    const float* dy = conv_output_grad(self, relu, masked);
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
  return with_relu_mark(std::move(out), opt.relu);
}

namespace {

// w: the dense (OC, C, KH, KW) weight, or with `packed` its (nnz,) values
// (ws: the weight's shape either way).
Var sparse_conv2d_on(const char* op, const Var& x, const Var& w, const Shape& ws, const Var& b,
                     const Conv2dOptions& opt, std::shared_ptr<const CsrPattern> pattern,
                     bool packed) {
  check_conv_shapes(op, x, ws, b, opt);
  kernels::Conv2dGeometry g;
  g.c = x.dim(1), g.h = x.dim(2), g.w = x.dim(3);
  g.kh = ws[2], g.kw = ws[3];
  g.stride = opt.stride, g.pad = opt.pad, g.circular = opt.circular;
  const int64_t batch = x.dim(0), oc = ws[0], oh = g.out_h(), ow = g.out_w();
  const int64_t p = oh * ow, k = g.c * g.kh * g.kw, n = batch * p, plane_in = g.c * g.h * g.w;
  PARE_CHECK(pattern, op, ": no pattern");
  if (pattern->rows != oc || pattern->cols != k)
    fail(op, ": pattern (", pattern->rows, ", ", pattern->cols, ") does not match weight ",
         ws.str(), " viewed as (", oc, ", ", k, ")");
  if (packed ? (w.value().ndim() != 1 || w.dim(0) != pattern->nnz()) : !(w.shape() == ws))
    fail(op, ": ", packed ? "values " : "weight ", w.shape().str(), " do not fit the pattern of ",
         ws.str(), " (", pattern->nnz(), " entries)");
  Tensor values = w.value();
  if (!packed) {
    values = Tensor::empty({pattern->nnz()});
    pattern->gather(w.value().f32(), values.f32(), nullptr);
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
  Tensor y = empty_apart({batch, oc, oh, ow}, x.value().f32());
  {
    Tensor yt = Tensor::empty({oc, n});
    ops::spmm(n, yt.f32(), n, pattern->view(values.f32()), cols.f32(), n, 0.0f);
    kernels::swap_outer_f32(oc, batch, p, y.f32(), yt.f32());
  }
  if (b.defined()) kernels::add_channels_f32(batch, oc, p, y.f32(), b.value().f32());
  if (opt.relu) kernels::relu_f32(y.numel(), y.f32(), y.f32());
  Var out = Var::make(y, op, {x, w, b},
                      [g, cols, pattern, batch, oc, k, p, n, plane_in, packed,
                       relu = opt.relu](Node& self) {
    Node& x = *self.inputs[0];
    Node& w = *self.inputs[1];
    Node* b = self.inputs[2].get();
    const CsrPattern& pat = *pattern;
    Tensor masked;
    const float* dy = conv_output_grad(self, relu, masked);
    if (b && b->requires_grad) kernels::sum_channels_f32(batch, oc, p, b->ensure_grad().f32(), dy);
    if (x.requires_grad) x.ensure_grad();
    if (w.requires_grad) w.ensure_grad();
    if ((!w.requires_grad && !x.requires_grad) || pat.nnz() == 0) return;
    Tensor dyt = Tensor::empty({oc, n});
    kernels::swap_outer_f32(batch, oc, p, dyt.f32(), dy);
    if (w.requires_grad) {  // dw at the pattern: (dyt cols^T) at (r, c)
      if (packed) {
        ops::sddmm(n, w.grad.f32(), pat.view(nullptr), dyt.f32(), n, cols.f32(), n, 1.0f);
      } else {
        Tensor gk = Tensor::empty({pat.nnz()});
        ops::sddmm(n, gk.f32(), pat.view(nullptr), dyt.f32(), n, cols.f32(), n, 0.0f);
        pat.scatter_add(gk.f32(), w.grad.f32());
      }
    }
    if (x.requires_grad) {  // dcols: (K, N) = W^T dyt, scattered back per image
      Tensor t_values = Tensor::empty({pat.nnz()});
      if (packed)
        pat.gather_t(w.value.f32(), t_values.f32());
      else
        pat.gather(w.value.f32(), nullptr, t_values.f32());
      Tensor dcols = Tensor::empty({k, n});
      ops::spmm(n, dcols.f32(), n, pat.view_t(t_values.f32()), dyt.f32(), n, 0.0f);
      float* dx = x.grad.f32();
      const float* dc = dcols.f32();
      ops::parallel_range(batch, static_cast<double>(k * p), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) kernels::col2im_f32(g, dx + i * plane_in, dc, n, i * p);
      });
    }
  });
  return with_relu_mark(std::move(out), opt.relu);
}

}  // namespace

Var sparse_conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt,
                  std::shared_ptr<const CsrPattern> pattern) {
  return sparse_conv2d_on("sparse_conv2d", x, w, w.shape(), b, opt, std::move(pattern),
                          /*packed=*/false);
}

Var sparse_conv2d_packed(const Var& x, const Var& values, const Shape& w_shape, const Var& b,
                         const Conv2dOptions& opt, std::shared_ptr<const CsrPattern> pattern) {
  return sparse_conv2d_on("sparse_conv2d_packed", x, values, w_shape, b, opt, std::move(pattern),
                          /*packed=*/true);
}

}  // namespace pare::autograd
