// A dataset in memory: one tensor of inputs and one of targets, row i of each
// belonging to sample i.
//
// Shape legend: N samples; inputs (N, ...) f32 or u8; targets either (N,) i32
// class labels in [0, num_classes), or (N, ...) f32 or u8 targets (num_classes
// 0). Tensors are shared handles, so copying a Dataset is cheap and shares the
// data.
//
// Datasets keep their natural storage (Fashion-MNIST pixels and Life cells are
// u8, a quarter of the memory of f32); models only ever see f32, because
// Batcher converts each batch as it gathers it: u8 inputs become
// float(double(v) * input_scale), u8 targets become float(v) (unscaled, e.g.
// Life cells 0/1), i32 and f32 pass through. Anything that feeds a model must
// go through a Batcher (evaluation too, with shuffle off), not slice inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pare/tensor/tensor.h"

namespace pare::data {

struct Dataset {
  Tensor inputs;            // (N, ...) f32 or u8
  Tensor targets;           // (N,) i32 class labels, or (N, ...) f32 or u8
  int64_t num_classes = 0;  // 0 = not classification
  std::string name;         // for logs and reports, e.g. "fashion-mnist/train"
  // Multiplies u8 inputs when batches are made (1/255 for images); must be 1
  // for f32 inputs. A double, not a float: float(double(v) * (1.0 / 255)) is
  // bit-identical to v / 255.0f for every v in 0..255, while v * (1 / 255.f)
  // differs in the last bit for 126 of them.
  double input_scale = 1.0;
  // Added to u8 inputs after scaling: a batch holds float(double(v) *
  // input_scale + input_offset). Standardisation (normalize.h) sets both.
  double input_offset = 0.0;

  // N, the number of samples (0 for an empty or default-constructed dataset).
  int64_t size() const { return inputs.defined() && inputs.ndim() > 0 ? inputs.dim(0) : 0; }
};

struct TrainTest {
  Dataset train, test;
};

// Raises Error naming the dataset when inputs and targets disagree on N, when
// either is missing or not (N, ...) shaped, when inputs are not f32 or u8,
// when input_scale is not finite (or not 1 for f32 inputs), when class labels
// are not i32 values in [0, num_classes), or when other targets are not f32 or
// u8.
void validate(const Dataset& d);

// The samples of `d` whose class label is one of `classes` (in order), for
// fine-tuning on a subset of classes. Raises Error when d is not a
// classification set or a class is out of range.
Dataset select_classes(const Dataset& d, const std::vector<int>& classes);
// The first d.size() - n samples and the last n, sharing d's storage: a
// validation split held out of training, so that settings can be chosen
// without looking at the test set. Raises Error unless 0 < n < d.size().
TrainTest split_last(const Dataset& d, int64_t n);

}  // namespace pare::data
