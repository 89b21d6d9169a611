// sparse_conv2d: equal to the masked-dense path, conv2d(x, w * mask, b, opt),
// within relative 1e-5, over kernels 1, 3, 5 (and a non-square one), strides
// 1 and 2, zero padding 0..2 and circular padding, fused ReLU, batch 1 and
// several, 1 to 16 channels and densities 0, 0.1, 0.5, 1, in the forward
// output and in every gradient; as for sparse_linear (sparse_linear_test.cc).
//
// Each case runs sparse_conv2d and the dense reference on the same x, w, b
// and output gradient R (out.backward(R), R ~ N(0, 1)). The tolerance for each
// value is 1e-5 times the sum of |terms| that make it (plus |prior gradient|
// where the gradient accumulates), obtained by running the same dense
// reference on absolute values: near-zero results of large cancelling sums
// are then judged at the scale of their terms, and an empty sum must be exact.
//
// With a fused ReLU the reference is the dense convolution without it, its
// output ReLU'd for the forward comparison and its gradient seeded with
// R * (y_sparse > 0): the mask is the sparse op's own, so a pre-activation
// within rounding of 0 (on either side in the two runs) cannot turn into a
// spurious gradient mismatch. That the fused ReLU equals relu(conv2d) is
// conv_test.cc's (FusedReluEqualsSeparateRelu); here, that the sparse output
// is >= 0 and masks its gradient by itself.
//
// Beyond equality:
//  - w's entries outside the pattern hold NaN in the sparse run: they must
//    never be read (the op gathers the pattern's values), so any read shows
//    up as a NaN in y or dx;
//  - w's (and x's) gradient is pre-filled with a random sentinel (bind_grad)
//    in some cases: at the pattern's positions it must become sentinel + dw,
//    and everywhere else keep the sentinel's exact bits (not touched); without
//    a bound buffer the entries outside the pattern must be exactly 0;
//  - a fully pruned layer outputs exactly the bias (ReLU'd), or exactly 0;
//  - inputs that do not require a gradient receive none.
#include <gtest/gtest.h>

#include <algorithm>
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

// A convolution's geometry: x (B, C, H, W), w (OC, C, KH, KW).
struct Geo {
  int64_t c, oc, h, w, kh, kw, stride, pad;
  bool circular;
  int64_t k() const { return c * kh * kw; }
  int64_t out_h() const { return (h + 2 * pad - kh) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - kw) / stride + 1; }
};

// A (OC, C*KH*KW) 0/1 mask; `empty_filters` clears every third output channel
// (row), `empty_channels` every input channel c with c % 3 == 2 (all its
// KH*KW columns).
Tensor random_mask(Rng& rng, const Geo& g, double density, bool empty_filters,
                   bool empty_channels) {
  const int64_t rows = g.oc, cols = g.k(), taps = g.kh * g.kw;
  Tensor m = Tensor::empty({rows, cols});
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      bool keep = rng.uniform(0.0f, 1.0f) < density;
      if (empty_filters && i % 3 == 1) keep = false;
      if (empty_channels && (j / taps) % 3 == 2) keep = false;
      m.f32()[i * cols + j] = keep ? 1.0f : 0.0f;
    }
  return m;
}

std::shared_ptr<const CsrPattern> pattern_of(const Geo& g, const Tensor& mask) {
  return std::make_shared<const CsrPattern>(CsrPattern::from_mask(g.oc, g.k(), mask.f32()));
}

// w with zeros (masked) and NaN (sparse) outside the mask.
Tensor outside_set_to(const Tensor& w, const Tensor& mask, float v) {
  Tensor t = w.clone();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!(mask.f32()[i] > 0)) t.f32()[i] = v;
  return t;
}



struct Case {
  Geo g;
  int64_t batch;
  double density;
  bool relu = false;
  bool empty_filters = false, empty_channels = false;
  bool bias = true, x_grad = true, w_grad = true;
  bool bind = false;  // pre-fill w's (and x's) gradient with a sentinel
  std::string str() const {
    std::ostringstream os;
    os << "B" << batch << " C" << g.c << " OC" << g.oc << " " << g.h << "x" << g.w << " k"
       << g.kh << "x" << g.kw << " s" << g.stride << " p" << g.pad
       << (g.circular ? " circular" : "") << (relu ? " relu" : "") << " density " << density
       << (empty_filters ? " empty filters" : "") << (empty_channels ? " empty channels" : "")
       << (bias ? " bias" : " no bias") << (x_grad ? " x grad" : "")
       << (w_grad ? " w grad" : " w frozen") << (bind ? " bound grads" : "");
    return os.str();
  }
};

// Compares got with prior + want elementwise (prior may be undefined: 0):
// |got - want| <= 1e-5 * (scale + |prior|) (exact equality where that is 0).
// Reports the first mismatch and their count.

void run_case(Rng& rng, const Case& c) {
  SCOPED_TRACE(c.str());
  const Geo& g = c.g;
  const Tensor mask = random_mask(rng, g, c.density, c.empty_filters, c.empty_channels);
  const Tensor w = random_normal({g.oc, g.c, g.kh, g.kw}, rng, 0.5f);
  const Tensor x = random_normal({c.batch, g.c, g.h, g.w}, rng);
  const Tensor b = c.bias ? random_normal({g.oc}, rng) : Tensor();
  const Shape y_shape{c.batch, g.oc, g.out_h(), g.out_w()};
  const Tensor r = random_normal(y_shape, rng);
  const Tensor w_sentinel = random_normal(w.shape(), rng);
  const Tensor x_sentinel = random_normal(x.shape(), rng);
  const Tensor w_masked = outside_set_to(w, mask, 0.0f), w_sparse = outside_set_to(w, mask, kNaN);
  int64_t nnz = 0;
  for (float m : mask.span_f32()) nnz += m > 0;
  auto pattern = pattern_of(g, mask);
  ASSERT_EQ(pattern->nnz(), nnz);
  const bool any_grad = c.x_grad || c.w_grad || c.bias;
  Conv2dOptions opt{.stride = g.stride, .pad = g.pad, .circular = g.circular, .relu = c.relu};
  Conv2dOptions pre = opt;
  pre.relu = false;

  // The sparse op.
  Var xs(x.clone(), c.x_grad), ws(w_sparse.clone(), c.w_grad), bs;
  if (c.bind) {
    ws.bind_grad(w_sentinel.clone());
    if (c.x_grad) xs.bind_grad(x_sentinel.clone());
  }
  if (c.bias) bs = Var(b.clone(), true);
  Var ys = sparse_conv2d(xs, ws, bs, opt, pattern);
  ASSERT_EQ(ys.shape(), y_shape);

  // The masked-dense reference, before the ReLU, and its gradient seed.
  Tensor seed = r.clone(), seed_abs = abs_of(r);
  if (c.relu)
    for (int64_t i = 0; i < seed.numel(); ++i)
      if (!(ys.value().f32()[i] > 0)) seed.f32()[i] = seed_abs.f32()[i] = 0.0f;
  Var xr(x.clone(), c.x_grad), wr(w_masked.clone(), c.w_grad), br;
  if (c.bias) br = Var(b.clone(), true);
  Var yr = conv2d(xr, wr, br, pre);
  if (any_grad) yr.backward(seed);
  Tensor y_want = yr.value().clone();
  if (c.relu)
    for (float& v : y_want.span_f32()) v = std::max(v, 0.0f);
  // Sums of |terms|: the same products on absolute values.
  Var xa(abs_of(x), true), wa(abs_of(w_masked), true), ba;
  if (c.bias) ba = Var(abs_of(b), true);
  Var ya = conv2d(xa, wa, ba, pre);
  ya.backward(seed_abs);

  expect_close(ys.value(), y_want, ya.value(), "y");
  if (c.relu) {
    int negatives = 0;
    for (float v : ys.value().span_f32()) negatives += !(v >= 0.0f);
    EXPECT_EQ(negatives, 0) << "fused relu left negative (or NaN) outputs";
  }
  if (nnz == 0) {  // fully pruned: exactly the bias (ReLU'd), or exactly zero
    const int64_t plane = g.out_h() * g.out_w();
    for (int64_t i = 0; i < ys.numel(); ++i) {
      float want = c.bias ? b.f32()[(i / plane) % g.oc] : 0.0f;
      if (c.relu) want = std::max(want, 0.0f);
      ASSERT_EQ(ys.value().f32()[i], want) << "fully pruned output at " << i;
    }
  }
  EXPECT_EQ(0, std::memcmp(ws.value().f32(), w_sparse.f32(), w.nbytes())) << "w was modified";
  EXPECT_TRUE(same_bits(xs.value(), x)) << "x was modified";
  ASSERT_EQ(ys.requires_grad(), any_grad);
  if (!any_grad) return;
  ys.backward(r);

  if (c.x_grad) {
    expect_close(xs.grad(), xr.grad(), xa.grad(), "dx", c.bind ? x_sentinel : Tensor());
  } else {
    EXPECT_FALSE(xs.grad().defined()) << "x does not require grad but received one";
  }

  if (c.bias) expect_close(bs.grad(), br.grad(), ba.grad(), "db");

  const Tensor& dw = ws.grad();
  if (!c.w_grad) {
    if (c.bind)
      EXPECT_TRUE(same_bits(dw, w_sentinel)) << "frozen w's bound gradient was written";
    else
      EXPECT_FALSE(dw.defined()) << "frozen w received a gradient";
    return;
  }
  if (!c.bind && nnz == 0 && !dw.defined()) return;  // nothing to add
  ASSERT_TRUE(dw.defined()) << "w received no gradient";
  ASSERT_EQ(dw.shape(), w.shape());
  const int64_t k = g.k();
  expect_pattern_grad(dw, wr.grad(), wa.grad(), mask, c.bind ? w_sentinel : Tensor(), k);
}

// c oc h w kh kw stride pad circular
const Geo kSweep[] = {
    {1, 2, 8, 8, 3, 3, 1, 1, true},      // the Life net's first layer, small board
    {1, 16, 12, 12, 3, 3, 1, 1, true},   // ... 16 wide
    {16, 16, 6, 6, 1, 1, 1, 0, false},   // the Life net's 1x1 layers
    {16, 1, 6, 5, 1, 1, 1, 0, false},    // ... down to one channel
    {2, 6, 7, 6, 1, 1, 2, 0, false},     // 1x1 strided
    {6, 2, 5, 6, 1, 1, 1, 1, false},     // 1x1 padded
    {6, 6, 6, 5, 1, 1, 2, 2, true},      // 1x1 circular pad 2, strided
    {2, 6, 9, 8, 3, 3, 2, 1, false},
    {6, 6, 8, 7, 3, 3, 1, 2, true},      // circular wraps 2 deep
    {2, 16, 7, 9, 3, 3, 2, 2, false},
    {16, 2, 6, 6, 3, 3, 1, 0, false},
    {1, 6, 12, 12, 5, 5, 1, 2, false},   // LeNet-5 conv1, small
    {6, 16, 9, 9, 5, 5, 1, 0, false},    // LeNet-5 conv2, small
    {2, 2, 9, 8, 5, 5, 2, 2, true},
    {16, 6, 7, 6, 5, 5, 2, 1, false},
    {1, 1, 7, 7, 5, 5, 1, 2, true},
    {2, 6, 6, 8, 2, 3, 1, 1, false},     // non-square kernel
    {2, 2, 3, 3, 5, 5, 1, 1, false},     // kernel larger than the input
};
const double kDensity[] = {0.0, 0.1, 0.5, 1.0};

// Every geometry, batch, density and activation; the other flags drawn at
// random (fixed seed) so that their combinations spread over the sweep.
TEST(SparseConv2d, MatchesMaskedDenseOverGeometriesAndDensities) {
  ThreadsFor two(2);
  Rng rng(61);
  Rng flags(62);
  auto coin = [&flags] { return flags.uniform() < 0.5f; };
  for (const Geo& g : kSweep)
    for (int64_t batch : {1, 3})
      for (double density : kDensity)
        for (bool relu : {false, true})
          run_case(rng, Case{.g = g,
                             .batch = batch,
                             .density = density,
                             .relu = relu,
                             .empty_filters = coin(),
                             .empty_channels = coin(),
                             .bias = coin(),
                             .x_grad = coin(),
                             .bind = coin()});
}

// Whole output channels pruned (and whole input channels), every flag.
TEST(SparseConv2d, EmptyFiltersAndChannels) {
  ThreadsFor two(2);
  Rng rng(63);
  for (const Geo& g : {Geo{6, 16, 7, 7, 3, 3, 1, 1, true}, Geo{16, 6, 6, 6, 1, 1, 1, 0, false},
                       Geo{6, 16, 9, 9, 5, 5, 2, 2, false}})
    for (double density : {0.1, 1.0})
      for (int empties = 1; empties < 4; ++empties)
        for (int flags = 0; flags < 8; ++flags)
          run_case(rng, Case{.g = g,
                             .batch = 2,
                             .density = density,
                             .relu = (flags & 4) != 0,
                             .empty_filters = (empties & 1) != 0,
                             .empty_channels = (empties & 2) != 0,
                             .bias = (flags & 1) != 0,
                             .x_grad = (flags & 2) != 0,
                             .bind = (flags & 1) != 0});
}

// The production layers at full size (where im2col, col2im and the sparse
// products split across threads), on two threads and on one.
TEST(SparseConv2d, MatchesMaskedDenseOnLargeShapes) {
  ThreadsFor two(2);
  Rng rng(64);
  const Geo life{1, 16, 32, 32, 3, 3, 1, 1, true}, life_1x1{16, 16, 32, 32, 1, 1, 1, 0, false},
      lenet1{1, 6, 28, 28, 5, 5, 1, 2, false}, lenet2{6, 16, 14, 14, 5, 5, 1, 0, false};
  for (bool serial : {false, true}) {
    std::optional<SerialScope> scope;
    if (serial) scope.emplace();
    SCOPED_TRACE(serial ? "one thread" : "two threads");
    for (auto [g, batch] : {std::pair{life, int64_t{8}}, {life_1x1, 4}, {lenet1, 16}, {lenet2, 16}})
      for (double density : {0.1, 0.5})
        run_case(rng, Case{.g = g,
                           .batch = batch,
                           .density = density,
                           .relu = true,
                           .empty_filters = density < 0.3,
                           .bias = true,
                           .x_grad = g.c > 1,
                           .bind = serial});
  }
}

// A frozen weight (no gradient) with the input's and bias's gradients, a
// frozen weight with nothing else to differentiate (no graph), a bias alone,
// and a case where only w needs one.
TEST(SparseConv2d, GradientsOnlyWhereRequired) {
  Rng rng(65);
  for (const Geo& g : {Geo{1, 2, 8, 8, 3, 3, 1, 1, true}, Geo{6, 16, 9, 9, 5, 5, 2, 2, false},
                       Geo{16, 6, 5, 5, 1, 1, 1, 0, false}})
    for (double density : {0.0, 0.5, 1.0})
      for (bool bind : {false, true})
        for (bool relu : {false, true}) {
          Case c{.g = g, .batch = 3, .density = density, .relu = relu, .bind = bind};
          c.w_grad = false;
          c.bias = true, c.x_grad = true;
          run_case(rng, c);
          c.bias = true, c.x_grad = false;
          run_case(rng, c);
          c.bias = false, c.x_grad = false;
          run_case(rng, c);
          c.w_grad = true;
          run_case(rng, c);
        }
}

// A chain shaped like the Game of Life net, 3x3 circular -> 1x1 -> 1x1 -> 1x1
// with fused ReLUs, mixing sparse and dense convolutions, against the same
// chain of dense convolutions on masked weights. The dense pointwise
// convolution writes its input gradient already masked by the fused ReLU of
// the sparse convolution before it (Node::grad_for_write), which must then
// skip its own mask; the sparse convolutions accumulate theirs unmasked.
// Also with a second consumer of the first layer's output (tanh) whose
// gradient arrives after or before the others'.
TEST(SparseConv2d, FusedReluChainMatchesMaskedDense) {
  Rng rng(66);
  const int64_t batch = 3, h = 12;
  const Geo g1{1, 16, h, h, 3, 3, 1, 1, true}, g2{16, 16, h, h, 1, 1, 1, 0, false},
      g3{16, 8, h, h, 1, 1, 1, 0, false}, g4{8, 1, h, h, 1, 1, 1, 0, false};
  const Tensor x = random_normal({batch, 1, h, h}, rng);
  const Tensor m1 = random_mask(rng, g1, 0.5, true, false), m2 = random_mask(rng, g2, 0.3, false, true);
  const Tensor m3 = random_mask(rng, g3, 0.5, true, false), m4 = random_mask(rng, g4, 0.5, false, false);
  const Tensor w1 = random_normal({16, 1, 3, 3}, rng), b1 = random_normal({16}, rng);
  const Tensor w2 = random_normal({16, 16, 1, 1}, rng, 0.5f), b2 = random_normal({16}, rng);
  const Tensor w3 = random_normal({8, 16, 1, 1}, rng, 0.5f), b3 = random_normal({8}, rng);
  const Tensor w4 = random_normal({1, 8, 1, 1}, rng, 0.5f), b4 = random_normal({1}, rng);
  const Tensor wo = random_normal({1, 16, 1, 1}, rng, 0.5f);
  const Tensor r = random_normal({batch, 1, h, h}, rng);
  auto p1 = pattern_of(g1, m1), p3 = pattern_of(g3, m3), p4 = pattern_of(g4, m4);
  const Conv2dOptions circ{.pad = 1, .circular = true, .relu = true}, point{.relu = true};
  for (int branch = 0; branch < 3; ++branch) {
    SCOPED_TRACE("branch " + std::to_string(branch));
    std::vector<Tensor> got, want;
    std::vector<Tensor> y;
    for (bool sparse : {false, true}) {
      auto weight = [sparse](const Tensor& wv, const Tensor& m) {
        return Var(outside_set_to(wv, m, sparse ? kNaN : 0.0f), true);
      };
      Var xv(x.clone(), true);
      Var v1 = weight(w1, m1), v3 = weight(w3, m3), v4 = weight(w4, m4);
      Var v2(outside_set_to(w2, m2, 0.0f), true);  // dense in both
      Var c1(b1.clone(), true), c2(b2.clone(), true), c3(b3.clone(), true), c4(b4.clone(), true);
      Var h1 = sparse ? sparse_conv2d(xv, v1, c1, circ, p1) : conv2d(xv, v1, c1, circ);
      Var h2 = conv2d(h1, v2, c2, point);  // writes dh1 masked
      Var h3 = sparse ? sparse_conv2d(h2, v3, c3, point, p3) : conv2d(h2, v3, c3, point);
      Var out = sparse ? sparse_conv2d(h3, v4, c4, {}, p4) : conv2d(h3, v4, c4, {});
      if (branch > 0) {
        Var side = conv2d(tanh(h1), Var(wo), Var(), {});
        out = branch == 1 ? add(out, side) : add(side, out);
      }
      out.backward(r);
      (sparse ? got : want) = {out.value(), xv.grad(), v1.grad(), c1.grad(), v2.grad(),
                               c2.grad(), v3.grad(), c3.grad(), v4.grad(), c4.grad()};
    }
    const char* names[] = {"y", "dx", "dw1", "db1", "dw2", "db2", "dw3", "db3", "dw4", "db4"};
    const Tensor* masks[] = {nullptr, nullptr, &m1, nullptr, nullptr, nullptr, &m3, nullptr, &m4, nullptr};
    // Loose absolute scale: values and gradients here are O(1..100).
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i].defined()) << names[i];
      ASSERT_EQ(got[i].shape(), want[i].shape()) << names[i];
      int failures = 0;
      for (int64_t e = 0; e < got[i].numel(); ++e) {
        const float a = got[i].f32()[e], b = want[i].f32()[e];
        const bool outside = masks[i] && !(masks[i]->f32()[e] > 0);
        const bool ok = outside ? a == 0.0f : std::fabs(a - b) <= 1e-5 * (10 + std::fabs(b));
        if (!ok && failures++ == 0)
          ADD_FAILURE() << names[i] << "[" << e << "]: got " << a << " want " << b
                        << (outside ? " (outside the pattern)" : "");
      }
      EXPECT_EQ(failures, 0) << names[i] << ": mismatches";
    }
  }
}

TEST(SparseConv2d, FiniteDifferenceGradients) {
  Rng rng(67);
  for (const Geo& g : {Geo{2, 3, 6, 7, 3, 3, 1, 1, true}, Geo{3, 4, 7, 6, 5, 5, 2, 2, false},
                       Geo{3, 4, 5, 5, 1, 1, 1, 0, false}, Geo{2, 3, 6, 5, 3, 3, 2, 0, false}}) {
    const Tensor mask = random_mask(rng, g, 0.5, true, false);
    auto pattern = pattern_of(g, mask);
    const Conv2dOptions opt{.stride = g.stride, .pad = g.pad, .circular = g.circular};
    auto with_bias = [&](const auto& in) { return sparse_conv2d(in[0], in[1], in[2], opt, pattern); };
    auto no_bias = [&](const auto& in) { return sparse_conv2d(in[0], in[1], Var(), opt, pattern); };
    const Tensor x = random_normal({2, g.c, g.h, g.w}, rng);
    const Tensor w = random_normal({g.oc, g.c, g.kh, g.kw}, rng, 0.5f);
    const Tensor b = random_normal({g.oc}, rng);
    // Over all of w: entries outside the pattern have numeric gradient 0 (not
    // read) and must have analytic gradient 0.
    EXPECT_TRUE(gradcheck(with_bias, {x, w, b}));
    EXPECT_TRUE(gradcheck(no_bias, {x, w}));
    EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {true, false, false}));
    EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {false, true, false}));
    EXPECT_TRUE(gradcheck(with_bias, {x, w, b}, {false, false, true}));
  }
}

TEST(SparseConv2d, RecordsNoGraphUnderNoGradGuard) {
  Rng rng(68);
  const Geo g{2, 3, 6, 6, 3, 3, 1, 1, true};
  auto pattern = pattern_of(g, random_mask(rng, g, 0.5, false, false));
  Var x(random_normal({2, 2, 6, 6}, rng), true), w(random_normal({3, 2, 3, 3}, rng), true),
      b(random_normal({3}, rng), true);
  const Conv2dOptions opt{.pad = 1, .circular = true, .relu = true};
  Var with_graph = sparse_conv2d(x, w, b, opt, pattern);
  NoGradGuard guard;
  Var y = sparse_conv2d(x, w, b, opt, pattern);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.node()->inputs.empty());
  EXPECT_TRUE(same_bits(y.value(), with_graph.value()));
}

// Same inputs, same bits: twice on two threads, and on one thread (the
// sparse products promise bits independent of the thread count,
// tensor/sparse.h; im2col and col2im are split by whole images).
TEST(SparseConv2d, BitsDoNotDependOnRunOrThreadCount) {
  ThreadsFor two(2);
  Rng rng(69);
  const Geo life{1, 16, 32, 32, 3, 3, 1, 1, true}, lenet2{6, 16, 14, 14, 5, 5, 1, 0, false},
      life_1x1{16, 16, 32, 32, 1, 1, 1, 0, false};
  for (auto [g, batch] : {std::pair{life, int64_t{8}}, {lenet2, 16}, {life_1x1, 4}}) {
    std::ostringstream where;
    where << "C" << g.c << " OC" << g.oc << " k" << g.kh << " batch " << batch;
    SCOPED_TRACE(where.str());
    auto pattern = pattern_of(g, random_mask(rng, g, 0.2, true, false));
    const Tensor x = random_normal({batch, g.c, g.h, g.w}, rng);
    const Tensor w = random_normal({g.oc, g.c, g.kh, g.kw}, rng, 0.3f), b = random_normal({g.oc}, rng);
    const Tensor r = random_normal({batch, g.oc, g.out_h(), g.out_w()}, rng);
    const Conv2dOptions opt{.stride = g.stride, .pad = g.pad, .circular = g.circular, .relu = true};
    auto run = [&] {
      Var xv(x.clone(), true), wv(w.clone(), true), bv(b.clone(), true);
      Var y = sparse_conv2d(xv, wv, bv, opt, pattern);
      y.backward(r);
      return OpResult{y.value(), xv.grad(), wv.grad(), bv.grad()};
    };
    expect_same_bits_every_run(run);
  }
}

TEST(SparseConv2d, ShapeMismatchesRaise) {
  Rng rng(70);
  // w (4, 3, 3, 3): the pattern must be (4, 27).
  auto full = [](int64_t rows, int64_t cols) {
    Tensor mask = Tensor::full({rows, cols}, 1.0f);
    return std::make_shared<const CsrPattern>(CsrPattern::from_mask(rows, cols, mask.f32()));
  };
  Var x(random_normal({2, 3, 6, 6}, rng), true), w(random_normal({4, 3, 3, 3}, rng), true),
      b(random_normal({4}, rng), true);
  const Conv2dOptions opt{.pad = 1};
  auto expect_error = [](const std::function<void()>& fn) {
    pare::testing::expect_error(fn, {"sparse_conv2d"});
  };
  expect_error([&] { sparse_conv2d(x, w, b, opt, full(27, 4)); });  // transposed
  expect_error([&] { sparse_conv2d(x, w, b, opt, full(4, 26)); });  // one column short
  expect_error([&] { sparse_conv2d(x, w, b, opt, full(4, 9)); });   // (OC, KH*KW): no C
  expect_error([&] { sparse_conv2d(x, w, b, opt, full(3, 27)); });  // one filter short
  expect_error([&] { sparse_conv2d(x, w, b, opt, full(12, 9)); });  // (OC*C, KH*KW)
  expect_error([&] { sparse_conv2d(x, w, b, opt, nullptr); });      // no pattern
  // The geometry's own errors (shared with conv2d) still raise.
  auto expect_conv_error = [](const std::function<void()>& fn) {
    pare::testing::expect_error(fn, {"conv2d"});
  };
  expect_conv_error([&] { sparse_conv2d(Var(random_normal({2, 2, 6, 6}, rng)), w, b, opt, full(4, 27)); });
  expect_conv_error([&] { sparse_conv2d(Var(random_normal({3, 6, 6}, rng)), w, b, opt, full(4, 27)); });
  expect_conv_error([&] { sparse_conv2d(x, Var(random_normal({4, 27}, rng)), b, opt, full(4, 27)); });
  expect_conv_error([&] { sparse_conv2d(x, w, Var(random_normal({3}, rng)), opt, full(4, 27)); });
  // The matching pattern works.
  EXPECT_EQ(sparse_conv2d(x, w, b, opt, full(4, 27)).shape(), Shape({2, 4, 6, 6}));
}

// ---- sparse_conv2d_packed: the filter bank as its (nnz,) values in pattern order ----

// values[k] = t[pattern.pos[k]].

// The packed op against the dense-storage sparse op (equal bits in y, dx, db;
// the packed gradient equals the dense-storage gradient gathered at pos) and,
// without the fused ReLU, against the masked dense conv2d (within relative
// 1e-5 of the sum of |terms|), over a subset of the geometries above and
// densities 0..1, with and without the ReLU and the bias.
TEST(SparseConv2dPacked, EqualsDenseStorageSparseAndMaskedDense) {
  ThreadsFor two(2);
  Rng rng(71);
  int index = 0;
  for (size_t gi = 0; gi < std::size(kSweep); gi += 2)
    for (double density : kDensity)
      for (bool relu : {false, true}) {
        const Geo& g = kSweep[gi];
        const bool bias = index % 2 == 0, bind = index % 3 == 0;
        const int64_t batch = index++ % 2 == 0 ? 1 : 3;
        std::ostringstream what;
        what << "geometry " << gi << " batch " << batch << " density " << density
             << (relu ? " relu" : "") << (bias ? " bias" : "") << (bind ? " bound zeros" : "");
        SCOPED_TRACE(what.str());
        const Tensor mask = random_mask(rng, g, density, false, false);
        auto pattern = pattern_of(g, mask);
        const int64_t nnz = pattern->nnz();
        if (density == 0.0) {
          ASSERT_EQ(nnz, 0);
        }
        if (density == 1.0) {
          ASSERT_EQ(nnz, g.oc * g.k());
        }
        const Shape ws_shape{g.oc, g.c, g.kh, g.kw};
        const Tensor w = random_normal(ws_shape, rng, 0.5f);
        const Tensor x = random_normal({batch, g.c, g.h, g.w}, rng);
        const Tensor b = bias ? random_normal({g.oc}, rng) : Tensor();
        const Shape y_shape{batch, g.oc, g.out_h(), g.out_w()};
        const Tensor r = random_normal(y_shape, rng);
        const Tensor w_masked = outside_set_to(w, mask, 0.0f);
        const Conv2dOptions opt{.stride = g.stride, .pad = g.pad, .circular = g.circular,
                                .relu = relu};

        Var xs(x.clone(), true), ws(w_masked.clone(), true), bs;
        if (bias) bs = Var(b.clone(), true);
        Var ys = sparse_conv2d(xs, ws, bs, opt, pattern);
        ys.backward(r);
        const Tensor values = gather_at(*pattern, w);
        Var xp(x.clone(), true), vp(values.clone(), true), bp;
        if (bind) vp.bind_grad(Tensor::zeros({nnz}));
        if (bias) bp = Var(b.clone(), true);
        Var yp = sparse_conv2d_packed(xp, vp, ws_shape, bp, opt, pattern);
        ASSERT_EQ(yp.shape(), y_shape);
        yp.backward(r);
        EXPECT_TRUE(same_bits(vp.value(), values)) << "the values were modified";
        EXPECT_TRUE(same_bits(yp.value(), ys.value())) << "y";
        EXPECT_TRUE(same_bits(xp.grad(), xs.grad())) << "dx";
        if (bias) {
          EXPECT_TRUE(same_bits(bp.grad(), bs.grad())) << "db";
        }
        ASSERT_TRUE(vp.grad().defined()) << "the values received no gradient";
        ASSERT_EQ(vp.grad().shape(), Shape({nnz}));
        if (nnz > 0) {
          EXPECT_TRUE(same_bits(vp.grad(), gather_at(*pattern, ws.grad())))
              << "packed dw != dense-storage dw at pos";
        }
        if (relu) continue;

        Var xr(x.clone(), true), wr(w_masked.clone(), true), br;
        if (bias) br = Var(b.clone(), true);
        Var yr = conv2d(xr, wr, br, opt);
        yr.backward(r);
        Var xa(abs_of(x), true), wa(abs_of(w_masked), true), ba;
        if (bias) ba = Var(abs_of(b), true);
        Var ya = conv2d(xa, wa, ba, opt);
        ya.backward(abs_of(r));
        expect_close(yp.value(), yr.value(), ya.value(), "y vs masked dense");
        expect_close(xp.grad(), xr.grad(), xa.grad(), "dx vs masked dense");
        if (bias) expect_close(bp.grad(), br.grad(), ba.grad(), "db vs masked dense");
        if (nnz > 0) {
          expect_close(vp.grad(), gather_at(*pattern, wr.grad()), gather_at(*pattern, wa.grad()),
                       "packed dw vs masked dense dw at pos");
        }
      }
}

TEST(SparseConv2dPacked, ShapeMismatchesNameThePackedOp) {
  Rng rng(72);
  const Geo g{3, 4, 6, 6, 3, 3, 1, 1, false};
  const Tensor mask = random_mask(rng, g, 0.5, false, false);
  auto pattern = pattern_of(g, mask);
  const int64_t nnz = pattern->nnz();
  ASSERT_GT(nnz, 1);
  const Shape ws{4, 3, 3, 3};
  Var x(random_normal({2, 3, 6, 6}, rng), true), v(random_normal({nnz}, rng), true),
      b(random_normal({4}, rng), true);
  const Conv2dOptions opt{.pad = 1};
  auto expect_error = [](const std::function<void()>& fn) {
    pare::testing::expect_error(fn, {"sparse_conv2d_packed"});
  };
  expect_error([&] { sparse_conv2d_packed(x, Var(random_normal({nnz - 1}, rng)), ws, b, opt, pattern); });
  expect_error([&] { sparse_conv2d_packed(x, Var(random_normal({nnz + 1}, rng)), ws, b, opt, pattern); });
  expect_error([&] { sparse_conv2d_packed(x, Var(random_normal(ws, rng)), ws, b, opt, pattern); });  // dense w
  expect_error([&] { sparse_conv2d_packed(x, v, Shape{4, 3, 3, 2}, b, opt, pattern); });  // pattern does not fit
  expect_error([&] { sparse_conv2d_packed(x, v, ws, b, opt, nullptr); });
  expect_error([&] { sparse_conv2d_packed(Var(random_normal({2, 2, 6, 6}, rng)), v, ws, b, opt, pattern); });
  expect_error([&] { sparse_conv2d_packed(x, v, ws, Var(random_normal({3}, rng)), opt, pattern); });
  EXPECT_EQ(sparse_conv2d_packed(x, v, ws, b, opt, pattern).shape(), Shape({2, 4, 6, 6}));
}

}  // namespace
}  // namespace pare::autograd
