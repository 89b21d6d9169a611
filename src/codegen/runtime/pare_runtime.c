/* pare's integer-only inference kernels: see pare_runtime.h for the
 * arithmetic. Plain C99; every loop keeps the written order. */
#include "pare_runtime.h"

/* pare-kernel: dense */
void pare_dense_s8(const int8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int8_t *shift, pare_out_grid out, int32_t rows,
                   int32_t cols, int8_t *y) {
  int32_t r, i;
  for (r = 0; r < rows; ++r) {
    const int8_t *wr = w + (size_t)r * (size_t)cols;
    int32_t acc = bias ? bias[r] : 0;
    for (i = 0; i < cols; ++i) acc += ((int32_t)x[i] - x_zp) * (int32_t)wr[i];
    y[r] = pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[r], shift[r]), out.y_min, out.y_max);
  }
}
/* pare-kernel-end */

/* pare-kernel: csr */
void pare_csr_s8(const int8_t *x, int32_t x_zp, const uint16_t *row_ptr, const uint8_t *steps,
                 const int8_t *val, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                 pare_out_grid out, int32_t rows, int8_t *y) {
  int32_t r, p;
  for (r = 0; r < rows; ++r) {
    int32_t acc = bias ? bias[r] : 0, col = -1;
    for (p = row_ptr[r]; p < (int32_t)row_ptr[r + 1]; ++p) {
      while (*steps == 0) {
        col += 255;
        ++steps;
      }
      col += *steps++;
      acc += ((int32_t)x[col] - x_zp) * (int32_t)val[p];
    }
    y[r] = pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[r], shift[r]), out.y_min, out.y_max);
  }
}
/* pare-kernel-end */

/* pare-kernel: dense_codes */
void pare_dense_codes_s8(const int8_t *x, int32_t x_zp, const uint8_t *codes, int32_t bits,
                         const int8_t *lut, const int32_t *bias, const int32_t *mult,
                         const int8_t *shift, pare_out_grid out, int32_t rows, int32_t cols,
                         int8_t *y) {
  int32_t r, i;
  uint32_t at = 0;
  for (r = 0; r < rows; ++r) {
    int32_t acc = bias ? bias[r] : 0;
    for (i = 0; i < cols; ++i, ++at) acc += ((int32_t)x[i] - x_zp) * (int32_t)lut[pare_code(codes, at, bits)];
    y[r] = pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[r], shift[r]), out.y_min, out.y_max);
  }
}
/* pare-kernel-end */

/* pare-kernel: csr_codes */
void pare_csr_codes_s8(const int8_t *x, int32_t x_zp, const uint16_t *row_ptr, const uint8_t *steps,
                       const uint8_t *codes, int32_t bits, const int8_t *lut, const int32_t *bias,
                       const int32_t *mult, const int8_t *shift, pare_out_grid out, int32_t rows,
                       int8_t *y) {
  int32_t r, p;
  for (r = 0; r < rows; ++r) {
    int32_t acc = bias ? bias[r] : 0, col = -1;
    for (p = row_ptr[r]; p < (int32_t)row_ptr[r + 1]; ++p) {
      while (*steps == 0) {
        col += 255;
        ++steps;
      }
      col += *steps++;
      acc += ((int32_t)x[col] - x_zp) * (int32_t)lut[pare_code(codes, (uint32_t)p, bits)];
    }
    y[r] = pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[r], shift[r]), out.y_min, out.y_max);
  }
}
/* pare-kernel-end */

/* pare-kernel: conv2d */
/* No division anywhere (Cortex-M0 has no divide instruction): a padded
 * coordinate is at most `pad` outside the input, so wrapping it around the
 * torus is one addition or subtraction. */
void pare_conv2d_s8(const int8_t *x, int32_t x_zp, int32_t c, int32_t h, int32_t w,
                    const int8_t *wt, const int32_t *bias, const int32_t *mult,
                    const int8_t *shift, pare_out_grid out, int32_t oc, int32_t k,
                    int32_t stride, int32_t pad, int32_t circular, int8_t *y) {
  const int32_t oh = circular ? h : (h + 2 * pad - k) / stride + 1;
  const int32_t ow = circular ? w : (w + 2 * pad - k) / stride + 1;
  int32_t o, oy, ox, ci, ky, kx;
  for (o = 0; o < oc; ++o) {
    const int8_t *wo = wt + (size_t)o * (size_t)(c * k * k);
    const int32_t b = bias ? bias[o] : 0;
    for (oy = 0; oy < oh; ++oy) {
      for (ox = 0; ox < ow; ++ox) {
        int32_t acc = b;
        if (pad == 0) {
          /* Every tap inside the input: no coordinate checks. */
          const int8_t *wk = wo;
          for (ci = 0; ci < c; ++ci) {
            const int8_t *row = x + (size_t)ci * (size_t)(h * w) + (size_t)(oy * stride * w + ox * stride);
            for (ky = 0; ky < k; ++ky, row += w, wk += k)
              for (kx = 0; kx < k; ++kx) acc += ((int32_t)row[kx] - x_zp) * (int32_t)wk[kx];
          }
          y[((size_t)o * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] =
              pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[o], shift[o]), out.y_min, out.y_max);
          continue;
        }
        for (ci = 0; ci < c; ++ci) {
          const int8_t *xc = x + (size_t)ci * (size_t)(h * w);
          const int8_t *wc = wo + ci * k * k;
          for (ky = 0; ky < k; ++ky) {
            int32_t iy = oy * stride + ky - pad;
            const int8_t *row, *wk = wc + ky * k;
            if (iy < 0 || iy >= h) {
              if (!circular) continue;
              iy += iy < 0 ? h : -h;
            }
            row = xc + iy * w;
            for (kx = 0; kx < k; ++kx) {
              int32_t ix = ox * stride + kx - pad;
              if (ix < 0 || ix >= w) {
                if (!circular) continue;
                ix += ix < 0 ? w : -w;
              }
              acc += ((int32_t)row[ix] - x_zp) * (int32_t)wk[kx];
            }
          }
        }
        y[((size_t)o * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] =
            pare_clamp_s8(out.y_zp + pare_requantize(acc, mult[o], shift[o]), out.y_min, out.y_max);
      }
    }
  }
}
/* pare-kernel-end */

/* pare-kernel: maxpool */
void pare_maxpool_s8(const int8_t *x, int32_t c, int32_t h, int32_t w, int32_t k,
                     int32_t stride, int8_t *y) {
  const int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
  int32_t ci, oy, ox, ky, kx;
  for (ci = 0; ci < c; ++ci) {
    const int8_t *xc = x + (size_t)ci * (size_t)(h * w);
    for (oy = 0; oy < oh; ++oy) {
      for (ox = 0; ox < ow; ++ox) {
        int8_t m = xc[oy * stride * w + ox * stride];
        for (ky = 0; ky < k; ++ky)
          for (kx = 0; kx < k; ++kx) {
            const int8_t v = xc[(oy * stride + ky) * w + ox * stride + kx];
            if (v > m) m = v;
          }
        y[((size_t)ci * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] = m;
      }
    }
  }
}
/* pare-kernel-end */

/* pare-kernel: avgpool */
void pare_avgpool_s8(const int8_t *x, int32_t x_zp, int32_t c, int32_t h, int32_t w, int32_t k,
                     int32_t stride, int32_t mult, int32_t shift, int32_t y_zp, int8_t *y) {
  const int32_t oh = (h - k) / stride + 1, ow = (w - k) / stride + 1;
  int32_t ci, oy, ox, ky, kx;
  for (ci = 0; ci < c; ++ci) {
    const int8_t *xc = x + (size_t)ci * (size_t)(h * w);
    for (oy = 0; oy < oh; ++oy) {
      for (ox = 0; ox < ow; ++ox) {
        int32_t s = 0;
        for (ky = 0; ky < k; ++ky)
          for (kx = 0; kx < k; ++kx) s += (int32_t)xc[(oy * stride + ky) * w + ox * stride + kx] - x_zp;
        y[((size_t)ci * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] =
            pare_clamp_s8(y_zp + pare_requantize(s, mult, shift), -128, 127);
      }
    }
  }
}
/* pare-kernel-end */

/* pare-kernel: relu */
void pare_relu_s8(const int8_t *x, int32_t zp, int32_t n, int8_t *y) {
  int32_t i;
  for (i = 0; i < n; ++i) y[i] = x[i] < zp ? (int8_t)zp : x[i];
}
/* pare-kernel-end */

/* pare-kernel: argmax */
int32_t pare_argmax_s8(const int8_t *x, int32_t n) {
  int32_t i, best = 0;
  for (i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}
/* pare-kernel-end */
