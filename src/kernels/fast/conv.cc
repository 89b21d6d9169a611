// Fast convolution lowering: im2col and its adjoint col2im (contracts in kernels.h).
//
// A row of cols is one (channel, ky, kx) tap; within it, output row oy reads
// input row iy = oy*stride - pad + ky at columns ix = ox*stride - pad + kx.
// Paths, first match wins:
//   1x1, stride 1, no padding   whole planes: one copy / one vector add each.
//   AVX-512 im2col, input rows <= 32 wide (LeNet, Life; any stride, zero or
//                               circular padding): an input row sits in two
//                               registers and each 16 outputs of a tap row
//                               are one two-source permute of it, padding
//                               read from a zero lane (or masked) and wraps
//                               folded into the indices; output rows 8 to 10
//                               wide (LeNet conv2) go G = 32/ow rows per two
//                               stores.
//   AVX-512 col2im, stride 1, input and output rows <= 32 wide: blocks of dx
//                               rows in registers; every tap's output row is
//                               loaded, permuted into dx lanes and added
//                               (masked where a lane gets nothing).
//   AVX-512 col2im, stride 1, wider rows (<= 64): dx chunks held in
//                               registers, taps added through masked loads.
//   general                     per tap and output row, the columns split into
//                               a few runs (RowPlan): zeros in the padding, a
//                               contiguous interior run and, circular, a run
//                               wrapped from the other border; runs are vector
//                               copies or adds (strided loops for stride > 1),
//                               pixel by pixel only if a row needs > 8 runs.
//
// Versus ref/: im2col is an exact copy; col2im adds each contribution to a
// pixel in ref's order (ky, kx, oy, ox), so it is bit-identical too.
#include <cstdint>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

namespace {

// Output columns [ox0, ox0 + len) read input columns ix0, ix0 + s, ...;
// ix0 < 0 marks a run of zero padding.
struct Run {
  int64_t ox0, len, ix0;
};
struct RowPlan {
  static constexpr int kMaxRuns = 8;
  int n = 0;
  Run run[kMaxRuns];
};

int64_t wrap(int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;  // the common case, without a division
  i %= n;
  return i < 0 ? i + n : i;
}
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs of one output row for kernel column kx; false when the row needs more
// than kMaxRuns (circular padding wider than the image), which the caller then
// handles pixel by pixel.
bool plan_row(const Conv2dGeometry& g, int64_t kx, int64_t ow, RowPlan* plan) {
  const int64_t s = g.stride;
  plan->n = 0;
  for (int64_t ox = 0; ox < ow;) {
    if (plan->n == RowPlan::kMaxRuns) return false;
    int64_t ix = ox * s - g.pad + kx, len;
    if (g.circular) {
      ix = wrap(ix, g.w);
      len = ceil_div(g.w - ix, s);
    } else if (ix < 0) {
      len = ceil_div(-ix, s);
      ix = -1;
    } else if (ix >= g.w) {
      len = ow - ox;
      ix = -1;
    } else {
      len = ceil_div(g.w - ix, s);
    }
    if (len > ow - ox) len = ow - ox;
    plan->run[plan->n++] = {ox, len, ix};
    ox += len;
  }
  return true;
}

// Input row index for output row oy and kernel row ky, or -1 in zero padding.
int64_t source_row(const Conv2dGeometry& g, int64_t oy, int64_t ky) {
  int64_t iy = oy * g.stride - g.pad + ky;
  if (g.circular) return wrap(iy, g.h);
  return iy < 0 || iy >= g.h ? -1 : iy;
}

// dst[0, ow) = the taps of input row `src` described by `plan`.
inline void gather_row(float* dst, const float* src, const RowPlan& plan, int64_t s) {
  for (int r = 0; r < plan.n; ++r) {
    const Run& run = plan.run[r];
    float* d = dst + run.ox0;
    if (run.ix0 < 0) {
      zero_floats(d, run.len);
    } else if (s == 1) {
      copy_floats(d, src + run.ix0, run.len);
    } else {
      const float* p = src + run.ix0;
      for (int64_t t = 0; t < run.len; ++t) d[t] = p[t * s];
    }
  }
}

// Input row `dst` += the taps in src[0, ow) described by `plan` (in ox order).
inline void scatter_row(float* dst, const float* src, const RowPlan& plan, int64_t s) {
  for (int r = 0; r < plan.n; ++r) {
    const Run& run = plan.run[r];
    if (run.ix0 < 0) continue;
    const float* d = src + run.ox0;
    if (s == 1) {
      add_floats(dst + run.ix0, d, run.len);
    } else {
      float* p = dst + run.ix0;
      for (int64_t t = 0; t < run.len; ++t) p[t * s] += d[t];
    }
  }
}

// Pixel-by-pixel source index, for rows whose plan did not fit.
int64_t source_col(const Conv2dGeometry& g, int64_t ox, int64_t kx) {
  int64_t ix = ox * g.stride - g.pad + kx;
  if (g.circular) return wrap(ix, g.w);
  return ix < 0 || ix >= g.w ? -1 : ix;
}

constexpr int64_t kMaxPlannedKw = 16;

bool is_pointwise(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
}

#if defined(__AVX512F__)
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// An address `off` floats from p that a masked load may touch only in its
// enabled lanes (off can reach before p; integer arithmetic keeps that defined).
const float* offset_ptr(const float* p, int64_t off) {
  return reinterpret_cast<const float*>(reinterpret_cast<intptr_t>(p) +
                                        off * static_cast<intptr_t>(sizeof(float)));
}

// Input rows of at most 32 floats (LeNet conv1, the Life boards): a row of x
// sits in two registers, and one two-source permute per 16 outputs builds any
// tap's output row from it, zeros (masked lanes) and wraps included. The
// permute indices and lane masks depend on (kx, chunk of the output row) only
// and are built once per call, with vector arithmetic.
constexpr int64_t kMaxRowChunks = 4;  // output rows up to 64 wide
struct ShuffleTable {
  __m512i idx[kMaxPlannedKw][kMaxRowChunks];
  __mmask16 mask[kMaxPlannedKw][kMaxRowChunks];
  bool masked;  // some lane is zero padding that no zero lane of the row can supply
};

inline __m512i iota16() {
  return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
}
inline __m512i splat(int64_t v) { return _mm512_set1_epi32(static_cast<int32_t>(v)); }

// Lane l of chunk c, kernel column kx: output column ox = 16c + l < ow reads
// input column ox*stride - pad + kx (wrapped when circular). A lane in the
// zero padding reads lane 31 of the row pair, which is zero when w < 32 (the
// row is loaded with a mask); only for w == 32 does it need a zeroing mask.
bool plan_im2col_shuffle(const Conv2dGeometry& g, int64_t ow, ShuffleTable* t) {
  const int64_t w = g.w, s = g.stride;
  if (w > 32 || g.kw > kMaxPlannedKw || ow > 16 * kMaxRowChunks) return false;
  // Circular: every column index lies within one period of [0, w).
  if (g.circular && (g.pad > w || (ow - 1) * s - g.pad + g.kw - 1 >= 2 * w)) return false;
  const int64_t chunks = (ow + 15) / 16;
  const __m512i vw = splat(w), zero = _mm512_setzero_si512();
  t->masked = false;
  for (int64_t c = 0; c < chunks; ++c) {
    const __m512i ox = _mm512_add_epi32(iota16(), splat(16 * c));
    const __m512i oxs = _mm512_mullo_epi32(ox, splat(s));
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      __m512i ix = _mm512_add_epi32(oxs, splat(kx - g.pad));
      __mmask16 m = 0xFFFF;
      if (g.circular) {
        ix = _mm512_mask_add_epi32(ix, _mm512_cmplt_epi32_mask(ix, zero), ix, vw);
        ix = _mm512_mask_sub_epi32(ix, _mm512_cmpge_epi32_mask(ix, vw), ix, vw);
      } else {
        m = _mm512_cmplt_epu32_mask(ix, vw);  // unsigned: also ix >= 0
        ix = _mm512_mask_blend_epi32(m, splat(31), ix);
        if (w == 32 && m != 0xFFFF) t->masked = true;
      }
      t->idx[kx][c] = ix;
      t->mask[kx][c] = m;
    }
  }
  return true;
}

// KW == 0: the kernel width is g.kw, known at run time only.
template <int NC, int KW, bool Masked>
void im2col_shuffle(const Conv2dGeometry& g, const ShuffleTable& t, float* cols, int64_t ld,
                    int64_t col0, const float* x, int64_t oh, int64_t ow) {
  const int64_t w = g.w, hw = g.h * g.w, kw = KW ? KW : g.kw;
  const __mmask16 m0 = tail_mask(w < 16 ? w : 16), m1 = tail_mask(w > 16 ? w - 16 : 0);
  const __mmask16 mlast = tail_mask(ow - 16 * (NC - 1));
  // With the width known, the indices move to registers (the table itself
  // would be reloaded after every store: __m512i may alias float).
  constexpr int kRegs = KW ? KW : 1;
  __m512i idx[kRegs][NC];
  if (KW)
    for (int kx = 0; kx < KW; ++kx)
      for (int c = 0; c < NC; ++c) idx[kx][c] = t.idx[kx][c];
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * hw;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      float* taps = cols + (ch * g.kh + ky) * kw * ld + col0;
      for (int64_t oy = 0; oy < oh; ++oy) {
        const int64_t iy = source_row(g, oy, ky);
        vf r0 = vzero(), r1 = vzero();
        if (iy >= 0) {
          const float* src = plane + iy * w;
          r0 = _mm512_maskz_loadu_ps(m0, src);
          r1 = _mm512_maskz_loadu_ps(m1, src + 16);
        }
        float* d = taps + oy * ow;
        for (int64_t kx = 0; kx < kw; ++kx, d += ld) {
          for (int c = 0; c < NC; ++c) {
            const __m512i ix = KW ? idx[KW ? kx : 0][c] : t.idx[kx][c];
            const vf v = Masked ? _mm512_maskz_permutex2var_ps(t.mask[kx][c], r0, ix, r1)
                                : _mm512_permutex2var_ps(r0, ix, r1);
            if (c < NC - 1)
              vstore(d + 16 * c, v);
            else
              _mm512_mask_storeu_ps(d + 16 * c, mlast, v);
          }
        }
      }
    }
  }
}

// Output rows 8 to 10 wide from input rows of at most 15 (LeNet conv2: 10 of
// 14): G = 32 / ow rows of a tap (30 outputs at ow 10) go out as two stores,
// not G, each vector permuted from the two input rows it spans. Lane 15 of a
// row register is zero (w < 16), so padding lanes need no mask: in the
// row table they read lane 31, which is lane 15 of either register here.
template <int G, int KW>
void im2col_grouped(const Conv2dGeometry& g, const ShuffleTable& t, float* cols, int64_t ld,
                    int64_t col0, const float* x, int64_t oh, int64_t ow) {
  const int64_t w = g.w, hw = g.h * g.w, kw = KW ? KW : g.kw;
  const __mmask16 m0 = tail_mask(w), mrow = tail_mask(ow), mv1 = tail_mask(G * ow - 16);
  const int rb1 = static_cast<int>(16 / ow);  // first row of the second vector
  // Lane l of vector v holds output column (16v + l) % ow of group row
  // (16v + l) / ow, which lives in register (that row - first row of v).
  alignas(64) int32_t ox[2][16], roff[2][16];
  for (int v = 0; v < 2; ++v)
    for (int l = 0; l < 16; ++l) {
      const int64_t q = 16 * v + l < G * ow ? 16 * v + l : G * ow - 1;
      ox[v][l] = static_cast<int32_t>(q % ow);
      roff[v][l] = static_cast<int32_t>(16 * (q / ow - (v ? rb1 : 0)));
    }
  constexpr int kRegs = KW ? KW : kMaxPlannedKw;
  __m512i row_idx[kRegs], idx0[kRegs], idx1[kRegs];
  const __m512i ox0 = _mm512_load_si512(ox[0]), ox1 = _mm512_load_si512(ox[1]);
  const __m512i ro0 = _mm512_load_si512(roff[0]), ro1 = _mm512_load_si512(roff[1]);
  for (int64_t kx = 0; kx < kw; ++kx) {
    row_idx[kx] = t.idx[kx][0];
    idx0[kx] = _mm512_add_epi32(_mm512_permutexvar_epi32(ox0, t.idx[kx][0]), ro0);
    idx1[kx] = _mm512_add_epi32(_mm512_permutexvar_epi32(ox1, t.idx[kx][0]), ro1);
  }
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * hw;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      float* taps = cols + (ch * g.kh + ky) * kw * ld + col0;
      int64_t oy = 0;
      for (; oy + G <= oh; oy += G) {
        vf r[G + 1];
        for (int i = 0; i < G; ++i) {
          const int64_t iy = source_row(g, oy + i, ky);
          r[i] = iy >= 0 ? _mm512_maskz_loadu_ps(m0, plane + iy * w) : vzero();
        }
        r[G] = vzero();
        float* d = taps + oy * ow;
        for (int64_t kx = 0; kx < kw; ++kx, d += ld) {
          vstore(d, _mm512_permutex2var_ps(r[0], idx0[kx], r[1]));
          _mm512_mask_storeu_ps(d + 16, mv1, _mm512_permutex2var_ps(r[rb1], idx1[kx], r[rb1 + 1]));
        }
      }
      for (; oy < oh; ++oy) {
        const int64_t iy = source_row(g, oy, ky);
        const vf r0 = iy >= 0 ? _mm512_maskz_loadu_ps(m0, plane + iy * w) : vzero();
        float* d = taps + oy * ow;
        for (int64_t kx = 0; kx < kw; ++kx, d += ld)
          _mm512_mask_storeu_ps(d, mrow, _mm512_permutex2var_ps(r0, row_idx[kx], vzero()));
      }
    }
  }
}

template <int NC>
void im2col_shuffle_kw(const Conv2dGeometry& g, const ShuffleTable& t, float* cols, int64_t ld,
                       int64_t col0, const float* x, int64_t oh, int64_t ow) {
  if (t.masked) return im2col_shuffle<NC, 0, true>(g, t, cols, ld, col0, x, oh, ow);
  if (NC == 1 && g.w < 16 && ow >= 8 && ow <= 10) {
    if (ow == 8)
      return g.kw == 5 ? im2col_grouped<4, 5>(g, t, cols, ld, col0, x, oh, ow)
                       : im2col_grouped<4, 0>(g, t, cols, ld, col0, x, oh, ow);
    return g.kw == 5 ? im2col_grouped<3, 5>(g, t, cols, ld, col0, x, oh, ow)
                     : im2col_grouped<3, 0>(g, t, cols, ld, col0, x, oh, ow);
  }
  switch (g.kw) {
    case 3: return im2col_shuffle<NC, 3, false>(g, t, cols, ld, col0, x, oh, ow);
    case 5: return im2col_shuffle<NC, 5, false>(g, t, cols, ld, col0, x, oh, ow);
    default: return im2col_shuffle<NC, 0, false>(g, t, cols, ld, col0, x, oh, ow);
  }
}

bool try_im2col_shuffle(const Conv2dGeometry& g, float* cols, int64_t ld, int64_t col0,
                        const float* x, int64_t oh, int64_t ow) {
  ShuffleTable t;
  if (!plan_im2col_shuffle(g, ow, &t)) return false;
  switch ((ow + 15) / 16) {
    case 1: im2col_shuffle_kw<1>(g, t, cols, ld, col0, x, oh, ow); break;
    case 2: im2col_shuffle_kw<2>(g, t, cols, ld, col0, x, oh, ow); break;
    case 3: im2col_shuffle_kw<3>(g, t, cols, ld, col0, x, oh, ow); break;
    default: im2col_shuffle_kw<4>(g, t, cols, ld, col0, x, oh, ow); break;
  }
  return true;
}

// col2im, stride 1, input and output rows of at most 32 floats: for each dx
// row (two registers), every tap (ky, kx) in ref's order adds its output row
// (loaded into one or two registers and permuted into the dx lanes it feeds),
// under a mask where some lane of the dx row gets nothing from the tap. Each
// tap feeds a pixel at most once (circular only when the output is no larger
// than the input), so the per-pixel order is ref's.
struct Col2imTable {
  __m512i idx[kMaxPlannedKw][2];
  __mmask16 mask[kMaxPlannedKw][2];
  bool masked;  // some lane of the dx row skips some tap
};

// dx lane l of chunk c, kernel column kx: input column ix = 16c + l < w takes
// output column ox = ix + pad - kx (wrapped when circular) if ox in [0, ow).
bool plan_col2im_shuffle(const Conv2dGeometry& g, int64_t oh, int64_t ow, Col2imTable* t) {
  const int64_t w = g.w;
  if (g.stride != 1 || w > 32 || ow > 32 || g.kw > kMaxPlannedKw) return false;
  if (g.circular && (ow > w || oh > g.h || g.pad > w || g.kw - 1 - g.pad > w)) return false;
  const __m512i vw = splat(w), zero = _mm512_setzero_si512(), vow = splat(ow);
  t->masked = false;
  for (int64_t c = 0; c < 2; ++c) {
    const __m512i ix = _mm512_add_epi32(iota16(), splat(16 * c));
    const __mmask16 in_row = _mm512_cmplt_epi32_mask(ix, vw);
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      __m512i ox = _mm512_add_epi32(ix, splat(g.pad - kx));
      if (g.circular) {
        ox = _mm512_mask_add_epi32(ox, _mm512_cmplt_epi32_mask(ox, zero), ox, vw);
        ox = _mm512_mask_sub_epi32(ox, _mm512_cmpge_epi32_mask(ox, vw), ox, vw);
      }
      const __mmask16 m = in_row & _mm512_cmplt_epu32_mask(ox, vow);  // unsigned: ox >= 0 too
      if (m != in_row) t->masked = true;
      t->idx[kx][c] = ox;
      t->mask[kx][c] = m;
    }
  }
  return true;
}

// NCI / NCO: vectors per dx row / per output row; KW == 0: width at run time.
// Masked == false: every tap feeds every pixel (lanes past w are never stored).
template <int NCI, int NCO, int KW, bool Masked>
struct Col2imShuffle {
  static constexpr int kRegs = KW ? KW : kMaxPlannedKw;
  const Conv2dGeometry& g;
  int64_t ld, oh, ow, kw;
  __mmask16 i0, i1, o0, o1;
  __m512i idx[kRegs][NCI];
  __mmask16 mask[kRegs][NCI];

  Col2imShuffle(const Conv2dGeometry& geo, const Col2imTable& t, int64_t ld_, int64_t oh_,
                int64_t ow_)
      : g(geo), ld(ld_), oh(oh_), ow(ow_), kw(KW ? KW : geo.kw) {
    i0 = tail_mask(g.w < 16 ? g.w : 16);
    i1 = tail_mask(g.w > 16 ? g.w - 16 : 0);
    o0 = tail_mask(ow < 16 ? ow : 16);
    o1 = tail_mask(ow > 16 ? ow - 16 : 0);
    for (int64_t kx = 0; kx < kw; ++kx)
      for (int c = 0; c < NCI; ++c) {
        idx[kx][c] = t.idx[kx][c];
        mask[kx][c] = t.mask[kx][c];
      }
  }

  // dx rows [iy0, iy0 + R) of one channel: R x NCI independent add chains.
  // Per pixel the adds come in ref's order (ky, kx): r only picks the
  // accumulator.
  template <int R>
  __attribute__((always_inline)) void rows(float* plane, const float* taps, int64_t iy0) const {
    const int64_t w = g.w;
    vf acc[R][NCI];
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_maskz_loadu_ps(i0, plane + (iy0 + r) * w);
      if (NCI > 1) acc[r][NCI - 1] = _mm512_maskz_loadu_ps(i1, plane + (iy0 + r) * w + 16);
    }
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const float* src[R];
      for (int r = 0; r < R; ++r) {
        int64_t oy = iy0 + r + g.pad - ky;
        if (g.circular) oy = wrap(oy, g.h);
        src[r] = oy < 0 || oy >= oh ? nullptr : taps + ky * kw * ld + oy * ow;
      }
      for (int64_t kx = 0; kx < kw; ++kx) {
        for (int r = 0; r < R; ++r) {
          if (!src[r]) continue;
          const float* s = src[r] + kx * ld;
          const vf d0 = _mm512_maskz_loadu_ps(o0, s);
          const vf d1 = NCO > 1 ? _mm512_maskz_loadu_ps(o1, s + 16) : d0;
          for (int c = 0; c < NCI; ++c) {
            const vf v = NCO > 1 ? _mm512_permutex2var_ps(d0, idx[kx][c], d1)
                                 : _mm512_permutexvar_ps(idx[kx][c], d0);
            acc[r][c] = Masked ? _mm512_mask_add_ps(acc[r][c], mask[kx][c], acc[r][c], v)
                               : _mm512_add_ps(acc[r][c], v);
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(plane + (iy0 + r) * w, i0, acc[r][0]);
      if (NCI > 1) _mm512_mask_storeu_ps(plane + (iy0 + r) * w + 16, i1, acc[r][NCI - 1]);
    }
  }

  void run(float* dx, const float* dcols, int64_t col0) const {
    constexpr int R = NCI > 1 ? 2 : 4;
    const int64_t h = g.h;
    for (int64_t ch = 0; ch < g.c; ++ch) {
      float* plane = dx + ch * h * g.w;
      const float* taps = dcols + ch * g.kh * kw * ld + col0;
      int64_t iy = 0;
      for (; iy + R <= h; iy += R) rows<R>(plane, taps, iy);
      for (; iy < h; ++iy) rows<1>(plane, taps, iy);
    }
  }
};

template <int NCI, int NCO, bool Masked>
void col2im_shuffle_kw(const Conv2dGeometry& g, const Col2imTable& t, float* dx,
                       const float* dcols, int64_t ld, int64_t col0, int64_t oh, int64_t ow) {
  switch (g.kw) {
    case 3: return Col2imShuffle<NCI, NCO, 3, Masked>(g, t, ld, oh, ow).run(dx, dcols, col0);
    case 5: return Col2imShuffle<NCI, NCO, 5, Masked>(g, t, ld, oh, ow).run(dx, dcols, col0);
    default: return Col2imShuffle<NCI, NCO, 0, true>(g, t, ld, oh, ow).run(dx, dcols, col0);
  }
}
template <int NCI, int NCO>
void col2im_shuffle_m(const Conv2dGeometry& g, const Col2imTable& t, float* dx,
                      const float* dcols, int64_t ld, int64_t col0, int64_t oh, int64_t ow) {
  if (t.masked) return col2im_shuffle_kw<NCI, NCO, true>(g, t, dx, dcols, ld, col0, oh, ow);
  col2im_shuffle_kw<NCI, NCO, false>(g, t, dx, dcols, ld, col0, oh, ow);
}
void col2im_shuffle_dispatch(const Conv2dGeometry& g, const Col2imTable& t, float* dx,
                             const float* dcols, int64_t ld, int64_t col0, int64_t oh,
                             int64_t ow) {
  const bool wide_in = g.w > 16, wide_out = ow > 16;
  if (wide_in && wide_out) return col2im_shuffle_m<2, 2>(g, t, dx, dcols, ld, col0, oh, ow);
  if (wide_in) return col2im_shuffle_m<2, 1>(g, t, dx, dcols, ld, col0, oh, ow);
  if (wide_out) return col2im_shuffle_m<1, 2>(g, t, dx, dcols, ld, col0, oh, ow);
  col2im_shuffle_m<1, 1>(g, t, dx, dcols, ld, col0, oh, ow);
}

// col2im for stride 1 by input rows: a 16-wide chunk of dx stays in a
// register while every (ky, kx, oy, ox) that reads it adds its value, in
// ref's order for each pixel, through masked loads that line the tap's output
// row up with the chunk. Four dx rows go together, so four independent add
// chains hide the add latency and their taps are one contiguous stretch of
// each cols row. Which lanes a tap feeds depends on (kx, chunk) only and is
// tabulated once per call.
constexpr int64_t kMaxChunks = 4;  // dx rows up to 64 wide
constexpr int kMaxLaneRuns = 4;    // wraps of one tap over one chunk
struct LaneRun {
  int64_t base;  // output column of lane 0
  __mmask16 mask;
};
struct LaneTable {
  int n[kMaxPlannedKw][kMaxChunks];
  LaneRun run[kMaxPlannedKw][kMaxChunks][kMaxLaneRuns];
};

bool plan_lanes(const Conv2dGeometry& g, int64_t ow, LaneTable* t) {
  const int64_t w = g.w, chunks = (w + 15) / 16;
  if (g.kw > kMaxPlannedKw || chunks > kMaxChunks) return false;
  for (int64_t kx = 0; kx < g.kw; ++kx)
    for (int64_t ci = 0; ci < chunks; ++ci) {
      const int64_t c0 = 16 * ci, lanes = w - c0 < 16 ? w - c0 : 16, tx = c0 + g.pad - kx;
      int64_t mx0 = 0, mx1 = 0;
      if (g.circular) {  // every wrap whose columns tx + mx*w + [0, lanes) meet [0, ow)
        mx0 = floor_div(-(tx + lanes - 1) + w - 1, w);
        mx1 = floor_div(ow - 1 - tx, w);
      }
      int& n = t->n[kx][ci];
      n = 0;
      for (int64_t mx = mx0; mx <= mx1; ++mx) {
        const int64_t base = tx + mx * w;
        const int64_t lo = base < 0 ? -base : 0, hi = ow - base < lanes ? ow - base : lanes;
        if (lo >= hi) continue;
        if (n == kMaxLaneRuns) return false;
        t->run[kx][ci][n++] = {base, static_cast<__mmask16>(tail_mask(hi) & ~tail_mask(lo))};
      }
    }
  return true;
}

void col2im_stride1(const Conv2dGeometry& g, const LaneTable& t, float* dx, const float* dcols,
                    int64_t ld, int64_t col0, int64_t oh, int64_t ow) {
  constexpr int64_t kRows = 4;
  const int64_t h = g.h, w = g.w;
  for (int64_t ch = 0; ch < g.c; ++ch) {
    float* plane = dx + ch * h * w;
    const float* taps = dcols + ch * g.kh * g.kw * ld + col0;
    for (int64_t iy0 = 0; iy0 < h; iy0 += kRows) {
      const int64_t rows = h - iy0 < kRows ? h - iy0 : kRows;
      for (int64_t ci = 0; 16 * ci < w; ++ci) {
        const int64_t lanes = w - 16 * ci < 16 ? w - 16 * ci : 16;
        vf acc[kRows];
        for (int64_t r = 0; r < rows; ++r)
          acc[r] = vload_tail(plane + (iy0 + r) * w + 16 * ci, lanes);
        // Per pixel this adds in ref's order (ky, kx, oy, ox): r only picks
        // the accumulator, and oy and ox ascend within each (ky, kx).
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          const float* tap_row = taps + ky * g.kw * ld;
          for (int64_t r = 0; r < rows; ++r) {
            // Output rows oy = ty + my*h in [0, oh) read dx row iy0 + r.
            const int64_t ty = iy0 + r + g.pad - ky;
            int64_t my0 = 0, my1 = 0;
            if (g.circular) {
              my0 = floor_div(-ty + h - 1, h);
              my1 = floor_div(oh - 1 - ty, h);
            } else if (ty < 0 || ty >= oh) {
              continue;
            }
            vf a = acc[r];
            const float* tap = tap_row;
            for (int64_t kx = 0; kx < g.kw; ++kx, tap += ld) {
              const int nruns = t.n[kx][ci];
              const LaneRun* runs = t.run[kx][ci];
              for (int64_t my = my0; my <= my1; ++my) {
                const float* orow = tap + (ty + my * h) * ow;
                for (int k = 0; k < nruns; ++k)
                  a = _mm512_mask_add_ps(
                      a, runs[k].mask, a,
                      _mm512_maskz_loadu_ps(runs[k].mask, offset_ptr(orow, runs[k].base)));
              }
            }
            acc[r] = a;
          }
        }
        for (int64_t r = 0; r < rows; ++r)
          vstore_tail(plane + (iy0 + r) * w + 16 * ci, acc[r], lanes);
      }
    }
  }
}
#endif

}  // namespace

void im2col_f32(const Conv2dGeometry& g, float* cols, int64_t ld, int64_t col0, const float* x) {
  const int64_t oh = g.out_h(), ow = g.out_w(), hw = g.h * g.w;
  if (oh <= 0 || ow <= 0) return;
  if (is_pointwise(g)) {  // each cols row is one input plane
    for (int64_t ch = 0; ch < g.c; ++ch) copy_floats(cols + ch * ld + col0, x + ch * hw, hw);
    return;
  }
#if defined(__AVX512F__)
  if (try_im2col_shuffle(g, cols, ld, col0, x, oh, ow)) return;
#endif
  RowPlan plans[kMaxPlannedKw];
  bool planned[kMaxPlannedKw];
  for (int64_t kx = 0; kx < g.kw && kx < kMaxPlannedKw; ++kx)
    planned[kx] = plan_row(g, kx, ow, &plans[kx]);

  for (int64_t ch = 0; ch < g.c; ++ch) {
    const float* plane = x + ch * hw;
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        float* row = cols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        RowPlan local;
        const RowPlan* plan = nullptr;
        if (kx < kMaxPlannedKw) {
          if (planned[kx]) plan = &plans[kx];
        } else if (plan_row(g, kx, ow, &local)) {
          plan = &local;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          float* dst = row + oy * ow;
          const int64_t iy = source_row(g, oy, ky);
          if (iy < 0) {
            zero_floats(dst, ow);
          } else if (plan) {
            gather_row(dst, plane + iy * g.w, *plan, g.stride);
          } else {
            for (int64_t ox = 0; ox < ow; ++ox) {
              const int64_t ix = source_col(g, ox, kx);
              dst[ox] = ix < 0 ? 0.0f : plane[iy * g.w + ix];
            }
          }
        }
      }
  }
}

void col2im_f32(const Conv2dGeometry& g, float* dx, const float* dcols, int64_t ld, int64_t col0) {
  const int64_t oh = g.out_h(), ow = g.out_w(), hw = g.h * g.w;
  if (oh <= 0 || ow <= 0) return;
  if (is_pointwise(g)) {
    for (int64_t ch = 0; ch < g.c; ++ch) add_floats(dx + ch * hw, dcols + ch * ld + col0, hw);
    return;
  }
#if defined(__AVX512F__)
  {
    Col2imTable t;
    if (plan_col2im_shuffle(g, oh, ow, &t)) {
      col2im_shuffle_dispatch(g, t, dx, dcols, ld, col0, oh, ow);
      return;
    }
  }
  if (g.stride == 1) {
    LaneTable table;
    if (plan_lanes(g, ow, &table)) return col2im_stride1(g, table, dx, dcols, ld, col0, oh, ow);
  }
#endif
  RowPlan plans[kMaxPlannedKw];
  bool planned[kMaxPlannedKw];
  for (int64_t kx = 0; kx < g.kw && kx < kMaxPlannedKw; ++kx)
    planned[kx] = plan_row(g, kx, ow, &plans[kx]);

  for (int64_t ch = 0; ch < g.c; ++ch) {
    float* plane = dx + ch * hw;
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const float* row = dcols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        RowPlan local;
        const RowPlan* plan = nullptr;
        if (kx < kMaxPlannedKw) {
          if (planned[kx]) plan = &plans[kx];
        } else if (plan_row(g, kx, ow, &local)) {
          plan = &local;
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t iy = source_row(g, oy, ky);
          if (iy < 0) continue;
          const float* src = row + oy * ow;
          if (plan) {
            scatter_row(plane + iy * g.w, src, *plan, g.stride);
          } else {
            for (int64_t ox = 0; ox < ow; ++ox) {
              const int64_t ix = source_col(g, ox, kx);
              if (ix >= 0) plane[iy * g.w + ix] += src[ox];
            }
          }
        }
      }
  }
}

}  // namespace pare::kernels
