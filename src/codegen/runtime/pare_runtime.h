/* pare's integer-only inference kernels (issue #7, docs/mcu.md).
 *
 * Plain C99: no allocation, no floating point, no dependency beyond
 * <stdint.h> and <stddef.h>. The same file is compiled into pare (its own
 * int8 program inference, codegen/program.h) and copied by `pare export
 * --target c` next to the generated model, so the device computes what pare
 * computes, bit for bit. A kernel knows nothing of layers: pointers, sizes
 * and quantization constants in, int8 out.
 *
 * Arithmetic (the contract the tests hold every build to):
 *   activations are int8 on a per-tensor grid: real = (q - zero_point) * scale;
 *   a weight layer accumulates acc = bias[j] + sum (x - x_zp) * w in int32
 *   (bias in units of x_scale * w_scale[j]), then requantizes:
 *     y = clamp(y_zp + pare_requantize(acc, mult[j], shift[j]), y_min, y_max)
 *   where pare_requantize is acc * mult / 2^shift rounded half up, computed
 *   exactly in int64 (mult < 2^31, 1 <= shift <= 62). A fused ReLU is
 *   y_min = y_zp.
 *   Max pooling takes the largest q (the grid is monotone); average pooling
 *   requantizes the window's sum like a weight layer's accumulator.
 *
 * Kernels are delimited by "pare-kernel" marker comments so that the
 * exporter copies only the ones a model uses. */
#ifndef PARE_RUNTIME_H
#define PARE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* pare-kernel: requantize */
static inline int32_t pare_requantize(int32_t acc, int32_t mult, int32_t shift) {
  const int64_t p = (int64_t)acc * (int64_t)mult;
  return (int32_t)((p + ((int64_t)1 << (shift - 1))) >> shift);
}

static inline int8_t pare_clamp_s8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}
/* pare-kernel-end */

/* Quantization of one output channel's accumulator onto the output grid. */
typedef struct {
  int32_t y_zp, y_min, y_max;
} pare_out_grid;

/* pare-kernel: dense */
/* y (rows) = requantized W (rows, cols) x (cols); w row-major. */
void pare_dense_s8(const int8_t *x, int32_t x_zp, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int8_t *shift, pare_out_grid out, int32_t rows,
                   int32_t cols, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: csr */
/* As pare_dense_s8 with W in compressed rows: row r's kept values are
 * val[row_ptr[r] .. row_ptr[r+1]), and `steps` says where each one is, one
 * byte per value read in order across all rows: the column advances by the
 * byte (from -1 at the start of each row); a 0 byte advances it by 255 with no
 * value. Absent weights are 0. */
void pare_csr_s8(const int8_t *x, int32_t x_zp, const uint16_t *row_ptr, const uint8_t *steps,
                 const int8_t *val, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                 pare_out_grid out, int32_t rows, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: codes */
/* Shared weights (k-means codebooks): weight i is lut[code i], the codes
 * packed `bits` (1..8) each, least significant bit first, in a byte array
 * with one spare byte at the end. */
static inline int32_t pare_code(const uint8_t *codes, uint32_t i, int32_t bits) {
  const uint32_t bit = i * (uint32_t)bits;
  const uint32_t two = (uint32_t)codes[bit >> 3] | ((uint32_t)codes[(bit >> 3) + 1u] << 8);
  return (int32_t)((two >> (bit & 7u)) & ((1u << bits) - 1u));
}
/* pare-kernel-end */

/* pare-kernel: dense_codes */
/* pare_dense_s8 with W (rows, cols) as codes into `lut`. */
void pare_dense_codes_s8(const int8_t *x, int32_t x_zp, const uint8_t *codes, int32_t bits,
                         const int8_t *lut, const int32_t *bias, const int32_t *mult,
                         const int8_t *shift, pare_out_grid out, int32_t rows, int32_t cols,
                         int8_t *y);
/* pare-kernel-end */

/* pare-kernel: csr_codes */
/* pare_csr_s8 with the kept values as codes into `lut`. */
void pare_csr_codes_s8(const int8_t *x, int32_t x_zp, const uint16_t *row_ptr, const uint8_t *steps,
                       const uint8_t *codes, int32_t bits, const int8_t *lut, const int32_t *bias,
                       const int32_t *mult, const int8_t *shift, pare_out_grid out, int32_t rows,
                       int8_t *y);
/* pare-kernel-end */

/* pare-kernel: conv2d */
/* x (c, h, w) -> y (oc, oh, ow); w (oc, c, k, k). pad: zero padding (the
 * padded positions are real 0, i.e. q = x_zp, and contribute nothing), or
 * with circular != 0 the input wraps around (a torus). */
void pare_conv2d_s8(const int8_t *x, int32_t x_zp, int32_t c, int32_t h, int32_t w,
                    const int8_t *wt, const int32_t *bias, const int32_t *mult,
                    const int8_t *shift, pare_out_grid out, int32_t oc, int32_t k,
                    int32_t stride, int32_t pad, int32_t circular, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: maxpool */
void pare_maxpool_s8(const int8_t *x, int32_t c, int32_t h, int32_t w, int32_t k,
                     int32_t stride, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: avgpool */
/* The window's sum of (x - x_zp), requantized onto the output grid:
 * y = clamp(y_zp + pare_requantize(sum, mult, shift)), mult / 2^shift being
 * x_scale / (k * k * y_scale). No division. */
void pare_avgpool_s8(const int8_t *x, int32_t x_zp, int32_t c, int32_t h, int32_t w, int32_t k,
                     int32_t stride, int32_t mult, int32_t shift, int32_t y_zp, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: relu */
/* y = max(x, zp) (in place allowed). */
void pare_relu_s8(const int8_t *x, int32_t zp, int32_t n, int8_t *y);
/* pare-kernel-end */

/* pare-kernel: argmax */
/* The index of the largest of n values (the first on ties). */
int32_t pare_argmax_s8(const int8_t *x, int32_t n);
/* pare-kernel-end */

#ifdef __cplusplus
}
#endif

#endif /* PARE_RUNTIME_H */
