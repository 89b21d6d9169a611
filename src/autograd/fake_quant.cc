// Fake quantization for quantization-aware training: the forward rounds onto
// the int8 grids of kernels/quant.h with the very kernels integer inference
// uses (so the trained model and the int8 file agree bit for bit on every
// quantized value); the backward is the straight-through estimator.
#include <cmath>
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/kernels/quant.h"

namespace pare::autograd {

Var fake_quant_weight_s8(const Var& w) {
  if (w.value().ndim() < 1 || w.dim(0) < 1)
    fail("fake_quant_weight_s8: needs a weight with output channels on axis 0, got ",
         w.shape().str());
  const int64_t rows = w.dim(0), cols = w.numel() / rows;
  Tensor y = Tensor::empty(w.shape());
  std::vector<int8_t> q(static_cast<size_t>(w.numel()));
  std::vector<float> scales(static_cast<size_t>(rows));
  kernels::quantize_weights_per_channel_s8(rows, cols, q.data(), scales.data(), w.value().f32());
  kernels::dequantize_weights_per_channel_s8(rows, cols, y.f32(), q.data(), scales.data());
  return Var::make(y, "fake_quant_weight_s8", {w}, [](Node& self) {
    Node& in = *self.inputs[0];
    kernels::axpy_f32(self.value.numel(), in.ensure_grad().f32(), self.grad.f32(), 1.0f);
  });
}

Var fake_quant_u8(const Var& x, float scale, int32_t zero_point) {
  if (!(scale > 0.0f && std::isfinite(scale)) || zero_point < 0 || zero_point > 255)
    fail("fake_quant_u8: needs scale > 0 and zero point in [0, 255], got scale ", scale,
         ", zero point ", zero_point);
  const int64_t n = x.numel();
  Tensor y = Tensor::empty(x.shape());
  std::vector<uint8_t> q(static_cast<size_t>(n));
  kernels::quantize_per_tensor_u8(n, q.data(), x.value().f32(), scale, zero_point);
  kernels::dequantize_u8_f32(n, y.f32(), q.data(), scale, zero_point);
  // The float range the grid covers; outside it the code saturates.
  const float lo = static_cast<float>(-zero_point) * scale;
  const float hi = static_cast<float>(255 - zero_point) * scale;
  return Var::make(y, "fake_quant_u8", {x}, [lo, hi](Node& self) {
    Node& in = *self.inputs[0];
    float* dx = in.ensure_grad().f32();
    const float* dy = self.grad.f32();
    const float* xv = in.value.f32();
    const int64_t n = self.value.numel();
    for (int64_t i = 0; i < n; ++i)
      if (xv[i] >= lo && xv[i] <= hi) dx[i] += dy[i];
  });
}

}  // namespace pare::autograd
