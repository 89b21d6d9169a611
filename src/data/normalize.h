// Standardising inputs with one mean and standard deviation for the whole
// tensor (as is usual for greyscale images: Fashion-MNIST's train split gives
// mean ~0.286, std ~0.353). Compute it on the training split and apply the
// same values to the test split.
#pragma once

#include "pare/tensor/tensor.h"

namespace pare::data {

struct Normalization {
  float mean = 0;
  float std = 1;  // population standard deviation; > 0 to be usable
};

// Mean and population standard deviation over every element of an f32
// tensor, accumulated in double over fixed-size blocks combined in order, so
// the result does not depend on the thread count. Raises Error for an empty
// tensor or one holding NaN or infinity.
Normalization compute_normalization(const Tensor& t);

// t = (t - n.mean) / n.std in place. Raises Error unless n.std is finite and
// positive (a constant tensor has std 0 and cannot be standardised).
void normalize(Tensor& t, Normalization n);

struct TrainTest;
struct Dataset;

// Standardises both splits with the training split's mean and standard
// deviation (of the values batches hold). For u8 inputs the statistics come
// from a histogram of the bytes and are folded into input_scale and
// input_offset, so the data stays one byte per value; f32 inputs are
// rewritten in place. Returns the statistics used.
Normalization standardize(TrainTest& data);

// Applies given statistics to one dataset as standardize() does (for a saved
// model evaluated on new data).
void standardize_with(Dataset& data, Normalization n);

}  // namespace pare::data
