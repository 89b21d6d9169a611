// IDX files (the MNIST family's format) and the Fashion-MNIST loader.
//
// IDX layout: bytes 0-1 are zero; byte 2 is the element type (0x08 u8, 0x09 i8,
// 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64); byte 3 is the number of dimensions
// d; then d big-endian u32 sizes; then the elements, big-endian, in C order,
// and nothing after them.
#pragma once

#include <string>
#include <string_view>

#include "pare/data/dataset.h"
#include "pare/tensor/tensor.h"

namespace pare::data {

// Reads an IDX file, gzipped or not. Element types map to tensor dtypes as
// u8 -> u8, i8 -> i8, i16 and i32 -> i32, f32 and f64 -> f32 (f64 is rounded).
// Raises Error naming `path` for a bad magic, an unknown type, more than
// Shape::kMaxDims dimensions, or a data length that differs from the header's
// dimension product (checked, with overflow detection, before allocating).
// Streams the file through zlib twice (once to check its length, once into
// the tensor), so memory use is the tensor plus small buffers, never a copy of
// the file: the 47 MB Fashion-MNIST train images peak at 47 MB, not ~180 MB.
Tensor read_idx(const std::string& path);

// The same on bytes already in memory; `name` labels error messages.
Tensor parse_idx(std::string_view bytes, const std::string& name);

// Where Debian's dataset-fashion-mnist package puts the four IDX files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Fashion-MNIST (Xiao et al. 2017): train-{images,labels} and t10k-{images,labels}
// from `dir`, each as .gz or uncompressed. Inputs (N, 1, 28, 28) u8 pixels
// 0..255 with input_scale 1/255 (so batches hold [0, 1] floats identical to
// v / 255.0f), targets (N,) i32 in [0, 10), num_classes 10; N = 60000 and 10000 for
// the Debian files. A missing directory or file raises Error naming it and
// saying which package to install.
TrainTest fashion_mnist(const std::string& dir = kFashionMnistDir);

}  // namespace pare::data
