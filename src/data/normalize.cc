// Two-pass mean and variance (numerically safer than sum of squares), in
// parallel over fixed blocks.
#include "pare/data/normalize.h"

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

}  // namespace pare::data
