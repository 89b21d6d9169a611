// Sparse (CSR) kernels for pruned weights: the layout, its builder, and the
// three products a sparse linear layer trains with (tensor/sparse.h threads
// them; autograd/sparse_linear.cc uses them).
//
// Same contract as kernels.h: plain functions on pointers and sizes, no
// allocation, no threads; sizes, outputs, inputs, params; `<name>__ref` is the
// scalar oracle (ref/sparse_ref.cc, accumulates in double), `<name>` the fast
// variant (fast/sparse.cc).
//
// Layout. A weight w: (rows, cols) = (out, in), as nn::Linear stores it, with a
// 0/1 mask, is held as CSR:
//   row_ptr: (rows + 1,) int32, row_ptr[0] = 0, row_ptr[rows] = nnz
//   col_idx: (nnz,) int32, strictly increasing within each row
//   values:  (nnz,) f32
// An entry is stored iff mask(i, j) > 0 (a stored value may itself be 0).
// A view of rows [r0, r1) of a matrix may point row_ptr at row r0 (so
// row_ptr[0] != 0): entries keep their positions in col_idx/values, and sddmm
// writes g at those same positions (tensor/sparse.h splits work this way).
//
// Activations are FEATURE-major here: x: (in, n), y: (out, n), row-major, n
// the batch (or, for a convolution, the im2col columns), i.e. the transpose of
// the (B, features) tensors autograd/linear.cc passes between ops. In this
// layout every product vectorises over n with contiguous loads (a row of x per
// nonzero), which the batch-major layout does not allow (it needs a gather per
// 16 nonzeros and batch row: 1.7x slower than dense BLAS at 90% sparsity,
// measured). A sparse linear op transposes at its boundaries (swap_outer_f32
// with p = 1, O(n * features), or keeps consecutive sparse layers
// feature-major); with n = 1 (inference on one sample) the layouts coincide.
//   forward         y  (out, n) = w   x  (in, n)  + beta y     spmm_f32
//   input gradient  dx (in, n)  = w^T dy (out, n) + beta dx    spmm_t_f32
//   weight gradient g  (nnz,)   = (dy x^T) at the stored (r, c) + beta g   sddmm_f32
// beta == 0 overwrites the output without reading it (so it may hold NaN).
// The fast variants reorder sums (vector lanes, FMA): they agree with the
// reference to a few ulps of the sum of |terms|.
#pragma once

#include <cstdint>

namespace pare::kernels {

// Column blocks. Each product reads, per nonzero (r, c), row c of its dense
// operand (x, or for sddmm x and dy's row r): n floats. With n = 60 and 784
// columns (LeNet-300-100's first layer) those rows are 188 KB, four times the
// L1 cache, so row by row every nonzero streams its x row from L2 and the
// product runs at L2 bandwidth (about 4.6 cycles per nonzero here, the same
// at 10 % and 50 % density). Taking the columns kCsrBlockCols at a time keeps
// the x rows of one block (128 x 64 floats: 32 KB) in L1 while every row's
// nonzeros in that block pass, at the price of loading and storing each y
// row once per block. The optional block_ptr says where each row's block
// begins: block_ptr[r * (col_blocks() + 1) + b] = the first entry of row r
// with column >= b * kCsrBlockCols, and block_ptr[r * (col_blocks() + 1) +
// col_blocks()] = row_ptr[r + 1]. A view of rows [r0, r1) points block_ptr at
// row r0's first entry. Kernels may ignore it (the result is the same up to
// summation order); tensor/sparse.h's CsrPattern builds it.
inline constexpr int64_t kCsrBlockCols = 128;

// Revision of these kernels' speed: part of the key under which --sparse
// auto caches its measured crossovers (nn/sparse_dispatch.h), so a build
// whose kernels got faster or slower measures again instead of reusing a
// crossover measured on the old ones. Raise it with any such change.
// 2: column blocks and two accumulator sets in spmm, blocked sddmm.
// 3: sddmm blocks rows with 16 nonzeros per block, single reductions in tails.
inline constexpr int kSparseKernelsRevision = 3;

// A read-only view of a CSR matrix (the arrays belong to the caller).
struct CsrF32 {
  int64_t rows = 0, cols = 0;
  const int32_t* row_ptr = nullptr;    // (rows + 1,)
  const int32_t* col_idx = nullptr;    // (nnz,)
  const float* values = nullptr;       // (nnz,)
  const int32_t* block_ptr = nullptr;  // (rows * (col_blocks() + 1),) or nullptr
  int64_t nnz() const { return rows > 0 ? row_ptr[rows] - row_ptr[0] : 0; }
  int64_t col_blocks() const { return (cols + kCsrBlockCols - 1) / kCsrBlockCols; }
};

#define PARE_KERNEL_PAIR(ret, name, ...) \
  ret name##__ref(__VA_ARGS__);          \
  ret name(__VA_ARGS__);

// Number of entries with mask(i, j) > 0 in a (rows, cols) mask with row stride
// ldm; mask == nullptr counts every entry (rows * cols). Size the CSR arrays
// with it before csr_from_dense_f32.
PARE_KERNEL_PAIR(int64_t, csr_nnz_f32, int64_t rows, int64_t cols, const float* mask,
                 int64_t ldm)
// Fills row_ptr: (rows + 1,), col_idx and values: (csr_nnz_f32(...),) from
// w: (rows, cols) with row stride ldw and the mask (nullptr: keep all).
PARE_KERNEL_PAIR(void, csr_from_dense_f32, int64_t rows, int64_t cols, int32_t* row_ptr,
                 int32_t* col_idx, float* values, const float* w, int64_t ldw,
                 const float* mask, int64_t ldm)
// w: (a.rows, a.cols) with row stride ldw = a scattered, zeros elsewhere.
PARE_KERNEL_PAIR(void, csr_to_dense_f32, float* w, int64_t ldw, const CsrF32& a)

// y: (w.rows, n), row stride ldy, = w times x: (w.cols, n), row stride ldx (+ beta y).
PARE_KERNEL_PAIR(void, spmm_f32, int64_t n, float* y, int64_t ldy, const CsrF32& w,
                 const float* x, int64_t ldx, float beta)
// dx: (w.cols, n) = w^T times dy: (w.rows, n) (+ beta dx); w^T is never formed.
PARE_KERNEL_PAIR(void, spmm_t_f32, int64_t n, float* dx, int64_t lddx, const CsrF32& w,
                 const float* dy, int64_t lddy, float beta)
// g: (nnz,) at each stored (r, c) of w's pattern (w.values is not read):
// g[k] = sum over j of dy(r, j) x(c, j) (+ beta g[k]), dy: (w.rows, n),
// x: (w.cols, n). The weight gradient without a dense (rows, cols) buffer.
PARE_KERNEL_PAIR(void, sddmm_f32, int64_t n, float* g, const CsrF32& w, const float* dy,
                 int64_t lddy, const float* x, int64_t ldx, float beta)

// ---- SELL-16x32: one-sample products without gathers ------------------------
// Rows in blocks of kSellRows (one per vector lane), columns in segments of
// kSellCols. For each block, the segments where any of its rows has a
// nonzero, each with `steps` slots of kSellRows lanes: lane l of step k holds
// row (block * 16 + l)'s k-th nonzero in the segment (value and column
// within the segment), zero-padded where a row has fewer. A one-sample
// product (y = w x, x: (cols,)) then loads x's 32-column segment into two
// registers and looks each slot's column up in them (a two-register permute),
// 16 rows at a time, instead of gathering x per nonzero: a gather costs
// about one cycle per element here (AVX-512, 4096x4096 at 90% sparsity:
// 0.55 ms gathered CSR, 0.27 ms SELL, one thread). Padding costs slots: at
// 10% density about half the slots hold a nonzero.
inline constexpr int64_t kSellRows = 16;
inline constexpr int64_t kSellCols = 32;
struct SellF32 {
  int64_t rows = 0, cols = 0;
  const int32_t* block_seg = nullptr;   // (blocks + 1,): block b's segments are [block_seg[b], block_seg[b+1])
  const int64_t* block_slot = nullptr;  // (blocks + 1,): block b's first slot (a multiple of 16)
  const int32_t* seg_col = nullptr;     // (segments,): the segment's first column
  const int32_t* seg_steps = nullptr;   // (segments,): its steps (>= 1)
  const uint8_t* lane_col = nullptr;    // (slots,): column within the segment, < kSellCols
  const float* values = nullptr;        // (slots,): 0 in padding
  int64_t blocks() const { return (rows + kSellRows - 1) / kSellRows; }
};
// y: (a.rows,) = a x (+ beta y), x: (a.cols,), finite (a padding slot adds
// 0 * x at its segment's first column). Rows of blocks [b0, b1) only (so that
// callers can split the blocks across threads).
PARE_KERNEL_PAIR(void, sell_spmv_f32, int64_t b0, int64_t b1, float* y, const SellF32& a,
                 const float* x, float beta)

#undef PARE_KERNEL_PAIR

}  // namespace pare::kernels
