// GEMM through OpenBLAS's cblas interface: the only file that includes cblas.h.
//
// pare runs its own thread pool and splits large GEMMs itself, so OpenBLAS is
// held to one thread (set once, before the first call): two pools on two
// cores oversubscribe them, which is what makes PyTorch 1.13 with pthread
// OpenBLAS 3-6x slower on 2 threads than on 1 (research/baselines.md).
#include <cblas.h>

#include <mutex>
#include <string>

#include "pare/kernels/kernels.h"

namespace pare::kernels {

namespace {
void hold_blas_to_one_thread() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}
}  // namespace

void gemm_f32__blas(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                    int64_t lda, const float* b, int64_t ldb, GemmParams p) {
  if (m <= 0) return;
  if (n > 0 && (m == 1 || n == 1)) {
    // A matrix-vector product: sgemm would pack the whole matrix first (10 ms
    // instead of 1.7 for one sample through a 4096x4096 layer); sgemv streams it.
    hold_blas_to_one_thread();
    const auto bi = [](int64_t v) { return static_cast<blasint>(v); };
    if (m == 1) {  // c (1, n) = a (1, k) op(b): op(b) is (k, n)
      const blasint inc_a = p.trans_a ? bi(lda) : 1;
      if (p.trans_b)  // b: (n, k)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, bi(n), bi(k), p.alpha, b, bi(ldb), a, inc_a,
                    p.beta, c, 1);
      else  // b: (k, n)
        cblas_sgemv(CblasRowMajor, CblasTrans, bi(k), bi(n), p.alpha, b, bi(ldb), a, inc_a,
                    p.beta, c, 1);
    } else {  // c (m, 1) = op(a) (m, k) b (k, 1)
      const blasint inc_b = p.trans_b ? 1 : bi(ldb);
      if (p.trans_a)  // a: (k, m)
        cblas_sgemv(CblasRowMajor, CblasTrans, bi(k), bi(m), p.alpha, a, bi(lda), b, inc_b,
                    p.beta, c, bi(ldc));
      else  // a: (m, k)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, bi(m), bi(k), p.alpha, a, bi(lda), b, inc_b,
                    p.beta, c, bi(ldc));
    }
  } else if (n > 0) {
    hold_blas_to_one_thread();
    cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans,
                p.trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), p.alpha, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), p.beta, c,
                static_cast<blasint>(ldc));
  }
  // The epilogue (kernels.h), as plain passes over c and a.
  if (p.bias || p.relu || p.mask)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float v = c[i * ldc + j];
        if (p.bias) v += p.bias[i];
        if (p.relu) v = v > 0.0f ? v : 0.0f;
        if (p.mask && !(p.mask[i * p.ldm + j] > 0.0f)) v = 0.0f;
        c[i * ldc + j] = v;
      }
  if (p.sum_a)
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t l = 0; l < k; ++l) acc += p.trans_a ? a[l * lda + i] : a[i * lda + l];
      p.sum_a[i] += acc;
    }
}

const char* blas_description() {
  hold_blas_to_one_thread();
  static std::string desc = [] {
    std::string s = "OpenBLAS ";
    s += openblas_get_config();
    s += " (core ";
    s += openblas_get_corename();
    s += ", held to 1 thread: pare splits work itself)";
    return s;
  }();
  return desc.c_str();
}

}  // namespace pare::kernels
