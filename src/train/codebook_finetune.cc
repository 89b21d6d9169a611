// Codebook fine-tuning through the training loop's after_update hook (see
// codebook_finetune.h).
#include "pare/train/codebook_finetune.h"

#include <set>

#include "pare/base/error.h"

namespace pare::train {

void centroid_gradients(int64_t n, int64_t k, float* grad_c, const float* grad_w,
                        const uint8_t* index, const uint8_t* present) {
  std::vector<double> sum(static_cast<size_t>(k), 0.0);
  for (int64_t i = 0; i < n; ++i)
    if (!present || present[i]) sum[index[i]] += static_cast<double>(grad_w[i]);
  for (int64_t c = 0; c < k; ++c) grad_c[c] = static_cast<float>(sum[static_cast<size_t>(c)]);
}

void centroid_gradients_packed(int64_t nnz, int64_t k, float* grad_c, const float* grad_packed,
                               const int32_t* pos, const uint8_t* index) {
  std::vector<double> sum(static_cast<size_t>(k), 0.0);
  for (int64_t j = 0; j < nnz; ++j) sum[index[pos[j]]] += static_cast<double>(grad_packed[j]);
  for (int64_t c = 0; c < k; ++c) grad_c[c] = static_cast<float>(sum[static_cast<size_t>(c)]);
}

void tie_weights(int64_t n, float* w, const uint8_t* index, const uint8_t* present,
                 const float* centroids) {
  for (int64_t i = 0; i < n; ++i) w[i] = !present || present[i] ? centroids[index[i]] : 0.0f;
}

CodebookTying::CodebookTying(nn::Model& model, std::vector<SharedWeight>& shared,
                             const optim::OptimizerConfig& optimizer)
    : model_(model), shared_(shared) {
  std::set<std::string> seen;
  std::vector<nn::Parameter*> centroid_params;
  for (const SharedWeight& s : shared_) {
    nn::Parameter* p = model_.find(s.name);
    if (!p) fail("codebook fine-tuning: the model has no parameter ", s.name);
    if (!seen.insert(s.name).second) fail("codebook fine-tuning: ", s.name, " is shared twice");
    const int64_t n = p->numel();
    const size_t k = s.centroids.size();
    if (k < 1 || k > 256) fail(s.name, ": a codebook holds 1 to 256 centroids, got ", k);
    if (static_cast<int64_t>(s.index.size()) != n)
      fail(s.name, ": ", s.index.size(), " codebook indices for a weight of ", n, " entries");
    if (!s.present.empty() && static_cast<int64_t>(s.present.size()) != n)
      fail(s.name, ": ", s.present.size(), " presence flags for a weight of ", n, " entries");
    const float* mask = p->mask.defined() ? p->mask.f32() : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      const bool present = s.present.empty() || s.present[static_cast<size_t>(i)];
      const bool kept = !mask || mask[i] > 0.0f;
      // A present weight the mask prunes would be revived by tying, an absent
      // one the mask keeps silently pruned: either way not the model given.
      if (present != kept)
        fail(s.name, ": entry ", i, " is ", present ? "present" : "absent", " in the codebook but ",
             kept ? "kept" : "pruned", " by the weight's mask");
      if (present && s.index[static_cast<size_t>(i)] >= k)
        fail(s.name, ": entry ", i, " refers to centroid ", int{s.index[static_cast<size_t>(i)]},
             " of a codebook of ", k);
    }
    weights_.push_back(p);
    auto c = std::make_unique<nn::Parameter>();
    c->name = s.name + ".centroids";
    c->var =
        autograd::Var(Tensor::from({static_cast<int64_t>(k)}, s.centroids), /*requires_grad=*/true);
    c->var.bind_grad(Tensor::zeros({static_cast<int64_t>(k)}));
    c->is_weight = false;  // nothing to prune: centroids are shared by their weights
    centroid_params.push_back(c.get());
    centroids_.push_back(std::move(c));
  }
  optimizer_ = optim::make_optimizer(optimizer, std::move(centroid_params));
}

CodebookTying::~CodebookTying() = default;

void CodebookTying::tie() {
  for (size_t i = 0; i < shared_.size(); ++i) {
    const SharedWeight& s = shared_[i];
    nn::Parameter& w = *weights_[i];
    tie_weights(w.numel(), w.value().f32(), s.index.data(),
                s.present.empty() ? nullptr : s.present.data(), centroids_[i]->value().f32());
    // A sparse layer training packed reads these, not the dense values.
    if (w.packed.defined()) w.sparse->gather(w.value().f32(), w.packed.value().f32(), nullptr);
  }
}

void CodebookTying::update(float lr) {
  for (size_t i = 0; i < shared_.size(); ++i) {
    const SharedWeight& s = shared_[i];
    nn::Parameter& c = *centroids_[i];
    nn::Parameter& w = *weights_[i];
    if (w.packed.defined())
      centroid_gradients_packed(w.sparse->nnz(), c.numel(), c.grad().f32(), w.packed.grad().f32(),
                                w.sparse->pos.data(), s.index.data());
    else
      centroid_gradients(w.numel(), c.numel(), c.grad().f32(), w.grad().f32(), s.index.data(),
                         s.present.empty() ? nullptr : s.present.data());
  }
  optimizer_->step(lr);
  for (size_t i = 0; i < shared_.size(); ++i) {
    const float* v = centroids_[i]->value().f32();
    shared_[i].centroids.assign(v, v + centroids_[i]->numel());
  }
  tie();
}

std::vector<float> CodebookTying::last_gradient(size_t i) const {
  const Tensor& g = centroids_.at(i)->grad();
  return std::vector<float>(g.f32(), g.f32() + g.numel());
}

TrainResult codebook_finetune(nn::Model& model, std::vector<SharedWeight>& shared,
                              const data::Dataset& train, const data::Dataset& test,
                              const TrainConfig& cfg, const Observer& observer) {
  if (shared.empty()) fail("codebook fine-tuning: no shared weights (give --share-bits)");
  if (train.size() == 0) fail("codebook fine-tuning: no training samples (give --data)");
  if (!cfg.out_dir.empty() || cfg.resume)
    fail(
        "codebook fine-tuning keeps no run directory: the centroids' optimizer state is not "
        "checkpointed");
  if (cfg.sparse.enabled())
    fail("codebook fine-tuning keeps every weight's cluster: no --sparse-training");
  if (cfg.update_fraction > 0)
    fail("codebook fine-tuning trains whole codebooks: no --update-fraction");
  cfg.validate();
  CodebookTying tying(model, shared, cfg.optimizer);
  tying.tie();
  Observer o = observer;
  o.after_update = [&tying, &observer](int64_t step, float lr) {
    tying.update(lr);
    if (observer.after_update) observer.after_update(step, lr);
  };
  return fit(model, train, test, cfg, o);
}

}  // namespace pare::train
