// A dataset in memory: one tensor of inputs and one of targets, row i of each
// belonging to sample i.
//
// Shape legend: N samples; inputs (N, ...) f32; targets either (N,) i32 class
// labels in [0, num_classes) or (N, ...) f32 regression targets (num_classes 0).
// Tensors are shared handles, so copying a Dataset is cheap and shares the data.
#pragma once

#include <cstdint>
#include <string>

#include "pare/tensor/tensor.h"

namespace pare::data {

struct Dataset {
  Tensor inputs;            // (N, ...) f32
  Tensor targets;           // (N,) i32 class labels, or (N, ...) f32
  int64_t num_classes = 0;  // 0 = not classification
  std::string name;         // for logs and reports, e.g. "fashion-mnist/train"

  // N, the number of samples (0 for an empty or default-constructed dataset).
  int64_t size() const { return inputs.defined() && inputs.ndim() > 0 ? inputs.dim(0) : 0; }
};

struct TrainTest {
  Dataset train, test;
};

// Raises Error naming the dataset when inputs and targets disagree on N, when
// either is missing or not (N, ...) shaped, or when class labels are not i32
// values in [0, num_classes).
void validate(const Dataset& d);

}  // namespace pare::data
