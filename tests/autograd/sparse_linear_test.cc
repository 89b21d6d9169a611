// sparse_linear (issue #5): equal to the masked-dense path, linear(x, w * mask, b),
// within relative 1e-5 over many shapes and densities (issue #5's acceptance
// test), in the forward output and in every gradient.
//
// Each case runs sparse_linear and the dense reference on the same x, w, b and
// output gradient R (out.backward(R), R ~ N(0, 1)). The tolerance for each
// value is 1e-5 times the sum of |terms| that make it (plus |prior gradient|
// where the gradient accumulates), obtained by running the same dense
// reference on absolute values: near-zero results of large cancelling sums
// are then judged at the scale of their terms, and an empty sum must be exact.
//
// Beyond equality:
//  - w's entries outside the pattern hold NaN in the sparse run: they must
//    never be read (ops.h), so any read shows up as a NaN in y or dx;
//  - w's gradient is pre-filled with a random sentinel (bind_grad) in half the
//    cases: at the pattern's positions it must become sentinel + dw, and
//    everywhere else keep the sentinel's exact bits (not touched); without a
//    bound buffer the entries outside the pattern must be exactly 0;
//  - a fully pruned layer outputs exactly the bias (or exactly 0);
//  - inputs that do not require a gradient receive none.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "testing/errors.h"
#include "pare/autograd/ops.h"
#include "pare/base/thread_pool.h"
#include "testing/threads.h"
#include "autograd/sparse_test_util.h"

namespace pare::autograd {
namespace {

using testing::gradcheck;
using testing::random_normal;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using ::pare::testing::ThreadsFor;
using namespace sparse_test;

// A (rows, cols) 0/1 mask; `empty_rows` clears every third row, `empty_cols`
// every fourth column.
Tensor random_mask(Rng& rng, int64_t rows, int64_t cols, double density, bool empty_rows,
                   bool empty_cols) {
  Tensor m = Tensor::empty({rows, cols});
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      bool keep = rng.uniform(0.0f, 1.0f) < density;
      if (empty_rows && i % 3 == 1) keep = false;
      if (empty_cols && j % 4 == 2) keep = false;
      m.f32()[i * cols + j] = keep ? 1.0f : 0.0f;
    }
  return m;
}



struct Case {
  int64_t out, in, batch;
  double density;
  bool empty_rows = false, empty_cols = false;
  bool bias = true, x_grad = true, w_grad = true;
  bool bind = false;  // pre-fill w's gradient with a sentinel
  std::string str() const {
    std::ostringstream os;
    os << "out " << out << " in " << in << " batch " << batch << " density " << density
       << (empty_rows ? " empty rows" : "") << (empty_cols ? " empty cols" : "")
       << (bias ? " bias" : " no bias") << (x_grad ? " x grad" : "")
       << (w_grad ? " w grad" : " w frozen") << (bind ? " bound w grad" : "");
    return os.str();
  }
};

// Compares got with want elementwise: |got - want| <= 1e-5 * scale (exact
// equality where scale is 0). Reports the first mismatch and their count.

void run_case(Rng& rng, const Case& c) {
  SCOPED_TRACE(c.str());
  const Tensor mask = random_mask(rng, c.out, c.in, c.density, c.empty_rows, c.empty_cols);
  const Tensor w = random_normal({c.out, c.in}, rng);
  const Tensor x = random_normal({c.batch, c.in}, rng);
  const Tensor b = c.bias ? random_normal({c.out}, rng) : Tensor();
  const Tensor r = random_normal({c.batch, c.out}, rng);
  const Tensor sentinel = random_normal({c.out, c.in}, rng);
  Tensor w_masked = w.clone(), w_sparse = w.clone();  // zeros / NaN outside the mask
  int64_t nnz = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    const bool kept = mask.f32()[i] > 0;
    nnz += kept;
    if (!kept) {
      w_masked.f32()[i] = 0.0f;
      w_sparse.f32()[i] = kNaN;
    }
  }
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(c.out, c.in, mask.f32()));
  ASSERT_EQ(pattern->nnz(), nnz);
  const bool any_grad = c.x_grad || c.w_grad || c.bias;

  // The masked-dense reference.
  Var xr(x.clone(), c.x_grad), wr(w_masked.clone(), c.w_grad), br;
  if (c.bias) br = Var(b.clone(), true);
  Var yr = linear(xr, wr, br);
  if (any_grad) yr.backward(r);
  // Sums of |terms|: the same products on absolute values.
  Var xa(abs_of(x), true), wa(abs_of(w_masked), true), ba;
  if (c.bias) ba = Var(abs_of(b), true);
  Var ya = linear(xa, wa, ba);
  ya.backward(abs_of(r));

  // The sparse op.
  Var xs(x.clone(), c.x_grad), ws(w_sparse.clone(), c.w_grad), bs;
  if (c.bind) ws.bind_grad(sentinel.clone());
  if (c.bias) bs = Var(b.clone(), true);
  Var ys = sparse_linear(xs, ws, bs, pattern);
  ASSERT_EQ(ys.shape(), Shape({c.batch, c.out}));
  expect_close(ys.value(), yr.value(), ya.value(), "y");
  if (nnz == 0) {  // fully pruned: exactly the bias, or exactly zero
    for (int64_t i = 0; i < ys.numel(); ++i) {
      const float want = c.bias ? b.f32()[i % c.out] : 0.0f;
      ASSERT_EQ(ys.value().f32()[i], want) << "fully pruned output at " << i;
    }
  }
  EXPECT_EQ(0, std::memcmp(ws.value().f32(), w_sparse.f32(), w.nbytes())) << "w was modified";
  ASSERT_EQ(ys.requires_grad(), any_grad);
  if (!any_grad) return;
  ys.backward(r);

  if (c.x_grad) {
    expect_close(xs.grad(), xr.grad(), xa.grad(), "dx");
  } else {
    EXPECT_FALSE(xs.grad().defined()) << "x does not require grad but received one";
  }

  if (c.bias) expect_close(bs.grad(), br.grad(), ba.grad(), "db");

  const Tensor& dw = ws.grad();
  if (!c.w_grad) {
    if (c.bind)
      EXPECT_TRUE(same_bits(dw, sentinel)) << "frozen w's bound gradient was written";
    else
      EXPECT_FALSE(dw.defined()) << "frozen w received a gradient";
    return;
  }
  if (!c.bind && nnz == 0 && !dw.defined()) return;  // nothing to add
  ASSERT_TRUE(dw.defined()) << "w received no gradient";
  ASSERT_EQ(dw.shape(), w.shape());
  expect_pattern_grad(dw, wr.grad(), wa.grad(), mask, c.bind ? sentinel : Tensor(), c.in);
}

struct Dims {
  int64_t out, in, batch;
};
const Dims kSmall[] = {{1, 1, 1},  {1, 1, 4},   {3, 17, 1},   {3, 17, 5},  {17, 3, 8},
                       {33, 65, 1}, {33, 65, 17}, {10, 100, 60}, {100, 10, 3}, {64, 64, 64},
                       {2, 40, 33}};
const Dims kLarge[] = {{300, 784, 60}, {300, 784, 1}, {100, 300, 60}};
const double kDensity[] = {0.0, 0.05, 0.3, 0.9, 1.0};

TEST(SparseLinear, MatchesMaskedDenseOverShapesAndDensities) {
  ThreadsFor two(2);
  Rng rng(51);
  int index = 0;
  for (Dims d : kSmall)
    for (double density : kDensity)
      for (int empties = 0; empties < 4; ++empties)
        for (int flags = 0; flags < 4; ++flags)
          run_case(rng, Case{.out = d.out,
                             .in = d.in,
                             .batch = d.batch,
                             .density = density,
                             .empty_rows = (empties & 1) != 0,
                             .empty_cols = (empties & 2) != 0,
                             .bias = (flags & 1) != 0,
                             .x_grad = (flags & 2) != 0,
                             .bind = (index++ % 2) != 0});
}

// LeNet-300-100's layers, on two threads and on one.
TEST(SparseLinear, MatchesMaskedDenseOnLargeShapes) {
  ThreadsFor two(2);
  Rng rng(52);
  for (bool serial : {false, true}) {
    std::optional<SerialScope> scope;
    if (serial) scope.emplace();
    SCOPED_TRACE(serial ? "one thread" : "two threads");
    for (Dims d : kLarge)
      for (double density : kDensity)
        for (bool empties : {false, true})
          for (bool all : {true, false})
            run_case(rng, Case{.out = d.out,
                               .in = d.in,
                               .batch = d.batch,
                               .density = density,
                               .empty_rows = empties,
                               .empty_cols = empties,
                               .bias = all,
                               .x_grad = all,
                               .bind = all});
  }
}

// A frozen weight (no gradient) with the input's and bias's gradients, and a
// case where only w needs one.
TEST(SparseLinear, GradientsOnlyWhereRequired) {
  Rng rng(53);
  for (Dims d : {Dims{3, 17, 5}, Dims{33, 65, 17}, Dims{300, 784, 60}})
    for (double density : {0.0, 0.3, 1.0})
      for (bool bind : {false, true}) {
        run_case(rng, Case{.out = d.out, .in = d.in, .batch = d.batch, .density = density,
                           .bias = true, .x_grad = true, .w_grad = false, .bind = bind});
        run_case(rng, Case{.out = d.out, .in = d.in, .batch = d.batch, .density = density,
                           .bias = false, .x_grad = false, .w_grad = false, .bind = bind});
        run_case(rng, Case{.out = d.out, .in = d.in, .batch = d.batch, .density = density,
                           .bias = false, .x_grad = false, .w_grad = true, .bind = bind});
      }
}

// Two sparse layers with a ReLU between, against the same net with masked
// dense weights: the input gradient flows into a non-leaf, and the first
// layer's weight is shared by both layers (its gradient accumulates twice).
TEST(SparseLinear, ChainAndSharedWeightMatchMaskedDense) {
  Rng rng(54);
  const int64_t n = 24, batch = 7;
  Tensor mask = random_mask(rng, n, n, 0.3, true, false);
  Tensor w = random_normal({n, n}, rng, 0.5f), b = random_normal({n}, rng);
  Tensor x = random_normal({batch, n}, rng), r = random_normal({batch, n}, rng);
  Tensor w_masked = w.clone();
  for (int64_t i = 0; i < w.numel(); ++i)
    if (!(mask.f32()[i] > 0)) w_masked.f32()[i] = 0.0f;
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(n, n, mask.f32()));

  Var xr(x.clone(), true), wr(w_masked.clone(), true), br(b.clone(), true);
  Var yr = linear(relu(linear(xr, wr, br)), wr, Var());
  yr.backward(r);
  Var xs(x.clone(), true), ws(w.clone(), true), bs(b.clone(), true);
  Var ys = sparse_linear(relu(sparse_linear(xs, ws, bs, pattern)), ws, Var(), pattern);
  ys.backward(r);

  // Loose absolute scale: values and gradients here are O(1..10).
  auto close = [](const Tensor& got, const Tensor& want, const char* what) {
    ASSERT_TRUE(got.defined()) << what;
    for (int64_t i = 0; i < got.numel(); ++i)
      ASSERT_NEAR(got.f32()[i], want.f32()[i], 1e-5 * (10 + std::fabs(want.f32()[i])))
          << what << " at " << i;
  };
  close(ys.value(), yr.value(), "y");
  close(xs.grad(), xr.grad(), "dx");
  close(bs.grad(), br.grad(), "db");
  for (int64_t i = 0; i < w.numel(); ++i) {
    if (mask.f32()[i] > 0)
      ASSERT_NEAR(ws.grad().f32()[i], wr.grad().f32()[i], 1e-5 * (10 + std::fabs(wr.grad().f32()[i])))
          << "dw at " << i;
    else
      ASSERT_EQ(ws.grad().f32()[i], 0.0f) << "dw outside the pattern at " << i;
  }
}

TEST(SparseLinear, FiniteDifferenceGradients) {
  Rng rng(55);
  Tensor mask = random_mask(rng, 6, 9, 0.4, true, true);
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(6, 9, mask.f32()));
  auto with_bias = [pattern](const auto& in) { return sparse_linear(in[0], in[1], in[2], pattern); };
  auto no_bias = [pattern](const auto& in) { return sparse_linear(in[0], in[1], Var(), pattern); };
  Tensor x = random_normal({5, 9}, rng), w = random_normal({6, 9}, rng), b = random_normal({6}, rng);
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}));
  EXPECT_TRUE(gradcheck(no_bias, {x, w}));
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {true, false, false}));
  EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {false, true, false}));
}

TEST(SparseLinear, RecordsNoGraphUnderNoGradGuard) {
  Rng rng(56);
  Tensor mask = random_mask(rng, 5, 7, 0.5, false, false);
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(5, 7, mask.f32()));
  Var x(random_normal({3, 7}, rng), true), w(random_normal({5, 7}, rng), true),
      b(random_normal({5}, rng), true);
  Var with_graph = sparse_linear(x, w, b, pattern);
  NoGradGuard guard;
  Var y = sparse_linear(x, w, b, pattern);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.node()->inputs.empty());
  EXPECT_TRUE(same_bits(y.value(), with_graph.value()));
}

// Same inputs, same bits: twice on two threads, and on one thread (the
// sparse products promise bits independent of the thread count, tensor/sparse.h).
TEST(SparseLinear, BitsDoNotDependOnRunOrThreadCount) {
  ThreadsFor two(2);
  Rng rng(57);
  Tensor mask = random_mask(rng, 300, 784, 0.1, false, false);
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(300, 784, mask.f32()));
  Tensor x = random_normal({60, 784}, rng), w = random_normal({300, 784}, rng, 0.05f),
         b = random_normal({300}, rng), r = random_normal({60, 300}, rng);
  auto run = [&] {
    Var xv(x.clone(), true), wv(w.clone(), true), bv(b.clone(), true);
    Var y = sparse_linear(xv, wv, bv, pattern);
    y.backward(r);
    return OpResult{y.value(), xv.grad(), wv.grad(), bv.grad()};
  };
  expect_same_bits_every_run(run);
}

TEST(SparseLinear, ShapeMismatchesRaise) {
  Rng rng(58);
  Tensor mask = Tensor::full({4, 6}, 1.0f);
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(4, 6, mask.f32()));
  auto transposed = std::make_shared<const CsrPattern>(CsrPattern::from_mask(6, 4, mask.f32()));
  auto wider = std::make_shared<const CsrPattern>(CsrPattern::from_mask(4, 5, mask.f32()));
  Var x(random_normal({3, 6}, rng), true), w(random_normal({4, 6}, rng), true),
      b(random_normal({4}, rng), true);
  auto expect_error = [](const std::function<void()>& fn) {
    pare::testing::expect_error(fn, {"sparse_linear"});
  };
  expect_error([&] { sparse_linear(x, w, b, transposed); });  // pattern (6, 4) for w (4, 6)
  expect_error([&] { sparse_linear(x, w, b, wider); });       // pattern (4, 5)
  expect_error([&] { sparse_linear(Var(random_normal({3, 5}, rng)), w, b, pattern); });  // x
  expect_error([&] { sparse_linear(Var(random_normal({6}, rng)), w, b, pattern); });     // x rank
  expect_error([&] { sparse_linear(x, w, Var(random_normal({6}, rng)), pattern); });     // bias
  expect_error([&] { sparse_linear(x, Var(random_normal({24}, rng)), b, pattern); });    // w rank
  // The matching pattern works.
  EXPECT_EQ(sparse_linear(x, w, b, pattern).shape(), Shape({3, 4}));
}

// ---- sparse_linear_packed: the weight as its (nnz,) values in pattern order ----

// values[k] = t[pattern.pos[k]].

// The packed op against the dense-storage sparse op (the same kernels on the
// same values: equal bits in y, dx, db, and the packed gradient equals the
// dense-storage gradient gathered at pos) and against the masked dense linear
// (within relative 1e-5 of the sum of |terms|, as above), over shapes and
// densities 0..1, with the packed gradient unbound, bound to zeros (as
// nn::dispatch_sparse does) or bound to a sentinel (it must accumulate).
TEST(SparseLinearPacked, EqualsDenseStorageSparseAndMaskedDense) {
  ThreadsFor two(2);
  Rng rng(59);
  const Dims dims[] = {{1, 1, 1}, {3, 17, 5}, {17, 3, 8}, {33, 65, 1}, {33, 65, 17}, {64, 64, 64},
                       {300, 784, 60}};
  int index = 0;
  for (Dims d : dims)
    for (double density : kDensity)
      for (bool bias : {true, false}) {
        const int bind = index++ % 3;  // 0: unbound, 1: zeros, 2: sentinel
        std::ostringstream what;
        what << "out " << d.out << " in " << d.in << " batch " << d.batch << " density "
             << density << (bias ? " bias" : " no bias") << " bind " << bind;
        SCOPED_TRACE(what.str());
        const Tensor mask = random_mask(rng, d.out, d.in, density, false, false);
        const Tensor w = random_normal({d.out, d.in}, rng);
        const Tensor x = random_normal({d.batch, d.in}, rng);
        const Tensor b = bias ? random_normal({d.out}, rng) : Tensor();
        const Tensor r = random_normal({d.batch, d.out}, rng);
        Tensor w_masked = w.clone();
        for (int64_t i = 0; i < w.numel(); ++i)
          if (!(mask.f32()[i] > 0)) w_masked.f32()[i] = 0.0f;
        auto pattern =
            std::make_shared<const CsrPattern>(CsrPattern::from_mask(d.out, d.in, mask.f32()));
        const int64_t nnz = pattern->nnz();
        if (density == 0.0) {
          ASSERT_EQ(nnz, 0);
        }
        if (density == 1.0) {
          ASSERT_EQ(nnz, d.out * d.in);
        }

        // Dense storage.
        Var xs(x.clone(), true), ws(w_masked.clone(), true), bs;
        if (bias) bs = Var(b.clone(), true);
        Var ys = sparse_linear(xs, ws, bs, pattern);
        ys.backward(r);
        // Packed storage.
        const Tensor values = gather_at(*pattern, w);
        const Tensor sentinel = random_normal({nnz}, rng);
        Var xp(x.clone(), true), vp(values.clone(), true), bp;
        if (bind == 1) vp.bind_grad(Tensor::zeros({nnz}));
        if (bind == 2) vp.bind_grad(sentinel.clone());
        if (bias) bp = Var(b.clone(), true);
        Var yp = sparse_linear_packed(xp, vp, bp, pattern);
        ASSERT_EQ(yp.shape(), Shape({d.batch, d.out}));
        yp.backward(r);
        EXPECT_TRUE(same_bits(vp.value(), values)) << "the values were modified";
        EXPECT_TRUE(same_bits(yp.value(), ys.value())) << "y";
        EXPECT_TRUE(same_bits(xp.grad(), xs.grad())) << "dx";
        if (bias) {
          EXPECT_TRUE(same_bits(bp.grad(), bs.grad())) << "db";
        }
        ASSERT_TRUE(vp.grad().defined()) << "the values received no gradient";
        ASSERT_EQ(vp.grad().shape(), Shape({nnz}));
        const Tensor dw_at = gather_at(*pattern, ws.grad());
        if (bind == 2) {
          for (int64_t k = 0; k < nnz; ++k)
            ASSERT_NEAR(vp.grad().f32()[k], sentinel.f32()[k] + dw_at.f32()[k],
                        1e-6 * (std::fabs(sentinel.f32()[k]) + std::fabs(dw_at.f32()[k])))
                << "packed gradient did not accumulate onto the bound one at " << k;
        } else if (nnz > 0) {
          EXPECT_TRUE(same_bits(vp.grad(), dw_at)) << "packed dw != dense-storage dw at pos";
        }

        // Masked dense, within the sum of |terms|.
        Var xr(x.clone(), true), wr(w_masked.clone(), true), br;
        if (bias) br = Var(b.clone(), true);
        Var yr = linear(xr, wr, br);
        yr.backward(r);
        Var xa(abs_of(x), true), wa(abs_of(w_masked), true), ba;
        if (bias) ba = Var(abs_of(b), true);
        Var ya = linear(xa, wa, ba);
        ya.backward(abs_of(r));
        expect_close(yp.value(), yr.value(), ya.value(), "y vs masked dense");
        expect_close(xp.grad(), xr.grad(), xa.grad(), "dx vs masked dense");
        if (bias) expect_close(bp.grad(), br.grad(), ba.grad(), "db vs masked dense");
        if (bind != 2 && nnz > 0)
          expect_close(vp.grad(), gather_at(*pattern, wr.grad()), gather_at(*pattern, wa.grad()),
                       "packed dw vs masked dense dw at pos");
      }
}

TEST(SparseLinearPacked, ShapeMismatchesNameThePackedOp) {
  Rng rng(60);
  Tensor mask = random_mask(rng, 4, 6, 0.5, false, false);
  auto pattern = std::make_shared<const CsrPattern>(CsrPattern::from_mask(4, 6, mask.f32()));
  const int64_t nnz = pattern->nnz();
  ASSERT_GT(nnz, 1);
  Var x(random_normal({3, 6}, rng), true), v(random_normal({nnz}, rng), true),
      b(random_normal({4}, rng), true);
  auto expect_error = [](const std::function<void()>& fn) {
    pare::testing::expect_error(fn, {"sparse_linear_packed"});
  };
  expect_error([&] { sparse_linear_packed(x, Var(random_normal({nnz - 1}, rng)), b, pattern); });
  expect_error([&] { sparse_linear_packed(x, Var(random_normal({nnz + 1}, rng)), b, pattern); });
  expect_error([&] { sparse_linear_packed(x, Var(random_normal({4, 6}, rng)), b, pattern); });  // dense w
  expect_error([&] { sparse_linear_packed(x, Var(random_normal({1, nnz}, rng)), b, pattern); });
  expect_error([&] { sparse_linear_packed(Var(random_normal({3, 5}, rng)), v, b, pattern); });
  expect_error([&] { sparse_linear_packed(x, v, Var(random_normal({6}, rng)), pattern); });
  expect_error([&] { sparse_linear_packed(x, v, b, nullptr); });
  EXPECT_EQ(sparse_linear_packed(x, v, b, pattern).shape(), Shape({3, 4}));
}

}  // namespace
}  // namespace pare::autograd
