// Codebook fine-tuning of shared weights (issue #6; Han et al. 2016, Deep
// Compression, section 3.2). After weight sharing every kept weight of a
// tensor is one of a few centroids; fine-tuning keeps each weight's cluster
// assignment fixed and trains the centroids, the gradient of a centroid being
// the sum of the gradients of the weights assigned to it. Pruned weights stay
// at zero; every other parameter (the biases) trains as usual.
//
// The loop is train::fit, driven through its after_update hook: fit's
// backward leaves every weight's gradient in the store (or, for a layer
// running sparse on packed storage, in its packed gradient), the hook sums
// them into centroid gradients, steps the centroids with the recipe's
// optimizer (SGD, Adam, AdamW; same learning rate and schedule) and writes
// each centroid back into its weights, dense and packed. The weight values
// fit's own optimizer wrote are overwritten, so the network trained and
// evaluated is always the tied one. Pruned layers may run on the sparse
// kernels (cfg.sparse_kernels), as in any training.
//
// This room sees no .pare file: a SharedWeight holds the index, presence and
// codebook of a weight as io::share_weights leaves them in a format::Tensor
// (values, present, quant.centroids), so the caller copies those three in and
// the tuned centroids back out.
//
// Reproducible: same seed and thread count, same bits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pare/data/dataset.h"
#include "pare/nn/module.h"
#include "pare/optim/optimizer.h"
#include "pare/train/trainer.h"

namespace pare::train {

// grad_c[c] = the sum of grad_w[i] over the entries i with index[i] == c and
// present[i] != 0, summed in entry order in double (so deterministic).
// n: entries; k: centroids; present: null when every entry is present.
// REQUIRES: index[i] < k at present entries.
void centroid_gradients(int64_t n, int64_t k, float* grad_c, const float* grad_w,
                        const uint8_t* index, const uint8_t* present);

// The same for a weight that trains packed (nn::Parameter::packed, a sparse
// layer): its gradient (nnz,) in pattern order, pos (nnz,) the dense position
// of each entry (CsrPattern::pos, increasing, so the sums run in the same
// order as above); every pattern entry is present.
void centroid_gradients_packed(int64_t nnz, int64_t k, float* grad_c, const float* grad_packed,
                               const int32_t* pos, const uint8_t* index);

// w[i] = centroids[index[i]] where present (present null: everywhere), 0
// elsewhere (a pruned weight).
void tie_weights(int64_t n, float* w, const uint8_t* index, const uint8_t* present,
                 const float* centroids);

// One weight tensor stored by weight sharing, as in the .pare tensor.
struct SharedWeight {
  std::string name;              // the model's parameter ("linear1.weight")
  std::vector<uint8_t> index;    // numel entries, row-major: each entry's centroid
  std::vector<uint8_t> present;  // numel entries of 0/1 (0: pruned), or empty: all present
  std::vector<float> centroids;  // the codebook; fine-tuning changes only these
};

// The tying of a model's shared weights to trainable centroids: the state
// behind the after_update hook, usable on its own (tests step it by hand).
class CodebookTying {
 public:
  // Checks every SharedWeight against the model (the parameter exists, once;
  // numel entries; indices inside the codebook; present exactly where the
  // weight's mask keeps it) and raises Error naming the tensor otherwise.
  // REQUIRES: model and shared outlive this object.
  CodebookTying(nn::Model& model, std::vector<SharedWeight>& shared,
                const optim::OptimizerConfig& optimizer);
  ~CodebookTying();
  // Writes each centroid into its weights (pruned entries: 0), and into the
  // packed values of a weight that has them.
  void tie();
  // From the gradients in the model's store (packed gradients for a packed
  // weight): each centroid's gradient (the sum over its members), one
  // optimizer step at lr on the centroids, copied into
  // SharedWeight::centroids, then tie().
  void update(float lr);
  // Centroid gradients of the last update, per SharedWeight (for tests).
  std::vector<float> last_gradient(size_t i) const;

 private:
  nn::Model& model_;
  std::vector<SharedWeight>& shared_;
  std::vector<nn::Parameter*> weights_;                    // per SharedWeight
  std::vector<std::unique_ptr<nn::Parameter>> centroids_;  // per SharedWeight: (k,) value and grad
  std::unique_ptr<optim::Optimizer> optimizer_;
};

// Fine-tunes the codebooks of `shared` (and every unshared parameter) with
// the recipe `cfg` (epochs, batch, optimizer, lr, schedule, seed, parallel
// mode), evaluating on `test` after each epoch when it is not empty. On
// return SharedWeight::centroids hold the tuned codebooks, the model's shared
// weights equal their centroids exactly and indices and presence are as they
// were. The recipe must not ask for a run directory, sparse training or
// sparse fine-tuning (Error naming the setting otherwise).
TrainResult codebook_finetune(nn::Model& model, std::vector<SharedWeight>& shared,
                              const data::Dataset& train, const data::Dataset& test,
                              const TrainConfig& cfg, const Observer& observer = {});

}  // namespace pare::train
