// Low-rank adaptation (LoRA, Hu et al. 2021): a weight W is fine-tuned as
// W0 + scale * B A with W0 frozen and only the two thin factors trained, so a
// fine-tuned variant is stored as the factors (docs/compression.md, "Deltas").
// A weight of any rank is taken as a matrix of its first dimension by the
// rest (out, K): a linear layer's (out, in), a convolution's (out, in*kh*kw).
//
// Each merged entry is one explicit chain of fused multiply-adds in a fixed
// order, W0 + scale * (B(o, 0) A(0, k) + ... ), computed alike whether the
// weight is dense or packed (its nonzeros only, Parameter::packed), so the
// trainer that merges the factors into its weights and `pare apply` that
// rebuilds a variant from them make the same bits on any thread count and in
// either layout.
#pragma once

#include <cstdint>
#include <string>

#include "pare/tensor/sparse.h"
#include "pare/tensor/tensor.h"

namespace pare::nn {

struct LoraFactors {
  std::string name;  // the adapted parameter, "fc1.weight"
  Tensor a;          // (rank, K)
  Tensor b;          // (out, rank)
};

// (out, K) of a weight of `shape` (rank >= 1).
std::pair<int64_t, int64_t> lora_matrix_dims(const Shape& shape);

// Raises Error naming `what` unless a (rank, K) and b (out, rank) fit a weight
// of `shape`.
void check_lora_factors(const Shape& shape, const Tensor& a, const Tensor& b, const std::string& what);

// out = base + scale * b a, then zero where `mask` (optional, shape of base)
// is 0. out may be base.
void lora_merge(Tensor& out, const Tensor& base, const Tensor& b, const Tensor& a, float scale,
                const Tensor& mask);

// The same for a weight packed at `pattern`'s nonzeros (tensor/sparse.h):
// values (nnz,) in pattern order = base + scale * b a at those entries, the
// same bits as lora_merge's there. base: the dense (out, K) weight.
void lora_merge_packed(float* values, const CsrPattern& pattern, const Tensor& base, const Tensor& b,
                       const Tensor& a, float scale);

// The factors' gradients from the merged weight's gradient g (out, K),
// overwritten: grad_b = scale * g' a^T, grad_a = scale * b^T g', where g' is g
// with the masked entries zeroed (a pruned weight does not move). `scratch`
// (numel of g) holds g' when there is a mask.
void lora_backward(Tensor& grad_b, Tensor& grad_a, const Tensor& g, const Tensor& b, const Tensor& a,
                   float scale, const Tensor& mask, Tensor& scratch);

// The same from the gradient of a packed weight, g (nnz,) at `pattern`'s
// entries (the masked ones have none): 2 * nnz * rank multiply-adds instead
// of a dense gradient's products.
void lora_backward_packed(Tensor& grad_b, Tensor& grad_a, const float* g, const CsrPattern& pattern,
                          const Tensor& b, const Tensor& a, float scale);

}  // namespace pare::nn
