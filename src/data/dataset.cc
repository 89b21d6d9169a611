// Consistency checks shared by every dataset source.
#include "pare/data/dataset.h"

#include <cmath>

#include "pare/base/error.h"

namespace pare::data {

void validate(const Dataset& d) {
  const std::string who = d.name.empty() ? std::string("dataset") : "dataset " + d.name;
  if (!d.inputs.defined() || d.inputs.ndim() < 1) fail(who, ": inputs must be an (N, ...) tensor");
  if (!d.targets.defined() || d.targets.ndim() < 1)
    fail(who, ": targets must be an (N,) or (N, ...) tensor");
  if (d.inputs.dim(0) != d.targets.dim(0))
    fail(who, ": ", d.inputs.dim(0), " inputs but ", d.targets.dim(0), " targets");
  if (d.inputs.dtype() != DType::f32 && d.inputs.dtype() != DType::u8)
    fail(who, ": inputs must be f32 or u8, got ", dtype_name(d.inputs.dtype()));
  if (!std::isfinite(d.input_offset))
    fail(who, ": input_offset is ", d.input_offset, ", must be finite");
  if (d.inputs.defined() && d.inputs.dtype() == DType::f32 && d.input_offset != 0.0)
    fail(who, ": input_offset is ", d.input_offset, "; it applies to u8 inputs only");
  if (!std::isfinite(d.input_scale))
    fail(who, ": input_scale is ", d.input_scale, ", must be finite");
  if (d.inputs.dtype() == DType::f32 && d.input_scale != 1.0)
    fail(who, ": input_scale is ", d.input_scale,
         " but applies only to u8 inputs (f32 inputs need 1)");
  if (d.num_classes < 0) fail(who, ": num_classes is ", d.num_classes, ", must be >= 0");
  if (d.num_classes == 0) {
    if (d.targets.dtype() != DType::f32 && d.targets.dtype() != DType::u8)
      fail(who, ": targets must be f32 or u8 when num_classes is 0, got ",
           dtype_name(d.targets.dtype()));
    return;
  }
  if (d.targets.dtype() != DType::i32 || d.targets.ndim() != 1)
    fail(who, ": class labels must be an (N,) i32 tensor, got ", d.targets.shape().str(), " ",
         dtype_name(d.targets.dtype()));
  const int32_t* y = d.targets.data<int32_t>();
  for (int64_t i = 0, n = d.targets.numel(); i < n; ++i)
    if (y[i] < 0 || y[i] >= d.num_classes)
      fail(who, ": label ", y[i], " of sample ", i, " is outside [0, ", d.num_classes, ")");
}

}  // namespace pare::data
