// Optimizer steps on a parameter that runs sparse (Parameter::sparse set: the
// update touches only the pattern's entries, O(nnz)) against the dense masked
// update of the same parameter, and Optimizer::apply_masks after a mask change.
//
// The indexed kernels compute each entry with the dense kernel's formula
// (tests/kernels/optim_at_test.cc), so the two paths must agree element for element,
// over many steps, with weight decay and with the gradient nonzero at pruned
// entries (a dense backward leaves one there).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/optim/optimizer.h"
#include "pare/tensor/sparse.h"

namespace pare::optim {
namespace {

using autograd::Var;

// Two masked weights and an unmasked bias in one store, with the same values
// whatever the seed of the run (so two runs can be compared).
class Net {
 public:
  // fc1.weight is large enough for the update to be split across threads.
  // density: alive fraction of each weight's mask (drawn from mask_seed).
  Net(double density, uint64_t mask_seed) {
    Rng r(3);
    const std::vector<std::pair<std::string, Shape>> shapes = {
        {"fc1.weight", {120, 257}}, {"fc1.bias", {120}}, {"fc2.weight", {10, 120}}};
    for (const auto& [name, shape] : shapes) {
      auto p = std::make_unique<nn::Parameter>();
      p->name = name;
      p->is_weight = shape.ndim() == 2;
      Tensor v = Tensor::empty(shape);
      for (float& x : v.span_f32()) x = r.uniform(-1.0f, 1.0f);
      p->var = Var(v, true);
      params_.push_back(std::move(p));
    }
    std::vector<nn::Parameter*> raw;
    for (auto& p : params_) raw.push_back(p.get());
    store_.pack(raw);
    set_masks(density, mask_seed);
  }
  nn::Parameter& weight(int i) { return *params_[i == 0 ? 0 : 2]; }
  nn::Parameter& bias() { return *params_[1]; }
  std::vector<nn::Parameter*> ptrs() const { return store_.params(); }

  // New masks on both weights (values are not touched: the caller decides
  // whether to mask them now).
  void set_masks(double density, uint64_t seed) {
    Rng r(seed);
    for (int i : {0, 1}) {
      nn::Parameter& p = weight(i);
      p.mask = Tensor::empty(p.value().shape());
      for (float& m : p.mask.span_f32()) m = r.uniform() < density ? 1.0f : 0.0f;
    }
  }
  // Sets or clears Parameter::sparse on both weights from their masks.
  void set_sparse(bool on) {
    for (int i : {0, 1}) {
      nn::Parameter& p = weight(i);
      p.sparse.reset();
      if (on)
        p.sparse = std::make_shared<const CsrPattern>(
            CsrPattern::from_mask(p.value().dim(0), p.value().dim(1), p.mask.f32()));
    }
  }
  // Gradients for step `step`, nonzero everywhere (pruned entries included),
  // over several magnitudes.
  void set_grads(uint64_t step) {
    Rng r(1000 + step);
    float* g = store_.grads().f32();
    for (int64_t i = 0; i < store_.numel(); ++i)
      g[i] = r.uniform(-1.0f, 1.0f) * (i % 3 == 0 ? 1e-3f : 1.0f);
  }
  Tensor& values() { return store_.values(); }

  // Sets Parameter::sparse (a new pattern object) and Parameter::packed on
  // both weights, the packed values gathered from the dense ones and their
  // gradient bound to zeros (as nn::dispatch_sparse with packed = true).
  void set_packed() {
    set_sparse(true);
    for (int i : {0, 1}) {
      nn::Parameter& p = weight(i);
      Tensor v = Tensor::empty({p.sparse->nnz()});
      p.sparse->gather(p.value().f32(), v.f32(), nullptr);
      p.packed = Var(v, true);
      p.packed.bind_grad(Tensor::zeros({p.sparse->nnz()}));
    }
  }
  // set_grads, and each packed gradient the dense one at the pattern.
  void set_grads_packed(uint64_t step) {
    set_grads(step);
    for (int i : {0, 1}) {
      nn::Parameter& p = weight(i);
      if (p.packed.defined()) p.sparse->gather(p.grad().f32(), p.packed.grad().f32(), nullptr);
    }
  }
  // Writes the packed values into the dense weights (nn::sync_sparse_to_dense).
  void sync() {
    for (int i : {0, 1}) {
      nn::Parameter& p = weight(i);
      if (p.packed.defined()) p.sparse->scatter(p.packed.value().f32(), p.value().f32());
    }
  }

 private:
  std::vector<std::unique_ptr<nn::Parameter>> params_;
  nn::ParameterStore store_;
};

// Equal element for element (-0 equals +0: apply_mask leaves -0 where the
// dense masked step writes +0; both are "exactly 0").
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return false;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (!(a.f32()[i] == b.f32()[i])) return false;
  return true;
}

// Largest |a - b| / max(|b|, 1e-30) over all entries.
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const float* x = a.f32();
  const float* y = b.f32();
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
    if (d > 0) worst = std::max(worst, d / std::max(std::fabs(static_cast<double>(y[i])), 1e-30));
  }
  return worst;
}

// Entries of t where mask is 0 that are not exactly 0 (-0 counts as 0).
int64_t nonzero_outside(const Tensor& t, const Tensor& mask) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += mask.f32()[i] == 0.0f && t.f32()[i] != 0.0f;
  return n;
}

Tensor* state_tensor(Optimizer& opt, const std::string& name) {
  for (auto& [n, t] : opt.state())
    if (n == name) return t;
  ADD_FAILURE() << "no optimizer state named " << name;
  return nullptr;
}

class SparseUpdateTest : public ::testing::Test {
 protected:
  void SetUp() override { set_num_threads(2); }
};

const OptimizerConfig kConfigs[] = {
    {.name = "adam", .lr = 1e-2f, .weight_decay = 1e-2f},
    {.name = "adamw", .lr = 1e-2f, .weight_decay = 5e-2f},
    {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f},
    {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f},
    {.name = "sgd", .lr = 0.05f, .weight_decay = 1e-3f},
};

std::string describe(const OptimizerConfig& c) {
  return c.name + (c.momentum != 0 ? " momentum" : "") + (c.nesterov ? " nesterov" : "");
}

TEST_F(SparseUpdateTest, ManyStepsEqualTheDenseMaskedUpdate) {
  for (const OptimizerConfig& cfg : kConfigs) {
    const std::string where = describe(cfg);
    Net sparse(0.1, 5), dense(0.1, 5);  // below a fifth: updated at the pattern
    for (Net* n : {&sparse, &dense})
      for (int i : {0, 1}) n->weight(i).apply_mask();
    sparse.set_sparse(true);
    dense.set_sparse(false);
    ASSERT_TRUE(same_values(sparse.values(), dense.values()));
    auto opt_s = make_optimizer(cfg, sparse.ptrs());
    auto opt_d = make_optimizer(cfg, dense.ptrs());
    const Tensor before = sparse.values().clone();
    for (int step = 0; step < 60; ++step) {
      sparse.set_grads(step);
      dense.set_grads(step);
      opt_s->step(cfg.lr);
      opt_d->step(cfg.lr);
    }
    // The weights moved, and the two paths agree exactly (so within 1e-6 too).
    EXPECT_GT(max_rel_diff(sparse.values(), before), 1e-3) << where;
    EXPECT_EQ(max_rel_diff(sparse.values(), dense.values()), 0.0) << where;
    EXPECT_TRUE(same_values(sparse.values(), dense.values())) << where;
    for (int i : {0, 1}) {
      const nn::Parameter& p = sparse.weight(i);
      EXPECT_EQ(nonzero_outside(p.value(), p.mask), 0) << where << " " << p.name;
      EXPECT_EQ(nonzero_outside(dense.weight(i).value(), p.mask), 0) << where << " " << p.name;
    }
    // The bias (no mask, no pattern) took the dense step in both.
    EXPECT_TRUE(same_values(sparse.bias().value(), dense.bias().value())) << where;
    // State agrees too (zero outside the mask in both).
    auto st_s = opt_s->state(), st_d = opt_d->state();
    ASSERT_EQ(st_s.size(), st_d.size());
    for (size_t k = 0; k < st_s.size(); ++k)
      EXPECT_TRUE(same_values(*st_s[k].second, *st_d[k].second)) << where << " " << st_s[k].first;
  }
}

// After a mask change (some weights dropped, some regrown), apply_masks
// zeroes value and state outside the new mask, so sparse steps from there on
// equal the dense masked steps (which zero them every step).
TEST_F(SparseUpdateTest, ApplyMasksAfterAMaskChangeZeroesValueAndState) {
  for (const OptimizerConfig& cfg : kConfigs) {
    if (cfg.name == "sgd" && cfg.momentum == 0) continue;  // no state to check
    const std::string where = describe(cfg);
    Net sparse(0.6, 5), dense(0.6, 5);
    auto opt_s = make_optimizer(cfg, sparse.ptrs());
    auto opt_d = make_optimizer(cfg, dense.ptrs());
    // Dense masked steps under the first mask: state nonzero inside it.
    for (int step = 0; step < 5; ++step)
      for (auto [n, o] : {std::pair{&sparse, opt_s.get()}, std::pair{&dense, opt_d.get()}}) {
        n->set_grads(step);
        o->step(cfg.lr);
      }
    ASSERT_TRUE(same_values(sparse.values(), dense.values())) << where;
    // A new mask on both; only `sparse` runs sparse, after apply_masks.
    sparse.set_masks(0.15, 9);
    dense.set_masks(0.15, 9);
    const Tensor values_before = sparse.values().clone();
    const Tensor bias_before = sparse.bias().value().clone();
    std::vector<Tensor> state_before;
    for (auto& [name, t] : opt_s->state()) state_before.push_back(t->clone());
    opt_s->apply_masks();
    sparse.set_sparse(true);
    auto st = opt_s->state();
    int64_t zeroed = 0;
    for (size_t k = 0; k < st.size(); ++k) {
      const std::string& name = st[k].first;
      const Tensor& t = *st[k].second;
      if (name.rfind("fc1.bias", 0) == 0) {
        EXPECT_TRUE(same_values(t, state_before[k])) << where << ": " << name << " has no mask";
        continue;
      }
      const nn::Parameter& p = sparse.weight(name.rfind("fc1.", 0) == 0 ? 0 : 1);
      EXPECT_EQ(nonzero_outside(t, p.mask), 0) << where << ": " << name;
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (p.mask.f32()[i] != 0.0f) {
          ASSERT_EQ(t.f32()[i], state_before[k].f32()[i]) << where << ": " << name << " kept " << i;
        } else {
          zeroed += state_before[k].f32()[i] != 0.0f;
        }
      }
    }
    EXPECT_GT(zeroed, 100) << where << ": the mask change dropped no live state";
    for (int i : {0, 1}) {
      const nn::Parameter& p = sparse.weight(i);
      EXPECT_EQ(nonzero_outside(p.value(), p.mask), 0) << where << " " << p.name;
    }
    EXPECT_TRUE(same_values(sparse.bias().value(), bias_before)) << where;
    // Inside the new mask the values are untouched.
    const float* a = sparse.values().f32();
    const float* b = values_before.f32();
    const float* m0 = sparse.weight(0).mask.f32();
    for (int64_t i = 0; i < sparse.weight(0).numel(); ++i)
      if (m0[i] != 0.0f) {
        ASSERT_EQ(a[i], b[i]) << where << " fc1.weight " << i;
      }

    // From here, sparse steps and dense masked steps agree.
    for (int step = 5; step < 30; ++step)
      for (auto [n, o] : {std::pair{&sparse, opt_s.get()}, std::pair{&dense, opt_d.get()}}) {
        n->set_grads(step);
        o->step(cfg.lr);
      }
    EXPECT_TRUE(same_values(sparse.values(), dense.values()))
        << where << ": max rel diff " << max_rel_diff(sparse.values(), dense.values());
    auto st_d = opt_d->state();
    st = opt_s->state();
    for (size_t k = 0; k < st.size(); ++k)
      EXPECT_TRUE(same_values(*st[k].second, *st_d[k].second)) << where << " " << st[k].first;
  }
}

// Without apply_masks a sparse step leaves stale state and values outside a
// new mask (which is why the contract asks for it): the check above is not vacuous.
TEST_F(SparseUpdateTest, WithoutApplyMasksPrunedEntriesKeepTheirValues) {
  Net net(0.6, 5);
  OptimizerConfig cfg{.name = "adam", .lr = 1e-2f};
  auto opt = make_optimizer(cfg, net.ptrs());
  for (int step = 0; step < 3; ++step) {
    net.set_grads(step);
    opt->step(cfg.lr);
  }
  net.set_masks(0.15, 9);
  net.set_sparse(true);
  net.set_grads(3);
  opt->step(cfg.lr);
  const nn::Parameter& p = net.weight(0);
  EXPECT_GT(nonzero_outside(p.value(), p.mask), 100);
  EXPECT_GT(nonzero_outside(*state_tensor(*opt, "fc1.weight.adam_m"), p.mask), 100);
  opt->apply_masks();
  EXPECT_EQ(nonzero_outside(p.value(), p.mask), 0);
  EXPECT_EQ(nonzero_outside(*state_tensor(*opt, "fc1.weight.adam_m"), p.mask), 0);
  EXPECT_EQ(nonzero_outside(*state_tensor(*opt, "fc1.weight.adam_v"), p.mask), 0);
}

TEST_F(SparseUpdateTest, ApplyMasksZeroesSgdMomentumOutsideTheMask) {
  Net net(1.0, 5);  // all-ones masks: momentum nonzero everywhere
  OptimizerConfig cfg{.name = "sgd", .lr = 0.1f, .momentum = 0.9f};
  auto opt = make_optimizer(cfg, net.ptrs());
  for (int step = 0; step < 3; ++step) {
    net.set_grads(step);
    opt->step(cfg.lr);
  }
  Tensor* buf = state_tensor(*opt, "fc2.weight.momentum");
  ASSERT_NE(buf, nullptr);
  const Tensor bias_buf = state_tensor(*opt, "fc1.bias.momentum")->clone();
  EXPECT_EQ(nonzero_outside(*buf, Tensor::zeros(buf->shape())), buf->numel());
  net.set_masks(0.25, 11);
  opt->apply_masks();
  EXPECT_EQ(nonzero_outside(*buf, net.weight(1).mask), 0);
  int64_t kept = 0;
  for (int64_t i = 0; i < buf->numel(); ++i) kept += buf->f32()[i] != 0.0f;
  EXPECT_GT(kept, 0);
  EXPECT_TRUE(same_values(*state_tensor(*opt, "fc1.bias.momentum"), bias_buf));
}

// ---- packed storage (Parameter::packed): the update runs over the packed
// values and packed optimizer state; the dense ones are stale until synced ----

// Every optimizer on packed weights over many steps equals the dense masked
// update element for element (values after sync, and state); state() in the
// middle of the run returns the current state (flushed from the packed copy)
// and the run then continues with the same bits as one that never asked.
TEST_F(SparseUpdateTest, PackedStepsEqualTheDenseMaskedUpdateAndStateFlushes) {
  for (const OptimizerConfig& cfg : kConfigs) {
    const std::string where = describe(cfg);
    Net packed(0.1, 5), plain(0.1, 5), dense(0.1, 5);
    for (Net* n : {&packed, &plain, &dense})
      for (int i : {0, 1}) n->weight(i).apply_mask();
    packed.set_packed();
    plain.set_packed();
    auto opt_p = make_optimizer(cfg, packed.ptrs());
    auto opt_q = make_optimizer(cfg, plain.ptrs());  // never asked for its state mid-run
    auto opt_d = make_optimizer(cfg, dense.ptrs());
    const Tensor before = dense.values().clone();
    auto step_all = [&](int step) {
      packed.set_grads_packed(step);
      plain.set_grads_packed(step);
      dense.set_grads(step);
      opt_p->step(cfg.lr);
      opt_q->step(cfg.lr);
      opt_d->step(cfg.lr);
    };
    for (int step = 0; step < 25; ++step) step_all(step);
    // Dense weights stay stale while packed: the first weight never moved.
    EXPECT_EQ(0, std::memcmp(packed.weight(0).value().f32(), before.f32(),
                             packed.weight(0).value().nbytes()))
        << where << ": the dense weight was written while packed";
    // Mid-run: state() returns the current state.
    {
      auto st_p = opt_p->state(), st_d = opt_d->state();
      ASSERT_EQ(st_p.size(), st_d.size()) << where;
      int64_t nonzero = 0;
      for (size_t k = 0; k < st_p.size(); ++k) {
        EXPECT_EQ(st_p[k].first, st_d[k].first);
        EXPECT_TRUE(same_values(*st_p[k].second, *st_d[k].second))
            << where << " mid-run " << st_p[k].first << ": max rel diff "
            << max_rel_diff(*st_p[k].second, *st_d[k].second);
        for (float v : st_p[k].second->span_f32()) nonzero += v != 0.0f;
      }
      if (!st_p.empty()) {
        EXPECT_GT(nonzero, 100) << where << ": state is all zero (vacuous)";
      }
      packed.sync();
      EXPECT_TRUE(same_values(packed.values(), dense.values())) << where << " mid-run values";
    }
    for (int step = 25; step < 60; ++step) {
      step_all(step);
      if (step == 40) (void)opt_p->state();  // again, flushed and re-gathered
    }
    packed.sync();
    plain.sync();
    EXPECT_GT(max_rel_diff(dense.values(), before), 1e-3) << where;
    EXPECT_TRUE(same_values(packed.values(), dense.values()))
        << where << ": max rel diff " << max_rel_diff(packed.values(), dense.values());
    EXPECT_EQ(0, std::memcmp(packed.values().f32(), plain.values().f32(), packed.values().nbytes()))
        << where << ": asking for the state changed the run's bits";
    for (int i : {0, 1}) {
      const nn::Parameter& p = packed.weight(i);
      EXPECT_EQ(nonzero_outside(p.value(), p.mask), 0) << where << " " << p.name;
      EXPECT_EQ(p.packed.numel(), p.sparse->nnz());
    }
    auto st_p = opt_p->state(), st_q = opt_q->state(), st_d = opt_d->state();
    ASSERT_EQ(st_p.size(), st_d.size());
    for (size_t k = 0; k < st_p.size(); ++k) {
      EXPECT_TRUE(same_values(*st_p[k].second, *st_d[k].second)) << where << " " << st_p[k].first;
      EXPECT_EQ(0, std::memcmp(st_p[k].second->f32(), st_q[k].second->f32(), st_p[k].second->nbytes()))
          << where << " " << st_p[k].first;
      const std::string& name = st_p[k].first;
      if (name.rfind("fc1.bias", 0) != 0) {
        const nn::Parameter& p = packed.weight(name.rfind("fc1.", 0) == 0 ? 0 : 1);
        EXPECT_EQ(nonzero_outside(*st_p[k].second, p.mask), 0) << where << " " << name;
      }
    }
  }
}

// A checkpoint reader writes into the tensors state() returns: the next
// packed step must start from what was written (re-gathered), not from the
// packed copy it had before.
TEST_F(SparseUpdateTest, PackedStepsPickUpStateWrittenThroughState) {
  const OptimizerConfig cfg{.name = "adam", .lr = 1e-2f};
  Net a(0.2, 5), b(0.2, 5);
  for (Net* n : {&a, &b})
    for (int i : {0, 1}) n->weight(i).apply_mask();
  a.set_packed();
  b.set_packed();
  auto opt_a = make_optimizer(cfg, a.ptrs());
  auto opt_b = make_optimizer(cfg, b.ptrs());
  for (int step = 0; step < 5; ++step) {
    a.set_grads_packed(step);
    opt_a->step(cfg.lr);
  }
  b.set_grads_packed(0);
  opt_b->step(cfg.lr);  // b has packed state of its own now
  // Copy a's state and values into b, as a resume would.
  auto st_a = opt_a->state(), st_b = opt_b->state();
  for (size_t k = 0; k < st_a.size(); ++k) st_b[k].second->copy_from(*st_a[k].second);
  opt_b->set_steps(opt_a->steps());
  a.sync();
  b.values().copy_from(a.values());
  b.set_packed();  // values re-gathered, as dispatch after a resume
  for (int step = 5; step < 15; ++step) {
    a.set_grads_packed(step);
    b.set_grads_packed(step);
    opt_a->step(cfg.lr);
    opt_b->step(cfg.lr);
  }
  a.sync();
  b.sync();
  EXPECT_EQ(0, std::memcmp(a.values().f32(), b.values().f32(), a.values().nbytes()))
      << "max rel diff " << max_rel_diff(b.values(), a.values());
}

// A mask change while packed: new masks, new pattern objects, apply_masks
// (in both orders: the trainer sets the new pattern first), then packed steps
// continue exactly like the dense masked run; weights and state outside the
// new mask are exactly 0.
TEST_F(SparseUpdateTest, PackedStepsContinueAfterAPatternChange) {
  for (const OptimizerConfig& cfg : kConfigs) {
    if (cfg.name == "adamw") continue;
    for (bool pattern_first : {true, false}) {
      const std::string where = describe(cfg) + (pattern_first ? " pattern first" : " apply_masks first");
      Net packed(0.3, 5), dense(0.3, 5);
      for (Net* n : {&packed, &dense})
        for (int i : {0, 1}) n->weight(i).apply_mask();
      packed.set_packed();
      auto opt_p = make_optimizer(cfg, packed.ptrs());
      auto opt_d = make_optimizer(cfg, dense.ptrs());
      for (int step = 0; step < 20; ++step) {
        packed.set_grads_packed(step);
        dense.set_grads(step);
        opt_p->step(cfg.lr);
        opt_d->step(cfg.lr);
      }
      // Prune and regrow: the dense values must be current first.
      packed.sync();
      ASSERT_TRUE(same_values(packed.values(), dense.values())) << where;
      const std::shared_ptr<const CsrPattern> old0 = packed.weight(0).sparse;  // held: no address reuse
      for (Net* n : {&packed, &dense}) n->set_masks(0.25, 9);
      if (pattern_first) {
        packed.set_packed();
        opt_p->apply_masks();
      } else {
        opt_p->apply_masks();
        packed.set_packed();
      }
      ASSERT_NE(packed.weight(0).sparse, old0);
      opt_d->apply_masks();
      for (int step = 20; step < 45; ++step) {
        packed.set_grads_packed(step);
        dense.set_grads(step);
        opt_p->step(cfg.lr);
        opt_d->step(cfg.lr);
      }
      packed.sync();
      EXPECT_TRUE(same_values(packed.values(), dense.values()))
          << where << ": max rel diff " << max_rel_diff(packed.values(), dense.values());
      auto st_p = opt_p->state(), st_d = opt_d->state();
      for (size_t k = 0; k < st_p.size(); ++k) {
        EXPECT_TRUE(same_values(*st_p[k].second, *st_d[k].second)) << where << " " << st_p[k].first;
        const std::string& name = st_p[k].first;
        if (name.rfind("fc1.bias", 0) != 0) {
          const nn::Parameter& p = packed.weight(name.rfind("fc1.", 0) == 0 ? 0 : 1);
          EXPECT_EQ(nonzero_outside(*st_p[k].second, p.mask), 0) << where << " " << name;
        }
      }
      for (int i : {0, 1}) {
        const nn::Parameter& p = packed.weight(i);
        EXPECT_EQ(nonzero_outside(p.value(), p.mask), 0) << where << " " << p.name;
      }
    }
  }
}

}  // namespace
}  // namespace pare::optim
