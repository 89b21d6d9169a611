// Scalar reference int8 kernels (contracts in quant.h): plain loops, products
// summed in int64 and reduced mod 2^32 at the end, compiled without
// auto-vectorisation like ref.cc.
#include <cmath>
#include <cstdint>

#include "pare/kernels/quant.h"

namespace pare::kernels {

namespace {
// clamp(rne(x / scale) + zp, lo, hi); NaN -> lo (the clamp order of quant.h).
int32_t quantize_one(float x, float scale, int32_t zp, float lo, float hi) {
  float v = std::nearbyint(x / scale) + static_cast<float>(zp);
  if (!(v >= lo)) v = lo;  // also NaN
  if (v > hi) v = hi;
  return static_cast<int32_t>(v);
}
// The int32 result of an exact int64 value, mod 2^32 (C++20 conversion).
int32_t wrap(int64_t v) { return static_cast<int32_t>(v); }
}  // namespace

void quantize_weights_per_channel_s8__ref(int64_t rows, int64_t cols, int8_t* q, float* scales,
                                          const float* w) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    float amax = 0.0f;
    for (int64_t j = 0; j < cols; ++j) amax = std::fmax(amax, std::fabs(wr[j]));
    float scale = amax / 127.0f;
    if (scale == 0.0f) scale = 1.0f;
    scales[r] = scale;
    for (int64_t j = 0; j < cols; ++j)
      q[r * cols + j] = static_cast<int8_t>(quantize_one(wr[j], scale, 0, -127.0f, 127.0f));
  }
}

void dequantize_weights_per_channel_s8__ref(int64_t rows, int64_t cols, float* w,
                                            const int8_t* q, const float* scales) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      w[r * cols + j] = static_cast<float>(q[r * cols + j]) * scales[r];
}

void quantize_per_tensor_u8__ref(int64_t n, uint8_t* q, const float* x, float scale,
                                 int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(quantize_one(x[i], scale, zero_point, 0.0f, 255.0f));
}

void quantize_per_tensor_s8__ref(int64_t n, int8_t* q, const float* x, float scale,
                                 int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<int8_t>(quantize_one(x[i], scale, zero_point, -128.0f, 127.0f));
}

void dequantize_u8_f32__ref(int64_t n, float* x, const uint8_t* q, float scale,
                            int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] - zero_point) * scale;
}

void dequantize_s8_f32__ref(int64_t n, float* x, const int8_t* q, float scale,
                            int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(q[i] - zero_point) * scale;
}

void sum_rows_s8__ref(int64_t rows, int64_t cols, int32_t* sums, const int8_t* q, int64_t ldq) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t s = 0;
    for (int64_t j = 0; j < cols; ++j) s += q[r * ldq + j];
    sums[r] = wrap(s);
  }
}

void csr_row_sums_s8__ref(int32_t* sums, const CsrS8& w) {
  for (int64_t r = 0; r < w.rows; ++r) {
    int64_t s = 0;
    for (int64_t p = w.row_ptr[r]; p < w.row_ptr[r + 1]; ++p) s += w.values[p];
    sums[r] = wrap(s);
  }
}

void qgemm_u8s8_s32__ref(int64_t m, int64_t n, int64_t k, int32_t* acc, int64_t ldacc,
                         const uint8_t* x, int64_t ldx, const int8_t* w, int64_t ldw,
                         const int32_t* w_row_sums, int32_t x_zero_point) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = 0;
      for (int64_t l = 0; l < k; ++l)
        s += static_cast<int64_t>(x[i * ldx + l]) * static_cast<int64_t>(w[j * ldw + l]);
      if (x_zero_point != 0) s -= static_cast<int64_t>(x_zero_point) * w_row_sums[j];
      acc[i * ldacc + j] = wrap(s);
    }
}

void requantize_s32_to_u8__ref(int64_t m, int64_t n, uint8_t* y, int64_t ldy, const int32_t* acc,
                               int64_t ldacc, const int32_t* bias, const RequantParams& p) {
  const float lo = p.relu ? static_cast<float>(p.zero_point) : 0.0f;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t t = static_cast<int64_t>(acc[i * ldacc + j]) + (bias ? bias[j] : 0);
      const float v = static_cast<float>(wrap(t)) * p.multiplier[j];
      y[i * ldy + j] = static_cast<uint8_t>(quantize_one(v, 1.0f, p.zero_point, lo, 255.0f));
    }
}

void dequantize_s32_to_f32__ref(int64_t m, int64_t n, float* y, int64_t ldy, const int32_t* acc,
                                int64_t ldacc, const float* w_scales, float x_scale,
                                const float* bias) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const float s = x_scale * w_scales[j];
      y[i * ldy + j] =
          std::fma(static_cast<float>(acc[i * ldacc + j]), s, bias ? bias[j] : 0.0f);
    }
}

void spmv_u8s8_s32__ref(int32_t* acc, const CsrS8& w, const uint8_t* x,
                        const int32_t* w_row_sums, int32_t x_zero_point) {
  spmm_u8s8_s32__ref(1, acc, 1, w, x, 1, w_row_sums, x_zero_point);
}

void spmm_u8s8_s32__ref(int64_t n, int32_t* acc, int64_t ldacc, const CsrS8& w,
                        const uint8_t* x, int64_t ldx, const int32_t* w_row_sums,
                        int32_t x_zero_point) {
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t b = 0; b < n; ++b) {
      int64_t s = 0;
      for (int64_t p = w.row_ptr[r]; p < w.row_ptr[r + 1]; ++p)
        s += static_cast<int64_t>(w.values[p]) * x[w.col_idx[p] * ldx + b];
      if (x_zero_point != 0) s -= static_cast<int64_t>(x_zero_point) * w_row_sums[r];
      acc[r * ldacc + b] = wrap(s);
    }
}

void im2col_u8__ref(const Conv2dGeometry& g, uint8_t* cols, int64_t ld, int64_t col0,
                    const uint8_t* x, uint8_t pad) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        uint8_t* row = cols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
            uint8_t v = pad;
            if (g.circular) {
              iy = ((iy % g.h) + g.h) % g.h;
              ix = ((ix % g.w) + g.w) % g.w;
              v = x[(ch * g.h + iy) * g.w + ix];
            } else if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
              v = x[(ch * g.h + iy) * g.w + ix];
            }
            row[oy * ow + ox] = v;
          }
      }
}

void pack_k4_u8__ref(int64_t k, int64_t n, uint8_t* x4, const uint8_t* x, int64_t ldx) {
  const int64_t k4 = (k + 3) / 4;
  for (int64_t q = 0; q < k4; ++q)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t r = 0; r < 4; ++r)
        x4[(q * n + j) * 4 + r] = 4 * q + r < k ? x[(4 * q + r) * ldx + j] : 0;
}

void qgemm_s8u8k4_s32__ref(int64_t m, int64_t n, int64_t k4, int32_t* acc, int64_t ldacc,
                           const int8_t* w, int64_t ldw, const uint8_t* x4,
                           const int32_t* w_row_sums, int32_t x_zero_point) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = 0;
      for (int64_t q = 0; q < k4; ++q)
        for (int64_t r = 0; r < 4; ++r)
          s += static_cast<int64_t>(w[i * ldw + 4 * q + r]) * x4[(q * n + j) * 4 + r];
      if (x_zero_point != 0) s -= static_cast<int64_t>(x_zero_point) * w_row_sums[i];
      acc[i * ldacc + j] = wrap(s);
    }
}

}  // namespace pare::kernels
