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
// The epilogue (bias, ReLU, mask; kernels.h) is applied to each tile's
// registers before they are stored, in the same operations as the separate
// kernels it replaces (add_channels_f32, relu_f32, relu_mask_f32), so the
// results are the same bits. sum_a is summed alongside the NT product (the
// first column tile of each row block also sums its rows of a; the other
// transposes sum a in a plain loop, as pare does not ask for it there).
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

// The epilogue of a block of rows: bias and mask point at the block's first
// row (mask at its first column too); null when off.
struct Epi {
  const float* bias = nullptr;
  const float* mask = nullptr;
  int64_t ldm = 0;
  bool relu = false;
  bool any() const { return bias || mask || relu; }
  Epi at(int64_t i, int64_t j) const {
    Epi e = *this;
    if (bias) e.bias += i;
    if (mask) e.mask += i * ldm + j;
    return e;
  }
};

// What the NN tile does with its accumulators, fixed at compile time so that
// the store of each vector is straight-line code (with the flags tested per
// vector, the epilogue had as many instructions as the FMAs of a K = 8
// product). All but kGeneral assume alpha 1 and beta 0, where
// finish(acc) = acc exactly, so every kind gives the same bits as kGeneral.
enum EpiKind : int {
  kGeneral,   // any alpha, beta and epilogue, tested at run time
  kStore,     // c = acc
  kBias,      // c = acc + bias
  kBiasRelu,  // c = max(acc + bias, 0)
  kRelu,      // c = max(acc, 0)
  kMask,      // c = mask > 0 ? acc : 0
};

EpiKind epi_kind(float alpha, float beta, const Epi& e) {
  if (alpha != 1.0f || beta != 0.0f) return kGeneral;
  if (e.mask) return e.bias || e.relu ? kGeneral : kMask;
  if (e.bias) return e.relu ? kBiasRelu : kBias;
  return e.relu ? kRelu : kStore;
}

// The epilogue on entry (r, j) of the block.
inline float epilogue(float v, const Epi& e, int64_t r, int64_t j) {
  if (e.bias) v += e.bias[r];
  if (e.relu) v = v > 0.0f ? v : 0.0f;
  if (e.mask && !(e.mask[r * e.ldm + j] > 0.0f)) v = 0.0f;
  return v;
}

// sum_a[i] += sum over l of a[i * ars + l * acs], plainly.
void sum_rows_plain(int64_t m, int64_t k, float* sum_a, const float* a, int64_t ars, int64_t acs) {
  for (int64_t i = 0; i < m; ++i) {
    float acc = 0.0f;
    for (int64_t l = 0; l < k; ++l) acc += a[i * ars + l * acs];
    sum_a[i] += acc;
  }
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
#if defined(PARE_SIMD)
// The epilogue on a vector of row r at column j of the block (`tail` lanes
// when kTail).
template <bool kTail>
inline vf epilogue_v(vf v, const Epi& e, int r, int64_t j, int64_t tail) {
  if (e.bias) v = vadd(v, vset1(e.bias[r]));
  if (e.relu) v = vmax(v, vzero());  // 0 for NaN and -0, as relu_f32
  if (e.mask) {
    const float* mp = e.mask + r * e.ldm + j;
#if defined(__AVX512F__)
    const vf mv = kTail ? vload_tail(mp, tail) : vload(mp);
#else
    (void)tail;
    const vf mv = vload(mp);
#endif
    v = vselect(vgt(mv, vzero()), v, vzero());
  }
  return v;
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
  Epi epi;  // at row 0, column 0
};

#if defined(PARE_SIMD)
// c[0, MR) x [0, NV * kLanes) of the tile at (a, b, c). With kTail the last
// vector holds only `tail` columns (AVX-512 masks; tail in [1, kLanes]).
template <int MR, int NV, bool kTail, int kKind>
inline void nn_tile(const NnArgs& g, const float* a, const float* b, float* c, const Epi& e,
                    int64_t tail) {
  vf acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = vzero();
  for (int64_t l = 0; l < g.k; ++l) {
    const float* brow = b + l * g.ldb;
    vf bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
#if defined(__AVX512F__)
      bv[v] = kTail && v == NV - 1 ? vload_tail(brow + v * kLanes, tail) : vload(brow + v * kLanes);
#else
      bv[v] = vload(brow + v * kLanes);
#endif
    }
    const float* al = a + l * g.acs;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const vf ar = vset1(al[r * g.ars]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = vfmadd(ar, bv[v], acc[r][v]);
    }
  }
  const bool epi = e.any();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* crow = c + r * g.ldc;
    [[maybe_unused]] vf bias_r;
    if constexpr (kKind == kBias || kKind == kBiasRelu) bias_r = vset1(e.bias[r]);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const bool tail_vec = kTail && v == NV - 1;
      vf out = acc[r][v];
      if constexpr (kKind == kGeneral) {
#if defined(__AVX512F__)
        if (tail_vec) {
          out = finish_tail(out, crow + v * kLanes, tail, g.alpha, g.beta);
          if (epi) out = epilogue_v<true>(out, e, r, v * kLanes, tail);
        } else
#endif
        {
          out = finish_v(out, crow + v * kLanes, g.alpha, g.beta);
          if (epi) out = epilogue_v<false>(out, e, r, v * kLanes, 0);
        }
      } else {
        if constexpr (kKind == kBias || kKind == kBiasRelu) out = vadd(out, bias_r);
        if constexpr (kKind == kBiasRelu || kKind == kRelu) out = vmax(out, vzero());
        if constexpr (kKind == kMask) {
          const float* mp = e.mask + r * e.ldm + v * kLanes;
#if defined(__AVX512F__)
          const vf mv = tail_vec ? vload_tail(mp, tail) : vload(mp);
#else
          const vf mv = vload(mp);
#endif
          out = vselect(vgt(mv, vzero()), out, vzero());
        }
      }
#if defined(__AVX512F__)
      if (tail_vec) {
        vstore_tail(crow + v * kLanes, out, tail);
        continue;
      }
#endif
      vstore(crow + v * kLanes, out);
    }
  }
}

// The last `cols` < NV * kLanes columns with a tile of T = ceil(cols / kLanes)
// vectors (T <= NV).
template <int MR, int T, int kKind>
inline void nn_tail(const NnArgs& g, const float* a, const float* b, float* c, const Epi& e,
                    int64_t cols) {
  if constexpr (T >= 1) {
    if ((cols + kLanes - 1) / kLanes < T) return nn_tail<MR, T - 1, kKind>(g, a, b, c, e, cols);
#if defined(__AVX512F__)
    nn_tile<MR, T, true, kKind>(g, a, b, c, e, cols - (T - 1) * kLanes);
#else
    nn_tile<MR, T, false, kKind>(g, a, b, c, e, 0);  // cols >= T * kLanes here
#endif
  }
}
#endif

// Columns [j0, j1) of MR rows, one at a time (the scalar remainder).
template <int MR>
inline void nn_scalar_cols(const NnArgs& g, const float* a, int64_t j0, int64_t j1, float* c,
                           const Epi& e) {
  for (int64_t j = j0; j < j1; ++j) {
    float acc[MR] = {};
    for (int64_t l = 0; l < g.k; ++l) {
      const float bl = g.b[l * g.ldb + j];
      for (int r = 0; r < MR; ++r) acc[r] = fmadd(a[r * g.ars + l * g.acs], bl, acc[r]);
    }
    for (int r = 0; r < MR; ++r)
      c[r * g.ldc + j] = epilogue(finish(acc[r], &c[r * g.ldc + j], g.alpha, g.beta), e, r, j);
  }
}

// All N columns of the MR rows starting at a (row of op(a)) and c; e is the
// epilogue at the block's first row.
template <int MR, int kKind>
void nn_rows(const NnArgs& g, int64_t n, const float* a, float* c, const Epi& e) {
  int64_t j = 0;
#if defined(PARE_SIMD)
  constexpr int NV = nv_for(MR);
  constexpr int64_t kWidth = int64_t{NV} * kLanes;
  for (; j + kWidth <= n; j += kWidth)
    nn_tile<MR, NV, false, kKind>(g, a, g.b + j, c + j, e.at(0, j), 0);
#if defined(__AVX512F__)
  if (j < n) nn_tail<MR, NV, kKind>(g, a, g.b + j, c + j, e.at(0, j), n - j);
  return;
#else
  const int64_t vec_cols = (n - j) / kLanes * kLanes;
  if (vec_cols > 0) nn_tail<MR, NV, kKind>(g, a, g.b + j, c + j, e.at(0, j), vec_cols);
  j += vec_cols;
#endif
#endif
  nn_scalar_cols<MR>(g, a, j, n, c, e);
}

// nn_rows<mr, kKind> for a runtime mr in [1, MR].
template <int MR, int kKind>
void nn_rows_dispatch(int64_t mr, const NnArgs& g, int64_t n, const float* a, float* c,
                      const Epi& e) {
  if constexpr (MR >= 1) {
    if (mr == MR) return nn_rows<MR, kKind>(g, n, a, c, e);
    nn_rows_dispatch<MR - 1, kKind>(mr, g, n, a, c, e);
  }
}

template <int kKind>
void gemm_nn_kind(int64_t m, int64_t n, const NnArgs& g) {
  // Balanced row blocks of at most kMaxMr rows.
  const int64_t blocks = (m + kMaxMr - 1) / kMaxMr;
  for (int64_t t = 0; t < blocks; ++t) {
    const int64_t i0 = m * t / blocks, i1 = m * (t + 1) / blocks;
    nn_rows_dispatch<kMaxMr, kKind>(i1 - i0, g, n, g.a + i0 * g.ars, g.c + i0 * g.ldc,
                                    g.epi.at(i0, 0));
  }
}

void gemm_nn(int64_t m, int64_t n, const NnArgs& g) {
  switch (epi_kind(g.alpha, g.beta, g.epi)) {
    case kStore:
      return gemm_nn_kind<kStore>(m, n, g);
    case kBias:
      return gemm_nn_kind<kBias>(m, n, g);
    case kBiasRelu:
      return gemm_nn_kind<kBiasRelu>(m, n, g);
    case kRelu:
      return gemm_nn_kind<kRelu>(m, n, g);
    case kMask:
      return gemm_nn_kind<kMask>(m, n, g);
    default:
      return gemm_nn_kind<kGeneral>(m, n, g);
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

#if defined(PARE_SIMD)
// Sum of the lanes of v, in a fixed order.
inline float hsum(vf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(v);
#else
  alignas(64) float lanes[kLanes];
  vstore(lanes, v);
  for (int width = kLanes / 2; width >= 1; width /= 2)
    for (int e = 0; e < width; ++e) lanes[e] += lanes[e + width];
  return lanes[0];
#endif
}
#endif

// Operands of an NT product (a block of rows of it).
struct NtArgs {
  int64_t k;
  int64_t ldc, lda, ldb;
  float alpha, beta;
};

// With kSum, also sum_a[r] += the sum of row r of a (a's rows are loaded for
// the product anyway).
template <int MR, int NR, bool kSum>
void nt_tile(const NtArgs& g, float* c, const float* a, const float* b, const Epi& e,
             float* sum_a) {
  const int64_t k = g.k, lda = g.lda, ldb = g.ldb;
  float sum[MR][NR];
  float rs[MR] = {};
  int64_t l = 0;
#if defined(PARE_SIMD)
  vf acc[MR][NR];
  vf sacc[kSum ? MR : 1];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = vzero();
  if constexpr (kSum)
    for (int r = 0; r < MR; ++r) sacc[r] = vzero();
  for (; l + kLanes <= k; l += kLanes) {
    vf av[MR];
    for (int r = 0; r < MR; ++r) av[r] = pin(vload(a + r * lda + l));
    if constexpr (kSum)
      for (int r = 0; r < MR; ++r) sacc[r] = vadd(sacc[r], av[r]);
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
    if constexpr (kSum)
      for (int r = 0; r < MR; ++r) sacc[r] = vadd(sacc[r], av[r]);
    for (int j = 0; j < NR; ++j) {
      const vf bv = vload_tail(b + j * ldb + l, rem);
      for (int r = 0; r < MR; ++r) acc[r][j] = vfmadd(av[r], bv, acc[r][j]);
    }
    l = k;
  }
#endif
  reduce_tile<MR, NR>(acc, sum);
  if constexpr (kSum)
    for (int r = 0; r < MR; ++r) rs[r] = hsum(sacc[r]);
#else
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) sum[r][j] = 0.0f;
#endif
  for (; l < k; ++l)  // the scalar tail (no masked loads)
    for (int r = 0; r < MR; ++r) {
      if constexpr (kSum) rs[r] += a[r * lda + l];
      for (int j = 0; j < NR; ++j) sum[r][j] = fmadd(a[r * lda + l], b[j * ldb + l], sum[r][j]);
    }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j)
      c[r * g.ldc + j] = epilogue(finish(sum[r][j], &c[r * g.ldc + j], g.alpha, g.beta), e, r, j);
  if constexpr (kSum)
    for (int r = 0; r < MR; ++r) sum_a[r] += rs[r];
}

// nt_tile<MR, cols, kSum> for a runtime cols in [1, NR].
template <int MR, int NR, bool kSum>
void nt_tile_cols(int64_t cols, const NtArgs& g, float* c, const float* a, const float* b,
                  const Epi& e, float* sum_a) {
  if constexpr (NR >= 1) {
    if (cols == NR) return nt_tile<MR, NR, kSum>(g, c, a, b, e, sum_a);
    nt_tile_cols<MR, NR - 1, kSum>(cols, g, c, a, b, e, sum_a);
  }
}

template <int MR>
void nt_rows(int64_t n, const NtArgs& g, float* c, const float* a, const float* b, const Epi& e,
             float* sum_a) {
  int64_t j = 0;
  if (sum_a) {
    // The first tile also sums a's rows; with six rows it has one column
    // fewer, so that its accumulators still fit the registers.
    constexpr int kSumCols = kNtMaxRows > 4 && MR > 4 ? kNtCols - 1 : kNtCols;
    j = std::min<int64_t>(n, kSumCols);
    nt_tile_cols<MR, kSumCols, true>(j, g, c, a, b, e, sum_a);
  }
  for (; j + kNtCols <= n; j += kNtCols)
    nt_tile<MR, kNtCols, false>(g, c + j, a, b + j * g.ldb, e.at(0, j), nullptr);
  if (j < n) nt_tile_cols<MR, kNtCols - 1, false>(n - j, g, c + j, a, b + j * g.ldb, e.at(0, j),
                                                  nullptr);
}

// nt_rows<mr> for a runtime mr in [1, MR].
template <int MR>
void nt_rows_dispatch(int64_t mr, int64_t n, const NtArgs& g, float* c, const float* a,
                      const float* b, const Epi& e, float* sum_a) {
  if constexpr (MR >= 1) {
    if (mr == MR) return nt_rows<MR>(n, g, c, a, b, e, sum_a);
    nt_rows_dispatch<MR - 1>(mr, n, g, c, a, b, e, sum_a);
  }
}

void gemm_nt(int64_t m, int64_t n, const NtArgs& g, float* c, const float* a, const float* b,
             const Epi& e, float* sum_a) {
  // Balanced row blocks of at most kNtMaxRows rows.
  const int64_t blocks = (m + kNtMaxRows - 1) / kNtMaxRows;
  for (int64_t t = 0; t < blocks; ++t) {
    const int64_t i0 = m * t / blocks, i1 = m * (t + 1) / blocks;
    nt_rows_dispatch<kNtMaxRows>(i1 - i0, n, g, c + i0 * g.ldc, a + i0 * g.lda, b, e.at(i0, 0),
                                 sum_a ? sum_a + i0 : nullptr);
  }
}

// ---- TT: c(i, j) = sum_l a[l * lda + i] b[j * ldb + l] ----------------------------------
void gemm_tt(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a, int64_t lda,
             const float* b, int64_t ldb, float alpha, float beta, const Epi& e) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t l = 0; l < k; ++l) acc = fmadd(a[l * lda + i], b[j * ldb + l], acc);
      c[i * ldc + j] = epilogue(finish(acc, &c[i * ldc + j], alpha, beta), e, i, j);
    }
}

}  // namespace

void gemm_f32__small(int64_t m, int64_t n, int64_t k, float* c, int64_t ldc, const float* a,
                     int64_t lda, const float* b, int64_t ldb, GemmParams p) {
  if (m <= 0) return;
  const Epi epi{.bias = p.bias, .mask = p.mask, .ldm = p.ldm, .relu = p.relu};
  const int64_t ars = p.trans_a ? 1 : lda, acs = p.trans_a ? lda : 1;
  if (n <= 0) {
    if (p.sum_a) sum_rows_plain(m, k, p.sum_a, a, ars, acs);
    return;
  }
  if (!p.trans_b) {
    const NnArgs g{.k = k,
                   .c = c,
                   .ldc = ldc,
                   .a = a,
                   .ars = ars,
                   .acs = acs,
                   .b = b,
                   .ldb = ldb,
                   .alpha = p.alpha,
                   .beta = p.beta,
                   .epi = epi};
    gemm_nn(m, n, g);
    if (p.sum_a) sum_rows_plain(m, k, p.sum_a, a, ars, acs);
  } else if (!p.trans_a) {
    const NtArgs g{.k = k, .ldc = ldc, .lda = lda, .ldb = ldb, .alpha = p.alpha, .beta = p.beta};
    gemm_nt(m, n, g, c, a, b, epi, p.sum_a);
  } else {
    gemm_tt(m, n, k, c, ldc, a, lda, b, ldb, p.alpha, p.beta, epi);
    if (p.sum_a) sum_rows_plain(m, k, p.sum_a, a, ars, acs);
  }
}

}  // namespace pare::kernels
