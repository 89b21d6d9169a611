// The indexed optimizer steps adam_at_f32 / sgd_at_f32 (the update of a
// sparse layer's weight at its pattern's entries only): fast against ref, and
// both against the dense masked steps adam_f32 / sgd_f32 with the mask that
// keeps exactly the indexed entries.
//
// What must hold, per case, over several steps with a new gradient each:
//   at indexed entries  fast_at == fast dense masked step (same bits: one
//                       formula, one rounding order), ref_at == ref dense
//                       masked step (same bits: ref_at is defined as it), and
//                       fast vs ref within the optimizer tolerance of
//                       kernels_test.cc (rtol 1e-6, atol 5e-7)
//   everywhere else     w, m, v (buf) keep their bits: the entries are random
//                       nonzeros (the dense masked step would zero them) and
//                       the gradient there is NaN (so a read would show)
// Indices come in shuffled order (distinct, as the contract asks).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "pare/base/rng.h"
#include "pare/kernels/kernels.h"

namespace pare::kernels {
namespace {

using Vec = std::vector<float>;
using Idx = std::vector<int32_t>;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Tol {
  double rtol, atol;
};
constexpr Tol kExact{0, 0};
constexpr Tol kOptim{1e-6, 5e-7};

Vec random_vec(Rng& rng, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  Vec v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b));
}

// Entries of `idx` (or, with `complement`, every other entry) of a and b agree
// within tol; on failure, the first bad index and both values.
::testing::AssertionResult close_at(const Vec& a, const Vec& b, const Idx& idx, bool complement,
                                    Tol tol, const std::string& where) {
  std::vector<char> in(a.size(), 0);
  for (int32_t i : idx) in[static_cast<size_t>(i)] = 1;
  const bool exact = tol.rtol == 0 && tol.atol == 0;
  int64_t bad = 0, first = -1, checked = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (static_cast<bool>(in[i]) == complement) continue;
    ++checked;
    const bool ok =
        exact ? same_bits(a[i], b[i])
              : (a[i] == b[i] || std::fabs(static_cast<double>(a[i]) - b[i]) <=
                                     tol.atol + tol.rtol * std::fabs(static_cast<double>(b[i])));
    if (!ok && bad++ == 0) first = static_cast<int64_t>(i);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << where << ": " << bad << " of " << checked << (complement ? " other" : " indexed")
         << " entries differ; first at " << first << ": " << a[first] << " vs " << b[first]
         << " (rtol " << tol.rtol << ", atol " << tol.atol << ")";
}

// A shuffled set of distinct indices in [0, n), each kept with probability
// `density`; the 0/1 mask of the same set.
struct Subset {
  Idx idx;
  Vec mask;
};
Subset random_subset(Rng& rng, int64_t n, double density) {
  Subset s;
  s.mask.assign(static_cast<size_t>(n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    if (rng.uniform() < density) {
      s.idx.push_back(static_cast<int32_t>(i));
      s.mask[static_cast<size_t>(i)] = 1.0f;
    }
  for (size_t i = s.idx.size(); i > 1; --i)  // Fisher-Yates
    std::swap(s.idx[i - 1], s.idx[rng.below(i)]);
  return s;
}

// A gradient with NaN outside the subset (an indexed step must not read it;
// the dense masked step never uses a masked-out entry's value either).
Vec gradient(Rng& rng, const Subset& s) {
  Vec g = random_vec(rng, static_cast<int64_t>(s.mask.size()));
  for (size_t i = 0; i < g.size(); ++i)
    if (s.mask[i] == 0.0f) g[i] = kNaN;
  return g;
}

const int64_t kSizes[] = {0, 1, 7, 17, 33, 1000, 4099};
const double kDensities[] = {0.0, 0.05, 0.3, 1.0};

std::string where(const char* name, int64_t n, double density) {
  std::ostringstream os;
  os << name << " n=" << n << " density=" << density;
  return os.str();
}

TEST(OptimAt, AdamMatchesRefAndTheDenseMaskedStep) {
  struct Case {
    const char* name;
    AdamParams p;
  };
  const Case cases[] = {
      {"adam t=1", {.bias_correction1 = 0.1f, .bias_correction2 = 0.001f}},
      {"adam l2 decay",
       {.lr = 3e-3f, .weight_decay = 0.01f, .bias_correction1 = 0.19f, .bias_correction2 = 0.002f}},
      {"adamw",
       {.lr = 3e-3f,
        .weight_decay = 0.05f,
        .decoupled = true,
        .bias_correction1 = 0.5f,
        .bias_correction2 = 0.05f}},
  };
  Rng rng(51);
  int64_t updated = 0;
  for (const Case& c : cases)
    for (int64_t n : kSizes)
      for (double density : kDensities) {
        const std::string at = where(c.name, n, density);
        const Subset s = random_subset(rng, n, density);
        const Vec w = random_vec(rng, n), m = random_vec(rng, n, -0.1f, 0.1f),
                  v = random_vec(rng, n, 0.0f, 0.01f);
        Vec wf = w, mf = m, vf = v;  // adam_at_f32
        Vec wr = w, mr = m, vr = v;  // adam_at_f32__ref
        Vec wd = w, md = m, vd = v;  // adam_f32, masked
        Vec we = w, me = m, ve = v;  // adam_f32__ref, masked
        for (int step = 0; step < 3; ++step) {
          const Vec g = gradient(rng, s);
          const int64_t k = static_cast<int64_t>(s.idx.size());
          adam_at_f32(k, s.idx.data(), wf.data(), mf.data(), vf.data(), g.data(), c.p);
          adam_at_f32__ref(k, s.idx.data(), wr.data(), mr.data(), vr.data(), g.data(), c.p);
          adam_f32(n, wd.data(), md.data(), vd.data(), g.data(), s.mask.data(), c.p);
          adam_f32__ref(n, we.data(), me.data(), ve.data(), g.data(), s.mask.data(), c.p);
        }
        for (auto [name, fast, ref, dense, dense_ref, orig] :
             {std::tuple{"w", &wf, &wr, &wd, &we, &w}, std::tuple{"m", &mf, &mr, &md, &me, &m},
              std::tuple{"v", &vf, &vr, &vd, &ve, &v}}) {
          const std::string wh = at + " " + name;
          EXPECT_TRUE(close_at(*fast, *ref, s.idx, false, kOptim, wh + " fast vs ref"));
          EXPECT_TRUE(close_at(*fast, *dense, s.idx, false, kExact, wh + " fast vs dense fast"));
          EXPECT_TRUE(close_at(*ref, *dense_ref, s.idx, false, kExact, wh + " ref vs dense ref"));
          EXPECT_TRUE(close_at(*fast, *orig, s.idx, true, kExact, wh + " fast: untouched"));
          EXPECT_TRUE(close_at(*ref, *orig, s.idx, true, kExact, wh + " ref: untouched"));
        }
        // The step really moved the indexed weights (the comparison is not vacuous).
        for (int32_t i : s.idx) updated += wf[static_cast<size_t>(i)] != w[static_cast<size_t>(i)];
      }
  EXPECT_GT(updated, 1000);
}

TEST(OptimAt, SgdMatchesRefAndTheDenseMaskedStep) {
  struct Case {
    const char* name;
    SgdParams p;
  };
  const Case cases[] = {
      {"sgd plain", {.lr = 0.1f}},
      {"sgd decay", {.lr = 0.05f, .weight_decay = 5e-4f}},
      {"sgd momentum first step", {.lr = 0.1f, .momentum = 0.9f, .first_step = true}},
      {"sgd momentum dampening decay",
       {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 1e-3f}},
      {"sgd nesterov", {.lr = 0.02f, .momentum = 0.8f, .nesterov = true}},
      {"sgd nesterov decay",
       {.lr = 0.02f, .momentum = 0.9f, .weight_decay = 1e-2f, .nesterov = true}},
  };
  Rng rng(52);
  int64_t updated = 0;
  for (const Case& c : cases)
    for (int64_t n : kSizes)
      for (double density : kDensities) {
        const std::string at = where(c.name, n, density);
        const bool momentum = c.p.momentum != 0.0f;
        const Subset s = random_subset(rng, n, density);
        const Vec w = random_vec(rng, n), buf = random_vec(rng, n);
        Vec wf = w, bf = buf, wr = w, br = buf, wd = w, bd = buf, we = w, be = buf;
        for (int step = 0; step < 3; ++step) {
          SgdParams p = c.p;
          p.first_step = c.p.first_step && step == 0;
          const Vec g = gradient(rng, s);
          const int64_t k = static_cast<int64_t>(s.idx.size());
          // Without momentum the buffer is documented as unused: pass null.
          sgd_at_f32(k, s.idx.data(), wf.data(), momentum ? bf.data() : nullptr, g.data(), p);
          sgd_at_f32__ref(k, s.idx.data(), wr.data(), momentum ? br.data() : nullptr, g.data(), p);
          sgd_f32(n, wd.data(), bd.data(), g.data(), s.mask.data(), p);
          sgd_f32__ref(n, we.data(), be.data(), g.data(), s.mask.data(), p);
        }
        EXPECT_TRUE(close_at(wf, wr, s.idx, false, kOptim, at + " w fast vs ref"));
        EXPECT_TRUE(close_at(wf, wd, s.idx, false, kExact, at + " w fast vs dense fast"));
        EXPECT_TRUE(close_at(wr, we, s.idx, false, kExact, at + " w ref vs dense ref"));
        EXPECT_TRUE(close_at(wf, w, s.idx, true, kExact, at + " w fast: untouched"));
        EXPECT_TRUE(close_at(wr, w, s.idx, true, kExact, at + " w ref: untouched"));
        // The buffer: updated at the indices with momentum, never touched elsewhere.
        const Idx none;
        if (momentum) {
          EXPECT_TRUE(close_at(bf, br, s.idx, false, kOptim, at + " buf fast vs ref"));
          EXPECT_TRUE(close_at(bf, bd, s.idx, false, kExact, at + " buf fast vs dense fast"));
          EXPECT_TRUE(close_at(br, be, s.idx, false, kExact, at + " buf ref vs dense ref"));
          EXPECT_TRUE(close_at(bf, buf, s.idx, true, kExact, at + " buf fast: untouched"));
          EXPECT_TRUE(close_at(br, buf, s.idx, true, kExact, at + " buf ref: untouched"));
        } else {
          EXPECT_TRUE(close_at(bf, buf, none, true, kExact, at + " buf fast: unused"));
          EXPECT_TRUE(close_at(br, buf, none, true, kExact, at + " buf ref: unused"));
        }
        for (int32_t i : s.idx) updated += wf[static_cast<size_t>(i)] != w[static_cast<size_t>(i)];
      }
  EXPECT_GT(updated, 1000);
}

// Momentum and Nesterov change the result (the cases above are not all one formula).
TEST(OptimAt, MomentumAndNesterovChangeTheStep) {
  Rng rng(53);
  const int64_t n = 64;
  const Subset s = random_subset(rng, n, 0.5);
  ASSERT_GT(s.idx.size(), 10u);
  const Vec w0 = random_vec(rng, n), g1 = gradient(rng, s), g2 = gradient(rng, s);
  auto run = [&](SgdParams p) {
    Vec w = w0, buf(static_cast<size_t>(n), 0.0f);
    const int64_t k = static_cast<int64_t>(s.idx.size());
    p.first_step = true;
    sgd_at_f32(k, s.idx.data(), w.data(), buf.data(), g1.data(), p);
    p.first_step = false;
    sgd_at_f32(k, s.idx.data(), w.data(), buf.data(), g2.data(), p);
    return w;
  };
  const Vec plain = run({.lr = 0.1f});
  const Vec mom = run({.lr = 0.1f, .momentum = 0.9f});
  const Vec nest = run({.lr = 0.1f, .momentum = 0.9f, .nesterov = true});
  for (int32_t i : s.idx) {
    const size_t u = static_cast<size_t>(i);
    // Plain: w0 - lr (g1 + g2); momentum: w0 - lr (g1 + 0.9 g1 + g2).
    EXPECT_NEAR(plain[u], w0[u] - 0.1f * (g1[u] + g2[u]), 1e-6) << i;
    EXPECT_NEAR(mom[u], w0[u] - 0.1f * (1.9f * g1[u] + g2[u]), 1e-6) << i;
    // Nesterov: step 1 uses g1 + 0.9 g1; step 2 uses g2 + 0.9 (0.9 g1 + g2).
    EXPECT_NEAR(nest[u], w0[u] - 0.1f * (1.9f * g1[u] + g2[u] + 0.9f * (0.9f * g1[u] + g2[u])),
                1e-6)
        << i;
  }
}

}  // namespace
}  // namespace pare::kernels
