// SGD, Adam and AdamW over the parameter store, and learning-rate schedules.
#include "pare/optim/optimizer.h"

#include <cmath>

#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"

namespace pare::optim {

namespace {

// Splits a parameter's elementwise update across the pool (fixed chunks, so
// the result does not depend on timing).
template <typename Fn>
void for_chunks(int64_t n, Fn&& fn) {
  ops::parallel_range(n, 8.0, [&](int64_t b, int64_t e) { fn(b, e); });
}

// The same for packed values: contiguous and short (a pruned layer's nnz),
// so splitting pays only for long arrays (measured: LeNet-300-100 at 95%
// sparsity, 13k packed values, took 2.5 us on one thread and 9.5 us split).
template <typename Fn>
void for_packed_chunks(int64_t n, Fn&& fn) {
  ops::parallel_range(n, 0.5, [&](int64_t b, int64_t e) { fn(b, e); });
}

// Whether a parameter running sparse is updated at its pattern's entries
// (gathers and scatters, O(nnz)) rather than by the dense masked pass
// (contiguous, O(numel)); both give the same bits. A gathered entry costs
// about five contiguous ones (AVX-512, LeNet-300-100's first layer: at 50%
// density the gathered update took 22% of a step), so the dense pass wins
// above a fifth of the entries.
bool update_at_pattern(const nn::Parameter& p) {
  return p.sparse && p.sparse->nnz() * 5 < p.numel();
}

class Sgd : public Optimizer {
 public:
  Sgd(const OptimizerConfig& cfg, std::vector<nn::Parameter*> params)
      : Optimizer(std::move(params)), cfg_(cfg) {
    if (cfg.momentum != 0.0f)
      for (nn::Parameter* p : params_) buf_.push_back(Tensor::zeros(p->value().shape()));
  }
  void step(float lr) override {
    kernels::SgdParams sp{.lr = lr, .momentum = cfg_.momentum, .dampening = cfg_.dampening,
                          .weight_decay = cfg_.weight_decay, .nesterov = cfg_.nesterov,
                          .first_step = steps_ == 0};
    for (size_t i = 0; i < params_.size(); ++i) {
      nn::Parameter& p = *params_[i];
      float* w = p.value().f32();
      float* b = buf_.empty() ? nullptr : buf_[i].f32();
      const float* g = p.grad().f32();
      const float* m = p.mask.defined() ? p.mask.f32() : nullptr;
      if (p.packed.defined()) {  // contiguous over the packed values and state
        std::vector<Tensor>& st = packed_state(i);
        float* wp = p.packed.value().f32();
        float* bp = st.empty() ? nullptr : st[0].f32();
        const float* gp = p.packed.grad().f32();
        for_packed_chunks(p.packed.numel(), [&](int64_t s, int64_t e) {
          kernels::sgd_f32(e - s, wp + s, bp ? bp + s : nullptr, gp + s, nullptr, sp);
        });
        continue;
      }
      if (update_at_pattern(p)) {  // only the pattern's entries; the rest are 0 and stay 0
        const int32_t* idx = p.sparse->pos.data();
        for_chunks(p.sparse->nnz(), [&](int64_t s, int64_t e) {
          kernels::sgd_at_f32(e - s, idx + s, w, b, g, sp);
        });
        continue;
      }
      for_chunks(p.numel(), [&](int64_t s, int64_t e) {
        kernels::sgd_f32(e - s, w + s, b ? b + s : nullptr, g + s, m ? m + s : nullptr, sp);
      });
    }
    ++steps_;
  }
  std::vector<Tensor*> state_of(size_t i) override {
    if (buf_.empty()) return {};
    return {&buf_[i]};
  }
  std::vector<std::pair<std::string, Tensor*>> named_state() override {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (size_t i = 0; i < buf_.size(); ++i)
      out.push_back({params_[i]->name + ".momentum", &buf_[i]});
    return out;
  }

 private:
  OptimizerConfig cfg_;
  std::vector<Tensor> buf_;
};

class Adam : public Optimizer {
 public:
  Adam(const OptimizerConfig& cfg, std::vector<nn::Parameter*> params, bool decoupled)
      : Optimizer(std::move(params)), cfg_(cfg), decoupled_(decoupled) {
    for (nn::Parameter* p : params_) {
      m_.push_back(Tensor::zeros(p->value().shape()));
      v_.push_back(Tensor::zeros(p->value().shape()));
    }
  }
  void step(float lr) override {
    const double t = static_cast<double>(steps_ + 1);
    kernels::AdamParams ap{
        .lr = lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.eps,
        .weight_decay = cfg_.weight_decay, .decoupled = decoupled_,
        .bias_correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg_.beta1), t)),
        .bias_correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg_.beta2), t))};
    for (size_t i = 0; i < params_.size(); ++i) {
      nn::Parameter& p = *params_[i];
      float* w = p.value().f32();
      float* m = m_[i].f32();
      float* v = v_[i].f32();
      const float* g = p.grad().f32();
      const float* mask = p.mask.defined() ? p.mask.f32() : nullptr;
      if (p.packed.defined()) {  // contiguous over the packed values and state
        std::vector<Tensor>& st = packed_state(i);
        float* wp = p.packed.value().f32();
        float* mp = st[0].f32();
        float* vp = st[1].f32();
        const float* gp = p.packed.grad().f32();
        for_packed_chunks(p.packed.numel(), [&](int64_t s, int64_t e) {
          kernels::adam_f32(e - s, wp + s, mp + s, vp + s, gp + s, nullptr, ap);
        });
        continue;
      }
      if (update_at_pattern(p)) {  // only the pattern's entries; the rest are 0 and stay 0
        const int32_t* idx = p.sparse->pos.data();
        for_chunks(p.sparse->nnz(), [&](int64_t s, int64_t e) {
          kernels::adam_at_f32(e - s, idx + s, w, m, v, g, ap);
        });
        continue;
      }
      for_chunks(p.numel(), [&](int64_t s, int64_t e) {
        kernels::adam_f32(e - s, w + s, m + s, v + s, g + s, mask ? mask + s : nullptr, ap);
      });
    }
    ++steps_;
  }
  std::vector<Tensor*> state_of(size_t i) override { return {&m_[i], &v_[i]}; }
  std::vector<std::pair<std::string, Tensor*>> named_state() override {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (size_t i = 0; i < m_.size(); ++i) {
      out.push_back({params_[i]->name + ".adam_m", &m_[i]});
      out.push_back({params_[i]->name + ".adam_v", &v_[i]});
    }
    return out;
  }

 private:
  OptimizerConfig cfg_;
  bool decoupled_;
  std::vector<Tensor> m_, v_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> n = {"sgd", "adam", "adamw"};
  return n;
}
const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> n = {"constant", "step", "cosine"};
  return n;
}

void validate(const OptimizerConfig& cfg) {
  if (!(cfg.lr > 0.0f) || !std::isfinite(cfg.lr)) fail("--lr must be a positive number, got ", cfg.lr);
  if (!(cfg.weight_decay >= 0.0f) || !std::isfinite(cfg.weight_decay))
    fail("--weight-decay must be a number >= 0, got ", cfg.weight_decay);
  if (cfg.name == "sgd") {
    if (!(cfg.momentum >= 0.0f && cfg.momentum < 1.0f))
      fail("--momentum must be in [0, 1), got ", cfg.momentum);
    if (cfg.nesterov && (cfg.momentum == 0.0f || cfg.dampening != 0.0f))
      fail("--nesterov needs --momentum > 0 and no dampening");
  } else if (cfg.name == "adam" || cfg.name == "adamw") {
    if (!(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1))
      fail("Adam betas must be in [0, 1), got ", cfg.beta1, " and ", cfg.beta2);
    if (!(cfg.eps > 0.0f)) fail("--eps must be positive, got ", cfg.eps);
  } else {
    fail("unknown optimizer \"", cfg.name, "\": use one of ", join(optimizer_names()));
  }
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& cfg,
                                          std::vector<nn::Parameter*> params) {
  validate(cfg);
  if (cfg.name == "sgd") return std::make_unique<Sgd>(cfg, std::move(params));
  return std::make_unique<Adam>(cfg, std::move(params), cfg.name == "adamw");
}

void validate(const ScheduleConfig& s) {
  if (s.name != "constant" && s.name != "step" && s.name != "cosine")
    fail("unknown lr schedule \"", s.name, "\": use one of ", join(schedule_names()));
  if (s.warmup_steps < 0) fail("--warmup must be >= 0");
  if (s.name == "step" && s.step_size <= 0) fail("the step schedule needs --lr-step-size > 0");
  if (s.name == "cosine" && s.total_steps != 0 && s.total_steps <= s.warmup_steps)
    fail("the cosine schedule needs more steps (", s.total_steps, ") than --warmup (",
         s.warmup_steps, ")");
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state() {
  flush_packed_state();
  return named_state();
}

std::vector<Tensor>& Optimizer::packed_state(size_t i) {
  packed_.resize(params_.size());
  PackedState& st = packed_[i];
  const nn::Parameter& p = *params_[i];
  PARE_CHECK(p.sparse, p.name, ": packed without a pattern");
  if (st.pattern != p.sparse) {
    if (st.pattern)  // an earlier pattern's state goes home first
      for (size_t t = 0; t < st.tensors.size(); ++t)
        st.pattern->scatter(st.tensors[t].f32(), state_of(i)[t]->f32());
    st.pattern = p.sparse;
    st.tensors.clear();
    for (Tensor* dense : state_of(i)) {
      Tensor packed = Tensor::empty({p.sparse->nnz()});
      p.sparse->gather(dense->f32(), packed.f32(), nullptr);
      st.tensors.push_back(packed);
    }
  }
  return st.tensors;
}

void Optimizer::flush_packed_state() {
  for (size_t i = 0; i < packed_.size(); ++i) {
    PackedState& st = packed_[i];
    if (!st.pattern) continue;
    const std::vector<Tensor*> dense = state_of(i);
    for (size_t t = 0; t < st.tensors.size(); ++t)
      st.pattern->scatter(st.tensors[t].f32(), dense[t]->f32());
    st = PackedState{};
  }
}

void Optimizer::apply_masks() {
  flush_packed_state();
  for (size_t i = 0; i < params_.size(); ++i) {
    nn::Parameter* p = params_[i];
    if (!p->mask.defined()) continue;
    p->apply_mask();
    for (Tensor* t : state_of(i)) {
      float* v = t->f32();
      const float* m = p->mask.f32();
      for (int64_t j = 0; j < t->numel(); ++j)
        if (m[j] == 0.0f) v[j] = 0.0f;
    }
  }
}

float scheduled_lr(const ScheduleConfig& s, float base_lr, int64_t step) {
  if (s.warmup_steps > 0 && step < s.warmup_steps)
    return base_lr * static_cast<float>(step + 1) / static_cast<float>(s.warmup_steps);
  const int64_t t = step - s.warmup_steps;
  if (s.name == "step" && s.step_size > 0)
    return base_lr * std::pow(s.gamma, static_cast<float>(t / s.step_size));
  if (s.name == "cosine" && s.total_steps > s.warmup_steps) {
    const double span = static_cast<double>(s.total_steps - s.warmup_steps);
    const double frac = std::min(1.0, static_cast<double>(t) / span);
    return s.lr_min + (base_lr - s.lr_min) * static_cast<float>(0.5 * (1.0 + std::cos(M_PI * frac)));
  }
  return base_lr;
}

}  // namespace pare::optim
