// Raw-pointer compute kernels: the only place pare's numbers are made.
//
// Contract for every kernel (docs/architecture.md, STYLE rule 2):
//   - a plain function on pointers and sizes; it allocates nothing, owns no
//     threads and knows nothing of tensors or layers;
//   - arguments come in the order: sizes, outputs, inputs, params;
//   - sizes are int64_t, strides are in elements, all arrays row-major;
//   - every family has a scalar reference `<name>__ref` (the oracle, in ref/)
//     and the variant pare calls, `<name>` (in fast/ or blas/), which tests
//     compare against the reference over edge shapes;
//   - a `_backward` kernel ACCUMULATES (+=) into its input-gradient outputs.
// Callers split work across threads; kernels are safe to call concurrently
// on disjoint outputs.
//
// Legend: M, N, K matrix sizes; B batch; C channels; H, W spatial; P = H*W.
#pragma once

#include <cstdint>

namespace pare::kernels {

// ---- GEMM -----------------------------------------------------------------
struct GemmParams {
  bool trans_a = false;  // use A^T: A is stored (K, M) instead of (M, K)
  bool trans_b = false;  // use B^T: B is stored (N, K) instead of (K, N)
  float alpha = 1.0f;
  float beta = 0.0f;     // 0: C is overwritten (never read), 1: accumulate
  // Epilogue, applied to each entry of c after alpha and beta, in this order
  // (all off by default), so that a convolution's output or input gradient is
  // written once instead of being revisited by elementwise passes:
  const float* bias = nullptr;  // (M,): c(i, j) += bias[i]  (a per-channel bias)
  bool relu = false;            // c(i, j) = max(c(i, j), 0), NaN -> 0  (a fused ReLU)
  const float* mask = nullptr;  // (M, ldm): c(i, j) = 0 unless mask(i, j) > 0
  int64_t ldm = 0;              //   (a ReLU's backward, mask = the ReLU's output)
  // Also, when set: sum_a: (M,) += the row sums of op(a), sum over l of
  // op(a)(i, l) (a convolution's bias gradient alongside its weight gradient,
  // a = dy). Summed in float; the order depends only on the shapes.
  float* sum_a = nullptr;
};
// c: (M, N) = alpha * op(a) (M, K) * op(b) (K, N) + beta * c, then the epilogue
void gemm_f32__ref(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                   int64_t lda, const float* b, int64_t ldb, GemmParams p);
void gemm_f32__blas(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                    int64_t lda, const float* b, int64_t ldb, GemmParams p);
// The same contract, for small products read in place (no panel copies):
// fastest with M <= ~32 and long N when b is not transposed (a convolution's
// per-image forward and input gradient), and with long K when only b is
// (its weight gradient). Single-threaded; deterministic.
void gemm_f32__small(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                     int64_t lda, const float* b, int64_t ldb, GemmParams p);
// Name and build configuration of the BLAS behind gemm_f32__blas.
const char* blas_description();

// ---- Elementwise (y, x: (n,)) ------------------------------------------------
#define PARE_KERNEL_PAIR(ret, name, ...) \
  ret name##__ref(__VA_ARGS__);          \
  ret name(__VA_ARGS__);

PARE_KERNEL_PAIR(void, add_f32, int64_t n, float* y, const float* a, const float* b)  // y = a + b
PARE_KERNEL_PAIR(void, mul_f32, int64_t n, float* y, const float* a, const float* b)  // y = a * b
PARE_KERNEL_PAIR(void, axpy_f32, int64_t n, float* y, const float* x, float alpha)    // y += alpha x
PARE_KERNEL_PAIR(void, scale_f32, int64_t n, float* y, const float* x, float alpha)   // y = alpha x
PARE_KERNEL_PAIR(void, relu_f32, int64_t n, float* y, const float* x)
// dx += dy * (y > 0)
PARE_KERNEL_PAIR(void, relu_backward_f32, int64_t n, float* dx, const float* dy, const float* y)
// dx = dy * (y > 0), overwriting dx (for a gradient buffer not yet written,
// and for ReLU fused into the op before it).
PARE_KERNEL_PAIR(void, relu_mask_f32, int64_t n, float* dx, const float* dy, const float* y)
PARE_KERNEL_PAIR(void, sigmoid_f32, int64_t n, float* y, const float* x)
// dx += dy * y * (1 - y)
PARE_KERNEL_PAIR(void, sigmoid_backward_f32, int64_t n, float* dx, const float* dy,
                 const float* y)
PARE_KERNEL_PAIR(void, tanh_f32, int64_t n, float* y, const float* x)
// dx += dy * (1 - y^2)
PARE_KERNEL_PAIR(void, tanh_backward_f32, int64_t n, float* dx, const float* dy, const float* y)

// ---- Broadcast and reductions ---------------------------------------------------
// y: (m, n) += b: (n,)   (bias of a linear layer)
PARE_KERNEL_PAIR(void, add_rows_f32, int64_t m, int64_t n, float* y, const float* b)
// out: (n,) += sum over i of x: (m, n)   (bias gradient of a linear layer)
PARE_KERNEL_PAIR(void, sum_rows_f32, int64_t m, int64_t n, float* out, const float* x)
// y: (b, c, p) += bias: (c,)   (bias of a convolution)
PARE_KERNEL_PAIR(void, add_channels_f32, int64_t b, int64_t c, int64_t p, float* y,
                 const float* bias)
// out: (c,) += sum over b, p of x: (b, c, p)
PARE_KERNEL_PAIR(void, sum_channels_f32, int64_t b, int64_t c, int64_t p, float* out,
                 const float* x)
// Sum of x: (n,), accumulated in double.
PARE_KERNEL_PAIR(double, sum_f32, int64_t n, const float* x)
// y: (b, a, p) = x: (a, b, p) with the two outer axes swapped.
PARE_KERNEL_PAIR(void, swap_outer_f32, int64_t a, int64_t b, int64_t p, float* y, const float* x)
// y: (cols, rows), row stride ldy, = x^T + beta y for x: (rows, cols), row
// stride ldx. beta 0 never reads y (NaN there stays out). Strides let a
// caller transpose a block of rows into the matching columns of y.
PARE_KERNEL_PAIR(void, transpose_f32, int64_t rows, int64_t cols, float* y, int64_t ldy,
                 const float* x, int64_t ldx, float beta)

// ---- Convolution lowering ----------------------------------------------------------
struct Conv2dGeometry {
  int64_t c = 1, h = 1, w = 1;         // input channels and size
  int64_t kh = 1, kw = 1;              // kernel size
  int64_t stride = 1, pad = 0;         // same stride and padding on both axes
  bool circular = false;               // wrap around (torus) instead of zero padding
  int64_t out_h() const { return (h + 2 * pad - kh) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - kw) / stride + 1; }
};
// cols: (c*kh*kw, ld) receives, at columns [col0, col0 + oh*ow), the patches of
// one image x: (c, h, w). ld >= col0 + oh*ow lets a batch share one matrix.
PARE_KERNEL_PAIR(void, im2col_f32, const Conv2dGeometry& g, float* cols, int64_t ld, int64_t col0,
                 const float* x)
// dx: (c, h, w) += the patches at columns [col0, col0 + oh*ow) of dcols.
PARE_KERNEL_PAIR(void, col2im_f32, const Conv2dGeometry& g, float* dx, const float* dcols,
                 int64_t ld, int64_t col0)

// ---- Pooling (one image x: (c, h, w); window k, stride s, no padding) ---------------
struct Pool2dGeometry {
  int64_t c = 1, h = 1, w = 1, k = 2, stride = 2;
  int64_t out_h() const { return (h - k) / stride + 1; }
  int64_t out_w() const { return (w - k) / stride + 1; }
};
// y: (c, oh, ow); argmax: (c, oh, ow) flat index into the h*w plane of the max
// (first one on ties).
PARE_KERNEL_PAIR(void, maxpool2d_f32, const Pool2dGeometry& g, float* y, int32_t* argmax,
                 const float* x)
PARE_KERNEL_PAIR(void, maxpool2d_backward_f32, const Pool2dGeometry& g, float* dx,
                 const float* dy, const int32_t* argmax)
PARE_KERNEL_PAIR(void, avgpool2d_f32, const Pool2dGeometry& g, float* y, const float* x)
PARE_KERNEL_PAIR(void, avgpool2d_backward_f32, const Pool2dGeometry& g, float* dx,
                 const float* dy)

// ---- Losses ----------------------------------------------------------------------------
// For each row of logits: (b, k): probs = softmax(row), loss[i] = -log probs[label].
// labels: (b,) in [0, k). Returns the sum of the losses (double).
PARE_KERNEL_PAIR(double, softmax_xent_f32, int64_t b, int64_t k, float* probs,
                 const float* logits, const int32_t* labels)
// dlogits += scale * (probs - onehot(label))
PARE_KERNEL_PAIR(void, softmax_xent_backward_f32, int64_t b, int64_t k, float* dlogits,
                 const float* probs, const int32_t* labels, float scale)
// Binary cross-entropy with logits, summed: sum max(x,0) - x t + log(1 + exp(-|x|)).
PARE_KERNEL_PAIR(double, bce_logits_f32, int64_t n, const float* logits, const float* targets)
// dlogits += scale * (sigmoid(x) - t)
PARE_KERNEL_PAIR(void, bce_logits_backward_f32, int64_t n, float* dlogits, const float* logits,
                 const float* targets, float scale)
// Both at once, for training: returns bce_logits_f32's sum and writes
// dsig = sigmoid(x) - t (overwriting dsig), sharing one exp per element.
PARE_KERNEL_PAIR(double, bce_logits_grad_f32, int64_t n, float* dsig, const float* logits,
                 const float* targets)
// Sum of squared differences (double).
PARE_KERNEL_PAIR(double, sq_diff_sum_f32, int64_t n, const float* a, const float* b)

// ---- Optimizer updates -----------------------------------------------------------------
struct AdamParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float weight_decay = 0.0f;
  bool decoupled = false;     // AdamW (Loshchilov & Hutter): decay w directly
  float bias_correction1 = 1;  // 1 - beta1^t
  float bias_correction2 = 1;  // 1 - beta2^t
};
// PyTorch's Adam/AdamW step on w, m, v: (n,) with gradient g: (n,).
// mask: (n,) of 0/1 or null; masked-out entries keep w, m, v at exactly 0.
PARE_KERNEL_PAIR(void, adam_f32, int64_t n, float* w, float* m, float* v, const float* g,
                 const float* mask, const AdamParams& p)
// The same step on the entries idx[0 .. n) of w, m, v and g only (the
// positions a sparse layer keeps; idx distinct): the update of a pruned
// weight in O(nnz) instead of O(numel). Other entries are not touched.
PARE_KERNEL_PAIR(void, adam_at_f32, int64_t n, const int32_t* idx, float* w, float* m, float* v,
                 const float* g, const AdamParams& p)
struct SgdParams {
  float lr = 0.01f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;  // momentum buffer is initialised to g on the first step
};
// PyTorch's SGD step; buf: (n,) momentum buffer (unused when momentum == 0).
PARE_KERNEL_PAIR(void, sgd_f32, int64_t n, float* w, float* buf, const float* g,
                 const float* mask, const SgdParams& p)
// sgd_f32 on the entries idx[0 .. n) only (buf unused when momentum == 0).
PARE_KERNEL_PAIR(void, sgd_at_f32, int64_t n, const int32_t* idx, float* w, float* buf,
                 const float* g, const SgdParams& p)

#undef PARE_KERNEL_PAIR

}  // namespace pare::kernels
