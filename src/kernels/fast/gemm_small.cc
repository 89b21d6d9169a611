// GEMM for the small products of a per-image convolution (contract in kernels.h).
//
// Legend: c: (M, N) = alpha op(a) (M, K) op(b) (K, N) + beta c. The products it
// is built for, per image of a small convolution (P = OH*OW, Kc = C*KH*KW):
//   forward      y_i: (OC, P)   = w: (OC, Kc) cols_i: (Kc, P)        NN, M small, N long
//   input grad   dcols: (Kc, P) = w^T: (Kc, OC) dy_i: (OC, P)        TN, K small, N long
//   weight grad  dw: (OC, Kc)  += dy_i: (OC, P) cols_i^T: (P, Kc)    NT, K long
// Operands are read where they lie, never packed: at these sizes a general
// BLAS spends as long copying panels as multiplying them.
//
// NN and TN (b row-major): c is covered by register tiles of MR rows x NV
// vectors, with up to 24 accumulators with AVX-512 (8 rows x 3 vectors = 48
// columns; fewer rows get more vectors, so the FMAs keep enough independent
// chains; 24 beat 16 by 10-20% on the Life shapes in kernels_bench). Each
// step along K broadcasts MR elements of op(a) and multiplies them into NV
// vectors of one row of b. Row blocks are balanced (M = 9 runs as 5 + 4, not
// 8 + 1); the last columns of a row use a masked tile (AVX-512) or full
// vectors then scalar columns (elsewhere).
// NT (b stored (N, K)): tiles of up to 6 x 4 entries of c (AVX-512; 2 x 4
// with AVX2), each a dot product of a row of a and a row of b, vectorised
// along K (masked tail with AVX-512, scalar tail elsewhere) and reduced
// horizontally at the end. Row blocks are balanced as for NN.
// TT: plain loops (pare never asks for it).
//
// Deterministic: the order of every sum depends only on the shapes and the
// build's vector width. Allocates nothing; safe to call concurrently on
// disjoint outputs.
#include <algorithm>

#include "pare/kernels/fast/simd.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {

using namespace simd;

namespace {

#if defined(__AVX512F__)
constexpr int kMaxMr = 8;
constexpr int kAccBudget = 24;  // of 32 vector registers
#elif defined(PARE_SIMD)
constexpr int kMaxMr = 6;
constexpr int kAccBudget = 12;  // of 16 vector registers
#else
constexpr int kMaxMr = 4;
constexpr int kAccBudget = 16;
#endif

// Vectors per tile row for an MR-row tile: as many as the accumulator budget
// allows, at most 8.
constexpr int nv_for(int mr) { return std::clamp(kAccBudget / mr, 1, 8); }

// c = alpha acc + beta c, with c not read when beta is 0.
inline float finish(float acc, const float* c, float alpha, float beta) {
  const float v = alpha * acc;
  return beta == 0.0f ? v : fmadd(beta, *c, v);
}

#if defined(PARE_SIMD)
inline vf finish_v(vf acc, const float* c, float alpha, float beta) {
  const vf v = vmul(vset1(alpha), acc);
  return beta == 0.0f ? v : vfmadd(vset1(beta), vload(c), v);
}
#endif
#if defined(__AVX512F__)
inline vf finish_tail(vf acc, const float* c, int64_t r, float alpha, float beta) {
  const vf v = vmul(vset1(alpha), acc);
  return beta == 0.0f ? v : vfmadd(vset1(beta), vload_tail(c, r), v);
}
#endif

// ---- NN / TN: op(a)(i, l) = a[i * ars + l * acs], b: (K, N) row-major -------------------

struct NnArgs {
  int64_t k;
  float* c;
  int64_t ldc;
  const float* a;
  int64_t ars, acs;  // strides of op(a) between rows and between columns
  const float* b;
  int64_t ldb;
  float alpha, beta;
};

#if defined(PARE_SIMD)
// c[0, MR) x [0, NV * kLanes) of the tile at (a, b, c). With kTail the last
// vector holds only `tail` columns (AVX-512 masks; tail in [1, kLanes]).
template <int MR, int NV, bool kTail>
inline void nn_tile(const NnArgs& g, const float* a, const float* b, float* c, int64_t tail) {
  vf acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vzero();
  for (int64_t l = 0; l < g.k; ++l) {
    const float* brow = b + l * g.ldb;
    vf bv[NV];
    for (int v = 0; v < NV; ++v) {
#if defined(__AVX512F__)
      bv[v] = kTail && v == NV - 1 ? vload_tail(brow + v * kLanes, tail) : vload(brow + v * kLanes);
#else
      bv[v] = vload(brow + v * kLanes);
#endif
    }
    const float* al = a + l * g.acs;
    for (int r = 0; r < MR; ++r) {
      const vf ar = vset1(al[r * g.ars]);
      for (int v = 0; v < NV; ++v) acc[r][v] = vfmadd(ar, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* crow = c + r * g.ldc;
    for (int v = 0; v < NV; ++v) {
#if defined(__AVX512F__)
      if (kTail && v == NV - 1) {
        vstore_tail(crow + v * kLanes,
                    finish_tail(acc[r][v], crow + v * kLanes, tail, g.alpha, g.beta), tail);
        continue;
      }
#endif
      vstore(crow + v * kLanes, finish_v(acc[r][v], crow + v * kLanes, g.alpha, g.beta));
    }
  }
}

// The last `cols` < NV * kLanes columns with a tile of T = ceil(cols / kLanes)
// vectors (T <= NV).
template <int MR, int T>
inline void nn_tail(const NnArgs& g, const float* a, const float* b, float* c, int64_t cols) {
  if constexpr (T >= 1) {
    if ((cols + kLanes - 1) / kLanes < T) return nn_tail<MR, T - 1>(g, a, b, c, cols);
#if defined(__AVX512F__)
    nn_tile<MR, T, true>(g, a, b, c, cols - (T - 1) * kLanes);
#else
    nn_tile<MR, T, false>(g, a, b, c, 0);  // cols >= T * kLanes here
#endif
  }
}
#endif

// Columns [j0, j1) of MR rows, one at a time (the scalar remainder).
template <int MR>
inline void nn_scalar_cols(const NnArgs& g, const float* a, int64_t j0, int64_t j1, float* c) {
  for (int64_t j = j0; j < j1; ++j) {
    float acc[MR] = {};
    for (int64_t l = 0; l < g.k; ++l) {
      const float bl = g.b[l * g.ldb + j];
      for (int r = 0; r < MR; ++r) acc[r] = fmadd(a[r * g.ars + l * g.acs], bl, acc[r]);
    }
    for (int r = 0; r < MR; ++r)
      c[r * g.ldc + j] = finish(acc[r], &c[r * g.ldc + j], g.alpha, g.beta);
  }
}

// All N columns of the MR rows starting at a (row of op(a)) and c.
template <int MR>
void nn_rows(const NnArgs& g, int64_t n, const float* a, float* c) {
  int64_t j = 0;
#if defined(PARE_SIMD)
  constexpr int NV = nv_for(MR);
  constexpr int64_t kWidth = int64_t{NV} * kLanes;
  for (; j + kWidth <= n; j += kWidth) nn_tile<MR, NV, false>(g, a, g.b + j, c + j, 0);
#if defined(__AVX512F__)
  if (j < n) nn_tail<MR, NV>(g, a, g.b + j, c + j, n - j);
  return;
#else
  const int64_t vec_cols = (n - j) / kLanes * kLanes;
  if (vec_cols > 0) nn_tail<MR, NV>(g, a, g.b + j, c + j, vec_cols);
  j += vec_cols;
#endif
#endif
  nn_scalar_cols<MR>(g, a, j, n, c);
}

// nn_rows<mr> for a runtime mr in [1, MR].
template <int MR>
void nn_rows_dispatch(int64_t mr, const NnArgs& g, int64_t n, const float* a, float* c) {
  if constexpr (MR >= 1) {
    if (mr == MR) return nn_rows<MR>(g, n, a, c);
    nn_rows_dispatch<MR - 1>(mr, g, n, a, c);
  }
}

void gemm_nn(int64_t m, int64_t n, const NnArgs& g) {
  // Balanced row blocks of at most kMaxMr rows.
  const int64_t blocks = (m + kMaxMr - 1) / kMaxMr;
  for (int64_t t = 0; t < blocks; ++t) {
    const int64_t i0 = m * t / blocks, i1 = m * (t + 1) / blocks;
    nn_rows_dispatch<kMaxMr>(i1 - i0, g, n, g.a + i0 * g.ars, g.c + i0 * g.ldc);
  }
}

// ---- NT: c(i, j) = sum_l a[i * lda + l] b[j * ldb + l] ----------------------------------

// Tile of c: up to kNtMaxRows rows of a against kNtCols rows of b.
#if defined(__AVX512F__)
constexpr int kNtMaxRows = 6;  // 24 accumulators + 6 + 1 operands of 32 registers
#elif defined(PARE_SIMD)
constexpr int kNtMaxRows = 2;   // 8 accumulators + 2 + 1 operands of 16 registers
#else
constexpr int kNtMaxRows = 4;
#endif
constexpr int kNtCols = 4;

#if defined(__AVX512F__)
// Lane sums of 16 vectors: out[s] = sum of the lanes of v[slot(s)] where the
// slots are permuted so that the result comes out in natural order (each
// stage halves the lanes per vector and doubles the vectors per register).
inline vf reduce16(const vf* v) {
  // Stage 1: 512 -> 256-bit halves; t[j] = (v[j] halves, v[j + 8] halves).
  vf t[8];
  for (int j = 0; j < 8; ++j)
    t[j] = vadd(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44),
                _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
  // Stage 2: quarters of u[j] hold 4 partials of v[j], v[j + 8], v[j + 4], v[j + 12].
  vf u[4];
  for (int j = 0; j < 4; ++j)
    u[j] = vadd(_mm512_shuffle_f32x4(t[j], t[j + 4], 0x88),
                _mm512_shuffle_f32x4(t[j], t[j + 4], 0xDD));
  // Stage 3: pairs within each quarter.
  vf w[2];
  for (int j = 0; j < 2; ++j)
    w[j] = vadd(_mm512_shuffle_ps(u[j], u[j + 2], _MM_SHUFFLE(1, 0, 1, 0)),
                _mm512_shuffle_ps(u[j], u[j + 2], _MM_SHUFFLE(3, 2, 3, 2)));
  // Stage 4: lane e of quarter q is v[{0, 2, 1, 3}[e] + {0, 8, 4, 12}[q]].
  return vadd(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
// Slot in reduce16's input of entry (r, j) of a 4 x 4 tile, so that its sum
// lands in lane 4 r + j.
constexpr int kReduceSlot[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};
#endif

#if defined(PARE_SIMD)
// v, held in a register: without this GCC folds the load of a vector into
// each of the FMAs that use it, as a memory operand, which multiplies the
// loads of the NT tile and makes it load-bound (85 instead of 175 GFLOP/s).
inline vf pin(vf v) {
#if defined(__AVX512F__)
  asm("" : "+v"(v));
#else
  asm("" : "+x"(v));
#endif
  return v;
}

// Sums of the lanes of acc[r][j] into sum[r][j], rows in groups of four.
template <int MR, int NR>
[[gnu::always_inline]] inline void reduce_tile(vf (&acc)[MR][NR], float (&sum)[MR][NR]) {
#if defined(__AVX512F__)
  for (int r0 = 0; r0 < MR; r0 += 4) {
    vf slots[16];
    for (int s = 0; s < 16; ++s) slots[s] = vzero();
    for (int r = r0; r < MR && r < r0 + 4; ++r)
      for (int j = 0; j < NR; ++j) slots[kReduceSlot[(r - r0) * 4 + j]] = acc[r][j];
    alignas(64) float lanes[16];
    vstore(lanes, reduce16(slots));
    for (int r = r0; r < MR && r < r0 + 4; ++r)
      for (int j = 0; j < NR; ++j) sum[r][j] = lanes[(r - r0) * 4 + j];
  }
#else
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) {
      alignas(64) float lanes[kLanes];
      vstore(lanes, acc[r][j]);
      // Pairwise tree over the lanes, in a fixed order.
      for (int width = kLanes / 2; width >= 1; width /= 2)
        for (int e = 0; e < width; ++e) lanes[e] += lanes[e + width];
      sum[r][j] = lanes[0];
    }
#endif
}
#endif

template <int MR, int NR>
void nt_tile(int64_t k, float* c, int64_t ldc, const float* a, int64_t lda, const float* b,
             int64_t ldb, float alpha, float beta) {
  float sum[MR][NR];
  int64_t l = 0;
#if defined(PARE_SIMD)
  vf acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = vzero();
  for (; l + kLanes <= k; l += kLanes) {
    vf av[MR];
    for (int r = 0; r < MR; ++r) av[r] = pin(vload(a + r * lda + l));
    for (int j = 0; j < NR; ++j) {
      const vf bv = pin(vload(b + j * ldb + l));
      for (int r = 0; r < MR; ++r) acc[r][j] = vfmadd(av[r], bv, acc[r][j]);
    }
  }
#if defined(__AVX512F__)
  if (l < k) {
    const int64_t rem = k - l;
    vf av[MR];
    for (int r = 0; r < MR; ++r) av[r] = vload_tail(a + r * lda + l, rem);
    for (int j = 0; j < NR; ++j) {
      const vf bv = vload_tail(b + j * ldb + l, rem);
      for (int r = 0; r < MR; ++r) acc[r][j] = vfmadd(av[r], bv, acc[r][j]);
    }
    l = k;
  }
#endif
  reduce_tile<MR, NR>(acc, sum);
#else
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) sum[r][j] = 0.0f;
#endif
  for (; l < k; ++l)  // the scalar tail (no masked loads)
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) sum[r][j] = fmadd(a[r * lda + l], b[j * ldb + l], sum[r][j]);
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) c[r * ldc + j] = finish(sum[r][j], &c[r * ldc + j], alpha, beta);
}

template <int MR>
void nt_rows(int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
             const float* b, int64_t ldb, float alpha, float beta) {
  int64_t j = 0;
  for (; j + kNtCols <= n; j += kNtCols)
    nt_tile<MR, kNtCols>(k, c + j, ldc, a, lda, b + j * ldb, ldb, alpha, beta);
  switch (n - j) {
    case 1:
      nt_tile<MR, 1>(k, c + j, ldc, a, lda, b + j * ldb, ldb, alpha, beta);
      break;
    case 2:
      nt_tile<MR, 2>(k, c + j, ldc, a, lda, b + j * ldb, ldb, alpha, beta);
      break;
    case 3:
      nt_tile<MR, 3>(k, c + j, ldc, a, lda, b + j * ldb, ldb, alpha, beta);
      break;
    default:
      break;
  }
}

// nt_rows<mr> for a runtime mr in [1, MR].
template <int MR>
void nt_rows_dispatch(int64_t mr, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                      int64_t lda, const float* b, int64_t ldb, float alpha, float beta) {
  if constexpr (MR >= 1) {
    if (mr == MR) return nt_rows<MR>(n, k, c, ldc, a, lda, b, ldb, alpha, beta);
    nt_rows_dispatch<MR - 1>(mr, n, k, c, ldc, a, lda, b, ldb, alpha, beta);
  }
}

void gemm_nt(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
             const float* b, int64_t ldb, float alpha, float beta) {
  // Balanced row blocks of at most kNtMaxRows rows.
  const int64_t blocks = (m + kNtMaxRows - 1) / kNtMaxRows;
  for (int64_t t = 0; t < blocks; ++t) {
    const int64_t i0 = m * t / blocks, i1 = m * (t + 1) / blocks;
    nt_rows_dispatch<kNtMaxRows>(i1 - i0, n, k, c + i0 * ldc, ldc, a + i0 * lda, lda, b, ldb, alpha,
                                 beta);
  }
}

// ---- TT: c(i, j) = sum_l a[l * lda + i] b[j * ldb + l] ----------------------------------
void gemm_tt(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
             const float* b, int64_t ldb, float alpha, float beta) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t l = 0; l < k; ++l) acc = fmadd(a[l * lda + i], b[j * ldb + l], acc);
      c[i * ldc + j] = finish(acc, &c[i * ldc + j], alpha, beta);
    }
}

}  // namespace

void gemm_f32__small(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                     int64_t lda, const float* b, int64_t ldb, GemmParams p) {
  if (m <= 0 || n <= 0) return;
  if (!p.trans_b) {
    const NnArgs g{.k = k,
                   .c = c,
                   .ldc = ldc,
                   .a = a,
                   .ars = p.trans_a ? 1 : lda,
                   .acs = p.trans_a ? lda : 1,
                   .b = b,
                   .ldb = ldb,
                   .alpha = p.alpha,
                   .beta = p.beta};
    gemm_nn(m, n, g);
  } else if (!p.trans_a) {
    gemm_nt(m, n, k, c, ldc, a, lda, b, ldb, p.alpha, p.beta);
  } else {
    gemm_tt(m, n, k, c, ldc, a, lda, b, ldb, p.alpha, p.beta);
  }
}

}  // namespace pare::kernels
