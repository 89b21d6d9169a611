// Dense, contiguous, row-major tensors with shared storage.
//
// A Tensor is a cheap handle (shape, dtype, shared storage, element offset).
// Copying a Tensor shares its data; clone() copies it. Storage comes from a
// per-size free list, so a training step that allocates the same shapes every
// iteration stops calling malloc after the first one (allocation per step is
// what slows tiny-dnn and dlib; research/cpp-peers.md). Buffers are 64-byte
// aligned for the vector units.
//
// float32 is the compute type; int8, uint8 and int32 storage is there for
// labels, pooling indices and the quantization rooms.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pare/base/error.h"

namespace pare {

enum class DType : uint8_t { f32 = 0, i32 = 1, i8 = 2, u8 = 3 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <>
constexpr DType dtype_of<int8_t>() { return DType::i8; }
template <>
constexpr DType dtype_of<uint8_t>() { return DType::u8; }

// A shape of up to kMaxDims dimensions, stored inline.
class Shape {
 public:
  static constexpr int kMaxDims = 6;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  int64_t numel() const;
  const int64_t* begin() const { return dims_; }
  const int64_t* end() const { return dims_ + ndim_; }
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(60, 784)"

 private:
  int64_t dims_[kMaxDims] = {};
  int ndim_ = 0;
};

// Aligned, pooled bytes. Owned by shared_ptr from Tensors.
class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_;
  size_t bytes_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: holds no storage

  // Uninitialised contents.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value);
  // Copies `values` (length must equal shape.numel()).
  static Tensor from(const Shape& shape, std::span<const float> values);
  static Tensor from_i32(const Shape& shape, std::span<const int32_t> values);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + shape_.ndim() : i]; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  template <typename T>
  T* data() {
    PARE_DCHECK(dtype_ == dtype_of<T>());
    return static_cast<T*>(storage_->data()) + offset_;
  }
  template <typename T>
  const T* data() const {
    PARE_DCHECK(dtype_ == dtype_of<T>());
    return static_cast<const T*>(storage_->data()) + offset_;
  }
  // Untyped bytes (for serialisation), nbytes() long.
  void* raw() { return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_); }
  const void* raw() const {
    return static_cast<const char*>(storage_->data()) + offset_ * dtype_size(dtype_);
  }
  float* f32() { return data<float>(); }
  const float* f32() const { return data<float>(); }
  std::span<float> span_f32() { return {f32(), static_cast<size_t>(numel())}; }
  std::span<const float> span_f32() const { return {f32(), static_cast<size_t>(numel())}; }

  // Same data, new shape (numel must match; one dim may be -1).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of the outermost dimension, sharing data.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // A deep copy with its own storage.
  Tensor clone() const;
  // Copies src's contents into this tensor (same numel and dtype).
  void copy_from(const Tensor& src);
  void fill(float value);
  void zero();
  // Whether both handles point at the same bytes.
  bool shares_storage_with(const Tensor& o) const { return storage_ == o.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::f32;
};

// Bytes held in the calling thread's storage free lists (for tests and memory reports).
size_t storage_pool_bytes();
// Returns the calling thread's pooled buffers to the system.
void storage_pool_release();

}  // namespace pare
