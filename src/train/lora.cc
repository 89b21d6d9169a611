// LoRA fine-tuning in the trainer (see lora.h).
#include "pare/train/lora.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/base/rng.h"

namespace pare::train {

using json = nlohmann::json;

float LoraConfig::scale() const {
  return rank > 0 ? static_cast<float>((alpha > 0 ? alpha : static_cast<double>(rank)) / static_cast<double>(rank))
                  : 0.0f;
}

void LoraConfig::validate() const {
  if (rank < 0) fail("--lora-rank must be at least 0 (0: off), got ", rank);
  if (!(alpha >= 0) || !std::isfinite(alpha)) fail("--lora-alpha must be a finite number >= 0 (0: the rank), got ", alpha);
}

LoraTraining::LoraTraining(nn::Model& model, const LoraConfig& cfg, uint64_t seed)
    : model_(model), cfg_(cfg), scale_(cfg.scale()) {
  cfg_.validate();
  if (!cfg_.enabled()) fail("LoraTraining needs --lora-rank >= 1");
  const Rng root = Rng(seed).fork(0x10A4);
  std::vector<nn::Parameter*> factors;
  int64_t largest = 0;
  for (nn::Parameter* w : model.parameters()) {
    if (!lora_adapts(*w)) continue;
    const auto [out, k] = nn::lora_matrix_dims(w->value().shape());
    auto ad = std::make_unique<Adapted>();
    ad->weight = w;
    ad->base = w->value().clone();
    ad->a.name = w->name + ".lora_a";
    ad->a.is_weight = false;  // pruning criteria and masks leave the factors alone
    ad->a.var = autograd::Var(Tensor::empty({cfg_.rank, k}), true);
    Rng r = root.fork(static_cast<uint64_t>(adapted_.size()));
    const float bound = 1.0f / std::sqrt(static_cast<float>(k));
    float* a = ad->a.value().f32();
    for (int64_t j = 0; j < ad->a.numel(); ++j) a[j] = r.uniform(-bound, bound);
    ad->b.name = w->name + ".lora_b";
    ad->b.is_weight = false;
    ad->b.var = autograd::Var(Tensor::zeros({out, cfg_.rank}), true);
    largest = std::max(largest, w->numel());
    factors.push_back(&ad->a);
    factors.push_back(&ad->b);
    adapted_.push_back(std::move(ad));
  }
  if (adapted_.empty()) fail("--lora-rank: the model has no weight matrix to adapt");
  store_.pack(factors);
  scratch_ = Tensor::empty({largest});
}

std::vector<nn::Parameter*> LoraTraining::parameters() const { return store_.params(); }

void LoraTraining::backward() {
  for (auto& ad : adapted_) {
    nn::Parameter& w = *ad->weight;
    if (w.packed.defined())  // a sparse layer: its gradient exists at the nonzeros only
      nn::lora_backward_packed(ad->b.grad(), ad->a.grad(), w.packed.grad().f32(), *w.sparse, ad->b.value(),
                               ad->a.value(), scale_);
    else
      nn::lora_backward(ad->b.grad(), ad->a.grad(), w.grad(), ad->b.value(), ad->a.value(), scale_, w.mask,
                        scratch_);
  }
}

void LoraTraining::merge() {
  for (auto& ad : adapted_) {
    nn::Parameter& w = *ad->weight;
    if (w.packed.defined())  // the layer reads its packed values; the dense ones are synced when needed
      nn::lora_merge_packed(w.packed.value().f32(), *w.sparse, ad->base, ad->b.value(), ad->a.value(), scale_);
    else
      nn::lora_merge(w.value(), ad->base, ad->b.value(), ad->a.value(), scale_, w.mask);
  }
}

double LoraTraining::step_flops() const {
  double f = 0;
  for (const auto& ad : adapted_) {
    const nn::Parameter& w = *ad->weight;
    const double entries = w.packed.defined() ? static_cast<double>(w.sparse->nnz()) : static_cast<double>(w.numel());
    f += 6.0 * entries * static_cast<double>(cfg_.rank);
  }
  return f;
}

void LoraTraining::put_checkpoint(Archive& a) const {
  put_model(a);
  for (const auto& ad : adapted_) a.tensors.emplace_back("lora/" + ad->weight->name + ".base", ad->base);
}

void LoraTraining::take_checkpoint(const Archive& a, const std::string& path) {
  auto take = [&](const std::string& key, Tensor& into) {
    const Tensor* t = a.find(key);
    if (!t) fail(path, ": missing tensor ", key, " (was the checkpoint written without --lora-rank ", cfg_.rank, "?)");
    if (t->shape() != into.shape())
      fail(path, ": ", key, " is ", t->shape().str(), " in the file, --lora-rank ", cfg_.rank, " needs ",
           into.shape().str());
    into.copy_from(*t);
  };
  for (auto& ad : adapted_) {
    take("lora/" + ad->weight->name + ".a", ad->a.value());
    take("lora/" + ad->weight->name + ".b", ad->b.value());
    take("lora/" + ad->weight->name + ".base", ad->base);
  }
}

void LoraTraining::put_model(Archive& a) const {
  for (const auto& ad : adapted_) {
    a.tensors.emplace_back("lora/" + ad->weight->name + ".a", ad->a.value());
    a.tensors.emplace_back("lora/" + ad->weight->name + ".b", ad->b.value());
  }
}

json LoraTraining::meta() const {
  return {{"rank", cfg_.rank}, {"alpha", cfg_.alpha > 0 ? cfg_.alpha : static_cast<double>(cfg_.rank)},
          {"scale", scale_}};
}

bool lora_adapts(const nn::Parameter& p) { return p.is_weight && p.value().ndim() >= 2; }

int64_t lora_factor_values(const nn::Model& model, int64_t rank) {
  int64_t n = 0;
  for (const nn::Parameter* p : model.parameters()) {
    if (!lora_adapts(*p)) continue;
    const auto [out, k] = nn::lora_matrix_dims(p->value().shape());
    n += rank * (out + k);
  }
  return n;
}

SavedLora read_lora(const std::string& model_path) {
  const Archive a = read_archive(model_path);
  SavedLora out;
  const json meta = json::parse(a.meta_json, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object()) fail(model_path, ": corrupt metadata");
  const json* lora = nullptr;
  if (meta.contains("info") && meta["info"].is_object() && meta["info"].contains("lora"))
    lora = &meta["info"]["lora"];
  if (!lora) return out;
  if (!lora->is_object() || !lora->contains("scale") || !(*lora)["scale"].is_number() ||
      !lora->contains("rank") || !(*lora)["rank"].is_number_integer())
    fail(model_path, ": info.lora must hold a rank and a scale");
  out.rank = (*lora)["rank"].get<int64_t>();
  out.alpha = lora->value("alpha", static_cast<double>(out.rank));
  out.scale = (*lora)["scale"].get<float>();
  // The factors in file order, A before B of each weight.
  for (const auto& [name, t] : a.tensors) {
    if (!name.starts_with("lora/") || !name.ends_with(".a")) continue;
    const std::string weight = name.substr(5, name.size() - 7);
    const Tensor* b = a.find("lora/" + weight + ".b");
    if (!b) fail(model_path, ": lora/", weight, ".a has no lora/", weight, ".b");
    out.factors.push_back({weight, t, *b});
  }
  if (out.factors.empty()) fail(model_path, ": info.lora is set but the file holds no factors");
  return out;
}

}  // namespace pare::train
