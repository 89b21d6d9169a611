// Tensor handles and the pooled storage behind them.
#include "pare/tensor/tensor.h"

#include <cstdlib>
#include <unordered_map>

namespace pare {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
    case DType::i32: return 4;
    case DType::i8:
    case DType::u8: return 1;
  }
  return 0;
}

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  PARE_CHECK(dims.size() <= kMaxDims, "tensors have at most ", kMaxDims, " dimensions, got ",
             dims.size());
  ndim_ = static_cast<int>(dims.size());
  for (int i = 0; i < ndim_; ++i) {
    PARE_CHECK(dims[i] >= 0 || dims[i] == -1, "negative dimension ", dims[i]);
    dims_[i] = dims[i];
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim_ != o.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < ndim_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[i]);
  }
  return s + ")";
}

// ---- storage pool -----------------------------------------------------------
// One pool per thread, so threads that allocate at once (data-parallel
// training shards) never contend for a lock: measured 8 % more boards/s for
// the Life m=8 net on two threads than with one shared, locked pool. A buffer
// freed on another thread than the one that allocated it simply joins that
// thread's pool. A thread's pool is emptied when the thread exits; storages
// freed after that (static tensors at process exit) go straight to free().
namespace {
constexpr size_t kAlign = 64;

struct Pool {
  std::unordered_multimap<size_t, void*> free;  // rounded size -> buffer
  size_t held = 0;
  void release() {
    for (auto& [size, p] : free) std::free(p);
    free.clear();
    held = 0;
  }
};
// Trivially destructible, so they stay readable while other thread_locals
// are destroyed at thread exit.
thread_local Pool* t_pool = nullptr;
thread_local bool t_pool_gone = false;
struct PoolReaper {
  ~PoolReaper() {
    if (t_pool) t_pool->release();
    delete t_pool;
    t_pool = nullptr;
    t_pool_gone = true;
  }
};
thread_local PoolReaper t_reaper;

// This thread's pool, or null once the thread is exiting.
Pool* pool() {
  if (!t_pool && !t_pool_gone) {
    (void)&t_reaper;  // registers the reaper for this thread
    t_pool = new Pool();
  }
  return t_pool;
}
size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Storage::Storage(size_t bytes) : bytes_(bytes) {
  const size_t rounded = round_up(bytes ? bytes : 1);
  if (Pool* p = pool()) {
    auto it = p->free.find(rounded);
    if (it != p->free.end()) {
      data_ = it->second;
      p->free.erase(it);
      p->held -= rounded;
      return;
    }
  }
  data_ = std::aligned_alloc(kAlign, rounded);
  if (!data_) fail("out of memory allocating ", bytes, " bytes");
}

Storage::~Storage() {
  const size_t rounded = round_up(bytes_ ? bytes_ : 1);
  Pool* p = pool();
  if (!p) {
    std::free(data_);
    return;
  }
  p->free.emplace(rounded, data_);
  p->held += rounded;
}

size_t storage_pool_bytes() {
  Pool* p = pool();
  return p ? p->held : 0;
}

void storage_pool_release() {
  if (Pool* p = pool()) p->release();
}

// ---- tensor -----------------------------------------------------------------
Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape) PARE_CHECK(d >= 0, "cannot allocate a tensor of shape ", shape.str());
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype));
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.storage_->data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  t.fill(value);
  return t;
}

Tensor Tensor::from(const Shape& shape, std::span<const float> values) {
  PARE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "shape ", shape.str(),
             " needs ", shape.numel(), " values, got ", values.size());
  Tensor t = empty(shape);
  std::memcpy(t.f32(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_i32(const Shape& shape, std::span<const int32_t> values) {
  PARE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "shape ", shape.str(),
             " needs ", shape.numel(), " values, got ", values.size());
  Tensor t = empty(shape, DType::i32);
  std::memcpy(t.data<int32_t>(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.ndim(); ++i) {
    if (s[i] == -1) {
      PARE_CHECK(infer < 0, "reshape to ", shape.str(), ": only one dimension may be -1");
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    PARE_CHECK(known > 0 && numel() % known == 0, "cannot reshape ", shape_.str(), " to ",
               shape.str());
    s[infer] = numel() / known;
  }
  PARE_CHECK(s.numel() == numel(), "cannot reshape ", shape_.str(), " (", numel(),
             " elements) to ", shape.str());
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  PARE_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= dim(0), "rows [", begin, ", ",
             end, ") out of range for shape ", shape_.str());
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_ += begin * (numel() / std::max<int64_t>(dim(0), 1));
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_);
  if (numel()) std::memcpy(t.storage_->data(), static_cast<const char*>(storage_->data()) + offset_ * dtype_size(dtype_), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  PARE_CHECK(src.numel() == numel() && src.dtype_ == dtype_, "copy from ", src.shape_.str(),
             " ", dtype_name(src.dtype_), " into ", shape_.str(), " ", dtype_name(dtype_));
  if (numel())
    std::memmove(static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_),
                 static_cast<const char*>(src.storage_->data()) + src.offset_ * dtype_size(dtype_),
                 nbytes());
}

void Tensor::fill(float value) {
  PARE_CHECK(dtype_ == DType::f32, "fill() needs an f32 tensor");
  float* p = f32();
  for (int64_t i = 0, n = numel(); i < n; ++i) p[i] = value;
}

void Tensor::zero() {
  if (numel()) std::memset(static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_), 0, nbytes());
}

}  // namespace pare
