// The tape walk: topological order over recorded nodes, then backward closures.
#include "pare/autograd/var.h"

#include <cstdint>
#include <unordered_set>

namespace pare::autograd {

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Tensor empty_apart(const Shape& shape, const float* other) {
  constexpr int64_t kPage = 4096, kHalf = 2048, kFloats = kPage / sizeof(float);
  const int64_t n = shape.numel();
  Tensor flat = Tensor::empty({n + kFloats});
  const auto base = reinterpret_cast<uintptr_t>(flat.f32());
  const auto want = reinterpret_cast<uintptr_t>(other) + kHalf;
  // Bytes to skip, a multiple of 64 below a page, so the view stays aligned.
  const int64_t skip = static_cast<int64_t>((want - base) % kPage) & ~int64_t{63};
  const int64_t off = skip / static_cast<int64_t>(sizeof(float));
  return flat.slice_rows(off, off + n).reshape(shape);
}

Tensor& Node::ensure_grad() {
  if (!grad.defined()) grad = Tensor::zeros(value.shape());
  grad_premasked = false;
  return grad;
}

float* Node::grad_for_write(float& beta, bool masked) {
  PARE_CHECK(!masked || relu_masks_grad, "a masked gradient for a node that does not mask");
  if (!grad.defined()) {
    grad = empty_apart(value.shape(), value.f32());
    grad_premasked = masked;
    beta = 0.0f;
  } else {
    grad_premasked = grad_premasked && masked;
    beta = 1.0f;
  }
  return grad.f32();
}

Var::Var(Tensor value, bool requires_grad) : node_(std::make_shared<Node>()) {
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

void Var::bind_grad(Tensor buffer) {
  PARE_CHECK(buffer.shape() == shape(), "gradient buffer ", buffer.shape().str(),
             " does not match value ", shape().str());
  node_->grad = std::move(buffer);
}

Var Var::make(Tensor value, const char* op, std::vector<Var> inputs,
              std::function<void(Node&)> backward) {
  Var out;
  out.node_ = std::make_shared<Node>();
  out.node_->value = std::move(value);
  out.node_->op = op;
  if (!t_grad_enabled) return out;
  bool any = false;
  for (const Var& in : inputs) any = any || (in.defined() && in.requires_grad());
  if (!any) return out;
  out.node_->requires_grad = true;
  out.node_->inputs.reserve(inputs.size());
  for (Var& in : inputs) out.node_->inputs.push_back(std::move(in.node_));
  out.node_->backward = std::move(backward);
  return out;
}

void Var::backward() {
  PARE_CHECK(numel() == 1, "backward() without a seed needs a single-element output, got ",
             shape().str());
  backward(Tensor::full(shape(), 1.0f));
}

void Var::backward(const Tensor& seed) {
  PARE_CHECK(requires_grad(), "backward() on a value that does not depend on any parameter");
  PARE_CHECK(seed.shape() == shape(), "seed ", seed.shape().str(), " does not match output ",
             shape().str());
  // Iterative post-order DFS: children before parents, then walk reversed.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{node_.get(), 0}};
  seen.insert(node_.get());
  while (!stack.empty()) {
    auto& [n, next] = stack.back();
    if (next < n->inputs.size()) {
      Node* child = n->inputs[next++].get();
      if (child && child->requires_grad && child->backward && seen.insert(child).second)
        stack.push_back({child, 0});
    } else {
      order.push_back(n);
      stack.pop_back();
    }
  }
  node_->ensure_grad();
  float* g = node_->grad.f32();
  const float* s = seed.f32();
  for (int64_t i = 0, n = seed.numel(); i < n; ++i) g[i] += s[i];
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* n = *it;
    if (n->backward && n->grad.defined()) n->backward(*n);
  }
  // Release the graph: intermediate values and grads go back to the pool.
  for (Node* n : order) {
    n->backward = nullptr;
    n->inputs.clear();
  }
}

}  // namespace pare::autograd
