// LoRA fine-tuning (Hu et al. 2021) in the trainer: every weight of the model
// (a linear or convolution weight, taken as its (out, K) matrix, nn/lora.h)
// trains as W0 + scale * B A with W0 frozen. Only the factors A (rank, K) and
// B (out, rank) have optimizer state; B starts at 0, so training starts from
// the model as it is. Biases stay frozen.
//
// The step runs on the merged weights: backward leaves the weights' gradient
// G, from which the factors' gradients follow (scale G A^T and scale B^T G,
// pruned entries of G zeroed), the optimizer moves A and B, and the weights
// are merged again. A pruned weight whose layer runs sparse (--sparse,
// nn/sparse_dispatch.h) has G at its nonzeros only and is merged there only,
// so LoRA on a pruned base costs what the sparse step costs plus 3 * nnz *
// rank multiply-adds; a dense or masked-dense layer costs its dense
// gradient plus two thin products. Every layer, kernel and evaluation path
// is the usual one; what LoRA buys is a variant stored in rank * (out + K)
// numbers per weight (`pare delta`), and optimizer state of that size.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "pare/nn/lora.h"
#include "pare/nn/module.h"
#include "pare/train/archive.h"

namespace pare::train {

struct LoraConfig {
  int64_t rank = 0;   // --lora-rank: 0 = off
  double alpha = 0;   // --lora-alpha: scale = alpha / rank; 0 = rank (scale 1)
  bool enabled() const { return rank > 0; }
  float scale() const;
  // Raises Error naming the flag for a negative rank or alpha.
  void validate() const;
};

class LoraTraining {
 public:
  // Adapts every weight of `model` with at least two dimensions; W0 is each
  // weight's current value. A ~ U(-1/sqrt(K), 1/sqrt(K)) from `seed`, B = 0.
  LoraTraining(nn::Model& model, const LoraConfig& cfg, uint64_t seed);
  LoraTraining(const LoraTraining&) = delete;
  LoraTraining& operator=(const LoraTraining&) = delete;

  // A and B of every adapted weight, for the optimizer ("<weight>.lora_a",
  // "<weight>.lora_b").
  std::vector<nn::Parameter*> parameters() const;
  // Every factor's value in one tensor (for a rollback's in-memory copy).
  Tensor& values() { return store_.values(); }
  // Sets the factors' gradients from the weights' gradients (after backward).
  void backward();
  // Writes each weight as mask * (W0 + scale B A) (after each update).
  void merge();
  // FLOPs of backward() and merge() for one step: 6 * out * K * rank per weight.
  double step_flops() const;
  float scale() const { return scale_; }

  // Checkpoint entries: "lora/<weight>.a", ".b" and ".base" (W0).
  void put_checkpoint(Archive& a) const;
  // Reads them back; raises Error naming `path` when one is missing or has
  // another shape.
  void take_checkpoint(const Archive& a, const std::string& path);
  // What a saved model carries: the factors ("lora/<weight>.a", ".b"), and
  // for its metadata (and checkpoints' and the run log's) {"rank", "alpha",
  // "scale"}.
  void put_model(Archive& a) const;
  nlohmann::json meta() const;

 private:
  struct Adapted {
    nn::Parameter* weight = nullptr;
    Tensor base;  // W0
    nn::Parameter a, b;
  };
  nn::Model& model_;
  LoraConfig cfg_;
  float scale_ = 1.0f;
  std::vector<std::unique_ptr<Adapted>> adapted_;  // Parameters keep their addresses
  nn::ParameterStore store_;
  Tensor scratch_;  // a masked weight's gradient
};

// Whether LoRA adapts this parameter (a weight with at least two dimensions).
bool lora_adapts(const nn::Parameter& p);
// The factor values rank-`rank` LoRA trains for `model`: rank * (out + K)
// per adapted weight.
int64_t lora_factor_values(const nn::Model& model, int64_t rank);

// The LoRA factors a model file saved by a LoRA run carries (fit's model.bin);
// empty `factors` when it has none (any other model file).
struct SavedLora {
  int64_t rank = 0;
  double alpha = 0;
  float scale = 0;
  std::vector<nn::LoraFactors> factors;
};
SavedLora read_lora(const std::string& model_path);

}  // namespace pare::train
