// NumPy .npy files: read (v1, v2, v3) and write (v1), little-endian, C order.
//
// Layout: "\x93NUMPY", major, minor, header length (u16 LE for v1, u32 LE for
// v2/v3), an ASCII (v3: UTF-8) Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces to a newline, then the raw elements.
// Reference: numpy/lib/format.py (NEP 1).
#pragma once

#include <string>
#include <string_view>

#include "pare/data/dataset.h"
#include "pare/tensor/tensor.h"

namespace pare::data {

// Reads an .npy file (gzipped or not). dtypes map as '<f4', '<f8' -> f32 (f8
// rounded); '<i4', '<i8' -> i32 (i8 checked to fit); '|u1', '|b1' -> u8;
// '|i1' -> i8. Raises Error naming `path` for a bad magic or version, a
// malformed header dict, an unsupported dtype, big-endian data,
// fortran_order True, or a data length that differs from the shape product
// (checked, with overflow detection, before allocating).
Tensor read_npy(const std::string& path);

// The same on bytes already in memory; `name` labels error messages.
Tensor parse_npy(std::string_view bytes, const std::string& name);

// Writes `t` (f32, i32, u8 or i8) as a v1.0 .npy file, atomically.
void write_npy(const std::string& path, const Tensor& t);

// The .npy bytes write_npy would write.
std::string encode_npy(const Tensor& t);

// A dataset from two .npy files with the same first dimension N. x (N, ...)
// becomes f32 inputs (values converted, not rescaled). y becomes (N,) i32
// class labels with num_classes = max + 1 when it is an integer (N,) array
// (labels must be >= 0), else f32 targets with num_classes 0.
Dataset npy_dataset(const std::string& x_path, const std::string& y_path);

}  // namespace pare::data
