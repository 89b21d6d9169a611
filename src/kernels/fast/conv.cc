// Fast convolution lowering: im2col and its adjoint col2im (contracts in kernels.h).
//
// A row of cols is one (channel, ky, kx) tap; within it, output row oy reads
// input row iy = oy*stride - pad + ky at columns ix = ox*stride - pad + kx.
// Paths, first match wins:
//   1x1, stride 1, no padding   whole planes: one copy / one vector add each.
//   AVX-512 im2col, stride 1, no padding, output rows < 16 wide (LeNet conv2):
//                               16 outputs per permute of two loads, full
//                               64-byte stores.
//   AVX-512 col2im, stride 1 (any padding, circular too): dx chunks held in
//                               registers while all taps add into them.
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

// Stride 1, no padding, small output rows (LeNet's conv2: 10x10 outputs):
// 16 consecutive outputs of a tap come from input offsets that span at most
// 32 floats, so two masked loads and one permute build a full vector and
// every store is 64 bytes. The index vectors depend on the geometry only and
// are built once per call.
constexpr int64_t kMaxPermuteChunks = 64;  // outputs per image <= 1024

struct PermutePlan {
  int64_t chunks = 0;
  int64_t start[kMaxPermuteChunks];  // input offset of the chunk's first output
  int64_t span[kMaxPermuteChunks];   // input floats from start to its last output
  __m512i idx[kMaxPermuteChunks];
};

bool plan_permute(const Conv2dGeometry& g, int64_t oh, int64_t ow, PermutePlan* plan) {
  if (g.stride != 1 || g.pad != 0) return false;
  const int64_t p = oh * ow;
  plan->chunks = (p + 15) / 16;
  if (plan->chunks > kMaxPermuteChunks) return false;
  for (int64_t j = 0; j < plan->chunks; ++j) {
    alignas(64) int32_t lanes[16] = {};
    const int64_t q0 = 16 * j, start = (q0 / ow) * g.w + q0 % ow;
    int64_t last = 0;
    for (int64_t l = 0; l < 16 && q0 + l < p; ++l) {
      const int64_t q = q0 + l, off = (q / ow) * g.w + q % ow - start;
      lanes[l] = static_cast<int32_t>(off);
      last = off;
    }
    if (last >= 32) return false;
    plan->start[j] = start;
    plan->span[j] = last + 1;
    plan->idx[j] = _mm512_load_si512(lanes);
  }
  return true;
}

void im2col_permute(const Conv2dGeometry& g, const PermutePlan& plan, float* cols, int64_t ld,
                    int64_t col0, const float* x, int64_t p) {
  for (int64_t ch = 0; ch < g.c; ++ch)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const float* src = x + ch * g.h * g.w + ky * g.w + kx;
        float* row = cols + ((ch * g.kh + ky) * g.kw + kx) * ld + col0;
        for (int64_t j = 0; j < plan.chunks; ++j) {
          const float* s = src + plan.start[j];
          const int64_t span = plan.span[j];
          const vf lo = vload_tail(s, span < 16 ? span : 16);
          const vf hi = vload_tail(s + 16, span > 16 ? span - 16 : 0);
          const vf v = _mm512_permutex2var_ps(lo, plan.idx[j], hi);
          const int64_t r = p - 16 * j;
          if (r >= 16)
            vstore(row + 16 * j, v);
          else
            vstore_tail(row + 16 * j, v, r);
        }
      }
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
  if (g.stride == 1 && g.pad == 0 && ow < 16) {
    PermutePlan permute;
    if (plan_permute(g, oh, ow, &permute))
      return im2col_permute(g, permute, cols, ld, col0, x, oh * ow);
  }
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
