// Elementwise differentiable ops: relu, sigmoid, tanh, add, mul, dropout.
#include <cstring>

#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::autograd {

namespace {
using UnaryKernel = void (*)(int64_t, float*, const float*);
using UnaryBackward = void (*)(int64_t, float*, const float*, const float*);

// y = f(x); dx += f'(y) dy, for activations whose derivative is a function of y.
Var activation(const Var& x, const char* name, UnaryKernel forward, UnaryBackward backward,
               double cost) {
  Tensor y = Tensor::empty(x.shape());
  const float* xp = x.value().f32();
  float* yp = y.f32();
  ops::parallel_range(x.numel(), cost, [&](int64_t b, int64_t e) { forward(e - b, yp + b, xp + b); });
  return Var::make(y, name, {x}, [backward, cost](Node& self) {
    Node& in = *self.inputs[0];
    float* dx = in.ensure_grad().f32();
    const float* dy = self.grad.f32();
    const float* yv = self.value.f32();
    ops::parallel_range(self.value.numel(), cost,
                        [&](int64_t b, int64_t e) { backward(e - b, dx + b, dy + b, yv + b); });
  });
}

void check_same_shape(const char* op, const Var& a, const Var& b) {
  if (a.shape() != b.shape())
    fail(op, ": shapes differ: ", a.shape().str(), " and ", b.shape().str());
}
}  // namespace

Var relu(const Var& x) {
  return activation(x, "relu", kernels::relu_f32, kernels::relu_backward_f32, 1);
}
Var sigmoid(const Var& x) {
  return activation(x, "sigmoid", kernels::sigmoid_f32, kernels::sigmoid_backward_f32, 8);
}
Var tanh(const Var& x) {
  return activation(x, "tanh", kernels::tanh_f32, kernels::tanh_backward_f32, 8);
}

Var add(const Var& a, const Var& b) {
  check_same_shape("add", a, b);
  Tensor y = Tensor::empty(a.shape());
  kernels::add_f32(a.numel(), y.f32(), a.value().f32(), b.value().f32());
  return Var::make(y, "add", {a, b}, [](Node& self) {
    const int64_t n = self.value.numel();
    for (auto& in : self.inputs)
      if (in->requires_grad) kernels::axpy_f32(n, in->ensure_grad().f32(), self.grad.f32(), 1.0f);
  });
}

Var mul(const Var& a, const Var& b) {
  check_same_shape("mul", a, b);
  Tensor y = Tensor::empty(a.shape());
  kernels::mul_f32(a.numel(), y.f32(), a.value().f32(), b.value().f32());
  return Var::make(y, "mul", {a, b}, [](Node& self) {
    const int64_t n = self.value.numel();
    Node& a = *self.inputs[0];
    Node& b = *self.inputs[1];
    Tensor tmp = Tensor::empty(self.value.shape());
    if (a.requires_grad) {
      kernels::mul_f32(n, tmp.f32(), self.grad.f32(), b.value.f32());
      kernels::axpy_f32(n, a.ensure_grad().f32(), tmp.f32(), 1.0f);
    }
    if (b.requires_grad) {
      kernels::mul_f32(n, tmp.f32(), self.grad.f32(), a.value.f32());
      kernels::axpy_f32(n, b.ensure_grad().f32(), tmp.f32(), 1.0f);
    }
  });
}

Var dropout(const Var& x, float p, Rng& rng, bool training) {
  if (!(p >= 0.0f && p < 1.0f)) fail("dropout: probability must be in [0, 1), got ", p);
  if (!training || p == 0.0f) return x;
  const int64_t n = x.numel();
  Tensor mask = Tensor::empty(x.shape());
  const float keep_scale = 1.0f / (1.0f - p);
  float* m = mask.f32();
  for (int64_t i = 0; i < n; ++i) m[i] = rng.uniform() < p ? 0.0f : keep_scale;
  Tensor y = Tensor::empty(x.shape());
  kernels::mul_f32(n, y.f32(), x.value().f32(), m);
  return Var::make(y, "dropout", {x}, [mask](Node& self) {
    const int64_t n = self.value.numel();
    Tensor tmp = Tensor::empty(self.value.shape());
    kernels::mul_f32(n, tmp.f32(), self.grad.f32(), mask.f32());
    kernels::axpy_f32(n, self.inputs[0]->ensure_grad().f32(), tmp.f32(), 1.0f);
  });
}

}  // namespace pare::autograd
