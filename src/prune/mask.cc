// Masks on Parameters, sparsity reports, and turning scores into masks.
#include <algorithm>
#include <cmath>

#include "pare/base/error.h"
#include "pare/prune/prune.h"

namespace pare::prune {

std::vector<nn::Parameter*> prunable(const nn::Model& model) {
  std::vector<nn::Parameter*> out;
  for (nn::Parameter* p : model.parameters())
    if (p->is_weight) out.push_back(p);
  return out;
}

void ensure_masks(nn::Model& model) {
  for (nn::Parameter* p : prunable(model)) {
    if (p->mask.defined()) continue;
    p->mask = Tensor::empty(p->value().shape());
    std::fill_n(p->mask.f32(), p->numel(), 1.0f);
  }
}

void apply_masks(nn::Model& model) {
  for (nn::Parameter* p : model.parameters()) p->apply_mask();
}

int64_t alive(const nn::Parameter& p) {
  if (!p.mask.defined()) return p.numel();
  const float* m = p.mask.f32();
  int64_t n = 0;
  for (int64_t i = 0; i < p.numel(); ++i) n += m[i] != 0.0f;
  return n;
}

SparsityReport sparsity(const nn::Model& model) {
  SparsityReport r;
  for (nn::Parameter* p : prunable(model)) {
    LayerSparsity l{p->name, p->numel(), alive(*p)};
    r.total += l.total;
    r.kept += l.kept;
    r.layers.push_back(l);
  }
  return r;
}

namespace {

// One alive weight as a selection candidate: its score and its position
// (parameter, offset) packed so that ties break by position, which makes the
// selection independent of the sort algorithm.
struct Candidate {
  float score;
  int32_t param;
  int64_t offset;
};

bool better(const Candidate& a, const Candidate& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.param != b.param) return a.param < b.param;
  return a.offset < b.offset;
}

void check_scores(const std::vector<nn::Parameter*>& params, const Scores& scores) {
  if (scores.size() != params.size())
    fail("pruning scores: ", scores.size(), " tensors for ", params.size(), " prunable parameters");
  for (size_t i = 0; i < params.size(); ++i)
    if (scores[i].shape() != params[i]->value().shape())
      fail("pruning scores for ", params[i]->name, " are ", scores[i].shape().str(),
           ", the parameter is ", params[i]->value().shape().str());
}

void collect(const nn::Parameter& p, const Tensor& score, int32_t index,
             std::vector<Candidate>& out) {
  const float* s = score.f32();
  const float* m = p.mask.defined() ? p.mask.f32() : nullptr;
  for (int64_t i = 0; i < p.numel(); ++i) {
    if (m && m[i] == 0.0f) continue;
    // NaN would make the order undefined; it ranks last.
    out.push_back({std::isnan(s[i]) ? -INFINITY : s[i], index, i});
  }
}

// Masks every candidate past the first `keep` (in `better` order).
void keep_first(std::vector<Candidate>& c, int64_t keep, const std::vector<nn::Parameter*>& params) {
  if (keep < static_cast<int64_t>(c.size())) {
    std::nth_element(c.begin(), c.begin() + keep, c.end(), better);
    for (auto it = c.begin() + keep; it != c.end(); ++it)
      params[static_cast<size_t>(it->param)]->mask.f32()[it->offset] = 0.0f;
  }
}

}  // namespace

void keep_top_global(nn::Model& model, const Scores& scores, int64_t keep) {
  ensure_masks(model);
  const auto params = prunable(model);
  check_scores(params, scores);
  std::vector<Candidate> c;
  for (size_t i = 0; i < params.size(); ++i)
    collect(*params[i], scores[i], static_cast<int32_t>(i), c);
  if (keep < 0 || keep > static_cast<int64_t>(c.size()))
    fail("cannot keep ", keep, " weights: ", c.size(), " are alive");
  keep_first(c, keep, params);
  apply_masks(model);
}

void keep_top_per_layer(nn::Model& model, const Scores& scores, const std::vector<int64_t>& keep) {
  ensure_masks(model);
  const auto params = prunable(model);
  check_scores(params, scores);
  if (keep.size() != params.size())
    fail("per-layer keep counts: ", keep.size(), " for ", params.size(), " prunable parameters");
  std::vector<Candidate> c;
  for (size_t i = 0; i < params.size(); ++i) {
    c.clear();
    collect(*params[i], scores[i], static_cast<int32_t>(i), c);
    if (keep[i] < 0 || keep[i] > static_cast<int64_t>(c.size()))
      fail(params[i]->name, ": cannot keep ", keep[i], " weights, ", c.size(), " are alive");
    keep_first(c, keep[i], params);
  }
  apply_masks(model);
}

Scope parse_scope(const std::string& name) {
  if (name == "global") return Scope::global;
  if (name == "layerwise") return Scope::layerwise;
  fail("unknown pruning scope \"", name, "\"; choose global or layerwise");
}

void one_shot(nn::Model& model, const Criterion& c, double sparsity, Scope scope,
              const ScoreInput& input) {
  if (!(sparsity >= 0.0 && sparsity < 1.0))
    fail("--sparsity must be in [0, 1), got ", sparsity);
  if (c.needs_data && input.batches.empty())
    fail("criterion ", c.name, " needs data: give it at least one batch");
  ensure_masks(model);
  const auto params = prunable(model);
  const SparsityReport now = prune::sparsity(model);
  const double target_density = 1.0 - sparsity;
  if (target_density * now.total > now.kept + 0.5)
    fail("the model is already ", now.sparsity(), " sparse; cannot prune it to ", sparsity);
  // Iterative criteria (SynFlow) tighten the mask on an exponential schedule:
  // after iteration k of n the density is target^(k/n) (Tanaka et al. 2020).
  const int n = std::max(1, c.iterations);
  for (int k = 1; k <= n; ++k) {
    const double density = std::pow(target_density, static_cast<double>(k) / n);
    const Scores scores = c.score(model, input);
    if (scope == Scope::global) {
      const auto keep = static_cast<int64_t>(std::llround(density * now.total));
      keep_top_global(model, scores, std::min(keep, prune::sparsity(model).kept));
    } else {
      std::vector<int64_t> keep;
      for (nn::Parameter* p : params)
        keep.push_back(std::min(alive(*p), static_cast<int64_t>(std::llround(density * p->numel()))));
      keep_top_per_layer(model, scores, keep);
    }
  }
}

}  // namespace pare::prune
