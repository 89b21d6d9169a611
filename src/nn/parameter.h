// Trainable parameters and the contiguous store that holds them.
//
// A Parameter is a named leaf Var plus what the pruning rooms need: an
// optional 0/1 mask (undefined = dense) and the value saved at initialisation
// for rewinding (Frankle & Carbin 2019). Once a model is built, all values live
// in one contiguous blob and all gradients in another (STYLE rule 14): zeroing
// gradients is one memset, rewinding is one copy, and global criteria can scan
// every weight at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pare/autograd/var.h"
#include "pare/tensor/sparse.h"

namespace pare::nn {

struct Parameter {
  std::string name;  // "fc1.weight"
  autograd::Var var;  // value and gradient
  Tensor mask;        // optional, same shape, 0/1; masked entries stay exactly 0
  Tensor initial;     // value at initialisation (for rewinding); set by ParameterStore
  // Set by nn::SparseDispatch (sparse_dispatch.h) when this weight's layer runs
  // sparse: the CSR pattern of `mask`, used by the layer's forward and by the
  // optimizers (which then update only these positions). Must be rebuilt
  // whenever the mask changes; null: the layer runs dense.
  std::shared_ptr<const CsrPattern> sparse;
  // Set with `sparse` when the layer trains on packed storage: the weight's
  // entries at the pattern, in pattern order, as a leaf of their own (value
  // and gradient (nnz,)), which the layer, the optimizers and the gradient
  // zeroing use instead of the dense value. While set, the dense value at
  // those entries is stale until nn::sync_sparse_to_dense writes it back.
  autograd::Var packed;
  // Set by an inference dispatch (training == false) for a sparse Linear
  // weight: its values in the SELL-16x32 layout, which a one-sample forward
  // pass without gradients uses instead of the gathered CSR product.
  std::shared_ptr<const SellMatrix> sell;
  bool is_weight = true;  // false for biases (pruning leaves them alone)
  int index = -1;         // position in its ParameterStore

  Tensor& value() { return var.value(); }
  const Tensor& value() const { return var.value(); }
  Tensor& grad() { return var.grad(); }
  int64_t numel() const { return var.numel(); }
  // value *= mask (no-op without a mask).
  void apply_mask();
};

// Owns the value and gradient blobs and rebinds each Parameter into them.
class ParameterStore {
 public:
  ParameterStore() = default;
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // Packs the parameters' current values into fresh blobs, points every
  // Parameter's value and grad at its slice, and saves `initial`.
  // REQUIRES: the Parameters outlive this store's use.
  void pack(std::vector<Parameter*> params);

  const std::vector<Parameter*>& params() const { return params_; }
  Tensor& values() { return values_; }
  Tensor& grads() { return grads_; }
  int64_t numel() const { return values_.numel(); }
  // Zeroes every gradient: a packed weight's (Parameter::packed) instead of
  // its dense one, which stays 0 while packed.
  void zero_grad();
  // Restores every parameter to its saved initial value (masks re-applied).
  void rewind();

 private:
  std::vector<Parameter*> params_;
  Tensor values_, grads_, initial_;
};

}  // namespace pare::nn
