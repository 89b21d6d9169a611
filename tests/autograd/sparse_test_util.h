// Helpers shared by the sparse op tests (sparse_linear_test.cc,
// sparse_conv_test.cc): comparisons with the masked dense ops.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>

#include "pare/base/thread_pool.h"
#include "pare/tensor/sparse.h"
#include "pare/tensor/tensor.h"

namespace pare::autograd::sparse_test {

inline Tensor abs_of(const Tensor& t) {
  Tensor a = t.clone();
  for (float& v : a.span_f32()) v = std::fabs(v);
  return a;
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() &&
         std::memcmp(a.f32(), b.f32(), a.nbytes()) == 0;
}

// got == prior + want within 1e-5 of scale (the same product on absolute
// values: the sum of |terms|) plus |prior|, element by element; reports the
// first mismatch and the count.
inline void expect_close(const Tensor& got, const Tensor& want, const Tensor& scale,
                         const std::string& what, const Tensor& prior = Tensor()) {
  ASSERT_TRUE(got.defined()) << what << ": undefined";
  ASSERT_TRUE(want.defined()) << what << ": reference undefined";
  ASSERT_EQ(got.shape(), want.shape()) << what;
  int failures = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    const double p = prior.defined() ? prior.f32()[i] : 0.0;
    const double g = got.f32()[i], w = p + want.f32()[i];
    const double tol = 1e-5 * (scale.f32()[i] + std::fabs(p));
    if (!(std::fabs(g - w) <= tol) && failures++ == 0)
      ADD_FAILURE() << what << ": element " << i << " got " << g << " want " << w << " (tol "
                    << tol << ")";
  }
  EXPECT_EQ(failures, 0) << what << ": mismatches";
}

// A weight gradient written only at the pattern: dw == prior + want within
// 1e-5 of scale (+ |prior|) where mask > 0, and dw's bits == prior's (0 when
// prior is undefined) everywhere else. cols: the width of the (rows, cols)
// matrix view, for the messages.
inline void expect_pattern_grad(const Tensor& dw, const Tensor& want, const Tensor& scale,
                                const Tensor& mask, const Tensor& prior, int64_t cols) {
  int inside_failures = 0, outside_failures = 0;
  for (int64_t i = 0; i < dw.numel(); ++i) {
    const float before = prior.defined() ? prior.f32()[i] : 0.0f;
    const float got = dw.f32()[i];
    if (mask.f32()[i] > 0) {
      const double w = static_cast<double>(before) + want.f32()[i];
      const double tol = 1e-5 * (scale.f32()[i] + std::fabs(before));
      if (!(std::fabs(got - w) <= tol) && inside_failures++ == 0)
        ADD_FAILURE() << "dw at pattern entry " << i << " (" << i / cols << ", " << i % cols
                      << "): got " << got << " want " << w << " (tol " << tol << ")";
    } else if (std::memcmp(&got, &before, 4) != 0 && outside_failures++ == 0) {
      ADD_FAILURE() << "dw outside the pattern at " << i << " (" << i / cols << ", " << i % cols
                    << ") was touched: " << got << ", was " << before;
    }
  }
  EXPECT_EQ(inside_failures, 0) << "dw mismatches at pattern entries";
  EXPECT_EQ(outside_failures, 0) << "dw entries outside the pattern touched";
}

// t at the pattern's entries, in pattern order.
inline Tensor gather_at(const CsrPattern& p, const Tensor& t) {
  Tensor v = Tensor::empty({p.nnz()});
  p.gather(t.f32(), v.f32(), nullptr);
  return v;
}

// An op's output and gradients.
struct OpResult {
  Tensor y, dx, dw, db;
};

// Runs `run` (returning an OpResult) twice on the pool and once under a
// SerialScope and expects the same bits every time.
template <typename Run>
void expect_same_bits_every_run(Run run) {
  OpResult a = run(), again = run(), one;
  {
    SerialScope serial;
    one = run();
  }
  for (const OpResult* o : {&again, &one}) {
    const char* what = o == &again ? "second run" : "one thread";
    EXPECT_TRUE(same_bits(a.y, o->y)) << what << ": y";
    EXPECT_TRUE(same_bits(a.dx, o->dx)) << what << ": dx";
    EXPECT_TRUE(same_bits(a.dw, o->dw)) << what << ": dw";
    EXPECT_TRUE(same_bits(a.db, o->db)) << what << ": db";
  }
}

}  // namespace pare::autograd::sparse_test
