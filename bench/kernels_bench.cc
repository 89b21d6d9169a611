// Fast kernels against their scalar references at the shapes pare trains:
// LeNet-5 on Fashion-MNIST (batch 60), the Game-of-Life net (32x32 boards,
// 3x3 circular and 1x1 convolutions, batch 8), Adam over LeNet-300-100's
// 266,610 parameters. Each pair is registered as <kernel>/<shape>/{fast,ref};
// the small GEMM against OpenBLAS as gemm_f32/<shape>/{small,blas}.
//
//   ./build/bench/kernels_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "pare/base/rng.h"
#include "pare/kernels/kernels.h"
#include "pare/kernels/quant.h"
#include "pare/kernels/sparse.h"
#include "pare/tensor/sparse.h"

namespace {

using namespace pare::kernels;
using Vec = std::vector<float>;

Vec random_vec(int64_t n, float lo = -1.0f, float hi = 1.0f, uint64_t seed = 1) {
  pare::Rng rng(seed);
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

// ---- Convolution lowering: one call per image into a batch-wide matrix ----------------
const Conv2dGeometry kLenetConv1{.c = 1, .h = 28, .w = 28, .kh = 5, .kw = 5, .pad = 2};
const Conv2dGeometry kLenetConv2{.c = 6, .h = 14, .w = 14, .kh = 5, .kw = 5};
const Conv2dGeometry kLife3x3{
    .c = 1, .h = 32, .w = 32, .kh = 3, .kw = 3, .pad = 1, .circular = true};
const Conv2dGeometry kLife3x3Hidden{
    .c = 16, .h = 32, .w = 32, .kh = 3, .kw = 3, .pad = 1, .circular = true};
const Conv2dGeometry kLife1x1{.c = 16, .h = 32, .w = 32};

using Im2col = void (*)(const Conv2dGeometry&, float*, int64_t, int64_t, const float*);
using Col2im = void (*)(const Conv2dGeometry&, float*, const float*, int64_t, int64_t);

void BM_im2col(benchmark::State& st, Im2col fn, Conv2dGeometry g, int64_t batch) {
  const int64_t p = g.out_h() * g.out_w(), rows = g.c * g.kh * g.kw, ld = batch * p;
  Vec x = random_vec(batch * g.c * g.h * g.w), cols(rows * ld);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i)
      fn(g, cols.data(), ld, i * p, x.data() + i * g.c * g.h * g.w);
    benchmark::DoNotOptimize(cols.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * rows * ld * static_cast<int64_t>(sizeof(float)));
}

void BM_col2im(benchmark::State& st, Col2im fn, Conv2dGeometry g, int64_t batch) {
  const int64_t p = g.out_h() * g.out_w(), rows = g.c * g.kh * g.kw, ld = batch * p;
  Vec dx(batch * g.c * g.h * g.w, 0.0f), cols = random_vec(rows * ld);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i)
      fn(g, dx.data() + i * g.c * g.h * g.w, cols.data(), ld, i * p);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * rows * ld * static_cast<int64_t>(sizeof(float)));
}

// As conv2d uses them: image after image through one per-thread (K, P) scratch
// (ld = P, col0 = 0; 64-byte aligned like a Tensor), which stays in L2.
struct AlignedVec {
  explicit AlignedVec(int64_t n)
      : p(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>((n + 15) / 16 * 64)))) {}
  ~AlignedVec() { std::free(p); }
  float* p;
};
void BM_im2col_image(benchmark::State& st, Im2col fn, Conv2dGeometry g, int64_t batch) {
  const int64_t p = g.out_h() * g.out_w(), rows = g.c * g.kh * g.kw;
  Vec x = random_vec(batch * g.c * g.h * g.w);
  AlignedVec cols(rows * p);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i) {
      fn(g, cols.p, p, 0, x.data() + i * g.c * g.h * g.w);
      benchmark::DoNotOptimize(cols.p);
      benchmark::ClobberMemory();
    }
  }
  st.SetBytesProcessed(st.iterations() * batch * rows * p * static_cast<int64_t>(sizeof(float)));
}
void BM_col2im_image(benchmark::State& st, Col2im fn, Conv2dGeometry g, int64_t batch) {
  const int64_t p = g.out_h() * g.out_w(), rows = g.c * g.kh * g.kw;
  Vec dx(batch * g.c * g.h * g.w, 0.0f), cols = random_vec(rows * p);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i) {
      fn(g, dx.data() + i * g.c * g.h * g.w, cols.data(), p, 0);
      benchmark::DoNotOptimize(dx.data());
      benchmark::ClobberMemory();
    }
  }
  st.SetBytesProcessed(st.iterations() * batch * rows * p * static_cast<int64_t>(sizeof(float)));
}

// clang-format off
#define PAIR(bm, kernel, shape, ...)                                  \
  BENCHMARK_CAPTURE(bm, kernel/shape/fast, kernel, __VA_ARGS__);      \
  BENCHMARK_CAPTURE(bm, kernel/shape/ref, kernel##__ref, __VA_ARGS__)
// clang-format on

PAIR(BM_im2col, im2col_f32, lenet_conv1_b60, kLenetConv1, 60);
PAIR(BM_im2col, im2col_f32, lenet_conv2_b60, kLenetConv2, 60);
PAIR(BM_im2col, im2col_f32, life_3x3_circ_b8, kLife3x3, 8);
PAIR(BM_im2col, im2col_f32, life_3x3_circ_c16_b8, kLife3x3Hidden, 8);
PAIR(BM_im2col, im2col_f32, life_1x1_c16_b8, kLife1x1, 8);
PAIR(BM_col2im, col2im_f32, lenet_conv1_b60, kLenetConv1, 60);
PAIR(BM_col2im, col2im_f32, lenet_conv2_b60, kLenetConv2, 60);
PAIR(BM_col2im, col2im_f32, life_3x3_circ_c16_b8, kLife3x3Hidden, 8);
PAIR(BM_col2im, col2im_f32, life_1x1_c16_b8, kLife1x1, 8);
const Conv2dGeometry kLife3x3C8{
    .c = 8, .h = 32, .w = 32, .kh = 3, .kw = 3, .pad = 1, .circular = true};
PAIR(BM_im2col_image, im2col_f32, image_lenet_conv1, kLenetConv1, 60);
PAIR(BM_im2col_image, im2col_f32, image_lenet_conv2, kLenetConv2, 60);
PAIR(BM_im2col_image, im2col_f32, image_life_3x3_circ, kLife3x3, 8);
PAIR(BM_im2col_image, im2col_f32, image_life_3x3_circ_c8, kLife3x3C8, 8);
PAIR(BM_col2im_image, col2im_f32, image_lenet_conv2, kLenetConv2, 60);
PAIR(BM_col2im_image, col2im_f32, image_life_3x3_circ_c8, kLife3x3C8, 8);

// ---- Small GEMM against OpenBLAS at the per-image products of the small convs ------------
// Per image: forward y (OC, P) = w (OC, K) cols (K, P) [NN]; weight gradient
// dw (OC, K) += dy (OC, P) cols^T [NT, beta 1]; input gradient
// dcols (K, P) = w^T dy [TN]. Reported as FLOP/s (2 M N K per call).
using Gemm = void (*)(int64_t, int64_t, int64_t, float*, int64_t, const float*, int64_t,
                      const float*, int64_t, GemmParams);
void BM_gemm(benchmark::State& st, Gemm fn, int64_t m, int64_t n, int64_t k, bool ta, bool tb) {
  Vec a = random_vec(m * k), b = random_vec(k * n, -1, 1, 2), c = random_vec(m * n, -1, 1, 3);
  const GemmParams p{.trans_a = ta, .trans_b = tb, .beta = tb ? 1.0f : 0.0f};
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  for (auto _ : st) {
    fn(m, n, k, c.data(), n, a.data(), lda, b.data(), ldb, p);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  st.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k),
                                            benchmark::Counter::kIsIterationInvariantRate);
}

// clang-format off
#define GEMM_PAIR(shape, m, n, k, ta, tb)                                            \
  BENCHMARK_CAPTURE(BM_gemm, gemm_f32/shape/small, gemm_f32__small, m, n, k, ta, tb); \
  BENCHMARK_CAPTURE(BM_gemm, gemm_f32/shape/blas, gemm_f32__blas, m, n, k, ta, tb)
// clang-format on

// LeNet-5 conv1 (1->6, 5x5 pad 2, 28x28): OC 6, K 25, P 784.
GEMM_PAIR(lenet_conv1_fwd_NN_6x784x25, 6, 784, 25, false, false);
GEMM_PAIR(lenet_conv1_dw_NT_6x25x784, 6, 25, 784, false, true);
GEMM_PAIR(lenet_conv1_dcols_TN_25x784x6, 25, 784, 6, true, false);
// LeNet-5 conv2 (6->16, 5x5, 14x14): OC 16, K 150, P 100.
GEMM_PAIR(lenet_conv2_fwd_NN_16x100x150, 16, 100, 150, false, false);
GEMM_PAIR(lenet_conv2_dw_NT_16x150x100, 16, 150, 100, false, true);
GEMM_PAIR(lenet_conv2_dcols_TN_150x100x16, 150, 100, 16, true, false);
// Life m=8 (32x32 boards): 3x3 circular 1->16 (K 9), 1x1 16->8, 1x1 8->1; P 1024.
GEMM_PAIR(life8_3x3_fwd_NN_16x1024x9, 16, 1024, 9, false, false);
GEMM_PAIR(life8_3x3_dw_NT_16x9x1024, 16, 9, 1024, false, true);
GEMM_PAIR(life8_3x3_dcols_TN_9x1024x16, 9, 1024, 16, true, false);
GEMM_PAIR(life8_1x1_fwd_NN_8x1024x16, 8, 1024, 16, false, false);
GEMM_PAIR(life8_1x1_dw_NT_8x16x1024, 8, 16, 1024, false, true);
GEMM_PAIR(life8_1x1_dx_TN_16x1024x8, 16, 1024, 8, true, false);
GEMM_PAIR(life8_out_fwd_NN_1x1024x8, 1, 1024, 8, false, false);
GEMM_PAIR(life8_out_dw_NT_1x8x1024, 1, 8, 1024, false, true);
// Life m=1: 3x3 circular 1->2 (K 9).
GEMM_PAIR(life1_3x3_fwd_NN_2x1024x9, 2, 1024, 9, false, false);
GEMM_PAIR(life1_3x3_dw_NT_2x9x1024, 2, 9, 1024, false, true);
// Life m=24: 3x3 circular 1->48, 1x1 48->24.
GEMM_PAIR(life24_1x1_fwd_NN_24x1024x48, 24, 1024, 48, false, false);
GEMM_PAIR(life24_1x1_dw_NT_24x48x1024, 24, 48, 1024, false, true);
GEMM_PAIR(life24_1x1_dx_TN_48x1024x24, 48, 1024, 24, true, false);
// Conv-2's first layer (1->64, 3x3 pad 1, 28x28): OC 64, K 9, P 784.
GEMM_PAIR(conv2_conv1_fwd_NN_64x784x9, 64, 784, 9, false, false);
GEMM_PAIR(conv2_conv1_dw_NT_64x9x784, 64, 9, 784, false, true);
GEMM_PAIR(conv2_conv1_dcols_TN_9x784x64, 9, 784, 64, true, false);

// ---- Pooling: LeNet's 2x2 max pool after conv1 (6 x 28 x 28), batch 60 ------------------
const Pool2dGeometry kLenetPool{.c = 6, .h = 28, .w = 28, .k = 2, .stride = 2};
using Maxpool = void (*)(const Pool2dGeometry&, float*, int32_t*, const float*);
using MaxpoolBack = void (*)(const Pool2dGeometry&, float*, const float*, const int32_t*);

void BM_maxpool(benchmark::State& st, Maxpool fn, Pool2dGeometry g, int64_t batch) {
  const int64_t in = g.c * g.h * g.w, out = g.c * g.out_h() * g.out_w();
  Vec x = random_vec(batch * in), y(batch * out);
  std::vector<int32_t> arg(batch * out);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i)
      fn(g, y.data() + i * out, arg.data() + i * out, x.data() + i * in);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * batch * in);
}
void BM_maxpool_backward(benchmark::State& st, MaxpoolBack fn, Pool2dGeometry g, int64_t batch) {
  const int64_t in = g.c * g.h * g.w, out = g.c * g.out_h() * g.out_w();
  Vec x = random_vec(batch * in), y(batch * out), dy = random_vec(batch * out), dx(batch * in);
  std::vector<int32_t> arg(batch * out);
  for (int64_t i = 0; i < batch; ++i)
    maxpool2d_f32(g, y.data() + i * out, arg.data() + i * out, x.data() + i * in);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i)
      fn(g, dx.data() + i * in, dy.data() + i * out, arg.data() + i * out);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * batch * out);
}
using Avgpool = void (*)(const Pool2dGeometry&, float*, const float*);
void BM_avgpool(benchmark::State& st, Avgpool fn, Pool2dGeometry g, int64_t batch) {
  const int64_t in = g.c * g.h * g.w, out = g.c * g.out_h() * g.out_w();
  Vec x = random_vec(batch * in), y(batch * out);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i) fn(g, y.data() + i * out, x.data() + i * in);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * batch * in);
}
void BM_avgpool_backward(benchmark::State& st, Avgpool fn, Pool2dGeometry g, int64_t batch) {
  const int64_t in = g.c * g.h * g.w, out = g.c * g.out_h() * g.out_w();
  Vec dy = random_vec(batch * out), dx(batch * in, 0.0f);
  for (auto _ : st) {
    for (int64_t i = 0; i < batch; ++i) fn(g, dx.data() + i * in, dy.data() + i * out);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * batch * in);
}
PAIR(BM_maxpool, maxpool2d_f32, lenet_6x28x28_b60, kLenetPool, 60);
PAIR(BM_avgpool, avgpool2d_f32, lenet_6x28x28_b60, kLenetPool, 60);
PAIR(BM_avgpool_backward, avgpool2d_backward_f32, lenet_6x28x28_b60, kLenetPool, 60);
PAIR(BM_maxpool_backward, maxpool2d_backward_f32, lenet_6x28x28_b60, kLenetPool, 60);

// ---- Losses ------------------------------------------------------------------------------
using Xent = double (*)(int64_t, int64_t, float*, const float*, const int32_t*);
using XentBack = void (*)(int64_t, int64_t, float*, const float*, const int32_t*, float);
void BM_softmax_xent(benchmark::State& st, Xent fn, int64_t b, int64_t k) {
  Vec logits = random_vec(b * k, -4, 4), probs(b * k);
  std::vector<int32_t> labels(b);
  for (int64_t i = 0; i < b; ++i) labels[i] = static_cast<int32_t>(i % k);
  for (auto _ : st) benchmark::DoNotOptimize(fn(b, k, probs.data(), logits.data(), labels.data()));
  st.SetItemsProcessed(st.iterations() * b);
}
void BM_softmax_xent_backward(benchmark::State& st, XentBack fn, int64_t b, int64_t k) {
  Vec probs = random_vec(b * k, 0, 1), dl(b * k, 0.0f);
  std::vector<int32_t> labels(b);
  for (int64_t i = 0; i < b; ++i) labels[i] = static_cast<int32_t>(i % k);
  for (auto _ : st) {
    fn(b, k, dl.data(), probs.data(), labels.data(), 1.0f / 60);
    benchmark::DoNotOptimize(dl.data());
  }
  st.SetItemsProcessed(st.iterations() * b);
}
PAIR(BM_softmax_xent, softmax_xent_f32, 60x10, 60, 10);
PAIR(BM_softmax_xent_backward, softmax_xent_backward_f32, 60x10, 60, 10);

using Bce = double (*)(int64_t, const float*, const float*);
using BceBack = void (*)(int64_t, float*, const float*, const float*, float);
void BM_bce(benchmark::State& st, Bce fn, int64_t n) {
  Vec x = random_vec(n, -6, 6), t = random_vec(n, 0, 1, 2);
  for (auto _ : st) benchmark::DoNotOptimize(fn(n, x.data(), t.data()));
  st.SetItemsProcessed(st.iterations() * n);
}
void BM_bce_backward(benchmark::State& st, BceBack fn, int64_t n) {
  Vec x = random_vec(n, -6, 6), t = random_vec(n, 0, 1, 2), dl(n, 0.0f);
  for (auto _ : st) {
    fn(n, dl.data(), x.data(), t.data(), 1.0f / n);
    benchmark::DoNotOptimize(dl.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
}
using BceGrad = double (*)(int64_t, float*, const float*, const float*);
void BM_bce_grad(benchmark::State& st, BceGrad fn, int64_t n) {
  Vec x = random_vec(n, -6, 6), t = random_vec(n, 0, 1, 2), dsig(n, 0.0f);
  for (auto _ : st) {
    benchmark::DoNotOptimize(fn(n, dsig.data(), x.data(), t.data()));
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * n);
}
PAIR(BM_bce, bce_logits_f32, life_8x32x32, 8 * 32 * 32);
PAIR(BM_bce_backward, bce_logits_backward_f32, life_8x32x32, 8 * 32 * 32);
PAIR(BM_bce_grad, bce_logits_grad_f32, life_8x32x32, 8 * 32 * 32);
PAIR(BM_bce, bce_logits_f32, n65536, 65536);
PAIR(BM_bce_backward, bce_logits_backward_f32, n65536, 65536);

// ---- Elementwise and reductions -----------------------------------------------------------
using Unary = void (*)(int64_t, float*, const float*);
using Backward = void (*)(int64_t, float*, const float*, const float*);
void BM_unary(benchmark::State& st, Unary fn, int64_t n) {
  Vec x = random_vec(n, -5, 5), y(n);
  for (auto _ : st) {
    fn(n, y.data(), x.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
}
void BM_backward(benchmark::State& st, Backward fn, int64_t n) {
  Vec dy = random_vec(n), y = random_vec(n, -1, 1, 3), dx(n, 0.0f);
  for (auto _ : st) {
    fn(n, dx.data(), dy.data(), y.data());
    benchmark::DoNotOptimize(dx.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
}
constexpr int64_t kLenetAct = 60 * 6 * 28 * 28;  // conv1 activations, batch 60
PAIR(BM_unary, relu_f32, lenet_conv1_b60, kLenetAct);
PAIR(BM_backward, relu_backward_f32, lenet_conv1_b60, kLenetAct);
PAIR(BM_unary, sigmoid_f32, n65536, 65536);
PAIR(BM_unary, tanh_f32, n65536, 65536);
PAIR(BM_backward, sigmoid_backward_f32, n65536, 65536);

using Channels = void (*)(int64_t, int64_t, int64_t, float*, const float*);
void BM_channels(benchmark::State& st, Channels fn, int64_t b, int64_t c, int64_t p) {
  Vec y = random_vec(b * c * p), bias = random_vec(c), out(c, 0.0f);
  const bool sum = fn == sum_channels_f32 || fn == sum_channels_f32__ref;
  for (auto _ : st) {
    if (sum)
      fn(b, c, p, out.data(), y.data());
    else
      fn(b, c, p, y.data(), bias.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * b * c * p);
}
PAIR(BM_channels, add_channels_f32, lenet_conv1_b60, 60, 6, 784);
PAIR(BM_channels, sum_channels_f32, lenet_conv1_b60, 60, 6, 784);

using Rows = void (*)(int64_t, int64_t, float*, const float*);
void BM_rows(benchmark::State& st, Rows fn, int64_t m, int64_t n) {
  Vec y = random_vec(m * n), b = random_vec(n), out(n, 0.0f);
  const bool sum = fn == sum_rows_f32 || fn == sum_rows_f32__ref;
  for (auto _ : st) {
    if (sum)
      fn(m, n, out.data(), y.data());
    else
      fn(m, n, y.data(), b.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations() * m * n);
}
PAIR(BM_rows, add_rows_f32, fc1_60x300, 60, 300);
PAIR(BM_rows, sum_rows_f32, fc1_60x300, 60, 300);

using Swap = void (*)(int64_t, int64_t, int64_t, float*, const float*);
void BM_swap(benchmark::State& st, Swap fn, int64_t a, int64_t b, int64_t p) {
  Vec x = random_vec(a * b * p), y(a * b * p);
  for (auto _ : st) {
    fn(a, b, p, y.data(), x.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetItemsProcessed(st.iterations() * a * b * p);
}
PAIR(BM_swap, swap_outer_f32, lenet_conv1_6x60x784, 6, 60, 784);
PAIR(BM_swap, swap_outer_f32, life_16x8x1024, 16, 8, 1024);

// ---- Optimizers: LeNet-300-100 has 784*300+300 + 300*100+100 + 100*10+10 = 266,610 -----
constexpr int64_t kLenet300Params = 266610;
using Adam = void (*)(int64_t, float*, float*, float*, const float*, const float*,
                      const AdamParams&);
void BM_adam(benchmark::State& st, Adam fn, int64_t n, bool masked) {
  Vec w = random_vec(n), m(n, 0.0f), v(n, 0.0f), g = random_vec(n, -1, 1, 4), mask(n, 1.0f);
  for (int64_t i = 0; i < n; i += 5) mask[i] = 0.0f;
  AdamParams p{.lr = 1.2e-3f, .bias_correction1 = 0.1f, .bias_correction2 = 0.001f};
  for (auto _ : st) {
    fn(n, w.data(), m.data(), v.data(), g.data(), masked ? mask.data() : nullptr, p);
    benchmark::DoNotOptimize(w.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
}
PAIR(BM_adam, adam_f32, lenet300_dense, kLenet300Params, false);
PAIR(BM_adam, adam_f32, lenet300_masked, kLenet300Params, true);

using Sgd = void (*)(int64_t, float*, float*, const float*, const float*, const SgdParams&);
void BM_sgd(benchmark::State& st, Sgd fn, int64_t n) {
  Vec w = random_vec(n), buf(n, 0.0f), g = random_vec(n, -1, 1, 4);
  SgdParams p{.lr = 0.05f, .momentum = 0.9f};
  for (auto _ : st) {
    fn(n, w.data(), buf.data(), g.data(), nullptr, p);
    benchmark::DoNotOptimize(w.data());
  }
  st.SetItemsProcessed(st.iterations() * n);
}
PAIR(BM_sgd, sgd_f32, lenet300_momentum, kLenet300Params);

}  // namespace

// ---- CSR products at LeNet-300-100's first layer: w (300, 784) 90% sparse, batch 60 --
// The sparse kernels take feature-major activations (sparse.h); the dense BLAS
// products they replace take pare's batch-major ones:
//   forward  y = w x          spmm_f32    vs gemm (60, 300, 784, b^T)
//   input    dx = w^T dy      spmm_t_f32  vs gemm (60, 784, 300)
//   weight   (dy x^T) at nnz  sddmm_f32   vs gemm (300, 784, 60, a^T)
// spmm_f32/.../fast_transposed adds the two boundary transposes a batch-major
// op pays (x in, y out; swap_outer_f32).
struct SparseLayer {
  int64_t rows, cols, batch;
  Vec w, mask, values, x, xt, dy, out, out2;
  std::vector<int32_t> row_ptr, col_idx, block_ptr;
  bool blocked = true;  // pass block_ptr (kernels/sparse.h's column blocks)
  CsrF32 view() const {
    return {rows, cols, row_ptr.data(), col_idx.data(), values.data(),
            blocked ? block_ptr.data() : nullptr};
  }
  SparseLayer(int64_t r, int64_t c, int64_t b, double density)
      : rows(r), cols(c), batch(b), w(random_vec(r * c)), mask(r * c),
        x(random_vec(b * c, -1, 1, 2)), xt(b * c), dy(random_vec(b * r, -1, 1, 3)),
        out(b * c + r * c), out2(b * c + r * c) {
    pare::Rng rng(4);
    for (auto& m : mask) m = rng.uniform() < density ? 1.0f : 0.0f;
    const int64_t nnz = csr_nnz_f32(r, c, mask.data(), c);
    row_ptr.resize(r + 1), col_idx.resize(nnz), values.resize(nnz);
    csr_from_dense_f32(r, c, row_ptr.data(), col_idx.data(), values.data(), w.data(), c,
                       mask.data(), c);
    block_ptr = pare::csr_column_blocks(r, c, row_ptr.data(), col_idx.data());
  }
};
enum class SparseOp { kForward, kForwardTransposed, kInput, kWeight };
void BM_sparse(benchmark::State& st, SparseOp op, bool sparse, bool ref, double density = 0.1,
               bool blocked = true) {
  SparseLayer l(300, 784, 60, density);
  l.blocked = blocked;
  const CsrF32 w = l.view();
  const int64_t n = l.batch;
  for (auto _ : st) {
    switch (op) {
      case SparseOp::kForward:
        if (sparse)
          (ref ? spmm_f32__ref : spmm_f32)(n, l.out.data(), n, w, l.x.data(), n, 0.0f);
        else
          gemm_f32__blas(n, l.rows, l.cols, l.out.data(), l.rows, l.x.data(), l.cols,
                         l.w.data(), l.cols, {.trans_b = true});
        break;
      case SparseOp::kForwardTransposed:
        swap_outer_f32(n, l.cols, 1, l.xt.data(), l.x.data());
        spmm_f32(n, l.out.data(), n, w, l.xt.data(), n, 0.0f);
        swap_outer_f32(l.rows, n, 1, l.out2.data(), l.out.data());
        break;
      case SparseOp::kInput:
        if (sparse)
          (ref ? spmm_t_f32__ref : spmm_t_f32)(n, l.out.data(), n, w, l.dy.data(), n, 0.0f);
        else
          gemm_f32__blas(n, l.cols, l.rows, l.out.data(), l.cols, l.dy.data(), l.rows,
                         l.w.data(), l.cols, {});
        break;
      case SparseOp::kWeight:
        if (sparse)
          (ref ? sddmm_f32__ref : sddmm_f32)(n, l.out.data(), w, l.dy.data(), n, l.x.data(), n,
                                              0.0f);
        else
          gemm_f32__blas(l.rows, l.cols, n, l.out.data(), l.cols, l.dy.data(), l.rows,
                         l.x.data(), l.cols, {.trans_a = true});
        break;
    }
    benchmark::DoNotOptimize(l.out.data());
    benchmark::DoNotOptimize(l.out2.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_s90_b60/fast, SparseOp::kForward, true, false);
BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_s90_b60/fast_transposed,
                  SparseOp::kForwardTransposed, true, false);
BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_s90_b60/ref, SparseOp::kForward, true, true);
BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_s90_b60/dense_blas, SparseOp::kForward, false, false);
BENCHMARK_CAPTURE(BM_sparse, spmm_t_f32/300x784_s90_b60/fast, SparseOp::kInput, true, false);
BENCHMARK_CAPTURE(BM_sparse, spmm_t_f32/300x784_s90_b60/dense_blas, SparseOp::kInput, false, false);
BENCHMARK_CAPTURE(BM_sparse, sddmm_f32/300x784_s90_b60/fast, SparseOp::kWeight, true, false);
BENCHMARK_CAPTURE(BM_sparse, sddmm_f32/300x784_s90_b60/dense_blas, SparseOp::kWeight, false, false);
// The forward and weight-gradient products at the densities IMP's rounds pass
// through (--sparse auto's crossover lies among them), with kernels/sparse.h's
// column blocks and without (every nonzero's x row then comes from L2).
#define SPARSE_AT(tag, density)                                                              \
  BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_##tag##_b60/fast, SparseOp::kForward, true,  \
                    false, density);                                                         \
  BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_##tag##_b60/fast_unblocked,                  \
                    SparseOp::kForward, true, false, density, false);                        \
  BENCHMARK_CAPTURE(BM_sparse, sddmm_f32/300x784_##tag##_b60/fast, SparseOp::kWeight, true,  \
                    false, density);                                                         \
  BENCHMARK_CAPTURE(BM_sparse, sddmm_f32/300x784_##tag##_b60/fast_unblocked,                 \
                    SparseOp::kWeight, true, false, density, false)
SPARSE_AT(s98, 0.02);
SPARSE_AT(s95, 0.05);
BENCHMARK_CAPTURE(BM_sparse, spmm_f32/300x784_s90_b60/fast_unblocked, SparseOp::kForward, true,
                  false, 0.1, false);
BENCHMARK_CAPTURE(BM_sparse, sddmm_f32/300x784_s90_b60/fast_unblocked, SparseOp::kWeight, true,
                  false, 0.1, false);
SPARSE_AT(s80, 0.2);
SPARSE_AT(s70, 0.3);
SPARSE_AT(s50, 0.5);
SPARSE_AT(s30, 0.7);
#undef SPARSE_AT

// ---- int8 GEMM (quant.h) against float BLAS at inference shapes, one thread --------------
// qgemm_u8s8_s32 (+ requantize to u8 in the _requant rows) against
// gemm_f32__blas with b^T (the weight as nn::Linear stores it): LeNet-300-100's
// first layer (300x784) at batch 60 and 1, and a 4096x4096 layer at batch 1 and 64.
enum class QMode { kFloat, kInt8, kInt8Requant, kInt8Ref };
void BM_qgemm(benchmark::State& st, QMode mode, int64_t m, int64_t n, int64_t k) {
  pare::Rng rng(9);
  std::vector<uint8_t> xq(m * k);
  std::vector<int8_t> wq(n * k);
  for (auto& v : xq) v = static_cast<uint8_t>(rng.below(256));
  for (auto& v : wq) v = static_cast<int8_t>(static_cast<int>(rng.below(255)) - 127);
  std::vector<int32_t> sums(n), acc(m * n), bias(n, 3);
  sum_rows_s8(n, k, sums.data(), wq.data(), k);
  std::vector<float> mult(n, 1e-4f);
  std::vector<uint8_t> y(m * n);
  Vec xf, wf, yf;
  if (mode == QMode::kFloat) xf = random_vec(m * k), wf = random_vec(n * k), yf.resize(m * n);
  const RequantParams rp{.multiplier = mult.data(), .zero_point = 0, .relu = true};
  for (auto _ : st) {
    switch (mode) {
      case QMode::kFloat:
        gemm_f32__blas(m, n, k, yf.data(), n, xf.data(), k, wf.data(), k, {.trans_b = true});
        break;
      case QMode::kInt8:
      case QMode::kInt8Requant:
        qgemm_u8s8_s32(m, n, k, acc.data(), n, xq.data(), k, wq.data(), k, sums.data(), 128);
        if (mode == QMode::kInt8Requant)
          requantize_s32_to_u8(m, n, y.data(), n, acc.data(), n, bias.data(), rp);
        break;
      case QMode::kInt8Ref:
        qgemm_u8s8_s32__ref(m, n, k, acc.data(), n, xq.data(), k, wq.data(), k, sums.data(), 128);
        break;
    }
    benchmark::DoNotOptimize(acc.data());
    benchmark::DoNotOptimize(yf.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["OPS"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k),
                                          benchmark::Counter::kIsIterationInvariantRate);
}
// clang-format off
#define QGEMM_SET(shape, m, n, k)                                                          \
  BENCHMARK_CAPTURE(BM_qgemm, qgemm/shape/f32_blas, QMode::kFloat, m, n, k);               \
  BENCHMARK_CAPTURE(BM_qgemm, qgemm/shape/u8s8_s32, QMode::kInt8, m, n, k);                \
  BENCHMARK_CAPTURE(BM_qgemm, qgemm/shape/u8s8_s32_requant, QMode::kInt8Requant, m, n, k)
// clang-format on
QGEMM_SET(lenet300_fc1_b60, 60, 300, 784);
QGEMM_SET(lenet300_fc1_b1, 1, 300, 784);
QGEMM_SET(4096x4096_b1, 1, 4096, 4096);
QGEMM_SET(4096x4096_b64, 64, 4096, 4096);
BENCHMARK_CAPTURE(BM_qgemm, qgemm/lenet300_fc1_b60/u8s8_s32_ref, QMode::kInt8Ref, 60, 300, 784);

// Sparse int8 (CsrS8, 90% sparse) at the same first layer: spmv (batch 1) and
// feature-major spmm (batch 60), against the dense int8 product.
void BM_qsparse(benchmark::State& st, int64_t batch, bool ref) {
  const int64_t rows = 300, cols = 784;
  pare::Rng rng(10);
  std::vector<int8_t> q(rows * cols);
  Vec mask(rows * cols);
  for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng.below(255)) - 127);
  for (auto& m : mask) m = rng.uniform() < 0.1f ? 1.0f : 0.0f;
  const int64_t nnz = csr_nnz_f32(rows, cols, mask.data(), cols);
  std::vector<int32_t> rp(rows + 1), ci(nnz), sums(rows), acc(rows * batch);
  std::vector<int8_t> vals(nnz);
  csr_from_dense_s8(rows, cols, rp.data(), ci.data(), vals.data(), q.data(), cols, mask.data(), cols);
  const CsrS8 w{rows, cols, rp.data(), ci.data(), vals.data()};
  csr_row_sums_s8(sums.data(), w);
  std::vector<uint8_t> x(cols * batch);
  for (auto& v : x) v = static_cast<uint8_t>(rng.below(256));
  for (auto _ : st) {
    (ref ? spmm_u8s8_s32__ref : spmm_u8s8_s32)(batch, acc.data(), batch, w, x.data(), batch,
                                                sums.data(), 128);
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK_CAPTURE(BM_qsparse, spmm_u8s8_s32/300x784_s90_b1/fast, 1, false);
BENCHMARK_CAPTURE(BM_qsparse, spmm_u8s8_s32/300x784_s90_b1/ref, 1, true);
BENCHMARK_CAPTURE(BM_qsparse, spmm_u8s8_s32/300x784_s90_b60/fast, 60, false);
BENCHMARK_CAPTURE(BM_qsparse, spmm_u8s8_s32/300x784_s90_b60/ref, 60, true);

BENCHMARK_MAIN();
