// Losses: softmax cross-entropy, binary cross-entropy with logits, mean squared
// error. Each returns the mean over its terms as a (1,) tensor.
#include <cmath>

#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"

namespace pare::autograd {

namespace {
Tensor scalar(double v) {
  Tensor t = Tensor::empty({1});
  t.f32()[0] = static_cast<float>(v);
  return t;
}
// A non-finite loss is returned as it is: the training loop decides what
// to do about it (--on-nan, train/numerics.h) and says where it happened.
}  // namespace

Var softmax_cross_entropy(const Var& logits, const Tensor& labels) {
  if (logits.value().ndim() != 2)
    fail("softmax_cross_entropy: logits must be (B, K), got ", logits.shape().str());
  const int64_t batch = logits.dim(0), k = logits.dim(1);
  if (labels.dtype() != DType::i32 || labels.numel() != batch)
    fail("softmax_cross_entropy: need ", batch, " i32 labels, got ", labels.numel(), " ",
         dtype_name(labels.dtype()));
  const int32_t* lab = labels.data<int32_t>();
  for (int64_t i = 0; i < batch; ++i)
    if (lab[i] < 0 || lab[i] >= k)
      fail("softmax_cross_entropy: label ", lab[i], " at row ", i, " is outside [0, ", k, ")");
  Tensor probs = Tensor::empty({batch, k});
  double total = kernels::softmax_xent_f32(batch, k, probs.f32(), logits.value().f32(), lab);
  return Var::make(scalar(total / batch), "softmax_cross_entropy", {logits},
                   [probs, labels, batch, k](Node& self) {
                     const float g = self.grad.f32()[0] / static_cast<float>(batch);
                     kernels::softmax_xent_backward_f32(batch, k,
                                                        self.inputs[0]->ensure_grad().f32(),
                                                        probs.f32(), labels.data<int32_t>(), g);
                   });
}

Var bce_with_logits(const Var& logits, const Tensor& targets) {
  if (targets.dtype() != DType::f32 || targets.numel() != logits.numel())
    fail("bce_with_logits: targets ", targets.shape().str(), " do not match logits ",
         logits.shape().str());
  const int64_t n = logits.numel();
  if (!grad_enabled() || !logits.requires_grad()) {
    const double total = kernels::bce_logits_f32(n, logits.value().f32(), targets.f32());
    return Var::make(scalar(total / n), "bce_with_logits", {logits}, {});  // records nothing
  }
  // Training: sigmoid(x) - t comes out of the forward pass (one exp per
  // element for both), and the backward pass only scales it, writing the
  // logits' gradient rather than accumulating into a zeroed one.
  Tensor dsig = Tensor::empty(logits.shape());
  const double total =
      kernels::bce_logits_grad_f32(n, dsig.f32(), logits.value().f32(), targets.f32());
  return Var::make(scalar(total / n), "bce_with_logits", {logits}, [dsig, n](Node& self) {
    Node& in = *self.inputs[0];
    const float g = self.grad.f32()[0] / static_cast<float>(n);
    float beta;
    float* dx = in.grad_for_write(beta, /*masked=*/false);
    if (beta == 0.0f)
      kernels::scale_f32(n, dx, dsig.f32(), g);
    else
      kernels::axpy_f32(n, dx, dsig.f32(), g);
  });
}

Var mse(const Var& pred, const Tensor& target) {
  if (target.dtype() != DType::f32 || target.numel() != pred.numel())
    fail("mse: target ", target.shape().str(), " does not match prediction ",
         pred.shape().str());
  const int64_t n = pred.numel();
  double total = kernels::sq_diff_sum_f32(n, pred.value().f32(), target.f32());
  return Var::make(scalar(total / n), "mse", {pred}, [target, n](Node& self) {
    Node& in = *self.inputs[0];
    const float g = 2.0f * self.grad.f32()[0] / static_cast<float>(n);
    float* dx = in.ensure_grad().f32();
    const float* p = in.value.f32();
    const float* t = target.f32();
    for (int64_t i = 0; i < n; ++i) dx[i] += g * (p[i] - t[i]);
  });
}

}  // namespace pare::autograd
