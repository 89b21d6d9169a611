// Batch gathering into buffers allocated once: one memcpy per f32 / i32 row,
// one vectorised u8 -> f32 conversion per u8 row.
#include "pare/data/batcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <span>

#include "pare/base/error.h"

namespace pare::data {

namespace {

// The tensor's bytes, whatever its dtype (Tensor::data<T> checks T).
const char* bytes_of(const Tensor& t) {
  switch (t.dtype()) {
    case DType::f32:
      return reinterpret_cast<const char*>(t.f32());
    case DType::i32:
      return reinterpret_cast<const char*>(t.data<int32_t>());
    case DType::u8:
      return reinterpret_cast<const char*>(t.data<uint8_t>());
    case DType::i8:
      return reinterpret_cast<const char*>(t.data<int8_t>());
  }
  return nullptr;
}
char* bytes_of(Tensor& t) { return const_cast<char*>(bytes_of(static_cast<const Tensor&>(t))); }

// The exact conversion of a byte v is float(double(v) * scale); these loops
// compute it. All three vectorise at -O3 -march=native (GCC -fopt-info-vec
// reports them). The float ones are about twice as fast as the double one, and
// Batcher uses one only after checking it gives the same bits for all 256
// bytes (for 1/255 that is v / 255.0f, not v * (1 / 255.f)).
void u8_mul_f32(const uint8_t* __restrict src, float* __restrict dst, int64_t n, float k) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * k;
}
void u8_div_f32(const uint8_t* __restrict src, float* __restrict dst, int64_t n, float k) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / k;
}
void u8_scale_f64(const uint8_t* __restrict src, float* __restrict dst, int64_t n, double k) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<double>(src[i]) * k);
}
void u8_affine_f64(const uint8_t* __restrict src, float* __restrict dst, int64_t n, double k, double offset) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<double>(src[i]) * k + offset);
}

// A shape with its first dimension replaced.
Shape with_rows(const Shape& s, int64_t rows) {
  Shape out = s;
  out[0] = rows;
  return out;
}

}  // namespace

U8ToF32::U8ToF32(double scale, double offset) : scale_(scale) {
  if (offset != 0.0) {
    for (int v = 0; v < 256; ++v)
      table_[v] = static_cast<float>(static_cast<double>(v) * scale + offset);
    // The vectorised loop (3x the lookup's speed) when it gives the table's
    // bits for every byte, in its vector body and alone (its scalar tail):
    // contraction into an FMA could differ between the two.
    uint8_t bytes[256];
    float bulk[256], alone[256];
    for (int v = 0; v < 256; ++v) bytes[v] = static_cast<uint8_t>(v);
    u8_affine_f64(bytes, bulk, 256, scale, offset);
    for (int v = 0; v < 256; ++v) u8_affine_f64(&bytes[v], &alone[v], 1, scale, offset);
    const bool exact = std::memcmp(bulk, table_, sizeof bulk) == 0 && std::memcmp(alone, table_, sizeof alone) == 0;
    how_ = exact ? How::affine : How::table;
    offset_ = offset;
    return;
  }
  auto every_byte = [&](auto f) {
    for (int v = 0; v < 256; ++v) {
      const float want = static_cast<float>(static_cast<double>(v) * scale);
      const float got = f(static_cast<float>(v));
      if (std::memcmp(&want, &got, sizeof want) != 0) return false;
    }
    return true;
  };
  const float mul = static_cast<float>(scale);
  const float div = static_cast<float>(1.0 / scale);
  if (every_byte([&](float v) { return v * mul; })) {
    how_ = How::mul;
    k_ = mul;
  } else if (std::isfinite(div) && every_byte([&](float v) { return v / div; })) {
    how_ = How::div;
    k_ = div;
  }
}

void U8ToF32::operator()(const uint8_t* src, float* dst, int64_t n) const {
  switch (how_) {
    case How::mul:
      return u8_mul_f32(src, dst, n, k_);
    case How::div:
      return u8_div_f32(src, dst, n, k_);
    case How::f64:
      return u8_scale_f64(src, dst, n, scale_);
    case How::affine:
      return u8_affine_f64(src, dst, n, scale_, offset_);
    case How::table:
      for (int64_t i = 0; i < n; ++i) dst[i] = table_[src[i]];
      return;
  }
}

Batcher::Batcher(const Dataset& data, int64_t batch, bool shuffle, bool drop_last)
    : inputs_(data.inputs),
      targets_(data.targets),
      input_convert_(data.input_scale, data.input_offset),
      batch_(batch),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  const std::string who = data.name.empty() ? std::string("Batcher") : "Batcher(" + data.name + ")";
  if (batch < 1) fail(who, ": batch size must be >= 1, got ", batch);
  if (!inputs_.defined() || inputs_.ndim() < 1 || !targets_.defined() || targets_.ndim() < 1)
    fail(who, ": inputs and targets must be (N, ...) tensors");
  n_ = inputs_.dim(0);
  if (targets_.dim(0) != n_) fail(who, ": ", n_, " inputs but ", targets_.dim(0), " targets");
  if (inputs_.dtype() != DType::f32 && inputs_.dtype() != DType::u8)
    fail(who, ": inputs must be f32 or u8, got ", dtype_name(inputs_.dtype()));
  if (targets_.dtype() == DType::i8)
    fail(who, ": targets must be f32, u8 or i32, got ", dtype_name(targets_.dtype()));
  input_row_numel_ = n_ ? inputs_.numel() / n_ : 0;
  target_row_numel_ = n_ ? targets_.numel() / n_ : 0;
  const int64_t rows = std::min(batch_, n_);
  batch_inputs_ = Tensor::empty(with_rows(inputs_.shape(), rows), DType::f32);
  batch_targets_ = Tensor::empty(with_rows(targets_.shape(), rows),
                                 targets_.dtype() == DType::i32 ? DType::i32 : DType::f32);
  order_.resize(static_cast<size_t>(n_));
}

void Batcher::start_epoch(Rng& rng) {
  // One draw seeds the shuffle, so the caller's stream advances the same way
  // whatever N is and whether or not we shuffle.
  Rng epoch_rng(rng.next_u64());
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (shuffle_) epoch_rng.shuffle(std::span<int64_t>(order_));
  position_ = 0;
  started_ = true;
}

int64_t Batcher::batches_per_epoch() const {
  return drop_last_ ? n_ / batch_ : (n_ + batch_ - 1) / batch_;
}

void Batcher::seek(int64_t batch_index) {
  if (batch_index < 0 || batch_index > batches_per_epoch())
    fail("Batcher::seek: batch ", batch_index, " is outside [0, ", batches_per_epoch(), "] for ",
         n_, " samples in batches of ", batch_);
  position_ = batch_index;
}

bool Batcher::next(Tensor& inputs, Tensor& targets) {
  PARE_CHECK(started_, "Batcher::next() called before start_epoch()");
  if (position_ >= batches_per_epoch()) return false;
  const int64_t begin = position_ * batch_;
  const int64_t rows = std::min(batch_, n_ - begin);
  const bool x_u8 = inputs_.dtype() == DType::u8, y_u8 = targets_.dtype() == DType::u8;
  const char* src_x = bytes_of(inputs_);
  const char* src_y = bytes_of(targets_);
  char* dst_x = bytes_of(batch_inputs_);
  char* dst_y = bytes_of(batch_targets_);
  const int64_t xn = input_row_numel_, yn = target_row_numel_;
  const size_t x_src_row = static_cast<size_t>(xn) * dtype_size(inputs_.dtype());
  const size_t y_src_row = static_cast<size_t>(yn) * dtype_size(targets_.dtype());
  const size_t x_dst_row = static_cast<size_t>(xn) * dtype_size(batch_inputs_.dtype());
  const size_t y_dst_row = static_cast<size_t>(yn) * dtype_size(batch_targets_.dtype());
  for (int64_t r = 0; r < rows; ++r) {
    const size_t i = static_cast<size_t>(order_[static_cast<size_t>(begin + r)]);
    const char* xs = src_x + i * x_src_row;
    const char* ys = src_y + i * y_src_row;
    char* xd = dst_x + r * x_dst_row;
    char* yd = dst_y + r * y_dst_row;
    if (x_u8)
      input_convert_(reinterpret_cast<const uint8_t*>(xs), reinterpret_cast<float*>(xd), xn);
    else
      std::memcpy(xd, xs, x_src_row);
    if (y_u8)
      target_convert_(reinterpret_cast<const uint8_t*>(ys), reinterpret_cast<float*>(yd), yn);
    else
      std::memcpy(yd, ys, y_src_row);
  }
  // Rows are picked at random from the whole dataset, so the next batch's rows
  // are usually in DRAM; ask for them now, and they arrive while this batch
  // trains (the gather was ~8 % of a Life m=8 step, all of it waiting on memory).
  const int64_t next_begin = begin + rows;
  const int64_t next_rows = std::min(batch_, n_ - next_begin);
  for (int64_t r = 0; r < next_rows; ++r) {
    const size_t i = static_cast<size_t>(order_[static_cast<size_t>(next_begin + r)]);
    for (size_t off = 0; off < x_src_row; off += 64) __builtin_prefetch(src_x + i * x_src_row + off);
    for (size_t off = 0; off < y_src_row; off += 64) __builtin_prefetch(src_y + i * y_src_row + off);
  }
  // slice_rows shares the buffers, so a short last batch costs no allocation.
  inputs = rows == batch_inputs_.dim(0) ? batch_inputs_ : batch_inputs_.slice_rows(0, rows);
  targets = rows == batch_targets_.dim(0) ? batch_targets_ : batch_targets_.slice_rows(0, rows);
  ++position_;
  return true;
}

}  // namespace pare::data
