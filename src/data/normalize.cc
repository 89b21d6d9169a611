// Two-pass mean and variance (numerically safer than sum of squares), in
// parallel over fixed blocks.
#include "pare/data/normalize.h"

#include "pare/data/dataset.h"

#include <cmath>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/thread_pool.h"

namespace pare::data {

namespace {

constexpr int64_t kBlock = 1 << 16;

// Sums f(x) over each kBlock-sized block in parallel, then adds the block sums
// in block order: the same bits for any thread count.
template <typename F>
double blocked_sum(const float* x, int64_t n, F f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks));
  thread_pool().parallel_for(blocks, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      double s = 0;
      for (int64_t i = b * kBlock, e = std::min(n, i + kBlock); i < e; ++i) s += f(x[i]);
      partial[static_cast<size_t>(b)] = s;
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

Normalization compute_normalization(const Tensor& t) {
  PARE_CHECK(t.defined() && t.dtype() == DType::f32, "compute_normalization needs an f32 tensor");
  const int64_t n = t.numel();
  if (n == 0) fail("compute_normalization: the tensor ", t.shape().str(), " is empty");
  const float* x = t.f32();
  const double mean = blocked_sum(x, n, [](float v) { return double{v}; }) / n;
  if (!std::isfinite(mean)) fail("compute_normalization: the data contains NaN or infinity");
  const double var = blocked_sum(x, n, [mean](float v) { return (v - mean) * (v - mean); }) / n;
  return {static_cast<float>(mean), static_cast<float>(std::sqrt(var))};
}

void normalize(Tensor& t, Normalization n) {
  PARE_CHECK(t.defined() && t.dtype() == DType::f32, "normalize needs an f32 tensor");
  if (!(std::isfinite(n.std) && n.std > 0) || !std::isfinite(n.mean))
    fail("normalize: need a finite mean and a positive std, got mean ", n.mean, " std ", n.std,
         " (constant data has std 0)");
  float* x = t.f32();
  const float mean = n.mean, inv = 1.0f / n.std;
  // Elementwise, so the split does not change the result.
  thread_pool().parallel_for(
      t.numel(),
      [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) x[i] = (x[i] - mean) * inv;
      },
      kBlock);
}

Normalization standardize(TrainTest& data) {
  Dataset& train = data.train;
  if (train.size() == 0) fail("standardize: the training split is empty");
  Normalization n;
  if (train.inputs.dtype() == DType::u8) {
    int64_t count[256] = {};
    const uint8_t* p = train.inputs.data<uint8_t>();
    for (int64_t i = 0, e = train.inputs.numel(); i < e; ++i) ++count[p[i]];
    double sum = 0, total = 0;
    for (int v = 0; v < 256; ++v) {
      const double x = static_cast<double>(v) * train.input_scale + train.input_offset;
      sum += x * static_cast<double>(count[v]);
      total += static_cast<double>(count[v]);
    }
    const double mean = sum / total;
    double var = 0;
    for (int v = 0; v < 256; ++v) {
      const double d = static_cast<double>(v) * train.input_scale + train.input_offset - mean;
      var += d * d * static_cast<double>(count[v]);
    }
    const double sd = std::sqrt(var / total);
    if (!(sd > 0)) fail(train.name, ": inputs are constant and cannot be standardised");
    n = {static_cast<float>(mean), static_cast<float>(sd)};
    for (Dataset* d : {&data.train, &data.test})
      if (d->size() > 0) standardize_with(*d, n);
    return n;
  }
  n = compute_normalization(train.inputs);
  normalize(train.inputs, n);
  if (data.test.size() > 0) normalize(data.test.inputs, n);
  return n;
}

void standardize_with(Dataset& d, Normalization n) {
  if (!(n.std > 0) || !std::isfinite(n.std) || !std::isfinite(n.mean))
    fail(d.name, ": cannot standardise with mean ", n.mean, " and std ", n.std);
  if (d.inputs.dtype() == DType::u8) {
    d.input_offset = (d.input_offset - n.mean) / n.std;
    d.input_scale = d.input_scale / n.std;
  } else {
    normalize(d.inputs, n);
  }
}

}  // namespace pare::data
