// Eager operations on raw buffers and tensors that split work across the
// thread pool and call the kernels. No autograd here: the autograd room
// composes these into differentiable ops.
#pragma once

#include <cstdint>

#include "pare/kernels/kernels.h"
#include "pare/tensor/tensor.h"

namespace pare::ops {

// c: (M, N) = alpha op(a) op(b) + beta c, split across the pool along the
// larger of M and N into fixed chunks (same threads => same bits). Small
// products run on the calling thread.
void gemm(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
          const float* b, int64_t ldb, kernels::GemmParams p);

// y: (cols, rows), row stride ldy, = x^T + beta y for x: (rows, cols)
// (kernels::transpose_f32), split by blocks of x's rows when large enough.
// Each element is written once by one thread: bits independent of threads.
void transpose(int64_t rows, int64_t cols, float* y, int64_t ldy, const float* x, int64_t ldx,
               float beta);

// Runs fn(begin, end) over [0, n) in parallel when n * cost_per_item is large
// enough to pay for the hand-off (cost in rough FLOPs).
template <typename Fn>
void parallel_range(int64_t n, double cost_per_item, Fn&& fn);

}  // namespace pare::ops

#include "pare/base/thread_pool.h"

namespace pare::ops {

// Work below this many FLOPs is not worth waking another core for.
inline constexpr double kParallelMinFlops = 32768;

template <typename Fn>
void parallel_range(int64_t n, double cost_per_item, Fn&& fn) {
  if (n <= 0) return;
  if (static_cast<double>(n) * cost_per_item < kParallelMinFlops || n < 2) {
    fn(int64_t{0}, n);
    return;
  }
  thread_pool().parallel_for(n, [&](int64_t b, int64_t e, int) { fn(b, e); });
}

}  // namespace pare::ops
