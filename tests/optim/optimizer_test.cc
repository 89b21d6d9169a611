// SGD, Adam and AdamW against double-precision references of PyTorch's
// update rules (torch.optim.SGD / Adam / AdamW, single-tensor path), masks,
// make_optimizer validation and state names.
#include "pare/optim/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"

namespace pare::optim {
namespace {

using autograd::Var;

// Streams values into one string (names and failure messages).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Parameters packed into a store, with grads we set by hand.
class Params {
 public:
  // One parameter per size, values drawn from `seed`.
  Params(std::vector<int64_t> sizes, uint64_t seed) {
    Rng r(seed);
    for (size_t i = 0; i < sizes.size(); ++i) {
      auto p = std::make_unique<nn::Parameter>();
      p->name = cat("p", i);
      Tensor v = Tensor::empty({sizes[i]});
      for (float& x : v.span_f32()) x = r.uniform(-1.0f, 1.0f);
      p->var = Var(v, true);
      owned_.push_back(std::move(p));
    }
    std::vector<nn::Parameter*> raw;
    for (auto& p : owned_) raw.push_back(p.get());
    store_.pack(raw);
  }
  std::vector<nn::Parameter*> ptrs() const { return store_.params(); }
  nn::Parameter& operator[](size_t i) { return *owned_[i]; }
  std::vector<double> values() {
    auto s = store_.values().span_f32();
    return {s.begin(), s.end()};
  }
  std::vector<double> grads() {
    auto s = store_.grads().span_f32();
    return {s.begin(), s.end()};
  }
  // Sets every gradient from `seed` (a new batch each step), spanning
  // several magnitudes so eps and tails matter.
  void set_grads(uint64_t seed) {
    Rng r(seed);
    float* g = store_.grads().f32();
    for (int64_t i = 0; i < store_.numel(); ++i) {
      const float mag = std::pow(10.0f, -static_cast<float>(i % 7));  // 1 .. 1e-6
      g[i] = r.uniform(-1.0f, 1.0f) * mag;
    }
  }
  int64_t numel() const { return const_cast<nn::ParameterStore&>(store_).numel(); }

 private:
  std::vector<std::unique_ptr<nn::Parameter>> owned_;
  nn::ParameterStore store_;
};

// PyTorch's Adam / AdamW in double precision.
struct AdamRef {
  double lr, b1, b2, eps, wd;
  bool decoupled;
  std::vector<double> m = {}, v = {};
  int64_t t = 0;
  void step(std::vector<double>& w, const std::vector<double>& g) {
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0);
    ++t;
    const double bc1 = 1 - std::pow(b1, double(t)), bc2 = 1 - std::pow(b2, double(t));
    for (size_t i = 0; i < w.size(); ++i) {
      double grad = g[i];
      if (decoupled)
        w[i] *= 1 - lr * wd;
      else
        grad += wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * grad;
      v[i] = b2 * v[i] + (1 - b2) * grad * grad;
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + eps;  // eps outside the sqrt
      w[i] -= lr / bc1 * m[i] / denom;
    }
  }
};

// PyTorch's SGD in double precision.
struct SgdRef {
  double lr, momentum, dampening, wd;
  bool nesterov;
  std::vector<double> buf = {};
  bool first = true;
  void step(std::vector<double>& w, const std::vector<double>& g) {
    if (buf.empty()) buf.assign(w.size(), 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
      double d = g[i] + wd * w[i];
      if (momentum != 0) {
        buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      w[i] -= lr * d;
    }
    first = false;
  }
};

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want,
                     double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * (1e-3 + std::abs(want[i])))
        << what << " element " << i;
}

class OptimTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_threads_ = num_threads(); }
  void TearDown() override { set_num_threads(saved_threads_); }
  int saved_threads_ = 1;
};

// Sizes: a tiny one, one with a vector tail, and one big enough to be split
// across the pool.
const std::vector<int64_t> kSizes = {1, 37, 5000};

void run_adam_case(const OptimizerConfig& cfg, int steps, const std::string& what) {
  Params ps(kSizes, 1);
  auto opt = make_optimizer(cfg, ps.ptrs());
  AdamRef ref{cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, cfg.name == "adamw"};
  std::vector<double> w = ps.values();
  for (int s = 0; s < steps; ++s) {
    ps.set_grads(100 + s);
    ref.step(w, ps.grads());
    opt->step(cfg.lr);
    EXPECT_EQ(opt->steps(), s + 1);
    expect_near_all(ps.values(), w, 2e-5, cat(what, " step ", s + 1));
    if (::testing::Test::HasFatalFailure()) return;
  }
  // The optimizer's moments match too.
  auto state = opt->state();
  std::vector<double> m, v;
  for (auto& [name, t] : state) {
    auto sp = t->span_f32();
    auto& dst = name.ends_with(".adam_m") ? m : v;
    dst.insert(dst.end(), sp.begin(), sp.end());
  }
  expect_near_all(m, ref.m, 2e-5, cat(what, " m"));
  expect_near_all(v, ref.v, 2e-5, cat(what, " v"));
}

TEST_F(OptimTest, AdamOneStepMatchesReference) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    run_adam_case({.name = "adam", .lr = 1e-2f}, 1, "adam");
  }
}

TEST_F(OptimTest, AdamFirstStepIsLrTimesSignForLargeGradients) {
  // With bias correction, step 1 moves each weight by lr * g / (|g| + eps).
  Params ps({4}, 2);
  float* g = ps[0].grad().f32();
  g[0] = 0.5f, g[1] = -2.0f, g[2] = 1e-7f, g[3] = 0.0f;
  const std::vector<double> w0 = ps.values();
  auto opt = make_optimizer({.name = "adam", .lr = 0.1f}, ps.ptrs());
  opt->step(0.1f);
  const auto w = ps.values();
  EXPECT_NEAR(w[0], w0[0] - 0.1, 1e-6);
  EXPECT_NEAR(w[1], w0[1] + 0.1, 1e-6);
  // eps outside the sqrt: 1e-7 / (1e-7 + 1e-8) = 0.909...
  EXPECT_NEAR(w[2], w0[2] - 0.1 * (1e-7 / (1e-7 + 1e-8)), 1e-6);
  EXPECT_EQ(w[3], w0[3]);
}

TEST_F(OptimTest, AdamSeveralStepsMatchReference) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    run_adam_case({.name = "adam", .lr = 1e-2f}, 20, "adam");
    run_adam_case({.name = "adam", .lr = 3e-3f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f}, 10,
                  "adam betas");
  }
}

TEST_F(OptimTest, AdamL2WeightDecayMatchesReference) {
  run_adam_case({.name = "adam", .lr = 1e-2f, .weight_decay = 0.1f}, 10, "adam l2");
}

TEST_F(OptimTest, AdamWDecoupledDecayMatchesReference) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    run_adam_case({.name = "adamw", .lr = 1e-2f, .weight_decay = 0.1f}, 10, "adamw");
  }
}

TEST_F(OptimTest, AdamWDiffersFromAdamL2) {
  Params a({37}, 3), b({37}, 3);
  auto oa = make_optimizer({.name = "adam", .lr = 1e-2f, .weight_decay = 0.5f}, a.ptrs());
  auto ob = make_optimizer({.name = "adamw", .lr = 1e-2f, .weight_decay = 0.5f}, b.ptrs());
  for (int s = 0; s < 3; ++s) {
    a.set_grads(s);
    b.set_grads(s);
    oa->step(1e-2f);
    ob->step(1e-2f);
  }
  EXPECT_NE(a.values(), b.values());
  // With zero gradients AdamW shrinks w by exactly (1 - lr wd) on top of a zero Adam step.
  Params c({5}, 4);
  auto oc = make_optimizer({.name = "adamw", .lr = 0.1f, .weight_decay = 0.5f}, c.ptrs());
  const auto w0 = c.values();
  oc->step(0.1f);
  const auto w1 = c.values();
  for (size_t i = 0; i < w0.size(); ++i) EXPECT_NEAR(w1[i], w0[i] * 0.95, 1e-6);
}

TEST_F(OptimTest, SgdHandComputed) {
  // One weight w = 1 with gradient 0.5 each step, lr = 0.1.
  struct Case {
    OptimizerConfig cfg;
    double after1, after2;
  };
  const Case cases[] = {
      {{.name = "sgd", .lr = 0.1f}, 0.95, 0.90},
      {{.name = "sgd", .lr = 0.1f, .weight_decay = 0.1f}, 0.94, 0.94 - 0.1 * (0.5 + 0.094)},
      // buf1 = 0.5; buf2 = 0.9*0.5 + 0.5 = 0.95
      {{.name = "sgd", .lr = 0.1f, .momentum = 0.9f}, 0.95, 0.855},
      // d1 = 0.5 + 0.9*0.5 = 0.95; buf2 = 0.95, d2 = 0.5 + 0.855 = 1.355
      {{.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .nesterov = true}, 0.905, 0.7695},
      // no dampening on the first step; buf2 = 0.45 + 0.5*0.5 = 0.7
      {{.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .dampening = 0.5f}, 0.95, 0.88},
  };
  for (const Case& c : cases) {
    Params ps({1}, 0);
    ps[0].value().f32()[0] = 1.0f;
    auto opt = make_optimizer(c.cfg, ps.ptrs());
    ps[0].grad().f32()[0] = 0.5f;
    opt->step(0.1f);
    EXPECT_NEAR(ps[0].value().f32()[0], c.after1, 1e-6) << c.cfg.momentum << c.cfg.nesterov;
    opt->step(0.1f);
    EXPECT_NEAR(ps[0].value().f32()[0], c.after2, 1e-6) << c.cfg.momentum << c.cfg.nesterov;
  }
}

TEST_F(OptimTest, SgdSeveralStepsMatchReference) {
  const OptimizerConfig cfgs[] = {
      {.name = "sgd", .lr = 0.05f},
      {.name = "sgd", .lr = 0.05f, .weight_decay = 1e-2f},
      {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f},
      {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f},
      {.name = "sgd", .lr = 0.05f, .momentum = 0.5f, .dampening = 0.3f},
  };
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& cfg : cfgs) {
      Params ps(kSizes, 5);
      auto opt = make_optimizer(cfg, ps.ptrs());
      SgdRef ref{cfg.lr, cfg.momentum, cfg.dampening, cfg.weight_decay, cfg.nesterov};
      std::vector<double> w = ps.values();
      for (int s = 0; s < 10; ++s) {
        ps.set_grads(200 + s);
        ref.step(w, ps.grads());
        opt->step(cfg.lr);
      }
      expect_near_all(ps.values(), w, 1e-5,
                      cat("sgd momentum=", cfg.momentum, " nesterov=", cfg.nesterov));
    }
  }
}

TEST_F(OptimTest, StepUsesTheGivenLearningRate) {
  Params ps({1}, 0);
  ps[0].value().f32()[0] = 1.0f;
  auto opt = make_optimizer({.name = "sgd", .lr = 0.1f}, ps.ptrs());
  ps[0].grad().f32()[0] = 1.0f;
  opt->step(0.25f);  // the scheduled rate, not cfg.lr
  EXPECT_NEAR(ps[0].value().f32()[0], 0.75, 1e-7);
}

TEST_F(OptimTest, MaskedEntriesStayExactlyZero) {
  const OptimizerConfig cfgs[] = {
      {.name = "adam", .lr = 1e-2f},
      {.name = "adam", .lr = 1e-2f, .weight_decay = 0.1f},
      {.name = "adamw", .lr = 1e-2f, .weight_decay = 0.1f},
      {.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f},
      {.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .nesterov = true},
      {.name = "sgd", .lr = 0.1f},
  };
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& cfg : cfgs) {
      SCOPED_TRACE(cat(cfg.name, " threads=", threads));
      Params ps(kSizes, 6);
      for (size_t k = 0; k < kSizes.size(); ++k) {
        nn::Parameter& p = ps[k];
        p.mask = Tensor::full(p.value().shape(), 1.0f);
        for (int64_t i = 0; i < p.numel(); i += 3) p.mask.f32()[i] = 0.0f;
        p.apply_mask();
      }
      auto opt = make_optimizer(cfg, ps.ptrs());
      for (int s = 0; s < 5; ++s) {
        ps.set_grads(300 + s);  // nonzero gradients also on masked entries
        opt->step(cfg.lr);
      }
      for (size_t k = 0; k < kSizes.size(); ++k) {
        nn::Parameter& p = ps[k];
        for (int64_t i = 0; i < p.numel(); ++i) {
          if (i % 3 == 0) {
            ASSERT_EQ(p.value().f32()[i], 0.0f) << p.name << "[" << i << "]";
          } else {
            ASSERT_NE(p.value().f32()[i], 0.0f) << p.name << "[" << i << "]";
          }
        }
      }
      auto state = opt->state();
      if (cfg.name != "sgd" || cfg.momentum != 0.0f) {
        ASSERT_FALSE(state.empty());
      }
      for (auto& [name, t] : state) {
        for (int64_t i = 0; i < t->numel(); i += 3)
          ASSERT_EQ(t->f32()[i], 0.0f) << name << "[" << i << "]";
        bool any_nonzero = false;
        for (int64_t i = 1; i < t->numel(); ++i)
          if (i % 3 != 0) any_nonzero = any_nonzero || t->f32()[i] != 0.0f;
        if (t->numel() > 1) {
          EXPECT_TRUE(any_nonzero) << name;
        }
      }
    }
  }
}

TEST_F(OptimTest, MaskedEntriesMatchReferenceForKeptWeights) {
  // Kept weights follow the unmasked formula exactly as if alone.
  Params ps({37}, 7), ref_ps({37}, 7);
  ps[0].mask = Tensor::full({37}, 1.0f);
  ps[0].mask.f32()[4] = 0.0f;
  ps[0].apply_mask();
  auto opt = make_optimizer({.name = "adam", .lr = 1e-2f}, ps.ptrs());
  auto ref = make_optimizer({.name = "adam", .lr = 1e-2f}, ref_ps.ptrs());
  for (int s = 0; s < 4; ++s) {
    ps.set_grads(s);
    ref_ps.set_grads(s);
    opt->step(1e-2f);
    ref->step(1e-2f);
  }
  auto a = ps.values(), b = ref_ps.values();
  for (size_t i = 0; i < a.size(); ++i) {
    if (i == 4) {
      EXPECT_EQ(a[i], 0.0);
    } else {
      EXPECT_NEAR(a[i], b[i], 1e-6) << i;
    }
  }
}

std::string make_error(const OptimizerConfig& cfg) {
  Params ps({3}, 0);
  try {
    make_optimizer(cfg, ps.ptrs());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(OptimTest, MakeOptimizerRejectsUnknownNames) {
  const std::string msg = make_error({.name = "rmsprop"});
  EXPECT_NE(msg.find("\"rmsprop\""), std::string::npos) << msg;
  for (const auto& n : optimizer_names()) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  EXPECT_EQ(optimizer_names(), (std::vector<std::string>{"sgd", "adam", "adamw"}));
}

TEST_F(OptimTest, MakeOptimizerRejectsBadValues) {
  struct Case {
    OptimizerConfig cfg;
    const char* fragment;
  };
  const Case cases[] = {
      {{.name = "adam", .lr = 0.0f}, "lr"},
      {{.name = "sgd", .lr = -1.0f}, "lr"},
      {{.name = "sgd", .lr = std::nanf("")}, "lr"},
      {{.name = "adam", .lr = INFINITY}, "lr"},
      {{.name = "adamw", .weight_decay = -0.1f}, "weight-decay"},
      {{.name = "sgd", .lr = 0.1f, .momentum = 1.0f}, "momentum"},
      {{.name = "sgd", .lr = 0.1f, .momentum = -0.5f}, "momentum"},
      {{.name = "sgd", .lr = 0.1f, .nesterov = true}, "nesterov"},
      {{.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .nesterov = true},
       "nesterov"},
      {{.name = "adam", .beta1 = 1.0f}, "betas"},
      {{.name = "adamw", .beta2 = -0.1f}, "betas"},
  };
  for (const Case& c : cases) {
    const std::string msg = make_error(c.cfg);
    EXPECT_NE(msg.find(c.fragment), std::string::npos)
        << c.cfg.name << ": expected an error mentioning '" << c.fragment << "', got '" << msg
        << "'";
  }
  // Valid configurations are accepted.
  EXPECT_EQ(make_error({.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .nesterov = true}), "");
  EXPECT_EQ(make_error({.name = "adamw", .weight_decay = 0.01f}), "");
}

TEST_F(OptimTest, StateNames) {
  Params ps({3, 4}, 0);
  {
    auto adam = make_optimizer({.name = "adam"}, ps.ptrs());
    auto st = adam->state();
    ASSERT_EQ(st.size(), 4u);
    EXPECT_EQ(st[0].first, "p0.adam_m");
    EXPECT_EQ(st[1].first, "p0.adam_v");
    EXPECT_EQ(st[2].first, "p1.adam_m");
    EXPECT_EQ(st[3].first, "p1.adam_v");
    EXPECT_EQ(st[2].second->shape(), Shape({4}));
    for (auto& [name, t] : st)
      for (float x : t->span_f32()) EXPECT_EQ(x, 0.0f) << name;
    // Distinct tensors, not aliases of one another.
    EXPECT_FALSE(st[0].second->shares_storage_with(*st[1].second));
  }
  {
    auto sgd = make_optimizer({.name = "sgd", .lr = 0.1f, .momentum = 0.9f}, ps.ptrs());
    auto st = sgd->state();
    ASSERT_EQ(st.size(), 2u);
    EXPECT_EQ(st[0].first, "p0.momentum");
    EXPECT_EQ(st[1].first, "p1.momentum");
  }
  EXPECT_TRUE(make_optimizer({.name = "sgd", .lr = 0.1f}, ps.ptrs())->state().empty());
}

TEST_F(OptimTest, ResumedStepCountGivesSameBiasCorrection) {
  // An Adam restored from state + steps continues exactly like the original.
  Params a({37}, 8), b({37}, 8);
  auto oa = make_optimizer({.name = "adam", .lr = 1e-2f}, a.ptrs());
  for (int s = 0; s < 3; ++s) {
    a.set_grads(s);
    oa->step(1e-2f);
  }
  // Copy weights and state into b's optimizer.
  b[0].value().copy_from(a[0].value());
  auto ob = make_optimizer({.name = "adam", .lr = 1e-2f}, b.ptrs());
  auto sa = oa->state(), sb = ob->state();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) sb[i].second->copy_from(*sa[i].second);
  ob->set_steps(oa->steps());
  a.set_grads(99);
  b.set_grads(99);
  oa->step(1e-2f);
  ob->step(1e-2f);
  EXPECT_EQ(a.values(), b.values());
}

}  // namespace
}  // namespace pare::optim
