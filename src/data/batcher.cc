// Batch gathering: one memcpy per row into buffers allocated once.
#include "pare/data/batcher.h"

#include <algorithm>
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

// A shape with its first dimension replaced.
Shape with_rows(const Shape& s, int64_t rows) {
  Shape out = s;
  out[0] = rows;
  return out;
}

}  // namespace

Batcher::Batcher(const Dataset& data, int64_t batch, bool shuffle, bool drop_last)
    : inputs_(data.inputs),
      targets_(data.targets),
      batch_(batch),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  const std::string who = data.name.empty() ? std::string("Batcher") : "Batcher(" + data.name + ")";
  if (batch < 1) fail(who, ": batch size must be >= 1, got ", batch);
  if (!inputs_.defined() || inputs_.ndim() < 1 || !targets_.defined() || targets_.ndim() < 1)
    fail(who, ": inputs and targets must be (N, ...) tensors");
  n_ = inputs_.dim(0);
  if (targets_.dim(0) != n_) fail(who, ": ", n_, " inputs but ", targets_.dim(0), " targets");
  input_row_bytes_ = n_ ? inputs_.nbytes() / static_cast<size_t>(n_) : 0;
  target_row_bytes_ = n_ ? targets_.nbytes() / static_cast<size_t>(n_) : 0;
  const int64_t rows = std::min(batch_, n_);
  batch_inputs_ = Tensor::empty(with_rows(inputs_.shape(), rows), inputs_.dtype());
  batch_targets_ = Tensor::empty(with_rows(targets_.shape(), rows), targets_.dtype());
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
  const char* src_x = bytes_of(inputs_);
  const char* src_y = bytes_of(targets_);
  char* dst_x = bytes_of(batch_inputs_);
  char* dst_y = bytes_of(batch_targets_);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t i = static_cast<size_t>(order_[static_cast<size_t>(begin + r)]);
    std::memcpy(dst_x + r * input_row_bytes_, src_x + i * input_row_bytes_, input_row_bytes_);
    std::memcpy(dst_y + r * target_row_bytes_, src_y + i * target_row_bytes_, target_row_bytes_);
  }
  // slice_rows shares the buffers, so a short last batch costs no allocation.
  inputs = rows == batch_inputs_.dim(0) ? batch_inputs_ : batch_inputs_.slice_rows(0, rows);
  targets = rows == batch_targets_.dim(0) ? batch_targets_ : batch_targets_.slice_rows(0, rows);
  ++position_;
  return true;
}

}  // namespace pare::data
