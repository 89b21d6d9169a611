// Differentiable ops. Each op's shape check, forward and backward sit together
// in one file per family (elementwise.cc, linear.cc, conv.cc, pool.cc, loss.cc,
// shape.cc). Backward closures keep only the tensors they need and accumulate
// into input gradients. Shape errors raise pare::Error naming the op and shapes.
//
// Legend: B batch, C/OC channels, H/W spatial, K classes, in/out features.
#pragma once

#include <memory>

#include "pare/autograd/var.h"
#include "pare/base/rng.h"
#include "pare/tensor/sparse.h"

namespace pare::autograd {

// ---- elementwise.cc ----
Var relu(const Var& x);
Var sigmoid(const Var& x);
Var tanh(const Var& x);
Var add(const Var& a, const Var& b);  // same shapes
Var mul(const Var& a, const Var& b);  // same shapes
// Inverted dropout: in training, zeroes each element with probability p and
// scales survivors by 1/(1-p); identity when !training or p == 0.
Var dropout(const Var& x, float p, Rng& rng, bool training);

// ---- linear.cc ----
// y: (B, out) = x: (B, in) w^T + b; w: (out, in), b: (out,) or undefined.
Var linear(const Var& x, const Var& w, const Var& b);
// c: (M, N) = a: (M, K) b: (K, N)
Var matmul(const Var& a, const Var& b);

// ---- sparse_linear.cc ----
// linear(x, w, b) with w's entries outside `pattern` taken as zero, computed
// on the pattern's nonzeros only: the forward and input-gradient products are
// CSR products (tensor/sparse.h) and the weight gradient is computed only at
// the pattern's positions (SDDMM) and added to w's gradient there; its other
// entries are not touched. w's values outside the pattern are never read.
// The pattern (rows, cols) must equal w's shape (out, in).
Var sparse_linear(const Var& x, const Var& w, const Var& b,
                  std::shared_ptr<const CsrPattern> pattern);
// The same with the weight packed: `values` (nnz,) holds w's entries at the
// pattern, in pattern order (pos), and receives their gradient as (nnz,).
// What a sparse layer trains on: no gather per call and no dense gradient.
Var sparse_linear_packed(const Var& x, const Var& values, const Var& b,
                         std::shared_ptr<const CsrPattern> pattern);

// One sample through a SELL-16x32 weight (tensor/sparse.h): y: (1, out) =
// x: (1, in) w^T + b. Inference only: raises Error when a gradient would be
// recorded (grad mode on and x or b requiring one).
Var sell_linear(const Var& x, std::shared_ptr<const SellMatrix> w, const Var& b);

// ---- conv.cc ----
struct Conv2dOptions {
  int64_t stride = 1;
  int64_t pad = 0;        // same on all sides
  bool circular = false;  // wrap around (torus) instead of zero padding
  bool relu = false;      // apply ReLU to the output, fused (same result as relu(conv2d(...)))
};
// y: (B, OC, OH, OW) from x: (B, C, H, W), w: (OC, C, KH, KW), b: (OC,) or undefined.
Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt);

// conv2d with w's entries outside `pattern` taken as zero, computed on the
// nonzeros only (like sparse_linear): the pattern is w viewed as a
// (OC, C*KH*KW) matrix.
Var sparse_conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt,
                  std::shared_ptr<const CsrPattern> pattern);
// The same with the filter bank packed (values (nnz,), as sparse_linear_packed);
// w_shape: the weight's (OC, C, KH, KW).
Var sparse_conv2d_packed(const Var& x, const Var& values, const Shape& w_shape, const Var& b,
                         const Conv2dOptions& opt, std::shared_ptr<const CsrPattern> pattern);

// ---- pool.cc ----
// Window k, stride s (default k), no padding; x: (B, C, H, W).
Var max_pool2d(const Var& x, int64_t k, int64_t stride = 0);
Var avg_pool2d(const Var& x, int64_t k, int64_t stride = 0);

// ---- shape.cc ----
Var reshape(const Var& x, const Shape& shape);  // one dim may be -1
Var flatten(const Var& x);                      // (B, ...) -> (B, rest)

// ---- fake_quant.cc ----  (quantization-aware training; kernels/quant.h's scheme)
// w: (out, ...) fake-quantized s8 symmetric per output channel (w viewed as
// (out, rest)): y = q * scale_r bit for bit as the int8 weights dequantize
// (quantize_weights_per_channel_s8, then dequantize_weights_per_channel_s8).
// Straight-through gradient dw += dy: the max-abs range clips nothing.
Var fake_quant_weight_s8(const Var& w);
// x fake-quantized u8 per tensor: y = (clamp(rne(x / scale) + zero_point, 0,
// 255) - zero_point) * scale bit for bit as quantize_per_tensor_u8 then
// dequantize_u8_f32. Straight-through inside the grid: dx += dy where
// -zero_point * scale <= x <= (255 - zero_point) * scale, nothing where x is
// clipped. Raises Error unless scale > 0 (finite) and zero_point in [0, 255].
Var fake_quant_u8(const Var& x, float scale, int32_t zero_point);

// ---- loss.cc ----  (each returns the mean over its elements, shape (1,))
// logits: (B, K); labels: (B,) i32 in [0, K).
Var softmax_cross_entropy(const Var& logits, const Tensor& labels);
// logits and targets (in [0, 1]) of the same numel.
Var bce_with_logits(const Var& logits, const Tensor& targets);
Var mse(const Var& pred, const Tensor& target);

}  // namespace pare::autograd
