// 2-D max and average pooling (window k, stride s, no padding), parallel over
// the B*C planes: the batch is handed to the kernels as one image of B*C
// channels, split into contiguous plane ranges across the pool.
//
// Legend: B batch, C channels, H/W input size, OH/OW output size.
// Max pooling keeps the int32 argmax (flat index into each H*W plane, first on
// ties) for its backward pass; average pooling keeps nothing.
#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

namespace {

// Geometry for the whole batch as B*C planes; validates the arguments.
kernels::Pool2dGeometry pool_geometry(const char* op, const Var& x, int64_t k, int64_t stride) {
  if (x.value().ndim() != 4) fail(op, ": input must be (B, C, H, W), got ", x.shape().str());
  if (k < 1) fail(op, ": window must be >= 1, got ", k);
  if (stride < 0) fail(op, ": stride must be >= 1 (or 0 for the window size), got ", stride);
  if (k > x.dim(2) || k > x.dim(3))
    fail(op, ": window ", k, "x", k, " does not fit input ", x.shape().str());
  kernels::Pool2dGeometry g;
  g.c = x.dim(0) * x.dim(1), g.h = x.dim(2), g.w = x.dim(3);
  g.k = k, g.stride = stride == 0 ? k : stride;
  return g;
}

// Calls fn(sub, first_plane) over contiguous plane ranges in parallel; `sub`
// is g restricted to that range.
template <typename Fn>
void for_plane_ranges(const kernels::Pool2dGeometry& g, Fn&& fn) {
  const double cost = static_cast<double>(g.out_h() * g.out_w() * g.k * g.k);
  ops::parallel_range(g.c, cost, [&](int64_t lo, int64_t hi) {
    kernels::Pool2dGeometry sub = g;
    sub.c = hi - lo;
    fn(sub, lo);
  });
}

}  // namespace

Var max_pool2d(const Var& x, int64_t k, int64_t stride) {
  const kernels::Pool2dGeometry g = pool_geometry("max_pool2d", x, k, stride);
  const int64_t oh = g.out_h(), ow = g.out_w(), in_plane = g.h * g.w, out_plane = oh * ow;
  const Shape out_shape{x.dim(0), x.dim(1), oh, ow};
  Tensor y = Tensor::empty(out_shape);
  Tensor argmax = Tensor::empty(out_shape, DType::i32);
  const float* xp = x.value().f32();
  float* yp = y.f32();
  int32_t* ap = argmax.data<int32_t>();
  for_plane_ranges(g, [&](const kernels::Pool2dGeometry& sub, int64_t first) {
    kernels::maxpool2d_f32(sub, yp + first * out_plane, ap + first * out_plane,
                           xp + first * in_plane);
  });
  return Var::make(y, "max_pool2d", {x}, [g, argmax, in_plane, out_plane](Node& self) {
    float* dx = self.inputs[0]->ensure_grad().f32();
    const float* dy = self.grad.f32();
    const int32_t* am = argmax.data<int32_t>();
    for_plane_ranges(g, [&](const kernels::Pool2dGeometry& sub, int64_t first) {
      kernels::maxpool2d_backward_f32(sub, dx + first * in_plane, dy + first * out_plane,
                                      am + first * out_plane);
    });
  });
}

Var avg_pool2d(const Var& x, int64_t k, int64_t stride) {
  const kernels::Pool2dGeometry g = pool_geometry("avg_pool2d", x, k, stride);
  const int64_t oh = g.out_h(), ow = g.out_w(), in_plane = g.h * g.w, out_plane = oh * ow;
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), oh, ow});
  const float* xp = x.value().f32();
  float* yp = y.f32();
  for_plane_ranges(g, [&](const kernels::Pool2dGeometry& sub, int64_t first) {
    kernels::avgpool2d_f32(sub, yp + first * out_plane, xp + first * in_plane);
  });
  return Var::make(y, "avg_pool2d", {x}, [g, in_plane, out_plane](Node& self) {
    float* dx = self.inputs[0]->ensure_grad().f32();
    const float* dy = self.grad.f32();
    for_plane_ranges(g, [&](const kernels::Pool2dGeometry& sub, int64_t first) {
      kernels::avgpool2d_backward_f32(sub, dx + first * in_plane, dy + first * out_plane);
    });
  });
}

}  // namespace pare::autograd
