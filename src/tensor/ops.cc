// Threaded GEMM split; see ops.h.
#include "pare/tensor/ops.h"

#include <algorithm>

namespace pare::ops {

void gemm(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
          const float* b, int64_t ldb, kernels::GemmParams p) {
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  ThreadPool& pool = thread_pool();
  const int parts = pool.num_threads();
  // A chunk narrower than a few vector widths wastes the micro-kernel.
  const bool split_m = m >= n;
  const int64_t extent = split_m ? m : n;
  if (parts == 1 || flops < 4 * kParallelMinFlops || extent < 8 * parts) {
    kernels::gemm_f32__blas(m, n, k, c, ldc, a, lda, b, ldb, p);
    return;
  }
  pool.parallel_for(parts, [&](int64_t first, int64_t last, int) {
    // Called once per part, or once for all parts when nested in another loop.
    for (int64_t part = first; part < last; ++part) {
      // Chunk bounds rounded to multiples of 8 so every chunk keeps aligned panels.
      const int64_t lo = ThreadPool::chunk_begin(extent / 8, parts, static_cast<int>(part)) * 8;
      const int64_t hi =
          part + 1 == parts
              ? extent
              : ThreadPool::chunk_begin(extent / 8, parts, static_cast<int>(part) + 1) * 8;
      if (lo >= hi) continue;
      if (split_m) {
        const float* a_part = p.trans_a ? a + lo : a + lo * lda;
        kernels::gemm_f32__blas(hi - lo, n, k, c + lo * ldc, ldc, a_part, lda, b, ldb, p);
      } else {
        const float* b_part = p.trans_b ? b + lo * ldb : b + lo;
        kernels::gemm_f32__blas(m, hi - lo, k, c + lo, ldc, a, lda, b_part, ldb, p);
      }
    }
  });
}

void transpose(int64_t rows, int64_t cols, float* y, int64_t ldy, const float* x, int64_t ldx,
               float beta) {
  // A moved float costs about as much as a few FLOPs of a product (a load, a
  // store, and the shuffles); chunks of whole 8-row blocks.
  const int64_t blocks = (rows + 7) / 8;
  parallel_range(blocks, 8.0 * 4.0 * static_cast<double>(cols), [&](int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * 8, r1 = std::min(rows, b1 * 8);
    kernels::transpose_f32(r1 - r0, cols, y + r0, ldy, x + r0 * ldx, ldx, beta);
  });
}

}  // namespace pare::ops
