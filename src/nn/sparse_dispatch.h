// Which layers run their pruned weights sparse (issue #5).
//
// A masked Linear or Conv2d weight can run as a dense GEMM on the masked weight
// ("masked-dense": zeros multiplied like any other value) or as CSR products
// on its nonzeros ("sparse", autograd::sparse_linear / sparse_conv2d). A
// convolution's crossover is measured on the linear products of the same
// matrix sizes (its filter matrix against the batch's B*OH*OW patches). Which is faster depends
// on the density, the shape, the batch and the machine, so `auto` measures it:
// for each (rows, cols, batch, threads, training or inference) it times the
// dense op and the sparse op at three densities on this machine, once, in
// turn (so that a slow spell of the machine falls on all four alike), and
// takes the density where the two cost the same (the crossover); a layer runs
// sparse when its density is below it. Crossovers are cached in memory and in
// a file (sparse_crossover_cache_path()), keyed by the CPU model and the
// sparse kernels' revision (kernels::kSparseKernelsRevision), so later
// runs on the same machine neither measure again nor choose differently.
// PARE_SPARSE_CROSSOVER=<density> replaces every measurement (tests, or a
// user who knows better).
//
// Choices are applied by setting Parameter::sparse (the pattern of the mask);
// they must be made again whenever a mask changes.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "pare/nn/module.h"

namespace pare::nn {

enum class SparseMode { off, on, automatic };
// "off" | "on" | "auto"; raises Error naming --sparse otherwise.
SparseMode parse_sparse_mode(const std::string& name);
const char* sparse_mode_name(SparseMode mode);

struct LayerDispatch {
  std::string name;        // the weight parameter ("fc1.weight")
  int64_t rows = 0, cols = 0;
  double density = 1;      // alive fraction of the weight
  double crossover = -1;   // auto: density below which sparse is faster (-1: not measured)
  std::string kind;        // "dense" (no mask) | "masked-dense" | "sparse"
};

// Chooses for every Linear and Conv2d weight (a convolution's filter bank
// viewed as an (OC, C*KH*KW) matrix) and sets or clears its
// Parameter::sparse. `batch`: samples per forward pass; `training`: the
// choice covers forward and both backward products (else forward only).
// Weights without a mask run dense in every mode.
// `packed`: the sparse layers get packed storage (Parameter::packed, gathered
// from the dense values now); the model must then not run data-parallel
// (ForwardContext::leaves). REQUIRES: the dense values are current (after
// training packed weights, sync_sparse_to_dense first); earlier packed
// values are dropped, not written back, so that a caller may change the
// dense values and masks in between (pruning) without having them undone.
// `decided`: when given, the kinds to apply, one per entry of the list a
// call returns ("dense" | "masked-dense" | "sparse"), instead of choosing:
// the ranks of a data-parallel job apply rank 0's choice, so that all run
// the same kernels and pack the same layers. Raises Error when the list does
// not fit the model (a "sparse" for a weight without a mask, a wrong count).
std::vector<LayerDispatch> dispatch_sparse(Model& model, SparseMode mode, int64_t batch,
                                           bool training, bool packed = false,
                                           const std::vector<std::string>* decided = nullptr);
// Writes packed values back into the dense weights (the packed storage stays).
void sync_sparse_to_dense(Model& model);
// sync_sparse_to_dense, then clears every Parameter::sparse and ::packed
// (all layers dense).
void clear_sparse(Model& model);
// True when some layer runs sparse.
bool any_sparse(const Model& model);

// The measured crossover density for a (rows, cols) weight at `batch` on the
// current thread count (cached; see above). `input_grad`: whether training
// also computes the gradient of the layer's input, which a network's first
// layer (fed the data) does not; that product costs the sparse side more
// than the dense one (an extra transposed product), so the first layer's
// crossover is measured, and cached, on its own.
double sparse_crossover(int64_t rows, int64_t cols, int64_t batch, bool training,
                        bool input_grad = true);
// The density where a sparse op's time, linear between measured points
// (density, seconds; densities increasing), meets the dense op's time. Below
// the first point the sparse time is taken as proportional to the density;
// beyond the last, the last segment's slope continues (sparse still faster
// at density 1, or a slope that never reaches dense: 1). In [0, 1].
double crossover_density(double dense_seconds, const std::vector<std::pair<double, double>>& points);
// Where crossovers are cached: $PARE_CACHE_DIR, else $XDG_CACHE_HOME/pare,
// else $HOME/.cache/pare; "" when none is set (memory only).
std::string sparse_crossover_cache_path();

// One line per layer: "fc1.weight 300x784 density 0.107 crossover 0.31 -> sparse".
std::string describe(const std::vector<LayerDispatch>& layers);

}  // namespace pare::nn
