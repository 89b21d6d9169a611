// The pruning extension of the Game of Life study: dead-channel reduction,
// the filter reader, the magnitude-pruning searches and the ticket test
// (life_prune.h).
#include "pare/experiments/life_prune.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "pare/base/error.h"
#include "pare/base/strings.h"
#include "pare/base/file.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/data/life.h"
#include "pare/prune/prune.h"
#include "pare/prune/shrink.h"

namespace pare::experiments {

using json = nlohmann::json;

namespace {

// ---- the chain of convolutions ----------------------------------------------

struct ConvLayer {
  nn::Parameter* weight = nullptr;  // (out, in, k, k)
  nn::Parameter* bias = nullptr;
  int64_t out = 0, in = 0, k = 0;
  bool foldable = false;  // a constant input channel gives a constant output
};

std::vector<ConvLayer> conv_chain(const nn::Model& model) {
  const nn::ModelSpec& spec = model.spec();
  std::vector<ConvLayer> out;
  for (size_t at = 0; at < spec.layers.size(); ++at) {
    const nn::LayerSpec& l = spec.layers[at];
    const bool last = at + 1 == spec.layers.size();
    if (l.type == "relu") {
      if (at == 0 || spec.layers[at - 1].type != "conv2d")
        fail("model ", spec.name, ": layer ", at + 1, " (relu) must follow a conv2d; the channel "
             "reduction reads chains of conv2d + relu as the life preset builds them");
      continue;
    }
    if (l.type != "conv2d")
      fail("model ", spec.name, ": layer ", at + 1, " is ", l.type, "; the channel reduction reads only "
           "chains of conv2d + relu (the life preset)");
    if (!last && spec.layers[at + 1].type != "relu")
      fail("model ", spec.name, ": conv2d layer ", at + 1, " must be followed by a relu (or be the last layer)");
    ConvLayer c;
    c.weight = model.find("conv2d" + std::to_string(at + 1) + ".weight");
    c.bias = model.find("conv2d" + std::to_string(at + 1) + ".bias");
    if (!c.weight || !c.bias)
      fail("model ", spec.name, ": conv2d layer ", at + 1, " needs a weight and a bias for the channel reduction");
    const Tensor& w = c.weight->value();
    c.out = w.dim(0);
    c.in = w.dim(1);
    c.k = w.dim(2);
    c.foldable = (l.stride <= 1) && ((c.k == 1 && l.pad == 0) || l.circular);
    out.push_back(c);
  }
  if (out.empty()) fail("model ", spec.name, " has no conv2d layer");
  return out;
}

bool alive_at(const nn::Parameter& p, int64_t j) { return !p.mask.defined() || p.mask.f32()[j] != 0.0f; }

// Whether weight (o, c, :, :) of a layer has an alive entry.
bool connected(const ConvLayer& l, int64_t o, int64_t c) {
  const int64_t g = l.k * l.k, base = (o * l.in + c) * g;
  for (int64_t j = base; j < base + g; ++j)
    if (alive_at(*l.weight, j)) return true;
  return false;
}

enum class State { live, constant, dead };

// The fixed point of the counting rules in life_prune.h.
std::vector<std::vector<State>> channel_states(const std::vector<ConvLayer>& layers) {
  const size_t n = layers.size();
  std::vector<std::vector<State>> s(n);
  for (size_t i = 0; i < n; ++i) s[i].assign(static_cast<size_t>(layers[i].out), State::live);
  auto input_live = [&](size_t i, int64_t c) { return i == 0 || s[i - 1][static_cast<size_t>(c)] == State::live; };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i + 1 < n; ++i)
      for (int64_t c = 0; c < layers[i].out; ++c) {
        if (s[i][static_cast<size_t>(c)] != State::live) continue;
        bool reads = false;
        for (int64_t j = 0; j < layers[i].in && !reads; ++j) reads = input_live(i, j) && connected(layers[i], c, j);
        if (!reads) {
          s[i][static_cast<size_t>(c)] = State::constant;
          changed = true;
        }
      }
    for (size_t i = n - 1; i-- > 0;)
      for (int64_t c = 0; c < layers[i].out; ++c) {
        if (s[i][static_cast<size_t>(c)] == State::dead) continue;
        bool read = false;
        for (int64_t o = 0; o < layers[i + 1].out && !read; ++o)
          read = s[i + 1][static_cast<size_t>(o)] != State::dead && connected(layers[i + 1], o, c);
        if (!read) {
          s[i][static_cast<size_t>(c)] = State::dead;
          changed = true;
        }
      }
  }
  return s;
}

std::vector<int64_t> with_state(const std::vector<State>& s, State want) {
  std::vector<int64_t> out;
  for (size_t c = 0; c < s.size(); ++c)
    if (s[c] == want) out.push_back(static_cast<int64_t>(c));
  return out;
}

std::string list(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) {
    if (!s.empty()) s += ' ';
    s += std::to_string(x);
  }
  return s;
}

}  // namespace

ChannelReduction reduce_channels(const nn::Model& model) {
  const std::vector<ConvLayer> layers = conv_chain(model);
  const auto states = channel_states(layers);
  ChannelReduction r;
  int64_t prev_width = layers[0].in;
  r.architecture = std::to_string(prev_width);
  for (size_t i = 0; i < layers.size(); ++i) {
    const ConvLayer& l = layers[i];
    r.live.push_back(with_state(states[i], State::live));
    r.constant.push_back(with_state(states[i], State::constant));
    r.kernels.push_back(l.k);
    const int64_t g = l.k * l.k;
    for (int64_t j = 0; j < l.weight->numel(); ++j) r.weights_alive += alive_at(*l.weight, j);
    for (int64_t o : r.live.back())
      for (int64_t c = 0; c < l.in; ++c) {
        if (i > 0 && states[i - 1][static_cast<size_t>(c)] != State::live) continue;
        for (int64_t j = (o * l.in + c) * g; j < (o * l.in + c + 1) * g; ++j) r.live_weights += alive_at(*l.weight, j);
      }
    const int64_t width = static_cast<int64_t>(r.live.back().size());
    r.live_biases += width;
    r.dense_parameters += width * prev_width * g + width;
    r.architecture += " -> " + std::to_string(width) + " (" + std::to_string(l.k) + "x" + std::to_string(l.k) + ")";
    prev_width = width;
  }
  return r;
}

std::unique_ptr<nn::Model> copy_model(const nn::Model& model) {
  auto out = nn::Model::build(model.spec(), 0);
  const auto& from = model.parameters();
  const auto& to = out->parameters();
  PARE_CHECK(from.size() == to.size(), "copy of ", model.spec().name);
  for (size_t i = 0; i < from.size(); ++i) {
    to[i]->value().copy_from(from[i]->value());
    to[i]->initial.copy_from(from[i]->initial);
    to[i]->mask = from[i]->mask.defined() ? from[i]->mask.clone() : Tensor();
  }
  return out;
}

std::unique_ptr<nn::Model> shrink_to_live(const nn::Model& model, const ChannelReduction& r) {
  auto work = copy_model(model);
  const std::vector<ConvLayer> layers = conv_chain(*work);
  PARE_CHECK(r.live.size() == layers.size(), "reduction of another model");
  for (size_t i = 0; i + 1 < layers.size(); ++i)
    if (r.live[i].empty())
      fail("model ", model.spec().name, ": weight layer ", i + 1,
           " has no live channel, so the net's output is a constant; there is nothing to shrink to");
  // Fold the constant channels, layer by layer: value[c] = ReLU(bias[c]
  // after the fold of what the constant channels before it feed it).
  std::vector<std::vector<char>> is_constant(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    is_constant[i].assign(static_cast<size_t>(layers[i].out), 0);
    for (int64_t c : r.constant[i]) is_constant[i][static_cast<size_t>(c)] = 1;
  }
  prune::ensure_masks(*work);
  std::vector<float> prev_value;  // constant output per channel of the previous layer
  for (size_t i = 0; i < layers.size(); ++i) {
    const ConvLayer& l = layers[i];
    const int64_t g = l.k * l.k;
    float* w = l.weight->value().f32();
    float* b = l.bias->value().f32();
    float* mask = l.weight->mask.f32();
    std::vector<float> value(static_cast<size_t>(l.out), 0.0f);
    for (int64_t o = 0; o < l.out; ++o) {
      for (int64_t c = 0; i > 0 && c < l.in; ++c) {
        if (!is_constant[i - 1][static_cast<size_t>(c)] || !connected(l, o, c)) continue;
        if (!l.foldable)
          fail("model ", model.spec().name, ": constant channel ", c, " of weight layer ", i,
               " feeds weight layer ", i + 1, ", which does not sum a constant evenly (zero padding or "
               "stride); cannot fold it");
        double sum = 0;
        for (int64_t j = (o * l.in + c) * g; j < (o * l.in + c + 1) * g; ++j) {
          sum += static_cast<double>(w[j]) * mask[j];
          w[j] = 0.0f;
          mask[j] = 0.0f;
        }
        b[o] += static_cast<float>(sum * prev_value[static_cast<size_t>(c)]);
      }
      value[static_cast<size_t>(o)] = std::max(0.0f, b[o]);
    }
    prev_value = std::move(value);
  }
  prune::UnitSelection sel;
  for (size_t i = 0; i < layers.size(); ++i) sel.keep.push_back(r.live[i]);
  return prune::shrink(*work, sel);
}

std::string describe_filters(const nn::Model& model) {
  const std::vector<ConvLayer> layers = conv_chain(model);
  const auto states = channel_states(layers);
  std::ostringstream os;
  for (size_t i = 0; i < layers.size(); ++i) {
    const ConvLayer& l = layers[i];
    const bool last = i + 1 == layers.size();
    const auto live = with_state(states[i], State::live);
    os << l.weight->name.substr(0, l.weight->name.find('.')) << (last ? " (output)" : "") << ": " << l.k << "x"
       << l.k << ", " << l.in << " -> " << l.out << " channels; live " << live.size();
    if (!last) {
      if (const auto c = with_state(states[i], State::constant); !c.empty()) os << "; constant (folded): " << list(c);
      if (const auto d = with_state(states[i], State::dead); !d.empty()) os << "; dead: " << list(d);
    }
    os << "\n";
    const int64_t g = l.k * l.k;
    const float* w = l.weight->value().f32();
    for (int64_t o : live) {
      os << "  channel " << o << "  bias " << strf("%.3f", l.bias->value().f32()[o]);
      std::vector<int64_t> from;
      for (int64_t c = 0; c < l.in; ++c)
        if ((i == 0 || states[i - 1][static_cast<size_t>(c)] == State::live) && connected(l, o, c)) from.push_back(c);
      if (l.k == 1) {
        os << "  from";
        for (int64_t c : from) os << "  " << c << ": " << strf("%.3f", w[o * l.in + c]);
        os << "\n";
        continue;
      }
      os << "\n";
      for (int64_t c : from) {
        const int64_t base = (o * l.in + c) * g;
        os << "    from " << (i == 0 && l.in == 1 ? std::string("board") : "channel " + std::to_string(c)) << "\n";
        for (int64_t y = 0; y < l.k; ++y) {
          os << "     ";
          for (int64_t x = 0; x < l.k; ++x) {
            const int64_t j = base + y * l.k + x;
            os << " " << (alive_at(*l.weight, j) ? strf("%7.3f", w[j]) : std::string("      ."));
          }
          os << "\n";
        }
        if (l.k == 3) {
          // The rule depends on the centre and the count of live neighbours:
          // a kernel that counts has eight equal neighbour weights.
          double sum = 0;
          int alive = 0;
          for (int64_t j = base; j < base + 9; ++j)
            if (j != base + 4 && alive_at(*l.weight, j)) sum += w[j], ++alive;
          const double mean = alive ? sum / alive : 0;
          double spread = 0;
          for (int64_t j = base; j < base + 9; ++j)
            if (j != base + 4 && alive_at(*l.weight, j)) spread = std::max(spread, std::fabs(w[j] - mean));
          os << "      centre "
             << (alive_at(*l.weight, base + 4) ? strf("%.3f", w[base + 4]) : std::string("pruned"))
             << "; neighbours " << alive << "/8 alive, mean " << strf("%.3f", mean) << ", max deviation "
             << strf("%.3f", spread) << "\n";
        }
      }
    }
  }
  return os.str();
}

namespace {

// Per prunable parameter, the ranking score of each entry (higher: kept
// longer): |w|, or LAMP over the alive entries.
prune::Scores weight_scores(const nn::Model& model, const std::string& score) {
  if (score != "magnitude" && score != "lamp")
    fail("unknown pruning score \"", score, "\" (use magnitude or lamp)");
  prune::Scores scores;
  for (nn::Parameter* p : prune::prunable(model)) {
    Tensor s = Tensor::empty(p->value().shape());
    const float* w = p->value().f32();
    for (int64_t j = 0; j < s.numel(); ++j) s.f32()[j] = std::fabs(w[j]);
    if (score == "lamp") {
      // LAMP (Lee et al. 2021): w_u^2 / sum of w_v^2 over the layer's alive
      // weights at least as large; a weight's rank within its layer is its
      // magnitude rank, and every layer's largest weight scores 1.
      std::vector<int64_t> order;
      for (int64_t j = 0; j < s.numel(); ++j)
        if (alive_at(*p, j)) order.push_back(j);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s.f32()[a] < s.f32()[b]; });
      double tail = 0;
      for (size_t q = order.size(); q-- > 0;) {
        const double v = static_cast<double>(w[order[q]]) * w[order[q]];
        tail += v;
        s.f32()[order[q]] = tail > 0 ? static_cast<float>(v / tail) : 0.0f;
      }
    }
    scores.push_back(std::move(s));
  }
  return scores;
}

void rewind_to(nn::Model& out, const nn::Model& init) {
  const auto& to = out.parameters();
  const auto& from = init.parameters();
  PARE_CHECK(to.size() == from.size(), "rewinding to another model's init");
  for (size_t i = 0; i < to.size(); ++i) to[i]->value().copy_from(from[i]->value());
}

}  // namespace

std::unique_ptr<nn::Model> prune_by_magnitude(const nn::Model& trained, int64_t keep, const nn::Model* init,
                                              const std::string& score) {
  const prune::Scores scores = weight_scores(trained, score);
  auto out = copy_model(trained);
  prune::ensure_masks(*out);
  prune::keep_top_global(*out, scores, keep);
  if (init) rewind_to(*out, *init);
  prune::apply_masks(*out);
  return out;
}

std::vector<WeightRef> ranked_weights(const nn::Model& model, const std::string& score) {
  const prune::Scores scores = weight_scores(model, score);
  const auto params = prune::prunable(model);
  struct Entry {
    float score;
    WeightRef ref;
  };
  std::vector<Entry> e;
  for (size_t i = 0; i < params.size(); ++i)
    for (int64_t j = 0; j < params[i]->numel(); ++j)
      if (alive_at(*params[i], j)) {
        const float v = scores[i].f32()[j];
        e.push_back({std::isnan(v) ? -INFINITY : v, {i, j}});
      }
  // The reverse of keep_top_global's order (higher score, then lower
  // parameter index, then lower offset, is kept first).
  std::sort(e.begin(), e.end(), [](const Entry& a, const Entry& b) {
    if (a.score != b.score) return a.score < b.score;
    if (a.ref.param != b.ref.param) return a.ref.param > b.ref.param;
    return a.ref.offset > b.ref.offset;
  });
  std::vector<WeightRef> out;
  out.reserve(e.size());
  for (const Entry& x : e) out.push_back(x.ref);
  return out;
}

std::unique_ptr<nn::Model> remove_weights(const nn::Model& trained, const std::vector<WeightRef>& weights,
                                          const nn::Model* init) {
  auto out = copy_model(trained);
  prune::ensure_masks(*out);
  const auto params = prune::prunable(*out);
  for (const WeightRef& w : weights) {
    PARE_CHECK(w.param < params.size() && w.offset >= 0 && w.offset < params[w.param]->numel(),
               "weight ", w.param, "[", w.offset, "] of ", trained.spec().name);
    params[w.param]->mask.f32()[w.offset] = 0.0f;
  }
  if (init) rewind_to(*out, *init);
  prune::apply_masks(*out);
  return out;
}

std::vector<EndCandidate> end_candidates(const nn::Model& model, const std::string& score, int channels,
                                         int alternatives) {
  const std::vector<WeightRef> ranking = ranked_weights(model, score);
  std::vector<EndCandidate> out;
  if (ranking.size() < 2) return out;
  // A work copy whose masks are toggled to judge each removal.
  auto work = copy_model(model);
  prune::ensure_masks(*work);
  const auto params = prune::prunable(*work);
  const std::vector<ConvLayer> layers = conv_chain(*work);
  std::vector<size_t> param_of(layers.size());  // prunable index of each layer's weight
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto it = std::find(params.begin(), params.end(), layers[i].weight);
    PARE_CHECK(it != params.end(), layers[i].weight->name, " is not prunable");
    param_of[i] = static_cast<size_t>(it - params.begin());
  }
  const int64_t before = reduce_channels(*work).parameters();
  // What a net computes is decided by its alive weights into channels that
  // are not dead; two removals leaving the same ones are the same candidate.
  auto signature = [&] {
    const auto states = channel_states(layers);
    std::string sig;
    for (size_t i = 0; i < layers.size(); ++i) {
      const ConvLayer& l = layers[i];
      const int64_t per_out = l.in * l.k * l.k;
      for (int64_t j = 0; j < l.weight->numel(); ++j)
        sig += (alive_at(*l.weight, j) &&
                (i + 1 == layers.size() || states[i][static_cast<size_t>(j / per_out)] != State::dead))
                   ? '1'
                   : '0';
    }
    return sig;
  };
  std::vector<std::string> seen;
  // Judges removing `weights`: the signature if it lowers the count and
  // keeps a live channel in every layer, "" otherwise. Masks are restored.
  auto judge = [&](const std::vector<WeightRef>& weights) {
    for (const WeightRef& w : weights) params[w.param]->mask.f32()[w.offset] = 0.0f;
    const ChannelReduction r = reduce_channels(*work);
    bool ok = r.parameters() < before;
    for (const auto& live : r.live) ok = ok && !live.empty();
    std::string sig = ok ? signature() : std::string();
    for (const WeightRef& w : weights) params[w.param]->mask.f32()[w.offset] = 1.0f;
    return sig;
  };
  auto add = [&](std::string label, std::vector<WeightRef> weights) {
    const std::string sig = judge(weights);
    if (sig.empty() || std::find(seen.begin(), seen.end(), sig) != seen.end()) return false;
    seen.push_back(sig);
    out.push_back({std::move(label), std::move(weights)});
    return true;
  };
  // The smallest weight's removal was tried already.
  if (std::string sig = judge({ranking[0]}); !sig.empty()) seen.push_back(sig);

  struct Channel {
    double norm;
    size_t layer;
    int64_t c;
    std::vector<WeightRef> weights;
  };
  std::vector<Channel> chans;
  const auto states = channel_states(layers);
  for (size_t i = 0; i + 1 < layers.size(); ++i) {
    const auto live = with_state(states[i], State::live);
    if (live.size() < 2) continue;
    const ConvLayer &l = layers[i], &next = layers[i + 1];
    const int64_t g = l.k * l.k, gn = next.k * next.k;
    const float* w = l.weight->value().f32();
    const float* wn = next.weight->value().f32();
    for (int64_t c : live) {
      Channel ch{0, i, c, {}};
      double in = 0, outn = 0;
      for (int64_t j = c * l.in * g; j < (c + 1) * l.in * g; ++j)
        if (alive_at(*l.weight, j)) in += std::fabs(w[j]), ch.weights.push_back({param_of[i], j});
      for (int64_t o = 0; o < next.out; ++o)
        for (int64_t j = (o * next.in + c) * gn; j < (o * next.in + c + 1) * gn; ++j)
          if (alive_at(*next.weight, j)) outn += std::fabs(wn[j]), ch.weights.push_back({param_of[i + 1], j});
      ch.norm = in * outn;
      chans.push_back(std::move(ch));
    }
  }
  std::stable_sort(chans.begin(), chans.end(), [](const Channel& a, const Channel& b) { return a.norm < b.norm; });
  int taken = 0;
  for (Channel& ch : chans) {
    if (taken >= channels) break;
    const std::string name = layers[ch.layer].weight->name;
    taken += add("channel " + name.substr(0, name.find('.')) + ":" + std::to_string(ch.c), std::move(ch.weights));
  }
  taken = 0;
  for (size_t r = 1; r < ranking.size() && taken < alternatives; ++r)
    taken += add("weight " + params[ranking[r].param]->name + "[" + std::to_string(ranking[r].offset) + "]",
                 {ranking[r]});
  return out;
}

// ---- the study ------------------------------------------------------------------

void LifePruneConfig::validate() const {
  recipe.validate();
  if (out_dir.empty()) fail("the life pruning study needs a directory (--out)");
  if (n < 1) fail("--steps must be at least 1, got ", n);
  if (m < 1) fail("--width must be at least 1, got ", m);
  if (modes.empty()) fail("--modes needs at least one of rewind, finetune");
  for (size_t i = 0; i < modes.size(); ++i) {
    if (modes[i] != "rewind" && modes[i] != "finetune")
      fail("--modes: unknown mode \"", modes[i], "\" (use rewind, finetune or both)");
    for (size_t j = 0; j < i; ++j)
      if (modes[j] == modes[i]) fail("--modes lists ", modes[i], " twice");
  }
  if (score != "magnitude" && score != "lamp") fail("--score must be magnitude or lamp, got \"", score, "\"");
  if (!(rate > 0 && rate < 1)) fail("--rate must be in (0, 1) (the fraction of alive weights removed per round), got ", rate);
  if (round_epochs < 0) fail("--round-epochs must be >= 0 (0: --epochs), got ", round_epochs);
  if (max_trainings < 1) fail("--max-trainings must be at least 1, got ", max_trainings);
  if (channels < 0) fail("--channels must be >= 0 (0: no whole-channel candidates), got ", channels);
  if (alternatives < 0) fail("--alternatives must be >= 0 (0: stop when the smallest weight fails), got ", alternatives);
  if (tries < 0) fail("--tries must be >= 0, got ", tries);
  if (test_epochs < 0) fail("--test-epochs must be >= 0 (0: --epochs), got ", test_epochs);
  if (jobs < 0) fail("--jobs must be at least 1 (or 0: one per core), got ", jobs);
}

namespace {

json short_float(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.7g", v);
  return json(std::strtod(b, nullptr));
}

json settings_json(const LifePruneConfig& c) {
  const LifeRecipe& r = c.recipe;
  json j = {{"kind", "life_prune"},
          {"n", c.n},
          {"m", c.m},
          {"seed", c.seed},
          {"rate", short_float(c.rate)},
          {"round_epochs", c.round_epochs ? c.round_epochs : r.epochs},
          {"max_trainings", c.max_trainings},
          {"test_epochs", c.test_epochs ? c.test_epochs : r.epochs},
          {"try_seed", c.try_seed},
          {"reinit_offset", c.reinit_offset},
          {"score", c.score},
          {"recipe",
           {{"examples", r.examples},
            {"test_examples", r.test_examples},
            {"batch", r.batch},
            {"epochs", r.epochs},
            {"optimizer", "adam"},
            {"lr", short_float(r.lr)},
            {"weight_decay", short_float(r.weight_decay)},
            {"board", r.board},
            {"density", r.density < 0 ? json("uniform per board") : short_float(r.density)}}}};
  // Written only when used, so a study from before the end candidates can be
  // resumed with --channels 0 --alternatives 0: its searches are unchanged.
  if (c.channels) j["channels"] = c.channels;
  if (c.alternatives) j["alternatives"] = c.alternatives;
  return j;
}

json step_json(const PruneStep& s) {
  return {{"mode", s.mode},       {"round", s.round},       {"attempt", s.attempt}, {"candidate", s.candidate},
          {"alive_before", s.alive_before}, {"removed", s.removed}, {"alive_after", s.alive_after},
          {"solved", s.solved},   {"test_exact", s.exact},  {"test_accuracy", s.accuracy},
          {"steps", s.steps},     {"seconds", s.seconds},   {"flops", s.flops}};
}

PruneStep read_step(const std::string& dir) {
  const std::string path = dir + "/step.json";
  PruneStep s;
  try {
    const json j = json::parse(read_file(path));
    s.mode = j.at("mode").get<std::string>();
    s.round = j.at("round").get<int>();
    s.attempt = j.at("attempt").get<int>();
    s.candidate = j.value("candidate", std::string("ranked"));  // studies from before the end candidates
    s.alive_before = j.at("alive_before").get<int64_t>();
    s.removed = j.at("removed").get<int64_t>();
    s.alive_after = j.at("alive_after").get<int64_t>();
    s.solved = j.at("solved").get<bool>();
    s.exact = j.at("test_exact").get<double>();
    s.accuracy = j.at("test_accuracy").get<double>();
    s.steps = j.at("steps").get<int64_t>();
    s.seconds = j.at("seconds").get<double>();
    s.flops = j.at("flops").get<double>();
  } catch (const json::exception& e) {
    fail(path, ": not a pruning step (", e.what(), "); delete its directory to redo it");
  }
  s.dir = dir;
  s.skipped = true;
  return s;
}

json reduction_json(const ChannelReduction& r) {
  return {{"weights_alive", r.weights_alive}, {"live_weights", r.live_weights},
          {"live_biases", r.live_biases},     {"parameters", r.parameters()},
          {"live_channels", r.live},          {"constant_channels", r.constant},
          {"architecture", r.architecture},   {"dense_parameters", r.dense_parameters}};
}

json life_run_json(const LifeRun& r) {
  return {{"n", r.n},           {"m", r.m},         {"seed", r.seed},   {"success", r.success},
          {"steps", r.steps},   {"seconds", r.seconds}, {"flops", r.flops},
          {"test_exact", r.exact}, {"dir", r.dir}};
}

// Runs fn(0 .. count-1) on up to `jobs` threads, each training on its
// thread alone (SerialScope: a run's bits never depend on the job count).
// The first error is raised once the running calls finish.
void parallel_for(int count, int jobs, const std::function<void(int)>& fn) {
  const int threads = std::max(1, std::min(count, jobs > 0 ? jobs : default_num_threads()));
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::exception_ptr first;
  auto worker = [&] {
    SerialScope serial;
    for (int i; !failed.load() && (i = next.fetch_add(1)) < count;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
        failed.store(true);
      }
    }
  };
  std::vector<std::thread> pool;
  try {
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  } catch (...) {
    failed.store(true);
    for (auto& t : pool) t.join();
    throw;
  }
  for (auto& t : pool) t.join();
  if (first) std::rethrow_exception(first);
}

std::string round_dir(const std::string& out, const std::string& mode, int round, int attempt) {
  char b[48];
  std::snprintf(b, sizeof b, "/round_%03d/try_%d", round, attempt);
  return out + "/" + mode + b;
}

data::Dataset verify_boards(const LifeRecipe& r, int n, uint64_t seed) {
  // A stream neither life_data's training nor its test boards use: boards
  // that never decided when training stopped.
  Rng rng = Rng(seed).fork(0x5EE1F1ED);
  return data::life_boards(r.test_examples, {.size = r.board, .steps = n, .density = -1}, rng);
}

PruneSearch run_search(const LifePruneConfig& cfg, const std::string& mode, const std::string& dense_model,
                       const std::function<void(const PruneStep&)>& report) {
  LifeRecipe rr = cfg.recipe;
  if (cfg.round_epochs > 0) rr.epochs = cfg.round_epochs;
  const auto init = life_model(cfg.recipe, cfg.n, cfg.m, cfg.seed);
  std::unique_ptr<nn::Model> current = train::load_model(dense_model);
  prune::ensure_masks(*current);
  PruneSearch s;
  s.mode = mode;
  int trainings = 0;
  for (int round = 1;; ++round) {
    const int64_t alive = prune::sparsity(*current).kept;
    if (alive <= 1) {
      s.stopped_because = "nothing left";
      break;
    }
    if (trainings >= cfg.max_trainings) {
      s.stopped_because = "training budget";
      break;
    }
    int64_t remove = std::max<int64_t>(1, std::llround(cfg.rate * static_cast<double>(alive)));
    // Filled when removing the smallest weight fails; decided by `current`
    // alone, so a restarted search lists the same ones.
    std::vector<EndCandidate> extra;
    size_t next_extra = 0;
    bool accepted = false;
    for (int attempt = 0;; ++attempt) {
      const EndCandidate* cand = next_extra > 0 ? &extra[next_extra - 1] : nullptr;
      const std::string label = cand ? cand->label : "ranked";
      const int64_t removed = cand ? static_cast<int64_t>(cand->weights.size()) : remove;
      const std::string dir = round_dir(cfg.out_dir, mode, round, attempt);
      PruneStep st;
      if (file_exists(dir + "/step.json")) {
        st = read_step(dir);
        if (st.alive_before != alive || st.removed != removed || st.candidate != label)
          fail(dir, "/step.json prunes ", st.removed, " of ", st.alive_before, " weights (", st.candidate,
               "), this search ", removed, " of ", alive, " (", label,
               "); the directory holds another study: choose another --out");
      } else {
        const nn::Model* rewind_to = mode == "rewind" ? init.get() : nullptr;
        auto net = cand ? remove_weights(*current, cand->weights, rewind_to)
                        : prune_by_magnitude(*current, alive - remove, rewind_to, cfg.score);
        const LifeRun run = run_life(rr, cfg.n, cfg.m, cfg.seed, *net, dir);
        st.mode = mode;
        st.round = round;
        st.attempt = attempt;
        st.candidate = label;
        st.alive_before = alive;
        st.removed = removed;
        st.alive_after = alive - removed;
        st.solved = run.success;
        st.exact = run.exact;
        st.accuracy = run.accuracy;
        st.steps = run.steps;
        st.seconds = run.seconds;
        st.flops = run.flops;
        st.dir = dir;
        write_file_atomic(dir + "/step.json", step_json(st).dump(2) + "\n");
      }
      ++trainings;
      s.steps.push_back(st);
      report(st);
      if (st.solved) {
        current = train::load_model(dir + "/model.bin");
        prune::ensure_masks(*current);
        accepted = true;
        break;
      }
      if (cand) {
        if (next_extra == extra.size()) {
          s.stopped_because = "no end candidate solves";
          break;
        }
        ++next_extra;
      } else if (remove > 1) {
        remove /= 2;
      } else {
        // No single weight goes by the ranking: the end candidates.
        extra = end_candidates(*current, cfg.score, cfg.channels, cfg.alternatives);
        if (extra.empty()) {
          s.stopped_because = cfg.channels + cfg.alternatives > 0 ? "no end candidate solves" : "a single weight fails";
          break;
        }
        next_extra = 1;
      }
      if (trainings >= cfg.max_trainings) {
        s.stopped_because = "training budget";
        break;
      }
    }
    if (!accepted) break;
    s.rounds = round;
  }
  // The smallest net, its reduction, and checks of both on boards and shapes.
  s.smallest = reduce_channels(*current);
  s.model_path = cfg.out_dir + "/" + mode + "/smallest.bin";
  train::save_model(*current, s.model_path, json{{"mode", mode}, {"rounds", s.rounds}}.dump());
  const data::TrainTest d = life_data(cfg.recipe, cfg.n, cfg.seed);
  s.verify_exact = train::evaluate(*current, verify_boards(cfg.recipe, cfg.n, cfg.seed), 1000).exact;
  auto shrunk = shrink_to_live(*current, s.smallest);
  s.shrunk_path = cfg.out_dir + "/" + mode + "/shrunk.bin";
  train::save_model(*shrunk, s.shrunk_path, json{{"mode", mode}, {"architecture", s.smallest.architecture}}.dump());
  s.shrunk_exact = train::evaluate(*shrunk, d.test, 1000).exact;
  return s;
}

void copy_masks(const nn::Model& from, nn::Model& to) {
  const auto f = prune::prunable(from);
  const auto t = prune::prunable(to);
  PARE_CHECK(f.size() == t.size(), "masks of another model");
  for (size_t i = 0; i < f.size(); ++i)
    t[i]->mask = f[i]->mask.defined() ? f[i]->mask.clone() : Tensor::full(t[i]->value().shape(), 1.0f);
  prune::apply_masks(to);
}

std::string pct(double v) { return strf("%.1f %%", 100 * v); }

std::string markdown(const LifePruneConfig& cfg, const LifePruneResult& r) {
  std::ostringstream os;
  const int64_t minimal = 23 * cfg.n + 2;
  os << "# Pruning the life net: n = " << cfg.n << ", m = " << cfg.m << ", seed " << cfg.seed << "\n\n";
  os << "Dense net: " << r.dense.parameters << " parameters, "
     << (r.dense.success ? "solved in " + std::to_string(r.dense.steps) + " steps"
                         : "not solved after " + std::to_string(r.dense.steps) + " steps")
     << ". Solved means every cell of every one of " << cfg.recipe.test_examples
     << " test boards right; the minimal net (m = 1) has " << minimal << " parameters.\n\n";
  if (r.searches.empty()) return os.str();
  os << "| mode | rounds | trainings | weights alive | live weights + biases = parameters | dense architecture |"
        " dense parameters | fresh boards right | shrunk net: test boards right | stopped because |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const PruneSearch& s : r.searches) {
    const ChannelReduction& c = s.smallest;
    os << "| " << s.mode << " | " << s.rounds << " | " << s.steps.size() << " | " << c.weights_alive << " | "
       << c.live_weights << " + " << c.live_biases << " = " << c.parameters() << " | " << c.architecture << " | "
       << c.dense_parameters << " | " << pct(s.verify_exact) << " | " << pct(s.shrunk_exact) << " | "
       << s.stopped_because << " |\n";
  }
  for (const PruneSearch& s : r.searches) {
    os << "\n## " << s.mode << ": every training\n\n| round | try | removal | alive before | removed | solved | steps |\n"
          "|---|---|---|---|---|---|---|\n";
    for (const PruneStep& st : s.steps)
      os << "| " << st.round << " | " << st.attempt << " | " << st.candidate << " | " << st.alive_before << " | "
         << st.removed << " | "
         << (st.solved ? "yes" : "no (" + pct(st.exact) + " of boards)") << " | " << st.steps << " |\n";
  }
  if (!r.ticket_test.empty()) {
    os << "\n## Ticket test\n\nThe rewind search's smallest net (its mask) trained from its original init, the "
          "same mask from fresh random inits, and the minimal net (m = 1) from scratch; try k uses the boards "
          "and batch order of seed "
       << cfg.try_seed << " + k in every arm, "
       << (cfg.test_epochs ? cfg.test_epochs : cfg.recipe.epochs) << " epochs at most.\n\n"
       << "| arm | parameters | solved / runs | success rate | 95 % CI (Wilson) | mean steps to solve |\n"
          "|---|---|---|---|---|---|\n";
    for (const TicketArm& a : r.ticket_test)
      os << "| " << a.arm << " | " << a.parameters << " | " << a.successes << " / " << a.runs.size() << " | "
         << pct(a.rate) << " | " << pct(a.ci.lo) << " - " << pct(a.ci.hi) << " | "
         << (a.successes ? strf("%.0f", a.mean_steps) : std::string("-")) << " |\n";
  }
  for (const PruneSearch& s : r.searches)
    os << "\n## Filters of the smallest net (" << s.mode << ")\n\n```\n"
       << describe_filters(*train::load_model(s.model_path)) << "```\n";
  return os.str();
}

json result_json(const LifePruneConfig& cfg, const LifePruneResult& r) {
  json searches = json::array();
  for (const PruneSearch& s : r.searches) {
    json steps = json::array();
    for (const PruneStep& st : s.steps) steps.push_back(step_json(st));
    searches.push_back({{"mode", s.mode}, {"rounds", s.rounds}, {"trainings", s.steps.size()},
                        {"stopped_because", s.stopped_because}, {"smallest", reduction_json(s.smallest)},
                        {"verify_exact", s.verify_exact}, {"shrunk_exact", s.shrunk_exact},
                        {"model", s.model_path}, {"shrunk_model", s.shrunk_path}, {"steps", steps}});
  }
  json arms = json::array();
  for (const TicketArm& a : r.ticket_test) {
    json runs = json::array();
    for (const LifeRun& run : a.runs) runs.push_back(life_run_json(run));
    arms.push_back({{"arm", a.arm}, {"parameters", a.parameters}, {"runs", a.runs.size()},
                    {"successes", a.successes}, {"success_rate", a.rate}, {"ci95", {a.ci.lo, a.ci.hi}},
                    {"mean_steps_to_solve", a.mean_steps}, {"tries", runs}});
  }
  return {{"settings", settings_json(cfg)}, {"dense", life_run_json(r.dense)},
          {"searches", searches}, {"ticket_test", arms}};
}

}  // namespace

LifePruneResult run_life_prune(const LifePruneConfig& cfg, const LifePruneObserver& obs) {
  cfg.validate();
  make_dirs(cfg.out_dir);
  const std::string settings_path = cfg.out_dir + "/settings.json";
  const std::string settings_text = settings_json(cfg).dump(2) + "\n";
  if (file_exists(settings_path)) {
    const std::string old_text = read_file(settings_path);
    // The training budget decides only where a search stops, not its path:
    // a study may go on with a larger one (or stop earlier with a smaller).
    auto without_budget = [](json j) {
      if (j.is_object()) j.erase("max_trainings");
      return j;
    };
    const json old_settings = json::parse(old_text, nullptr, false);
    if (without_budget(old_settings) != without_budget(settings_json(cfg)))
      fail(cfg.out_dir, " holds a life pruning study with other settings (see its settings.json); choose another --out");
    if (old_text != settings_text) write_file_atomic(settings_path, settings_text);
  } else {
    write_file_atomic(settings_path, settings_text);
  }
  std::mutex mu;  // one observer call at a time
  LifePruneResult result;
  parallel_for(1, 1, [&](int) {
    auto dense = life_model(cfg.recipe, cfg.n, cfg.m, cfg.seed);
    result.dense = run_life(cfg.recipe, cfg.n, cfg.m, cfg.seed, *dense, cfg.out_dir + "/dense");
  });
  if (obs.on_dense) obs.on_dense(result.dense);
  if (result.dense.success) {
    result.searches.resize(cfg.modes.size());
    parallel_for(static_cast<int>(cfg.modes.size()), cfg.jobs, [&](int i) {
      result.searches[static_cast<size_t>(i)] =
          run_search(cfg, cfg.modes[static_cast<size_t>(i)], cfg.out_dir + "/dense/model.bin", [&](const PruneStep& st) {
            std::lock_guard<std::mutex> lock(mu);
            if (obs.on_step) obs.on_step(st);
          });
    });
  }

  const PruneSearch* rewind = nullptr;
  for (const PruneSearch& s : result.searches)
    if (s.mode == "rewind") rewind = &s;
  if (cfg.tries > 0 && rewind) {
    LifeRecipe tr = cfg.recipe;
    if (cfg.test_epochs > 0) tr.epochs = cfg.test_epochs;
    const auto ticket = train::load_model(rewind->model_path);
    const std::vector<std::string> arms = {"ticket", "reinit", "minimal"};
    result.ticket_test.resize(arms.size());
    for (size_t a = 0; a < arms.size(); ++a) {
      result.ticket_test[a].arm = arms[a];
      result.ticket_test[a].runs.resize(static_cast<size_t>(cfg.tries));
    }
    result.ticket_test[0].parameters = result.ticket_test[1].parameters = rewind->smallest.parameters();
    result.ticket_test[2].parameters = 23 * cfg.n + 2;
    const int total = 3 * cfg.tries;
    parallel_for(total, cfg.jobs, [&](int i) {
      const size_t a = static_cast<size_t>(i % 3);
      const int k = i / 3;
      const uint64_t seed = cfg.try_seed + static_cast<uint64_t>(k);
      const std::string dir = cfg.out_dir + "/ticket_test/" + arms[a] + "/try" + std::to_string(k);
      std::unique_ptr<nn::Model> model;
      int m = cfg.m;
      if (arms[a] == "ticket") {
        model = life_model(cfg.recipe, cfg.n, cfg.m, cfg.seed);  // the original init
        copy_masks(*ticket, *model);
      } else if (arms[a] == "reinit") {
        model = life_model(cfg.recipe, cfg.n, cfg.m, seed + cfg.reinit_offset);
        copy_masks(*ticket, *model);
      } else {
        m = 1;
        model = life_model(cfg.recipe, cfg.n, 1, seed);
      }
      const LifeRun run = run_life(tr, cfg.n, m, seed, *model, dir);
      std::lock_guard<std::mutex> lock(mu);
      result.ticket_test[a].runs[static_cast<size_t>(k)] = run;
      if (obs.on_try) obs.on_try(arms[a], run);
    });
    for (TicketArm& a : result.ticket_test) {
      double steps = 0;
      for (const LifeRun& run : a.runs)
        if (run.success) ++a.successes, steps += static_cast<double>(run.steps);
      a.rate = static_cast<double>(a.successes) / static_cast<double>(a.runs.size());
      a.ci = wilson_interval(a.successes, static_cast<int64_t>(a.runs.size()));
      a.mean_steps = a.successes ? steps / a.successes : 0;
    }
  }
  result.markdown = markdown(cfg, result);
  write_file_atomic(cfg.out_dir + "/results.md", result.markdown);
  write_file_atomic(cfg.out_dir + "/results.json", result_json(cfg, result).dump(2) + "\n");
  return result;
}

}  // namespace pare::experiments
