// Define-by-run reverse-mode autodiff over coarse ops.
//
// Each differentiable op (ops.h) computes its forward value eagerly and, when
// any input needs a gradient and grad mode is on, records a Node holding its
// inputs and a backward closure. Var::backward() walks the recorded nodes in
// reverse topological order; each closure ACCUMULATES into its inputs'
// gradients. The graph lives as long as the output Var that references it and
// is freed, buffers back to the storage pool, once that Var goes away.
//
// Leaves (model parameters) may have their gradient tensor bound to an
// external buffer (nn keeps all gradients in one contiguous blob), so
// backward writes straight into it and zero_grad is one memset.
//
// Thread safety: graphs are built and run on one thread; ops parallelise
// internally through the thread pool.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "pare/tensor/tensor.h"

namespace pare::autograd {

struct Node {
  Tensor value;
  Tensor grad;  // undefined until backward first writes to it (or bound by the owner)
  bool requires_grad = false;
  const char* op = "leaf";
  std::vector<std::shared_ptr<Node>> inputs;
  // Reads this node's grad, accumulates into inputs' grads. Null for leaves.
  std::function<void(Node& self)> backward;

  // Set by an op whose backward multiplies this node's gradient by
  // (value > 0) before using it (a convolution with a fused ReLU): a consumer
  // may then write its contribution already masked (grad_for_write).
  bool relu_masks_grad = false;
  // True while every contribution to grad was written masked by (value > 0),
  // so the node's own backward may skip the mask.
  bool grad_premasked = false;

  // The gradient buffer, allocated as zeros on first use, for a contribution
  // that is accumulated (+=) and not masked.
  Tensor& ensure_grad();
  // The gradient buffer for a contribution that writes EVERY element in one
  // pass: allocated but not zeroed on first use (apart from the value, see
  // empty_apart). Sets `beta` to 0 when this is
  // the first contribution (overwrite) and to 1 after (accumulate). `masked`:
  // the contribution is written multiplied by (value > 0); only allowed when
  // relu_masks_grad is set.
  float* grad_for_write(float& beta, bool masked);
};

class Var {
 public:
  Var() = default;
  // A leaf. The Var shares `value`'s storage.
  explicit Var(Tensor value, bool requires_grad = false);

  bool defined() const { return node_ != nullptr; }
  const Tensor& value() const { return node_->value; }
  Tensor& value() { return node_->value; }
  const Shape& shape() const { return node_->value.shape(); }
  int64_t dim(int i) const { return node_->value.dim(i); }
  int64_t numel() const { return node_->value.numel(); }
  bool requires_grad() const { return node_->requires_grad; }
  // The gradient (undefined if backward never reached this Var).
  const Tensor& grad() const { return node_->grad; }
  Tensor& grad() { return node_->grad; }
  // Binds the gradient to an external buffer of the same shape (for leaves).
  void bind_grad(Tensor buffer);
  Node* node() const { return node_.get(); }
  const std::shared_ptr<Node>& node_ptr() const { return node_; }

  // Back-propagates from this Var, which must hold a single element (a loss);
  // its gradient is seeded with 1. Frees the graph's backward closures after.
  void backward();
  // Back-propagates with an explicit output gradient of this Var's shape.
  void backward(const Tensor& seed);

  // Builds the Var for an op's output: records `inputs` and `backward` only
  // when grad mode is on and some input requires a gradient.
  static Var make(Tensor value, const char* op, std::vector<Var> inputs,
                  std::function<void(Node&)> backward);

 private:
  std::shared_ptr<Node> node_;
};

// An uninitialised tensor whose data starts half a page (2 KiB mod 4 KiB)
// away from `other`: for an op's output or gradient that a kernel writes
// while it reads `other` at the same indices (a conv's output and its
// input, a gradient and the ReLU output that masks it). Buffers of the same
// size otherwise come out of the allocator at the same offset within a page,
// and a load whose address matches a pending store's in its low 12 bits
// waits for it (4K aliasing): up to a third slower on the Life net's
// products. Costs 4 KiB of padding.
Tensor empty_apart(const Shape& shape, const float* other);

// Whether ops record graphs on this thread (default true).
bool grad_enabled();

// Turns graph recording off for its lifetime (evaluation, optimizer steps).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace pare::autograd
