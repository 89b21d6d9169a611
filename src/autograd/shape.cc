// Shape ops: reshape and flatten share the input's data; their gradient is the
// output gradient viewed in the input's shape.
#include "pare/autograd/ops.h"
#include "pare/kernels/kernels.h"

namespace pare::autograd {

Var reshape(const Var& x, const Shape& shape) {
  Tensor y = x.value().reshape(shape);
  return Var::make(y, "reshape", {x}, [](Node& self) {
    Node& in = *self.inputs[0];
    kernels::axpy_f32(self.value.numel(), in.ensure_grad().f32(), self.grad.f32(), 1.0f);
  });
}

Var flatten(const Var& x) {
  if (x.value().ndim() < 1) fail("flatten: needs a batch dimension, got ", x.shape().str());
  return reshape(x, {x.dim(0), -1});
}

}  // namespace pare::autograd
