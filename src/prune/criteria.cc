// Pruning criteria (magnitude, random, SNIP, GraSP, SynFlow), their registry,
// and the per-unit L1 norms that structured pruning ranks by.
//
// Every criterion returns one score per entry of every prunable weight, in
// prunable() order; entries already masked out score -infinity. The selection
// (mask.cc) only chooses among alive entries, so that value is never compared;
// it is there so a printed or saved score tensor cannot be mistaken for a live
// ranking. A criterion that runs the network leaves no trace: values and
// gradients are copied before and copied back after (also when it raises), so
// the caller's model is bit for bit what it was. GraSP differentiates
// gradients numerically through a copy of the forward pass with its ReLU and
// max-pool patterns frozen (FrozenForward), which nn does not offer.
#include <algorithm>
#include <climits>
#include <cmath>
#include <deque>
#include <functional>
#include <iterator>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/base/error.h"
#include "pare/base/rng.h"
#include "pare/prune/prune.h"

namespace pare::prune {
namespace {

using autograd::Var;

constexpr float kDead = -std::numeric_limits<float>::infinity();

bool is_alive(const nn::Parameter& p, int64_t j) { return !p.mask.defined() || p.mask.f32()[j] != 0.0f; }

// Copies the model's value and gradient blobs and restores them when it goes
// out of scope, on the normal path and when a forward pass raises (a batch of
// the wrong shape), so scoring never leaves perturbed weights behind.
class RestoreOnExit {
 public:
  explicit RestoreOnExit(nn::ParameterStore& store)
      : store_(store), values_(store.values().clone()), grads_(store.grads().clone()) {}
  ~RestoreOnExit() {
    store_.values().copy_from(values_);
    store_.grads().copy_from(grads_);
  }
  RestoreOnExit(const RestoreOnExit&) = delete;
  RestoreOnExit& operator=(const RestoreOnExit&) = delete;

 private:
  nn::ParameterStore& store_;
  Tensor values_, grads_;
};

void require_gradients(const char* who) {
  if (!autograd::grad_enabled())
    fail("criterion ", who, " back-propagates through the model: call it outside a NoGradGuard");
}

// How a criterion runs the network on batch `b` of its input.
using ForwardFn = std::function<Var(size_t b, const Tensor& x)>;

// dL/dw of the model's loss, averaged over the batches (each batch weighs the
// same, whatever its size), one tensor per parameter of `params`. Runs in eval
// mode: dropout off, so the saliency is that of the network about to be
// trained rather than of one dropout sample, and the scores are deterministic.
// Overwrites the store's gradients (callers hold a RestoreOnExit).
std::vector<Tensor> mean_loss_gradient(nn::Model& model, const std::vector<nn::Parameter*>& params,
                                       const ScoreInput& input, const char* who,
                                       const ForwardFn& forward = {}) {
  if (input.batches.empty()) fail("criterion ", who, " needs data: pass at least one batch");
  model.store().zero_grad();
  nn::ForwardContext ctx{.training = false};
  for (size_t b = 0; b < input.batches.size(); ++b) {
    const auto& [x, y] = input.batches[b];
    Var out = forward ? forward(b, x) : model.forward(Var(x), ctx);
    model.loss(out, y).backward();
  }
  const float inv = 1.0f / static_cast<float>(input.batches.size());
  std::vector<Tensor> g;
  g.reserve(params.size());
  for (nn::Parameter* p : params) {
    Tensor t = p->grad().clone();
    for (float& v : t.span_f32()) v *= inv;
    g.push_back(std::move(t));
  }
  return g;
}

// The model's forward pass rebuilt from its spec, with every ReLU's on/off
// pattern and every max-pool's choice frozen at the weights it was recorded
// at. GraSP needs it: a central difference of gradients through a live ReLU
// net is wrong wherever a pre-activation changes sign between w - εd and
// w + εd, and wrong by a jump / 2ε, so the chance of a crossing (~ε) times
// its error (~1/ε) does not shrink with ε. On LeNet-300-100 the top 10% of
// the live-ReLU estimates at steps 2^-8 and 2^-10 shared only half their
// weights. With the patterns frozen the loss is smooth in w, and the
// difference converges to the Hessian that double-backward through ReLU
// (relu'' = 0) gives, the one GraSP's reference code uses.
//
// Max pooling is frozen as avgpool(h ⊙ onehot) · k² for non-overlapping
// windows (stride = window, as in every preset); overlapping windows stay
// live. At the recorded weights the output matches Model::forward (checked).
class FrozenForward {
 public:
  FrozenForward(nn::Model& model, size_t batches) : model_(model), patterns_(batches) {
    const nn::ModelSpec& spec = model.spec();
    for (size_t at = 0; at < spec.layers.size(); ++at) {
      const nn::LayerSpec& l = spec.layers[at];
      static const char* const kKnown[] = {"linear", "conv2d", "relu",    "sigmoid", "tanh",
                                           "maxpool", "avgpool", "flatten", "dropout"};
      if (std::find_if(std::begin(kKnown), std::end(kKnown), [&](const char* t) { return l.type == t; }) ==
          std::end(kKnown))
        fail("criterion grasp: layer type \"", l.type, "\" is not supported");
      Layer layer{.spec = &l};
      if (l.type == "linear" || l.type == "conv2d") {
        // Parameter names follow the spec's numbering (nn/module.cc).
        const std::string name = l.type + std::to_string(at + 1);
        layer.weight = model.find(name + ".weight");
        layer.bias = model.find(name + ".bias");
        PARE_CHECK(layer.weight, "criterion grasp: no parameter ", name, ".weight");
      }
      layers_.push_back(layer);
    }
  }

  // The network's output for batch b: recording the patterns on the first
  // call for that batch, replaying them after.
  Var operator()(size_t b, const Tensor& x) {
    std::vector<Tensor>& frozen = patterns_[b];
    const bool record = frozen.empty();
    // Model::forward first: it raises the usual error for an input that does
    // not fit, and gives the output this walk must reproduce.
    Tensor reference;
    if (record) {
      autograd::NoGradGuard no_grad;
      nn::ForwardContext ctx{.training = false};
      reference = model_.forward(Var(x), ctx).value();
    }
    const std::vector<int64_t>& in = model_.spec().input;
    std::vector<int64_t> dims{x.dim(0)};
    dims.insert(dims.end(), in.begin(), in.end());
    Var h = autograd::reshape(Var(x), Shape(std::span<const int64_t>(dims)));
    size_t site = 0;
    for (const Layer& layer : layers_) {
      const nn::LayerSpec& l = *layer.spec;
      const Var bias = layer.bias ? layer.bias->var : Var();
      if (l.type == "linear") {
        h = autograd::linear(h, layer.weight->var, bias);
      } else if (l.type == "conv2d") {
        h = autograd::conv2d(h, layer.weight->var, bias,
                             {.stride = l.stride ? l.stride : 1, .pad = l.pad, .circular = l.circular, .relu = false});
      } else if (l.type == "relu") {
        if (record) frozen.push_back(relu_pattern(h.value()));
        h = autograd::mul(h, Var(frozen[site++]));
      } else if (l.type == "maxpool") {
        const int64_t k = l.kernel, stride = l.stride ? l.stride : l.kernel;
        if (stride != k) {
          h = autograd::max_pool2d(h, k, stride);
          continue;
        }
        if (record) frozen.push_back(max_pattern(h.value(), k));
        h = autograd::avg_pool2d(autograd::mul(h, Var(frozen[site++])), k, k);
        h = autograd::mul(h, Var(Tensor::full(h.shape(), static_cast<float>(k * k))));
      } else if (l.type == "avgpool") {
        h = autograd::avg_pool2d(h, l.kernel, l.stride);
      } else if (l.type == "sigmoid") {
        h = autograd::sigmoid(h);
      } else if (l.type == "tanh") {
        h = autograd::tanh(h);
      } else if (l.type == "flatten") {
        h = autograd::flatten(h);
      }  // dropout: the identity in eval mode
    }
    if (record) check_matches(reference, h.value());
    return h;
  }

 private:
  struct Layer {
    const nn::LayerSpec* spec = nullptr;
    nn::Parameter* weight = nullptr;
    nn::Parameter* bias = nullptr;
  };

  static Tensor relu_pattern(const Tensor& z) {
    Tensor m = Tensor::empty(z.shape());
    const float* zv = z.f32();
    float* mv = m.f32();
    for (int64_t i = 0, n = z.numel(); i < n; ++i) mv[i] = zv[i] > 0 ? 1.0f : 0.0f;
    return m;
  }
  // 1 at the first maximum of every k x k window (the entry max_pool2d's
  // backward routes to), 0 elsewhere; h: (B, C, H, W).
  static Tensor max_pattern(const Tensor& h, int64_t k) {
    Tensor m = Tensor::zeros(h.shape());
    const int64_t planes = h.dim(0) * h.dim(1), H = h.dim(2), W = h.dim(3);
    for (int64_t p = 0; p < planes; ++p) {
      const float* hv = h.f32() + p * H * W;
      float* mv = m.f32() + p * H * W;
      for (int64_t oy = 0; oy + k <= H; oy += k)
        for (int64_t ox = 0; ox + k <= W; ox += k) {
          int64_t best = oy * W + ox;
          for (int64_t y = oy; y < oy + k; ++y)
            for (int64_t x = ox; x < ox + k; ++x)
              if (hv[y * W + x] > hv[best]) best = y * W + x;
          mv[best] = 1.0f;
        }
    }
    return m;
  }
  // Guards against this walk drifting from Model::forward's semantics.
  static void check_matches(const Tensor& ref, const Tensor& out) {
    PARE_CHECK(ref.numel() == out.numel(), "frozen forward: output ", out.shape().str(), " vs model ",
               ref.shape().str());
    double scale = 1, diff = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      scale = std::max(scale, static_cast<double>(std::fabs(ref.f32()[i])));
      diff = std::max(diff, static_cast<double>(std::fabs(ref.f32()[i] - out.f32()[i])));
    }
    PARE_CHECK(diff <= 1e-4 * scale, "frozen forward differs from Model::forward by ", diff);
  }

  nn::Model& model_;
  std::vector<Layer> layers_;
  std::vector<std::vector<Tensor>> patterns_;  // per batch, per ReLU / max-pool site
};

// Scores of shape of each prunable parameter, filled by f(p, j) for alive
// entries and kDead for masked ones.
template <typename F>
Scores score_each(const std::vector<nn::Parameter*>& params, F f) {
  Scores s;
  s.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const nn::Parameter& p = *params[i];
    Tensor t = Tensor::empty(p.value().shape());
    float* out = t.f32();
    for (int64_t j = 0, n = p.numel(); j < n; ++j) out[j] = is_alive(p, j) ? f(i, j) : kDead;
    s.push_back(std::move(t));
  }
  return s;
}

Scores magnitude_scores(nn::Model& model, const ScoreInput&) {
  const auto params = prunable(model);
  return score_each(params, [&](size_t i, int64_t j) { return std::fabs(params[i]->value().f32()[j]); });
}

Scores random_scores(nn::Model& model, const ScoreInput& input) {
  const auto params = prunable(model);
  // One stream per parameter, keyed by its store index, so a parameter's
  // scores do not depend on which other parameters are prunable. Entry j gets
  // the j-th draw whether or not it is alive, so masking more entries does not
  // shift the scores of the ones still alive.
  const Rng root(input.seed);
  Scores s;
  for (nn::Parameter* p : params) {
    Rng rng = root.fork(static_cast<uint64_t>(p->index));
    Tensor t = Tensor::empty(p->value().shape());
    float* out = t.f32();
    for (int64_t j = 0, n = p->numel(); j < n; ++j) {
      const float u = rng.uniform();
      out[j] = is_alive(*p, j) ? u : kDead;
    }
    s.push_back(std::move(t));
  }
  return s;
}

// SNIP (Lee et al. 2019): |g ⊙ w|, the first-order change of the loss when a
// weight is removed.
Scores snip_scores(nn::Model& model, const ScoreInput& input) {
  require_gradients("snip");
  const auto params = prunable(model);
  RestoreOnExit restore(model.store());
  const std::vector<Tensor> g = mean_loss_gradient(model, params, input, "snip");
  return score_each(params, [&](size_t i, int64_t j) {
    return std::fabs(g[i].f32()[j] * params[i]->value().f32()[j]);
  });
}

// GraSP (Wang et al. 2020): keep the largest w ⊙ Hg, g the loss gradient and
// H the Hessian over the prunable weights (GraSP removes the largest
// -w ⊙ Hg, the weights whose removal most reduces the gradient flow g^T g).
// The reference code's softmax temperature (T = 200) is not applied: the loss
// is the model's own.
//
// The tape has no double-backward, so Hg is a central difference of gradients
// along d = g restricted to the alive prunable weights (biases and masked
// entries are not moved, so masked weights stay exactly 0), through the net
// with its ReLU and max-pool patterns frozen at w (FrozenForward says why):
//
//   Hg ≈ (∇L(w + εd) − ∇L(w − εd)) / (2ε),  ε = 2^-12 · ‖w‖ / ‖d‖.
//
// Why this ε: the step's length is 2^-12 of the weights' length, a relative
// step independent of the loss's and the gradient's scale. The error is
// truncation ~ε² (third derivatives) plus float32 rounding ~u/ε. Textbook
// balance (Nocedal & Wright §8.1) puts the relative step at u^(1/3) = 2^-8,
// but the step follows g, which is concentrated on few weights, so those move
// far more than 2^-8 of their size and truncation dominates there: on
// LeNet-300-100 (smooth activations, so the effect is measurable without
// kinks) the estimates at neighbouring steps differ by 5e-3 at 2^-8/2^-10,
// 3e-4 at 2^-10/2^-12, 8e-5 at 2^-12/2^-14, then rounding takes over
// (3e-4 at 2^-14/2^-16, 5e-3 at 2^-18/2^-20). 2^-12 sits at the bottom with
// a margin on the rounding side for deeper nets that accumulate more.
Scores grasp_scores(nn::Model& model, const ScoreInput& input) {
  require_gradients("grasp");
  const auto params = prunable(model);
  RestoreOnExit restore(model.store());
  FrozenForward frozen(model, input.batches.size());
  // Records the patterns at w (and checks them against Model::forward).
  const std::vector<Tensor> g = mean_loss_gradient(model, params, input, "grasp", std::ref(frozen));

  std::vector<Tensor> w0, d;
  double w_norm2 = 0, d_norm2 = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const nn::Parameter& p = *params[i];
    w0.push_back(p.value().clone());
    Tensor di = g[i].clone();
    float* dv = di.f32();
    const float* wv = p.value().f32();
    for (int64_t j = 0, n = p.numel(); j < n; ++j) {
      if (!is_alive(p, j)) {
        dv[j] = 0.0f;
        continue;
      }
      w_norm2 += static_cast<double>(wv[j]) * wv[j];
      d_norm2 += static_cast<double>(dv[j]) * dv[j];
    }
    d.push_back(std::move(di));
  }
  // A zero gradient means Hg = 0: every alive weight scores 0.
  if (d_norm2 == 0) return score_each(params, [](size_t, int64_t) { return 0.0f; });

  const double kRelativeStep = 0x1.0p-12;  // measured, see above
  const double eps = kRelativeStep * (w_norm2 > 0 ? std::sqrt(w_norm2) : 1.0) / std::sqrt(d_norm2);
  auto gradient_at = [&](double sign) {
    for (size_t i = 0; i < params.size(); ++i) {
      float* v = params[i]->value().f32();
      const float* w = w0[i].f32();
      const float* dv = d[i].f32();
      for (int64_t j = 0, n = params[i]->numel(); j < n; ++j)
        v[j] = static_cast<float>(w[j] + sign * eps * dv[j]);
    }
    return mean_loss_gradient(model, params, input, "grasp", std::ref(frozen));
  };
  const std::vector<Tensor> g_plus = gradient_at(+1.0);
  const std::vector<Tensor> g_minus = gradient_at(-1.0);
  return score_each(params, [&](size_t i, int64_t j) {
    const double hg = (static_cast<double>(g_plus[i].f32()[j]) - g_minus[i].f32()[j]) / (2 * eps);
    return static_cast<float>(w0[i].f32()[j] * hg);
  });
}

// SynFlow (Tanaka et al. 2020): |w ⊙ dR/dw|, R the sum of the output of the
// network with every parameter replaced by its absolute value, fed one
// all-ones sample: data-free, and the scores of a layer sum to R in a
// bias-free ReLU net, so no layer is pruned away entirely. Eval mode (no
// dropout). The spec's input_mean/input_std need no neutralising: the data
// pipeline standardises inputs, Model::forward does not, so the ones reach
// the first layer as they are.
//
// R grows like the product of the layers' gains and overflows float32 in deep
// nets (and underflows in very sparse ones). When R is not within
// [2^-100, 2^100], every weight is scaled by 2^k and the bias of the l-th
// weight layer by 2^(k·l): in a positively homogeneous net (ReLU, pooling,
// flatten) every activation after layer l then scales by 2^(k·l), R by
// 2^(k·L) and every score by that same power of two, exactly, so every
// comparison the selection makes is unchanged. k aims R at 1 (the mean
// log-gain per layer), or steps and bisects when R is inf or 0. With sigmoid
// or tanh the rescaled net's scores are used (the unscaled ones are not
// representable). If no k gives a finite R, raises Error; if R stays 0, the
// net is disconnected and every alive weight scores 0.
Scores synflow_scores(nn::Model& model, const ScoreInput&) {
  require_gradients("synflow");
  const auto params = prunable(model);
  nn::ParameterStore& store = model.store();
  RestoreOnExit restore(store);

  // |value| (masked entries stay 0), and each parameter's weight-layer number.
  const std::vector<nn::Parameter*>& all = store.params();
  std::vector<Tensor> abs_values;
  std::vector<int> layer_of;
  int layers = 0;
  for (nn::Parameter* p : all) {
    if (p->is_weight) ++layers;
    layer_of.push_back(std::max(layers, 1));
    Tensor a = p->value().clone();
    float* v = a.f32();
    for (int64_t j = 0, n = p->numel(); j < n; ++j) v[j] = is_alive(*p, j) ? std::fabs(v[j]) : 0.0f;
    abs_values.push_back(std::move(a));
  }
  layers = std::max(layers, 1);

  std::vector<int64_t> input_shape{1};
  input_shape.insert(input_shape.end(), model.spec().input.begin(), model.spec().input.end());
  const Tensor ones = Tensor::full(Shape(std::span<const int64_t>(input_shape)), 1.0f);
  nn::ForwardContext ctx{.training = false};

  const int kMaxAttempts = 40;
  const int step = std::max(1, 64 / layers);  // ~2^64 on R per step when bracketing
  int k = 0, lo = INT_MIN, hi = INT_MAX;  // lo: R was 0 there; hi: R was not finite there
  for (int attempt = 0;; ++attempt) {
    for (size_t i = 0; i < all.size(); ++i) {
      const int e = all[i]->is_weight ? k : k * layer_of[i];
      const float* a = abs_values[i].f32();
      float* v = all[i]->value().f32();
      for (int64_t j = 0, n = all[i]->numel(); j < n; ++j) v[j] = std::ldexp(a[j], e);
    }
    store.zero_grad();
    Var out = model.forward(Var(ones), ctx);
    double r = 0;
    for (float o : out.value().span_f32()) r += o;
    bool too_big = !std::isfinite(r) || r > 0x1.0p100;
    const bool too_small = !too_big && r < 0x1.0p-100;
    Scores s;
    if (!too_big && !too_small) {
      out.backward(Tensor::full(out.shape(), 1.0f));
      s = score_each(params, [&](size_t i, int64_t j) {
        return std::fabs(params[i]->value().f32()[j] * params[i]->grad().f32()[j]);
      });
      for (const Tensor& t : s)
        for (float x : t.span_f32()) too_big = too_big || std::isnan(x) || x == std::numeric_limits<float>::infinity();
      if (!too_big) return s;
    }
    if (too_big) hi = std::min(hi, k);
    if (too_small) lo = std::max(lo, k);
    int next;
    if (std::isfinite(r) && r > 0) {
      next = k - static_cast<int>(std::lround(std::log2(r) / layers));
    } else if (too_big) {
      next = k - step;
    } else {
      next = k + step;
    }
    // Stay strictly inside the bracket, bisecting when the jump would leave it.
    if ((lo != INT_MIN && next <= lo) || (hi != INT_MAX && next >= hi)) {
      next = (lo != INT_MIN && hi != INT_MAX) ? lo + (hi - lo) / 2 : (too_big ? k - 1 : k + 1);
    }
    const bool bracket_closed = lo != INT_MIN && hi != INT_MAX && hi - lo <= 1;
    if (attempt + 1 >= kMaxAttempts || bracket_closed || next == k) {
      // R was 0 at some scale and never finite and positive: no flow is
      // representable (a bias-free net with a fully masked layer), so
      // nothing distinguishes the weights.
      if (lo != INT_MIN) return score_each(params, [](size_t, int64_t) { return 0.0f; });
      fail("criterion synflow: the network's output is not finite in float32 at any rescaling "
           "(tried ", attempt + 1, " scales); check the model's weights for inf or NaN");
    }
    k = next;
  }
}

std::vector<Criterion> builtin_criteria() {
  return {
      {.name = "magnitude",
       .summary = "|w|: keep the largest weights (Han et al. 2015; the lottery-ticket criterion)",
       .score = magnitude_scores},
      {.name = "random",
       .summary = "uniform random scores from --seed: the control every criterion must beat",
       .score = random_scores},
      {.name = "snip",
       .summary = "|g*w| on a few batches at initialisation (Lee et al. 2019)",
       .needs_data = true,
       .score = snip_scores},
      {.name = "grasp",
       .summary = "w*Hg on a few batches: keep what preserves gradient flow (Wang et al. 2020)",
       .needs_data = true,
       .score = grasp_scores},
      {.name = "synflow",
       .summary = "|w*dR/dw| of the all-positive net, data-free, 100 rounds (Tanaka et al. 2020)",
       .iterations = 100,
       .score = synflow_scores},
  };
}

// Built lazily on first use rather than by static initialisers, which a
// static library may drop or run after a caller's own static code.
struct Registry {
  std::mutex mu;
  std::deque<Criterion> entries;  // a deque: registering keeps references to others valid
};
Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;  // never destroyed: lookups may run during static teardown
    for (Criterion& c : builtin_criteria()) reg->entries.push_back(std::move(c));
    return reg;
  }();
  return *r;
}

std::string joined_names(const std::deque<Criterion>& entries) {
  std::string out;
  for (const Criterion& c : entries) out += (out.empty() ? "" : ", ") + c.name;
  return out;
}

}  // namespace

const Criterion& criterion(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const Criterion& c : r.entries)
    if (c.name == name) return c;
  fail("unknown pruning criterion \"", name, "\": use one of ", joined_names(r.entries));
}

std::vector<std::string> criterion_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const Criterion& c : r.entries) names.push_back(c.name);
  return names;
}

void register_criterion(Criterion c) {
  if (c.name.empty()) fail("register_criterion: a criterion needs a name");
  if (!c.score) fail("register_criterion: criterion \"", c.name, "\" has no score function");
  if (c.iterations < 1)
    fail("register_criterion: criterion \"", c.name, "\" needs iterations >= 1, has ", c.iterations);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  // Replacing would invalidate the references criterion() has handed out.
  for (const Criterion& e : r.entries)
    if (e.name == c.name) fail("register_criterion: a criterion named \"", c.name, "\" already exists");
  r.entries.push_back(std::move(c));
}

std::vector<double> unit_l1_norms(const nn::Parameter& p) {
  const Shape& s = p.value().shape();
  if (s.ndim() != 2 && s.ndim() != 4)
    fail("unit_l1_norms: ", p.name, " has shape ", s.str(),
         "; expects a linear (out, in) or conv (OC, C, K, K) weight");
  const int64_t units = s[0], per_unit = s[0] ? p.numel() / s[0] : 0;
  const float* v = p.value().f32();
  const float* m = p.mask.defined() ? p.mask.f32() : nullptr;
  std::vector<double> norms(static_cast<size_t>(units), 0.0);
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = u * per_unit; j < (u + 1) * per_unit; ++j)
      if (!m || m[j] != 0.0f) norms[static_cast<size_t>(u)] += std::fabs(v[j]);
  return norms;
}

}  // namespace pare::prune
