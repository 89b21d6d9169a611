// Integer (int8) inference kernels for issue #6: quantizers, the dense
// u8 x s8 -> s32 product, requantization, and the sparse (CSR) int8 product.
//
// Same contract as kernels.h: plain functions on pointers and sizes, no
// allocation, no threads; sizes, outputs, inputs, params; `<name>__ref` is the
// scalar oracle (ref/quant_ref.cc), `<name>` the fast variant (fast/quant.cc:
// AVX-512 VNNI where the build targets it, an AVX2 widening path otherwise,
// plain loops without either). Every integer output of the two variants is
// bit-identical, and so is every float output (the float formulas below fix
// each rounding, so the order of operations is part of the contract).
//
// Scheme (the contract the fake-quant model must follow to agree exactly):
//   weights      s8, symmetric, per output channel (row of the (out, in)
//                matrix nn::Linear stores): scale_r = max_j |w(r, j)| / 127
//                (float division), q = clamp(rne(w / scale_r), -127, 127),
//                w ~ q * scale_r. -128 is never produced (symmetric range),
//                but the products accept any s8.
//   activations  u8, asymmetric, per tensor, given (scale, zero_point) with
//                zero_point in [0, 255]: q = clamp(rne(x / scale) + zp, 0, 255),
//                x ~ (q - zp) * scale. u8 because the VNNI instruction
//                (vpdpbusd) multiplies u8 by s8; an s8 twin exists for
//                tensors that need it (zero_point in [-128, 127]).
//   rne          round half to even of the float quotient x / scale (the
//                quotient is rounded to float first; IEEE division, so every
//                ISA gives the same quotient).
//   NaN          quantizes to the lowest code (0 for u8, -128 for s8); +-inf
//                saturate. Models should not feed NaN.
//   products     acc(i, j) = sum_l (x(i, l) - zx) w(j, l), computed as
//                sum_l x w - zx * rowsum_w(j) (row sums precomputed by
//                sum_rows_s8 / csr_row_sums_s8) in int32 with wrap-around.
//                Exact when k * 255 * 128 < 2^31, i.e. k <= 65793 (> 2^16);
//                beyond, both variants return the exact value mod 2^32.
//
// Legend: M rows of activations (batch), N output channels, K input features.
#pragma once

#include <cstdint>

#include "pare/kernels/kernels.h"  // Conv2dGeometry

namespace pare::kernels {

// A read-only view of a CSR matrix with int8 values (sparse.h's layout:
// row_ptr (rows + 1,), col_idx (nnz,) strictly increasing within a row,
// values (nnz,); a view of rows may start row_ptr at row_ptr[0] != 0).
struct CsrS8 {
  int64_t rows = 0, cols = 0;
  const int32_t* row_ptr = nullptr;  // (rows + 1,)
  const int32_t* col_idx = nullptr;  // (nnz,)
  const int8_t* values = nullptr;    // (nnz,)
  int64_t nnz() const { return rows > 0 ? row_ptr[rows] - row_ptr[0] : 0; }
};

// Per-channel float parameters of requantize_s32_to_u8.
struct RequantParams {
  const float* multiplier = nullptr;  // (n,): x_scale * w_scale[j] / y_scale, > 0
  int32_t zero_point = 0;             // of y, in [0, 255]
  bool relu = false;                  // clamp below at zero_point (a fused ReLU)
};

#define PARE_KERNEL_PAIR(ret, name, ...) \
  ret name##__ref(__VA_ARGS__);          \
  ret name(__VA_ARGS__);

// ---- Quantizers -------------------------------------------------------------
// q: (rows, cols) s8 and scales: (rows,) from w: (rows, cols) f32, symmetric per
// row as in the file comment. A row whose scale would be 0 (all zeros, or
// max |w| below 127 * the smallest float) gets scale 1 (q all 0 then).
// REQUIRES: w finite.
PARE_KERNEL_PAIR(void, quantize_weights_per_channel_s8, int64_t rows, int64_t cols, int8_t* q,
                 float* scales, const float* w)
// w: (rows, cols) = q * scales[row]   (the fake-quantized weight, bit for bit)
PARE_KERNEL_PAIR(void, dequantize_weights_per_channel_s8, int64_t rows, int64_t cols, float* w,
                 const int8_t* q, const float* scales)
// q: (n,) = clamp(rne(x / scale) + zero_point, 0, 255).  REQUIRES: scale > 0.
PARE_KERNEL_PAIR(void, quantize_per_tensor_u8, int64_t n, uint8_t* q, const float* x,
                 float scale, int32_t zero_point)
// q: (n,) = clamp(rne(x / scale) + zero_point, -128, 127).  REQUIRES: scale > 0.
PARE_KERNEL_PAIR(void, quantize_per_tensor_s8, int64_t n, int8_t* q, const float* x, float scale,
                 int32_t zero_point)
// x: (n,) = float(q - zero_point) * scale (one rounding).
PARE_KERNEL_PAIR(void, dequantize_u8_f32, int64_t n, float* x, const uint8_t* q, float scale,
                 int32_t zero_point)
PARE_KERNEL_PAIR(void, dequantize_s8_f32, int64_t n, float* x, const int8_t* q, float scale,
                 int32_t zero_point)

// ---- Row sums for the zero-point correction ---------------------------------------
// sums: (rows,) = sum over j of q: (rows, cols) with row stride ldq (exact).
PARE_KERNEL_PAIR(void, sum_rows_s8, int64_t rows, int64_t cols, int32_t* sums, const int8_t* q,
                 int64_t ldq)
// sums: (w.rows,) = sum of each row's stored values.
PARE_KERNEL_PAIR(void, csr_row_sums_s8, int32_t* sums, const CsrS8& w)

// ---- Dense product ---------------------------------------------------------------
// acc: (m, n) int32, row stride ldacc,
//   = x: (m, k) u8 (row stride ldx) times w: (n, k) s8 (row stride ldw)^T
//     - x_zero_point * w_row_sums[j]
// w as nn::Linear stores it ((out, in) row-major). w_row_sums: (n,) from
// sum_rows_s8; may be null when x_zero_point == 0. Bound: file comment.
PARE_KERNEL_PAIR(void, qgemm_u8s8_s32, int64_t m, int64_t n, int64_t k, int32_t* acc,
                 int64_t ldacc, const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                 const int32_t* w_row_sums, int32_t x_zero_point)

// ---- Output stages (per output channel j = column of acc) ---------------------------
// y: (m, n) u8 = clamp(rne(float(acc + bias[j]) * multiplier[j]) + zero_point,
//                      relu ? zero_point : 0, 255)
// acc + bias in int32 with wrap-around; float(int32) rounds to nearest
// even above 2^24; one rounding for the product. bias: (n,) int32 in units of
// x_scale * w_scale[j] (bias_f / (x_scale * w_scale[j]), rounded), or null.
PARE_KERNEL_PAIR(void, requantize_s32_to_u8, int64_t m, int64_t n, uint8_t* y, int64_t ldy,
                 const int32_t* acc, int64_t ldacc, const int32_t* bias, const RequantParams& p)
// y: (m, n) f32 = fma(float(acc), x_scale * w_scales[j], bias[j])  (bias null: 0;
// the scale product rounded to float first, then one rounding for the fma).
PARE_KERNEL_PAIR(void, dequantize_s32_to_f32, int64_t m, int64_t n, float* y, int64_t ldy,
                 const int32_t* acc, int64_t ldacc, const float* w_scales, float x_scale,
                 const float* bias)

// ---- Convolution lowering (integer convolutions) ------------------------------------
// cols: (c*kh*kw, ld) u8 receives, at columns [col0, col0 + oh*ow), the patches
// of one image x: (c, h, w) u8, laid out as im2col_f32 lays them (row
// (ch*kh + ky)*kw + kx, column oy*ow + ox): the feature-major input of
// spmm_u8s8_s32 with a conv weight (OC, c*kh*kw) as CSR, whose product is the
// (OC, oh*ow) output plane. Taps in zero padding get `pad` (the input's zero
// point: the code of 0.0); circular geometry wraps instead.
// ld >= col0 + oh*ow.
PARE_KERNEL_PAIR(void, im2col_u8, const Conv2dGeometry& g, uint8_t* cols, int64_t ld, int64_t col0,
                 const uint8_t* x, uint8_t pad)

// ---- Dense product over k-quads (integer convolutions) --------------------------------
// The layout of the VNNI instruction (vpdpbusd: four u8 x s8 products summed
// into each 32-bit lane): x as k-quads, w with rows padded to whole quads.
// x4: (k4, n, 4) u8 = x: (k, n) u8 (row stride ldx) with
// x4[(q*n + j)*4 + r] = x(4q + r, j), 0 where 4q + r >= k; k4 = ceil(k / 4).
PARE_KERNEL_PAIR(void, pack_k4_u8, int64_t k, int64_t n, uint8_t* x4, const uint8_t* x,
                 int64_t ldx)
// acc: (m, n) int32, row stride ldacc,
//   = w: (m, 4*k4) s8 (row stride ldw) times x4: (k4, n, 4) u8 (pack_k4_u8)
//     - x_zero_point * w_row_sums[i]
// i.e. w x for x: (k, n) with w's rows zero beyond k. w_row_sums: (m,) from
// sum_rows_s8; may be null when x_zero_point == 0. Same bound and wrap-around
// as qgemm_u8s8_s32 (file comment).
PARE_KERNEL_PAIR(void, qgemm_s8u8k4_s32, int64_t m, int64_t n, int64_t k4, int32_t* acc,
                 int64_t ldacc, const int8_t* w, int64_t ldw, const uint8_t* x4,
                 const int32_t* w_row_sums, int32_t x_zero_point)

// ---- Sparse (CSR) products -------------------------------------------------------------
// q: (rows, cols) s8 with row stride ldq and a 0/1 float mask (null: keep all)
// -> CSR (size col_idx and values with csr_nnz_f32(rows, cols, mask, ldm)).
// A one-time copy with no faster form, so it has no reference twin; the tests
// check it against the masked dense matrix.
void csr_from_dense_s8(int64_t rows, int64_t cols, int32_t* row_ptr, int32_t* col_idx,
                       int8_t* values, const int8_t* q, int64_t ldq, const float* mask, int64_t ldm);
// One sample: acc: (w.rows,) = w x - x_zero_point * w_row_sums, x: (w.cols,) u8.
PARE_KERNEL_PAIR(void, spmv_u8s8_s32, int32_t* acc, const CsrS8& w, const uint8_t* x,
                 const int32_t* w_row_sums, int32_t x_zero_point)
// A batch, FEATURE-major as sparse.h's float products: acc: (w.rows, n), row
// stride ldacc, = w x - x_zero_point * w_row_sums[r], x: (w.cols, n) u8 with
// row stride ldx (each nonzero meets a contiguous row of x; vectorised over n).
// With n == 1 this is spmv_u8s8_s32.
PARE_KERNEL_PAIR(void, spmm_u8s8_s32, int64_t n, int32_t* acc, int64_t ldacc, const CsrS8& w,
                 const uint8_t* x, int64_t ldx, const int32_t* w_row_sums, int32_t x_zero_point)

#undef PARE_KERNEL_PAIR

}  // namespace pare::kernels
