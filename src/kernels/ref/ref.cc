// Scalar reference kernels: the oracles the fast variants are tested against.
// Written for obviousness, not speed; see kernels.h for each contract.
#include <algorithm>
#include <cmath>
#include <limits>

#include "pare/kernels/kernels.h"

namespace pare::kernels {

void gemm_f32__ref(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                   int64_t lda, const float* b, int64_t ldb, GemmParams p) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t l = 0; l < k; ++l) {
        float av = p.trans_a ? a[l * lda + i] : a[i * lda + l];
        float bv = p.trans_b ? b[j * ldb + l] : b[l * ldb + j];
        acc += static_cast<double>(av) * bv;
      }
      float prev = p.beta == 0.0f ? 0.0f : p.beta * c[i * ldc + j];
      float v = static_cast<float>(p.alpha * acc) + prev;
      if (p.bias) v += p.bias[i];
      if (p.relu) v = v > 0.0f ? v : 0.0f;
      if (p.mask && !(p.mask[i * p.ldm + j] > 0.0f)) v = 0.0f;
      c[i * ldc + j] = v;
    }
  if (p.sum_a)
    for (int64_t i = 0; i < m; ++i) {
      double acc = 0;
      for (int64_t l = 0; l < k; ++l) acc += p.trans_a ? a[l * lda + i] : a[i * lda + l];
      p.sum_a[i] += static_cast<float>(acc);
    }
}

void add_f32__ref(int64_t n, float* y, const float* a, const float* b) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
void mul_f32__ref(int64_t n, float* y, const float* a, const float* b) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
void axpy_f32__ref(int64_t n, float* y, const float* x, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
void scale_f32__ref(int64_t n, float* y, const float* x, float alpha) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}
void relu_f32__ref(int64_t n, float* y, const float* x) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
void relu_backward_f32__ref(int64_t n, float* dx, const float* dy, const float* y) {
  for (int64_t i = 0; i < n; ++i)
    if (y[i] > 0.0f) dx[i] += dy[i];
}
void relu_mask_f32__ref(int64_t n, float* dx, const float* dy, const float* y) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
void sigmoid_f32__ref(int64_t n, float* y, const float* x) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}
void sigmoid_backward_f32__ref(int64_t n, float* dx, const float* dy, const float* y) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}
void tanh_f32__ref(int64_t n, float* y, const float* x) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}
void tanh_backward_f32__ref(int64_t n, float* dx, const float* dy, const float* y) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

void add_rows_f32__ref(int64_t m, int64_t n, float* y, const float* b) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += b[j];
}
void sum_rows_f32__ref(int64_t m, int64_t n, float* out, const float* x) {
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;
    for (int64_t i = 0; i < m; ++i) acc += x[i * n + j];
    out[j] += static_cast<float>(acc);
  }
}
void add_channels_f32__ref(int64_t b, int64_t c, int64_t p, float* y, const float* bias) {
  for (int64_t i = 0; i < b; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t q = 0; q < p; ++q) y[(i * c + ch) * p + q] += bias[ch];
}
void sum_channels_f32__ref(int64_t b, int64_t c, int64_t p, float* out, const float* x) {
  for (int64_t ch = 0; ch < c; ++ch) {
    double acc = 0;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t q = 0; q < p; ++q) acc += x[(i * c + ch) * p + q];
    out[ch] += static_cast<float>(acc);
  }
}
double sum_f32__ref(int64_t n, const float* x) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += x[i];
  return acc;
}
void swap_outer_f32__ref(int64_t a, int64_t b, int64_t p, float* y, const float* x) {
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t q = 0; q < p; ++q) y[(j * a + i) * p + q] = x[(i * b + j) * p + q];
}

void transpose_f32__ref(int64_t rows, int64_t cols, float* y, int64_t ldy, const float* x,
                        int64_t ldx, float beta) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float v = x[i * ldx + j];
      y[j * ldy + i] = beta == 0.0f ? v : v + beta * y[j * ldy + i];
    }
}

// Source pixel for output position (oy, ox) and kernel offset (ky, kx), or -1
// when it falls into zero padding.
static int64_t conv_source(const Conv2dGeometry& g, int64_t oy, int64_t ox, int64_t ky,
                           int64_t kx) {
  int64_t iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
  if (g.circular) {
    iy = ((iy % g.h) + g.h) % g.h;
    ix = ((ix % g.w) + g.w) % g.w;
  } else if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
    return -1;
  }
  return iy * g.w + ix;
}

void im2col_f32__ref(const Conv2dGeometry& g, float* cols, int64_t ld, int64_t col0,
                     const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        float* row = cols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            int64_t src = conv_source(g, oy, ox, ky, kx);
            row[oy * ow + ox] = src < 0 ? 0.0f : x[ch * g.h * g.w + src];
          }
      }
}

void col2im_f32__ref(const Conv2dGeometry& g, float* dx, const float* dcols, int64_t ld,
                     int64_t col0) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const float* row = dcols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox) {
            int64_t src = conv_source(g, oy, ox, ky, kx);
            if (src >= 0) dx[ch * g.h * g.w + src] += row[oy * ow + ox];
          }
      }
}

void maxpool2d_f32__ref(const Pool2dGeometry& g, float* y, int32_t* argmax, const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * g.h * g.w;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_at = (oy * g.stride) * g.w + ox * g.stride;
        for (int64_t ky = 0; ky < g.k; ++ky)
          for (int64_t kx = 0; kx < g.k; ++kx) {
            int64_t at = (oy * g.stride + ky) * g.w + ox * g.stride + kx;
            if (plane[at] > best) {
              best = plane[at];
              best_at = at;
            }
          }
        y[(ch * oh + oy) * ow + ox] = plane[best_at];
        argmax[(ch * oh + oy) * ow + ox] = static_cast<int32_t>(best_at);
      }
  }
}
void maxpool2d_backward_f32__ref(const Pool2dGeometry& g, float* dx, const float* dy,
                                 const int32_t* argmax) {
  const int64_t plane_out = g.out_h() * g.out_w();
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t q = 0; q < plane_out; ++q)
      dx[ch * g.h * g.w + argmax[ch * plane_out + q]] += dy[ch * plane_out + q];
}
void avgpool2d_f32__ref(const Pool2dGeometry& g, float* y, const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  const float inv = 1.0f / static_cast<float>(g.k * g.k);
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float acc = 0;
        for (int64_t ky = 0; ky < g.k; ++ky)
          for (int64_t kx = 0; kx < g.k; ++kx)
            acc += x[(ch * g.h + oy * g.stride + ky) * g.w + ox * g.stride + kx];
        y[(ch * oh + oy) * ow + ox] = acc * inv;
      }
}
void avgpool2d_backward_f32__ref(const Pool2dGeometry& g, float* dx, const float* dy) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  const float inv = 1.0f / static_cast<float>(g.k * g.k);
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float d = dy[(ch * oh + oy) * ow + ox] * inv;
        for (int64_t ky = 0; ky < g.k; ++ky)
          for (int64_t kx = 0; kx < g.k; ++kx)
            dx[(ch * g.h + oy * g.stride + ky) * g.w + ox * g.stride + kx] += d;
      }
}

double softmax_xent_f32__ref(int64_t b, int64_t k, float* probs, const float* logits,
                             const int32_t* labels) {
  double total = 0;
  for (int64_t i = 0; i < b; ++i) {
    const float* row = logits + i * k;
    float mx = row[0];
    for (int64_t j = 1; j < k; ++j) mx = std::max(mx, row[j]);
    double z = 0;
    for (int64_t j = 0; j < k; ++j) z += std::exp(static_cast<double>(row[j] - mx));
    for (int64_t j = 0; j < k; ++j)
      probs[i * k + j] = static_cast<float>(std::exp(static_cast<double>(row[j] - mx)) / z);
    total += std::log(z) - (row[labels[i]] - mx);
  }
  return total;
}
void softmax_xent_backward_f32__ref(int64_t b, int64_t k, float* dlogits, const float* probs,
                                    const int32_t* labels, float scale) {
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < k; ++j)
      dlogits[i * k + j] += scale * (probs[i * k + j] - (j == labels[i] ? 1.0f : 0.0f));
}
double bce_logits_f32__ref(int64_t n, const float* logits, const float* targets) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = logits[i], t = targets[i];
    total += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::abs(x)));
  }
  return total;
}
void bce_logits_backward_f32__ref(int64_t n, float* dlogits, const float* logits,
                                  const float* targets, float scale) {
  for (int64_t i = 0; i < n; ++i)
    dlogits[i] += scale * (1.0f / (1.0f + std::exp(-logits[i])) - targets[i]);
}
double bce_logits_grad_f32__ref(int64_t n, float* dsig, const float* logits,
                                const float* targets) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = logits[i], t = targets[i];
    total += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::abs(x)));
    dsig[i] = static_cast<float>(1.0 / (1.0 + std::exp(-x)) - t);
  }
  return total;
}
double sq_diff_sum_f32__ref(int64_t n, const float* a, const float* b) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    total += d * d;
  }
  return total;
}

void adam_f32__ref(int64_t n, float* w, float* m, float* v, const float* g, const float* mask,
                   const AdamParams& p) {
  for (int64_t i = 0; i < n; ++i) {
    if (mask && mask[i] == 0.0f) {
      w[i] = m[i] = v[i] = 0.0f;
      continue;
    }
    float grad = g[i];
    if (p.decoupled)
      w[i] -= p.lr * p.weight_decay * w[i];
    else
      grad += p.weight_decay * w[i];
    m[i] = p.beta1 * m[i] + (1.0f - p.beta1) * grad;
    v[i] = p.beta2 * v[i] + (1.0f - p.beta2) * grad * grad;
    float denom = std::sqrt(v[i]) / std::sqrt(p.bias_correction2) + p.eps;
    w[i] -= (p.lr / p.bias_correction1) * m[i] / denom;
  }
}

void sgd_f32__ref(int64_t n, float* w, float* buf, const float* g, const float* mask,
                  const SgdParams& p) {
  for (int64_t i = 0; i < n; ++i) {
    if (mask && mask[i] == 0.0f) {
      w[i] = 0.0f;
      if (p.momentum != 0.0f) buf[i] = 0.0f;
      continue;
    }
    float d = g[i] + p.weight_decay * w[i];
    if (p.momentum != 0.0f) {
      buf[i] = p.first_step ? d : p.momentum * buf[i] + (1.0f - p.dampening) * d;
      d = p.nesterov ? d + p.momentum * buf[i] : buf[i];
    }
    w[i] -= p.lr * d;
  }
}

// The indexed steps are defined as the dense ones applied to one entry at a time.
void adam_at_f32__ref(int64_t n, const int32_t* idx, float* w, float* m, float* v, const float* g,
                      const AdamParams& p) {
  for (int64_t k = 0; k < n; ++k) {
    const int32_t i = idx[k];
    adam_f32__ref(1, w + i, m + i, v + i, g + i, nullptr, p);
  }
}

void sgd_at_f32__ref(int64_t n, const int32_t* idx, float* w, float* buf, const float* g,
                     const SgdParams& p) {
  for (int64_t k = 0; k < n; ++k) {
    const int32_t i = idx[k];
    sgd_f32__ref(1, w + i, buf ? buf + i : nullptr, g + i, nullptr, p);
  }
}

}  // namespace pare::kernels
