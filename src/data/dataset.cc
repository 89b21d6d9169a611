// Consistency checks shared by every dataset source.
#include "pare/data/dataset.h"

#include <cstring>

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

Dataset select_classes(const Dataset& d, const std::vector<int>& classes) {
  if (d.num_classes <= 0 || !d.targets.defined() || d.targets.dtype() != DType::i32)
    fail(d.name, ": selecting classes needs class labels");
  std::vector<char> keep_class(static_cast<size_t>(d.num_classes), 0);
  for (int c : classes) {
    if (c < 0 || c >= d.num_classes) fail("class ", c, " is not in [0, ", d.num_classes, ")");
    keep_class[static_cast<size_t>(c)] = 1;
  }
  const int64_t n = d.size();
  const int32_t* y = d.targets.data<int32_t>();
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i)
    if (keep_class[static_cast<size_t>(y[i])]) rows.push_back(i);
  Dataset out = d;
  Shape in_shape = d.inputs.shape();
  in_shape[0] = static_cast<int64_t>(rows.size());
  out.inputs = Tensor::empty(in_shape, d.inputs.dtype());
  out.targets = Tensor::empty({static_cast<int64_t>(rows.size())}, DType::i32);
  const size_t row_bytes = n ? d.inputs.nbytes() / static_cast<size_t>(n) : 0;
  const auto* src = static_cast<const char*>(d.inputs.raw());
  auto* dst = static_cast<char*>(out.inputs.raw());
  for (size_t k = 0; k < rows.size(); ++k) {
    std::memcpy(dst + k * row_bytes, src + static_cast<size_t>(rows[k]) * row_bytes, row_bytes);
    out.targets.data<int32_t>()[k] = y[rows[k]];
  }
  out.name = d.name + "/classes";
  return out;
}

TrainTest split_last(const Dataset& d, int64_t n) {
  const int64_t size = d.size();
  if (n <= 0 || n >= size)
    fail(d.name, ": cannot hold out ", n, " of its ", size,
         " samples (need at least 1 and fewer than all)");
  TrainTest out{d, d};
  out.train.inputs = d.inputs.slice_rows(0, size - n);
  out.train.targets = d.targets.slice_rows(0, size - n);
  out.test.inputs = d.inputs.slice_rows(size - n, size);
  out.test.targets = d.targets.slice_rows(size - n, size);
  out.test.name = d.name + "/holdout";
  return out;
}

}  // namespace pare::data
