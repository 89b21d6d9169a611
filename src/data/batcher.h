// Minibatches over a Dataset in a (optionally shuffled) order, resumable
// mid-epoch.
//
// Usage:
//   Batcher batches(data.train, 60, /*shuffle=*/true);
//   for (int epoch = 0; epoch < epochs; ++epoch) {
//     batches.start_epoch(rng);
//     Tensor x, y;
//     while (batches.next(x, y)) { ... }
//   }
// To resume, save rng's state from before start_epoch and position(); later
// call start_epoch with that state and seek(position).
//
// Batches are always f32 inputs and f32 or i32 targets, whatever the dataset
// stores (see dataset.h): u8 inputs are converted as they are gathered, to
// float(double(v) * input_scale), and u8 targets to float(v); f32 and i32
// rows are copied as they are. Evaluation walks a dataset in order with
// shuffle = false (start_epoch still needs an Rng; any will do).
#pragma once

#include <cstdint>
#include <vector>

#include "pare/base/rng.h"
#include "pare/data/dataset.h"

namespace pare::data {

// Converts u8 values to float(double(v) * scale), bit for bit, by the
// fastest of three vectorised loops that gives exactly those bits for every
// byte (float multiply, float divide, or the double product itself).
// With a non-zero offset, float(double(v) * scale + offset), by a vectorised
// loop checked against a table of the 256 values, else by table lookup.
class U8ToF32 {
 public:
  explicit U8ToF32(double scale = 1.0, double offset = 0.0);
  void operator()(const uint8_t* src, float* dst, int64_t n) const;

 private:
  enum class How { mul, div, f64, affine, table };
  double scale_;
  double offset_ = 0;
  How how_ = How::f64;
  float k_ = 0;
  float table_[256] = {};
};

class Batcher {
 public:
  // Holds its own handles to the dataset's tensors (they share data, so the
  // dataset may go out of scope). Raises Error when batch < 1, when the
  // dataset's inputs and targets disagree on N, or when inputs are not f32 or
  // u8 or targets not f32, u8 or i32. Without drop_last, the last batch of an
  // epoch holds the N % batch remaining samples; with it, they are skipped.
  Batcher(const Dataset& data, int64_t batch, bool shuffle, bool drop_last = false);

  // Begins an epoch at position 0 with a fresh sample order: a permutation
  // that is a pure function of rng's state (identity when shuffle is false).
  // Advances rng by exactly one draw, shuffled or not.
  void start_epoch(Rng& rng);

  // Gathers the next batch into inputs (B, ...) and targets (B, ...), B =
  // batch or fewer for the last partial batch, and returns true; returns false
  // at the end of the epoch. The tensors are views of buffers the Batcher
  // owns and reuses: their contents are valid until the next call to next()
  // (clone() them to keep them). No allocation happens after construction.
  // inputs are f32; targets are f32 (from f32 or u8 storage) or i32.
  // REQUIRES: start_epoch() has been called.
  bool next(Tensor& inputs, Tensor& targets);

  int64_t batches_per_epoch() const;
  // Index of the batch the next call to next() returns (batches done so far).
  int64_t position() const { return position_; }
  // Continues the current epoch at batch `batch_index`, in [0, batches_per_epoch()];
  // raises Error outside that range.
  void seek(int64_t batch_index);

  int64_t size() const { return n_; }
  int64_t batch_size() const { return batch_; }
  // The current epoch's sample order (for tests and logs).
  const std::vector<int64_t>& order() const { return order_; }

 private:
  Tensor inputs_, targets_;              // the whole dataset, as stored
  Tensor batch_inputs_, batch_targets_;  // reusable (min(batch, N), ...) f32 / i32 buffers
  U8ToF32 input_convert_;                // u8 inputs: v * input_scale
  U8ToF32 target_convert_;               // u8 targets: v, unscaled
  int64_t n_;
  int64_t batch_;
  bool shuffle_;
  bool drop_last_;
  int64_t input_row_numel_, target_row_numel_;  // elements per sample
  std::vector<int64_t> order_;
  int64_t position_ = 0;
  bool started_ = false;
};

}  // namespace pare::data
