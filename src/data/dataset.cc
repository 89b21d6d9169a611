// Consistency checks shared by every dataset source.
#include "pare/data/dataset.h"

#include "pare/base/error.h"

namespace pare::data {

void validate(const Dataset& d) {
  const std::string who = d.name.empty() ? std::string("dataset") : "dataset " + d.name;
  if (!d.inputs.defined() || d.inputs.ndim() < 1) fail(who, ": inputs must be an (N, ...) tensor");
  if (!d.targets.defined() || d.targets.ndim() < 1)
    fail(who, ": targets must be an (N,) or (N, ...) tensor");
  if (d.inputs.dim(0) != d.targets.dim(0))
    fail(who, ": ", d.inputs.dim(0), " inputs but ", d.targets.dim(0), " targets");
  if (d.num_classes < 0) fail(who, ": num_classes is ", d.num_classes, ", must be >= 0");
  if (d.num_classes == 0) return;
  if (d.targets.dtype() != DType::i32 || d.targets.ndim() != 1)
    fail(who, ": class labels must be an (N,) i32 tensor, got ", d.targets.shape().str(), " ",
         dtype_name(d.targets.dtype()));
  const int32_t* y = d.targets.data<int32_t>();
  for (int64_t i = 0, n = d.targets.numel(); i < n; ++i)
    if (y[i] < 0 || y[i] >= d.num_classes)
      fail(who, ": label ", y[i], " of sample ", i, " is outside [0, ", d.num_classes, ")");
}

}  // namespace pare::data
