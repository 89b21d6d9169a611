// Gradual magnitude pruning, SET and RigL, and ERK layer densities.
#include "pare/prune/sparse_training.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "pare/base/error.h"
#include "pare/base/rng.h"
#include "pare/prune/prune.h"

namespace pare::prune {

const std::vector<std::string>& sparse_training_methods() {
  static const std::vector<std::string> names = {"none", "gmp", "set", "rigl"};
  return names;
}

void SparseTrainingConfig::validate() const {
  const auto& m = sparse_training_methods();
  if (std::find(m.begin(), m.end(), method) == m.end())
    fail("--sparse-training must be none, gmp, set or rigl, got \"", method, "\"");
  if (!enabled()) return;
  if (!(sparsity > 0.0 && sparsity < 1.0))
    fail("--sparsity must be in (0, 1) for --sparse-training ", method, ", got ", sparsity);
  if (distribution != "erk" && distribution != "uniform" && distribution != "global")
    fail("--distribution must be erk, uniform or global, got \"", distribution, "\"");
  if (distribution == "global" && method != "gmp")
    fail("--distribution global ranks all layers together and applies to gmp only; ", method,
         " needs per-layer densities (erk or uniform)");
  if (interval < 1) fail("--update-interval must be at least 1, got ", interval);
  if (!(drop_fraction > 0.0 && drop_fraction <= 1.0))
    fail("--drop-fraction must be in (0, 1], got ", drop_fraction);
  if (!(begin >= 0.0 && begin < end && end <= 1.0))
    fail("need 0 <= --prune-begin < --prune-end <= 1, got ", begin, " and ", end);
}

std::vector<double> layer_densities(const nn::Model& model, double density,
                                    const std::string& distribution) {
  const auto params = prunable(model);
  std::vector<double> out(params.size(), density);
  if (distribution == "uniform" || distribution == "global") return out;
  if (distribution != "erk") fail("unknown layer distribution \"", distribution, "\"");
  // raw_l = sum(dims) / prod(dims); density_l = eps * raw_l with eps chosen so
  // that the kept weights add up; a layer whose density would pass 1 is made
  // dense and the budget re-solved without it.
  std::vector<double> raw(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    double sum = 0;
    for (int64_t d : params[i]->value().shape()) sum += static_cast<double>(d);
    raw[i] = sum / static_cast<double>(params[i]->numel());
  }
  std::vector<bool> dense(params.size(), false);
  for (;;) {
    double rhs = 0, divisor = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto n = static_cast<double>(params[i]->numel());
      if (dense[i]) {
        rhs -= n * (1.0 - density);
      } else {
        rhs += n * density;
        divisor += raw[i] * n;
      }
    }
    if (divisor == 0) break;  // every layer dense
    const double eps = rhs / divisor;
    double max_raw = 0;
    for (size_t i = 0; i < params.size(); ++i)
      if (!dense[i]) max_raw = std::max(max_raw, raw[i]);
    if (eps * max_raw <= 1.0) {
      for (size_t i = 0; i < params.size(); ++i) out[i] = dense[i] ? 1.0 : eps * raw[i];
      return out;
    }
    for (size_t i = 0; i < params.size(); ++i)
      if (raw[i] == max_raw) dense[i] = true;
  }
  std::fill(out.begin(), out.end(), 1.0);
  return out;
}

double gradual_sparsity(double final_sparsity, int64_t step, int64_t begin_step, int64_t end_step) {
  if (step <= begin_step) return 0.0;
  if (step >= end_step) return final_sparsity;
  const double progress =
      static_cast<double>(step - begin_step) / static_cast<double>(end_step - begin_step);
  return final_sparsity * (1.0 - std::pow(1.0 - progress, 3.0));
}

double cosine_drop_fraction(double initial, int64_t step, int64_t end_step) {
  if (step >= end_step) return 0.0;
  return initial / 2.0 *
         (1.0 + std::cos(std::numbers::pi * static_cast<double>(step) / static_cast<double>(end_step)));
}

SparseTrainer::SparseTrainer(const SparseTrainingConfig& cfg, int64_t total_steps, uint64_t seed)
    : cfg_(cfg), total_steps_(total_steps), seed_(seed) {
  cfg_.validate();
  begin_step_ = static_cast<int64_t>(std::llround(cfg_.begin * static_cast<double>(total_steps)));
  end_step_ = static_cast<int64_t>(std::llround(cfg_.end * static_cast<double>(total_steps)));
}

namespace {

Scores random_scores(const std::vector<nn::Parameter*>& params, const Rng& root) {
  Scores s;
  for (size_t i = 0; i < params.size(); ++i) {
    Rng r = root.fork(i);
    Tensor t = Tensor::empty(params[i]->value().shape());
    for (int64_t j = 0; j < t.numel(); ++j) t.f32()[j] = r.uniform();
    s.push_back(std::move(t));
  }
  return s;
}

int64_t count_for(double density, int64_t n) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::llround(density * static_cast<double>(n))), 0, n);
}

// The first `k` indices of `idx` by descending key (ties: lower index first).
void top_k(std::vector<int64_t>& idx, int64_t k, const std::vector<float>& key) {
  auto better = [&](int64_t a, int64_t b) { return key[a] != key[b] ? key[a] > key[b] : a < b; };
  k = std::min<int64_t>(k, static_cast<int64_t>(idx.size()));
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
  idx.resize(static_cast<size_t>(k));
}

}  // namespace

void SparseTrainer::begin(nn::Model& model) {
  ensure_masks(model);
  if (cfg_.method != "set" && cfg_.method != "rigl") return;
  // Sparse from the first step: a random mask at the layer densities.
  const auto params = prunable(model);
  const auto dens = layer_densities(model, 1.0 - cfg_.sparsity, cfg_.distribution);
  std::vector<int64_t> keep;
  for (size_t i = 0; i < params.size(); ++i) {
    std::fill_n(params[i]->mask.f32(), params[i]->numel(), 1.0f);
    keep.push_back(count_for(dens[i], params[i]->numel()));
  }
  keep_top_per_layer(model, random_scores(params, Rng(seed_).fork(0x5E7)), keep);
}

bool SparseTrainer::due(int64_t step) const {
  if (cfg_.method == "gmp")
    return step >= begin_step_ && step <= end_step_ &&
           ((step - begin_step_) % cfg_.interval == 0 || step == end_step_);
  if (cfg_.method == "set" || cfg_.method == "rigl")
    return step > 0 && step < end_step_ && step % cfg_.interval == 0;
  return false;
}

bool SparseTrainer::needs_dense_gradient(int64_t step) const {
  return cfg_.method == "rigl" && due(step);
}

bool SparseTrainer::update(int64_t step, nn::Model& model) {
  if (!due(step)) return false;
  if (cfg_.method == "gmp")
    gradual(step, model);
  else
    rewire(step, model);
  return true;
}

void SparseTrainer::gradual(int64_t step, nn::Model& model) {
  const auto params = prunable(model);
  const double s = gradual_sparsity(cfg_.sparsity, step, begin_step_, end_step_);
  if (cfg_.distribution == "global") {
    const SparsityReport r = sparsity(model);
    keep_top_global(model, criterion("magnitude").score(model, {}),
                    std::min(r.kept, count_for(1.0 - s, r.total)));
    return;
  }
  // Each layer follows the cubic schedule towards its own final density.
  const auto dens = layer_densities(model, 1.0 - cfg_.sparsity, cfg_.distribution);
  std::vector<int64_t> keep;
  for (size_t i = 0; i < params.size(); ++i) {
    const double layer_s = gradual_sparsity(1.0 - dens[i], step, begin_step_, end_step_);
    keep.push_back(std::min(alive(*params[i]), count_for(1.0 - layer_s, params[i]->numel())));
  }
  keep_top_per_layer(model, criterion("magnitude").score(model, {}), keep);
}

void SparseTrainer::rewire(int64_t step, nn::Model& model) {
  const double f = cosine_drop_fraction(cfg_.drop_fraction, step, end_step_);
  const auto params = prunable(model);
  const Rng grow_root = Rng(seed_).fork(0x6A0E).fork(static_cast<uint64_t>(step));
  std::vector<float> key;
  std::vector<int64_t> on, off;
  for (size_t li = 0; li < params.size(); ++li) {
    nn::Parameter& p = *params[li];
    float* mask = p.mask.f32();
    float* w = p.value().f32();
    const int64_t n = p.numel();
    on.clear();
    for (int64_t j = 0; j < n; ++j)
      if (mask[j] != 0.0f) on.push_back(j);
    const auto k = static_cast<int64_t>(f * static_cast<double>(on.size()));
    if (k == 0 || static_cast<int64_t>(on.size()) == n) continue;
    // Drop the k alive weights of smallest magnitude.
    key.assign(static_cast<size_t>(n), 0.0f);
    for (int64_t j : on) key[j] = -std::fabs(w[j]);
    top_k(on, k, key);
    for (int64_t j : on) mask[j] = 0.0f;
    // Grow k among the inactive ones (the just-dropped included): by gradient
    // magnitude (RigL) or at random (SET). A newly grown weight starts at 0
    // (it was masked, so it is 0); one dropped and regrown in the same update
    // keeps its value, as in Evci et al.'s code.
    off.clear();
    for (int64_t j = 0; j < n; ++j)
      if (mask[j] == 0.0f) off.push_back(j);
    if (cfg_.method == "rigl") {
      const float* g = p.grad().f32();
      for (int64_t j : off) key[j] = std::fabs(g[j]);
    } else {
      Rng r = grow_root.fork(li);
      for (int64_t j = 0; j < n; ++j) key[j] = r.uniform();
    }
    top_k(off, k, key);
    for (int64_t j : off) mask[j] = 1.0f;
    for (int64_t j = 0; j < n; ++j)
      if (mask[j] == 0.0f) w[j] = 0.0f;
  }
}

}  // namespace pare::prune
