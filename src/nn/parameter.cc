// Parameter masks and the contiguous parameter store.
#include "pare/nn/parameter.h"

#include "pare/kernels/kernels.h"

namespace pare::nn {

void Parameter::apply_mask() {
  if (!mask.defined()) return;
  PARE_CHECK(mask.shape() == value().shape(), name, ": mask ", mask.shape().str(),
             " does not match value ", value().shape().str());
  kernels::mul_f32(numel(), value().f32(), value().f32(), mask.f32());
}

void ParameterStore::pack(std::vector<Parameter*> params) {
  params_ = std::move(params);
  int64_t total = 0;
  for (Parameter* p : params_) total += p->numel();
  values_ = Tensor::empty({total});
  grads_ = Tensor::zeros({total});
  initial_ = Tensor::empty({total});
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter* p = params_[i];
    p->index = static_cast<int>(i);
    const Shape shape = p->value().shape();
    const int64_t n = p->numel();
    Tensor value = values_.slice_rows(offset, offset + n).reshape(shape);
    value.copy_from(p->value());
    p->var = autograd::Var(value, /*requires_grad=*/true);
    p->var.bind_grad(grads_.slice_rows(offset, offset + n).reshape(shape));
    p->initial = initial_.slice_rows(offset, offset + n).reshape(shape);
    offset += n;
  }
  initial_.copy_from(values_);
}

void ParameterStore::zero_grad() {
  // A packed weight's dense gradient is 0 already (sparse_dispatch.cc keeps
  // it so): skipping it saves writing the dense layer's size every step.
  for (Parameter* p : params_)
    (p->packed.defined() ? p->packed.grad() : p->grad()).zero();
}

void ParameterStore::rewind() {
  values_.copy_from(initial_);
  for (Parameter* p : params_) p->apply_mask();
}

}  // namespace pare::nn
