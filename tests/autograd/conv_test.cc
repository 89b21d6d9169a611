// conv2d: forward against a direct convolution loop (zero and circular
// padding), finite-difference gradients over a sweep of geometries, and the
// paths where only some inputs need gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "pare/autograd/ops.h"
#include "pare/base/thread_pool.h"

namespace pare::autograd {
namespace {

using testing::gradcheck;
using testing::random_normal;

struct ConvCase {
  int64_t b, c, oc, h, w, kh, kw, stride, pad;
  bool circular, bias;
  std::string str() const {
    std::ostringstream os;
    os << "B" << b << " C" << c << " OC" << oc << " " << h << "x" << w << " k" << kh << "x" << kw
       << " s" << stride << " p" << pad << (circular ? " circular" : "") << (bias ? " bias" : "");
    return os.str();
  }
};

// y: (B, OC, OH, OW), the definition of cross-correlation summed in double.
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor* b, int64_t stride, int64_t pad,
                  bool circular) {
  const int64_t batch = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t oc = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const int64_t oh = (h + 2 * pad - kh) / stride + 1, ow = (wd + 2 * pad - kw) / stride + 1;
  Tensor y = Tensor::empty({batch, oc, oh, ow});
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double acc = b ? b->f32()[o] : 0.0;
          for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t ky = 0; ky < kh; ++ky)
              for (int64_t kx = 0; kx < kw; ++kx) {
                int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (circular) {
                  iy = (iy + h) % h;
                  ix = (ix + wd) % wd;
                } else if (iy < 0 || iy >= h || ix < 0 || ix >= wd) {
                  continue;
                }
                acc += double{x.f32()[((n * c + ci) * h + iy) * wd + ix]} *
                       w.f32()[((o * c + ci) * kh + ky) * kw + kx];
              }
          y.f32()[((n * oc + o) * oh + oy) * ow + ox] = static_cast<float>(acc);
        }
  return y;
}

// Every geometry twice: once with output planes under 96 pixels, which
// conv2d lowers over the whole batch (one BLAS GEMM), and once with planes of
// 96 or more, which it runs image by image on the small GEMM.
const std::vector<ConvCase>& sweep() {
  static const std::vector<ConvCase> cases = {
      // Batched lowering (P = OH*OW < 96).
      // b  c oc  h  w kh kw  s  p  circ   bias
      {2, 2, 3, 6, 7, 3, 3, 1, 0, false, true},
      {2, 3, 2, 6, 7, 3, 3, 1, 1, false, true},
      {2, 3, 2, 7, 6, 3, 3, 1, 1, true, true},   // the Life-net geometry, small
      {2, 2, 3, 8, 5, 3, 3, 2, 1, false, false},
      {2, 2, 3, 8, 5, 3, 3, 2, 1, true, true},
      {2, 3, 2, 7, 8, 5, 5, 1, 2, false, true},  // LeNet's first layer, small
      {2, 2, 2, 7, 8, 5, 5, 1, 2, true, false},
      {2, 2, 3, 9, 7, 5, 5, 2, 0, false, true},
      {2, 3, 2, 9, 8, 5, 5, 2, 2, true, true},
      {2, 3, 4, 5, 6, 1, 1, 1, 0, false, true},  // 1x1 fast path
      {2, 2, 3, 5, 6, 1, 1, 1, 0, false, false},
      {2, 2, 3, 5, 6, 1, 1, 2, 0, false, true},  // 1x1 but strided: general path
      {2, 2, 2, 5, 6, 1, 1, 1, 1, false, true},  // 1x1 but padded: general path
      {2, 2, 3, 6, 8, 2, 3, 1, 1, false, true},  // non-square kernel
      {2, 3, 2, 6, 8, 3, 2, 2, 1, true, false},
      {2, 2, 2, 4, 5, 3, 3, 1, 2, false, true},  // pad 2 on a 3x3 kernel
      {2, 2, 2, 4, 5, 3, 3, 1, 2, true, true},   // circular wraps 2 deep
      {1, 2, 2, 3, 3, 5, 5, 1, 1, false, true},  // kernel larger than the input
      // Image by image (P >= 96).
      {2, 2, 3, 13, 12, 3, 3, 1, 0, false, true},
      {2, 3, 2, 10, 11, 3, 3, 1, 1, false, true},
      {2, 3, 2, 11, 10, 3, 3, 1, 1, true, true},  // the Life-net geometry
      {2, 2, 3, 22, 20, 3, 3, 2, 1, false, false},
      {2, 2, 3, 22, 20, 3, 3, 2, 1, true, true},
      {2, 3, 2, 10, 11, 5, 5, 1, 2, false, true},  // LeNet's first layer
      {2, 2, 2, 10, 11, 5, 5, 1, 2, true, false},
      {2, 2, 3, 25, 24, 5, 5, 2, 0, false, true},
      {2, 3, 2, 21, 20, 5, 5, 2, 2, true, true},
      {2, 3, 4, 10, 11, 1, 1, 1, 0, false, true},  // 1x1: x_i is its own patch matrix
      {2, 2, 3, 10, 11, 1, 1, 1, 0, false, false},
      {2, 2, 3, 20, 22, 1, 1, 2, 0, false, true},  // 1x1 but strided: lowered
      {2, 2, 2, 9, 10, 1, 1, 1, 1, false, true},   // 1x1 but padded: lowered
      {2, 2, 3, 10, 12, 2, 3, 1, 1, false, true},  // non-square kernel
      {2, 3, 2, 21, 20, 3, 2, 2, 1, true, false},
      {2, 2, 2, 8, 9, 3, 3, 1, 2, false, true},    // pad 2 on a 3x3 kernel
      {2, 2, 2, 8, 9, 3, 3, 1, 2, true, true},     // circular wraps 2 deep
      {3, 2, 17, 10, 10, 3, 3, 1, 1, false, true}, // OC not a multiple of the 8-row tile
  };
  return cases;
}

Var run_conv(const ConvCase& cc, const std::vector<Var>& in) {
  return conv2d(in[0], in[1], cc.bias ? in[2] : Var(),
                {.stride = cc.stride, .pad = cc.pad, .circular = cc.circular});
}

std::vector<Tensor> conv_inputs(const ConvCase& cc, Rng& rng) {
  std::vector<Tensor> in = {random_normal({cc.b, cc.c, cc.h, cc.w}, rng),
                            random_normal({cc.oc, cc.c, cc.kh, cc.kw}, rng, 0.5f)};
  if (cc.bias) in.push_back(random_normal({cc.oc}, rng));
  return in;
}

TEST(Conv2d, ForwardMatchesDirectLoop) {
  Rng rng(21);
  std::vector<ConvCase> cases = sweep();
  // Sizes where im2col and the GEMM split across threads, plus the two
  // production layers.
  cases.push_back({8, 1, 2, 32, 32, 3, 3, 1, 1, true, true});    // Life net
  cases.push_back({6, 1, 6, 28, 28, 5, 5, 1, 2, false, true});   // LeNet-5 conv1
  cases.push_back({4, 6, 16, 14, 14, 5, 5, 1, 0, false, true});  // LeNet-5 conv2
  cases.push_back({3, 16, 24, 8, 8, 1, 1, 1, 0, false, true});   // 1x1 per-image GEMMs
  cases.push_back({1, 16, 24, 8, 8, 1, 1, 1, 0, false, false});  // 1x1 single image
  cases.push_back({2, 1, 64, 28, 28, 3, 3, 1, 1, false, true});  // Conv-2 layer 1 (per image)
  for (const ConvCase& cc : cases) {
    std::vector<Tensor> in = conv_inputs(cc, rng);
    std::vector<Var> vars;
    for (const Tensor& t : in) vars.push_back(Var(t));
    Var y = run_conv(cc, vars);
    Tensor ref = naive_conv(in[0], in[1], cc.bias ? &in[2] : nullptr, cc.stride, cc.pad,
                            cc.circular);
    ASSERT_EQ(y.shape(), ref.shape()) << cc.str();
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const float want = ref.f32()[i];
      ASSERT_NEAR(y.value().f32()[i], want, 1e-5f * (1.0f + std::fabs(want)))
          << cc.str() << " at flat index " << i;
    }
  }
}

TEST(Conv2d, CircularWrapsAroundTheTorus) {
  // A single 1 at the corner of a 4x4 board, a 3x3 all-ones kernel, circular
  // pad 1: every cell whose 3x3 torus neighbourhood contains (0, 0) sees 1.
  Tensor x = Tensor::zeros({1, 1, 4, 4});
  x.f32()[0] = 1.0f;
  Var y = conv2d(Var(x), Var(Tensor::full({1, 1, 3, 3}, 1.0f)), Var(),
                 {.stride = 1, .pad = 1, .circular = true});
  const float want[16] = {1, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(y.value().f32()[i], want[i]) << "cell " << i;
}

TEST(Conv2d, GradientsOverSweep) {
  Rng rng(22);
  for (const ConvCase& cc : sweep()) {
    auto f = [&](const std::vector<Var>& in) { return run_conv(cc, in); };
    EXPECT_TRUE(gradcheck(f, conv_inputs(cc, rng))) << cc.str();
  }
}

TEST(Conv2d, GradientsWhenOnlySomeInputsNeedThem) {
  Rng rng(23);
  for (const ConvCase& cc : {ConvCase{2, 2, 3, 6, 7, 3, 3, 1, 1, true, true},
                             ConvCase{2, 3, 2, 5, 6, 1, 1, 1, 0, false, true},
                             ConvCase{2, 2, 3, 11, 10, 3, 3, 1, 1, true, true},
                             ConvCase{2, 3, 2, 10, 11, 1, 1, 1, 0, false, true}}) {
    auto f = [&](const std::vector<Var>& in) { return run_conv(cc, in); };
    std::vector<Tensor> in = conv_inputs(cc, rng);
    EXPECT_TRUE(gradcheck(f, in, {true, false, false})) << cc.str() << " (x only)";
    EXPECT_TRUE(gradcheck(f, in, {false, true, false})) << cc.str() << " (w only)";
    EXPECT_TRUE(gradcheck(f, in, {false, false, true})) << cc.str() << " (b only)";
    EXPECT_TRUE(gradcheck(f, in, {true, true, false})) << cc.str() << " (x and w)";
  }
}

// At sizes where im2col, col2im, the GEMMs and the 1x1 per-image GEMMs split
// across threads (B*K*P >= 32768 flops, B * 2*OC*P*C >= 32768 for 1x1), the
// weight and bias gradients are checked by finite differences (cheap: few
// elements) and every result is compared with a single-threaded run, whose
// paths the gradchecks above cover (one thread runs the same code over the
// whole range).
const std::vector<ConvCase>& threaded_cases() {
  static const std::vector<ConvCase> cases = {
      {4, 4, 4, 16, 16, 3, 3, 1, 1, true, true},
      {4, 8, 16, 6, 6, 1, 1, 1, 0, false, true},
      {8, 1, 2, 32, 32, 3, 3, 1, 1, true, true},   // Life net
      {6, 1, 6, 28, 28, 5, 5, 1, 2, false, true},  // LeNet-5 conv1
      {3, 6, 16, 14, 14, 5, 5, 1, 0, false, true}, // LeNet-5 conv2, odd batch split
      {4, 16, 8, 32, 32, 1, 1, 1, 0, false, true}, // Life 1x1, per image
      {4, 2, 72, 6, 6, 3, 3, 1, 1, true, true},    // batched lowering (P < 96)
      {4, 8, 80, 6, 6, 1, 1, 1, 0, false, true},   // batched 1x1 (P < 96)
  };
  return cases;
}

TEST(Conv2d, WeightGradientsAtThreadedSizes) {
  Rng rng(24);
  for (const ConvCase& cc : threaded_cases()) {
    auto f = [&](const std::vector<Var>& in) { return run_conv(cc, in); };
    EXPECT_TRUE(gradcheck(f, conv_inputs(cc, rng), {false, true, true})) << cc.str();
  }
}

TEST(Conv2d, ThreadedMatchesSingleThreaded) {
  Rng rng(25);
  const int saved = num_threads();
  for (const ConvCase& cc : threaded_cases()) {
    std::vector<Tensor> in = conv_inputs(cc, rng);
    Tensor seed;
    auto run = [&](int threads) {
      set_num_threads(threads);
      std::vector<Var> vars;
      for (const Tensor& t : in) vars.push_back(Var(t, true));
      Var y = run_conv(cc, vars);
      if (!seed.defined()) seed = random_normal(y.shape(), rng);
      y.backward(seed);
      std::vector<Tensor> out = {y.value().clone()};
      for (const Var& v : vars) out.push_back(v.grad().clone());
      return out;
    };
    std::vector<Tensor> one = run(1), two = run(2);
    const char* names[] = {"y", "dx", "dw", "db"};
    for (size_t i = 0; i < one.size(); ++i)
      for (int64_t j = 0; j < one[i].numel(); ++j) {
        const float a = one[i].f32()[j];
        ASSERT_NEAR(two[i].f32()[j], a, 1e-5f * (1.0f + std::fabs(a)))
            << cc.str() << ": " << names[i] << " element " << j;
      }
  }
  set_num_threads(saved);
}

// Same inputs and thread count, same bits: the per-chunk weight-gradient
// partials are added in a fixed order.
TEST(Conv2d, TwoThreadsGiveTheSameBitsEveryRun) {
  Rng rng(26);
  const int saved = num_threads();
  set_num_threads(2);
  for (const ConvCase& cc : threaded_cases()) {
    std::vector<Tensor> in = conv_inputs(cc, rng);
    Tensor seed;
    auto run = [&] {
      std::vector<Var> vars;
      for (const Tensor& t : in) vars.push_back(Var(t, true));
      Var y = run_conv(cc, vars);
      if (!seed.defined()) seed = random_normal(y.shape(), rng);
      y.backward(seed);
      std::vector<Tensor> out = {y.value().clone()};
      for (const Var& v : vars) out.push_back(v.grad().clone());
      return out;
    };
    std::vector<Tensor> first = run(), second = run();
    const char* names[] = {"y", "dx", "dw", "db"};
    for (size_t i = 0; i < first.size(); ++i)
      EXPECT_EQ(std::memcmp(first[i].f32(), second[i].f32(),
                            static_cast<size_t>(first[i].numel()) * sizeof(float)),
                0)
          << cc.str() << ": " << names[i] << " differs between runs";
  }
  set_num_threads(saved);
}

// The fused ReLU gives exactly relu(conv2d(...)): same output bits and the
// same gradients, on the per-image path (P >= 96), the batched path (small
// planes) and the pointwise paths.
TEST(Conv2d, FusedReluEqualsSeparateRelu) {
  struct Geometry {
    int64_t c, oc, h, k, pad;
    bool circular;
  };
  const Geometry cases[] = {
      {1, 6, 28, 5, 2, false},  // per image (P = 784)
      {2, 4, 12, 3, 1, true},   // per image (P = 144)
      {3, 5, 6, 3, 0, false},   // batched (P = 16)
      {4, 3, 16, 1, 0, false},  // pointwise, per image
      {4, 3, 5, 1, 0, false},   // pointwise, batched
  };
  Rng rng(31);
  for (const Geometry& g : cases) {
    Tensor xv = random_normal({3, g.c, g.h, g.h}, rng);
    Tensor wv = random_normal({g.oc, g.c, g.k, g.k}, rng);
    Tensor bv = random_normal({g.oc}, rng);
    Tensor seed = random_normal({3, g.oc, g.h + 2 * g.pad - g.k + 1, g.h + 2 * g.pad - g.k + 1}, rng);
    Conv2dOptions opt{.pad = g.pad, .circular = g.circular};
    Var x1(xv.clone(), true), w1(wv.clone(), true), b1(bv.clone(), true);
    Var y1 = relu(conv2d(x1, w1, b1, opt));
    y1.backward(seed);
    opt.relu = true;
    Var x2(xv.clone(), true), w2(wv.clone(), true), b2(bv.clone(), true);
    Var y2 = conv2d(x2, w2, b2, opt);
    y2.backward(seed);
    std::ostringstream os;  // (not string +: GCC 12 warns falsely on it, -Wrestrict)
    os << "C" << g.c << " OC" << g.oc << " " << g.h << "x" << g.h << " k" << g.k;
    const std::string where = os.str();
    ASSERT_EQ(y1.shape(), y2.shape()) << where;
    EXPECT_EQ(0, std::memcmp(y1.value().f32(), y2.value().f32(), y1.value().nbytes())) << where;
    for (auto [a, b] : {std::pair{&x1, &x2}, {&w1, &w2}, {&b1, &b2}})
      EXPECT_EQ(0, std::memcmp(a->grad().f32(), b->grad().f32(), a->grad().nbytes())) << where;
  }
}

// A chain of convolutions with fused ReLUs, shaped like the Game of Life net
// (3x3 circular, then 1x1, then 1x1 to one channel): each pointwise
// convolution writes its input gradient already masked by the fused ReLU
// before it (Node::grad_for_write), and that ReLU then skips its own mask.
// The gradients equal those of the same chain with separate relu ops (equal
// values: only the sign of a zero may differ). Also with the first
// convolution's output read by a second consumer that accumulates an
// unmasked gradient (before and after the masked writer), which must turn
// the shortcut off.
TEST(Conv2d, FusedReluChainEqualsSeparateRelus) {
  Rng rng(37);
  const int64_t batch = 3, h = 12;
  Tensor xv = random_normal({batch, 1, h, h}, rng);
  Tensor w1v = random_normal({6, 1, 3, 3}, rng), b1v = random_normal({6}, rng);
  Tensor w2v = random_normal({4, 6, 1, 1}, rng, 0.5f), b2v = random_normal({4}, rng);
  Tensor w3v = random_normal({1, 4, 1, 1}, rng, 0.5f), b3v = random_normal({1}, rng);
  Tensor seed = random_normal({batch, 1, h, h}, rng);
  Tensor wov = random_normal({1, 6, 1, 1}, rng);
  // branch 0: the chain; 1 and 2: tanh(h1) is a second consumer of h1, its
  // gradient accumulated after (1) or before (2) the masked write.
  for (int branch = 0; branch < 3; ++branch) {
    std::vector<Tensor> grads[2];
    for (int fused = 0; fused < 2; ++fused) {
      Var x(xv.clone(), true);
      Var w1(w1v.clone(), true), b1(b1v.clone(), true), w2(w2v.clone(), true);
      Var b2(b2v.clone(), true), w3(w3v.clone(), true), b3(b3v.clone(), true);
      const Conv2dOptions o3{.pad = 1, .circular = true, .relu = fused == 1};
      const Conv2dOptions o1{.relu = fused == 1};
      Var h1 = conv2d(x, w1, b1, o3);
      if (!fused) h1 = relu(h1);
      Var h2 = conv2d(h1, w2, b2, o1);
      if (!fused) h2 = relu(h2);
      Var out = conv2d(h2, w3, b3, {});
      if (branch > 0) {
        Var side = conv2d(tanh(h1), Var(wov), Var(), {});
        out = branch == 1 ? add(out, side) : add(side, out);
      }
      out.backward(seed);
      for (Var* v : {&x, &w1, &b1, &w2, &b2, &w3, &b3}) grads[fused].push_back(v->grad().clone());
    }
    const char* names[] = {"x", "w1", "b1", "w2", "b2", "w3", "b3"};
    for (size_t i = 0; i < grads[0].size(); ++i)
      for (int64_t e = 0; e < grads[0][i].numel(); ++e)
        ASSERT_EQ(grads[0][i].f32()[e], grads[1][i].f32()[e])
            << "branch " << branch << ": d" << names[i] << "[" << e << "]";
  }
}

}  // namespace
}  // namespace pare::autograd
