// Issue #5's linear-layer figure, pare's side: one (size x size) linear layer
// y = W x (inference, forward only, no bias) with random unstructured sparsity,
// pare's best dense path against its CSR path, per sparsity and batch.
// bench/sparse_linear.sh runs it beside PyTorch (bench/torch_sparse_linear.py)
// and prints the table with the targets. Not part of the tests; by hand:
//
//   ./build/bench/sparse_linear_bench [--threads 2] [--size 4096]
//       [--sparsities 0.9,0.95] [--batches 1,64] [--seconds 1] [--seed 1]
//       [--cold-seconds 0.5]
//
// Layouts. pare's layers pass batch-major activations x: (B, in), y: (B, out).
//   dense   ops::gemm: y (B, out) = x (B, in) W^T (W: (out, in), trans_b).
//           For B = 1 it also tries the same product feature-major
//           (y^T = W x^T, split over W's rows), the single-threaded
//           gemm_f32__small (long K, b transposed: a GEMV with x read in
//           place) and that kernel split over output features across the
//           pool; the fastest is "dense" (kernels.h has no separate GEMV).
//   sparse  CsrPattern::from_mask once, values gathered once (load time); for
//           B = 1 the SELL-16x32 layout built from them once and
//           ops::sell_spmv per call (the gathered CSR product is timed too,
//           sparse_csr); for B > 1 per call: x -> x^T (swap_outer_f32, p = 1), ops::spmm on the
//           feature-major x^T: (in, B), y^T -> y (swap_outer_f32). For B = 1
//           the layouts coincide and no transpose is made. The time without
//           the two transposes is printed too (sparse_core_ms).
// The dense weight is the masked one (same values), so the outputs agree up
// to summation order; the max error relative to max |y| is printed per cell.
//
// Timing: warm-up, then the variants of a cell run in alternation (so they
// share the machine's load) until each has run ~--seconds; the median is
// reported. Then the best dense path and the sparse one are timed again from
// cold caches (a 256 MiB buffer read before each call, untimed) for
// --cold-seconds each (dense_cold_ms, sparse_cold_ms; 0 skips it). stdout
// gets one JSON object per cell; progress goes to stderr.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "pare/base/clock.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/kernels.h"
#include "pare/tensor/ops.h"
#include "pare/tensor/sparse.h"

namespace {

using namespace pare;

struct Options {
  int threads = 2;
  int64_t size = 4096;
  std::vector<double> sparsities{0.9, 0.95};
  std::vector<int64_t> batches{1, 64};
  double seconds = 1.0;
  double cold_seconds = 0.5;  // 0: no cold-cache timing
  uint64_t seed = 1;
};

std::vector<double> parse_list(const char* s) {
  std::vector<double> out;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    out.push_back(std::strtod(p, &end));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v) throw std::runtime_error("missing value after " + a);
    if (a == "--threads") o.threads = std::atoi(v);
    else if (a == "--size") o.size = std::atoll(v);
    else if (a == "--sparsities") o.sparsities = parse_list(v);
    else if (a == "--batches") {
      o.batches.clear();
      for (double b : parse_list(v)) o.batches.push_back(static_cast<int64_t>(b));
    } else if (a == "--seconds") o.seconds = std::atof(v);
    else if (a == "--cold-seconds") o.cold_seconds = std::atof(v);
    else if (a == "--seed") o.seed = std::strtoull(v, nullptr, 10);
    else throw std::runtime_error("unknown option " + a);
    ++i;
  }
  return o;
}

struct Variant {
  Variant(std::string n, std::function<void()> f) : name(std::move(n)), run(std::move(f)) {}
  std::string name;
  std::function<void()> run;
  std::vector<double> times;
  double median() const {
    std::vector<double> t = times;
    std::nth_element(t.begin(), t.begin() + static_cast<long>(t.size() / 2), t.end());
    return t[t.size() / 2];
  }
};

// Warm-up, then rounds over all variants until each has ~`seconds` of
// samples (at least 10 rounds, so a variant slower than seconds / 10 runs 10
// times): per round each variant runs, each call timed alone, about as many
// times as fit in seconds / rounds, so fast variants get more samples.
// With `evict`, it runs (untimed) before every call and counts in the budget.
void time_variants(std::vector<Variant>& vs, double seconds,
                   const std::function<void()>& evict = {}) {
  std::vector<double> once(vs.size());
  for (size_t i = 0; i < vs.size(); ++i) {
    for (int r = 0; r < 3; ++r) vs[i].run();
    Stopwatch w;
    if (evict) evict();
    vs[i].run();
    once[i] = std::max(w.seconds(), 1e-7);
  }
  const double slowest = *std::max_element(once.begin(), once.end());
  const int rounds = static_cast<int>(std::clamp(seconds / slowest, 10.0, 1e5));
  const double per_round = seconds / rounds;
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < vs.size(); ++i) {
      const int calls = static_cast<int>(std::clamp(per_round / once[i], 1.0, 1000.0));
      for (int c = 0; c < calls; ++c) {
        if (evict) evict();
        Stopwatch w;
        vs[i].run();
        vs[i].times.push_back(w.seconds());
      }
    }
  }
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  set_num_threads(o.threads);
  const int64_t n_out = o.size, n_in = o.size;
  std::fprintf(stderr, "sparse_linear_bench: %lldx%lld, threads %d, blas %s\n",
               static_cast<long long>(n_out), static_cast<long long>(n_in), num_threads(),
               kernels::blas_description());

  // Dense weights and inputs ~ U(-1, 1), fixed seed; the mask is drawn per
  // sparsity from its own stream.
  Rng rng(o.seed);
  std::vector<float> w_full(static_cast<size_t>(n_out * n_in));
  for (float& v : w_full) v = rng.uniform(-1.0f, 1.0f);
  int64_t max_b = 1;
  for (int64_t b : o.batches) max_b = std::max(max_b, b);
  std::vector<float> x_all(static_cast<size_t>(max_b * n_in));
  for (float& v : x_all) v = rng.uniform(-1.0f, 1.0f);

  // Cold-cache timing: before each call every thread of the pool reads its
  // share of a 256 MiB buffer (8x the 32 MiB L3 of the project machines), so
  // that neither the weights nor x start in any cache level (read, not
  // written, so the timed call does not pay for dirty write-backs). The warm
  // numbers (the default) let a CSR of a few MiB stay in L3 between calls,
  // which a dense 64 MiB weight cannot.
  std::vector<uint32_t> flush(o.cold_seconds > 0 ? size_t{64} << 20 : 0, 1u);
  std::atomic<uint32_t> flush_sink{0};
  auto evict = [&] {
    ops::parallel_range(static_cast<int64_t>(flush.size()), 1e6, [&](int64_t lo, int64_t hi) {
      uint32_t acc = 0;
      for (int64_t i = lo; i < hi; ++i) acc += flush[static_cast<size_t>(i)];
      flush_sink.fetch_add(acc, std::memory_order_relaxed);
    });
  };

  for (double sparsity : o.sparsities) {
    Rng mrng = Rng(o.seed).fork(static_cast<uint64_t>(std::llround(sparsity * 1e6)));
    std::vector<float> mask(w_full.size()), w(w_full.size());
    for (size_t i = 0; i < mask.size(); ++i) {
      mask[i] = mrng.uniform() >= sparsity ? 1.0f : 0.0f;
      w[i] = w_full[i] * mask[i];
    }
    Stopwatch prep;
    const CsrPattern pat = CsrPattern::from_mask(n_out, n_in, mask.data());
    std::vector<float> values(static_cast<size_t>(pat.nnz()));
    pat.gather(w.data(), values.data(), nullptr);
    const kernels::CsrF32 csr = pat.view(values.data());
    // One-sample products use the SELL-16x32 layout (tensor/sparse.h), as a
    // pruned Linear layer does in inference with batch 1.
    const SellMatrix sell = SellMatrix::from_csr(pat, values.data());
    const double prep_s = prep.seconds();
    std::fprintf(stderr, "sparsity %.4f: nnz %lld (density %.4f), pattern + gather %.1f ms\n",
                 sparsity, static_cast<long long>(pat.nnz()), pat.density(), prep_s * 1e3);

    for (int64_t b : o.batches) {
      const float* x = x_all.data();  // (b, in), batch-major
      std::vector<float> y_dense(static_cast<size_t>(b * n_out));
      std::vector<float> y_sparse(y_dense.size()), xt(static_cast<size_t>(b * n_in)),
          yt(y_dense.size());
      std::vector<Variant> vs;
      vs.emplace_back("gemm", [&] {
                      ops::gemm(b, n_out, n_in, y_dense.data(), n_out, x, n_in, w.data(), n_in,
                                {.trans_b = true});
                    });
      if (b == 1) {
        // y^T (out, 1) = W (out, in) x^T (in, 1): split over W's rows.
        vs.emplace_back("gemm_feature_major", [&] {
                        ops::gemm(n_out, 1, n_in, y_dense.data(), 1, w.data(), n_in, x, 1, {});
                      });
        vs.emplace_back("gemm_small_1thread", [&] {
                        kernels::gemm_f32__small(1, n_out, n_in, y_dense.data(), n_out, x, n_in,
                                                 w.data(), n_in, {.trans_b = true});
                      });
        // The same kernel split over the output features across the pool
        // (made here; ops::gemm does not route to gemm_f32__small).
        vs.emplace_back("gemm_small_split", [&] {
          ops::parallel_range(n_out, 2.0 * static_cast<double>(n_in), [&](int64_t lo, int64_t hi) {
            kernels::gemm_f32__small(1, hi - lo, n_in, y_dense.data() + lo, n_out, x, n_in,
                                     w.data() + lo * n_in, n_in, {.trans_b = true});
          });
        });
      }
      const size_t n_dense = vs.size();
      auto sparse_core = [&] {
        if (b == 1) {
          ops::spmm(1, y_sparse.data(), 1, csr, x, 1, 0.0f);
        } else {
          ops::spmm(b, yt.data(), b, csr, xt.data(), b, 0.0f);
        }
      };
      vs.emplace_back("sparse", [&] {
                      if (b == 1) {
                        ops::sell_spmv(y_sparse.data(), sell, x, 0.0f);
                        return;
                      }
                      kernels::swap_outer_f32(b, n_in, 1, xt.data(), x);  // x^T: (in, b)
                      ops::spmm(b, yt.data(), b, csr, xt.data(), b, 0.0f);
                      kernels::swap_outer_f32(n_out, b, 1, y_sparse.data(), yt.data());
                    });
      if (b > 1) {
        vs.emplace_back("sparse_core", sparse_core);  // spmm alone, on x^T made above
      } else {
        vs.emplace_back("sparse_csr", sparse_core);  // the gathered CSR product, for reference
      }

      // Correctness, once: every dense variant and the sparse path against
      // the first dense result.
      vs[0].run();
      const std::vector<float> ref = y_dense;
      double max_abs = 0;
      for (float v : ref) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
      auto rel_err = [&](const std::vector<float>& y) {
        double e = 0;
        for (size_t i = 0; i < y.size(); ++i)
          e = std::max(e, std::fabs(static_cast<double>(y[i]) - ref[i]));
        return max_abs > 0 ? e / max_abs : e;
      };
      double dense_err = 0;
      for (size_t i = 1; i < n_dense; ++i) {
        vs[i].run();
        dense_err = std::max(dense_err, rel_err(y_dense));
      }
      vs[n_dense].run();
      const double sparse_err = rel_err(y_sparse);

      time_variants(vs, o.seconds);

      size_t best = 0;
      for (size_t i = 1; i < n_dense; ++i)
        if (vs[i].median() < vs[best].median()) best = i;
      const double dense_ms = vs[best].median() * 1e3;
      const double sparse_ms = vs[n_dense].median() * 1e3;
      const double core_ms = b > 1 ? vs[n_dense + 1].median() * 1e3 : sparse_ms;
      // The best dense path and the sparse one again, from cold caches.
      double dense_cold_ms = 0, sparse_cold_ms = 0;
      if (o.cold_seconds > 0) {
        std::vector<Variant> cold;
        cold.emplace_back(vs[best].name, vs[best].run);
        cold.emplace_back("sparse", vs[n_dense].run);
        time_variants(cold, o.cold_seconds, evict);
        dense_cold_ms = cold[0].median() * 1e3;
        sparse_cold_ms = cold[1].median() * 1e3;
      }
      std::string variants = "{";
      for (size_t i = 0; i < vs.size(); ++i) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "%s\"%s\": %.4f", i ? ", " : "", vs[i].name.c_str(),
                      vs[i].median() * 1e3);
        variants += buf;
      }
      variants += "}";
      std::printf(
          "{\"side\": \"pare\", \"rows\": %lld, \"cols\": %lld, \"sparsity\": %.4f, "
          "\"density\": %.6f, \"nnz\": %lld, \"batch\": %lld, \"threads\": %d, "
          "\"dense_ms\": %.4f, \"dense_variant\": \"%s\", \"sparse_ms\": %.4f, "
          "\"sparse_core_ms\": %.4f, \"ratio\": %.3f, \"dense_cold_ms\": %.4f, "
          "\"sparse_cold_ms\": %.4f, \"rounds\": %zu, "
          "\"sparse_max_rel_err\": %.3g, \"dense_variants_max_rel_err\": %.3g, "
          "\"prep_ms\": %.2f, \"variants_ms\": %s}\n",
          static_cast<long long>(n_out), static_cast<long long>(n_in), sparsity, pat.density(),
          static_cast<long long>(pat.nnz()), static_cast<long long>(b), num_threads(), dense_ms,
          vs[best].name.c_str(), sparse_ms, core_ms, dense_ms / sparse_ms, dense_cold_ms,
          sparse_cold_ms, vs[0].times.size(),
          sparse_err, dense_err, prep_s * 1e3, variants.c_str());
      std::fflush(stdout);
      std::fprintf(stderr,
                   "  batch %3lld: dense %.3f ms (%s), sparse %.3f ms (spmm alone %.3f), "
                   "%.2fx, err %.2g; cold caches: dense %.3f ms, sparse %.3f ms\n",
                   static_cast<long long>(b), dense_ms, vs[best].name.c_str(), sparse_ms, core_ms,
                   dense_ms / sparse_ms, sparse_err, dense_cold_ms, sparse_cold_ms);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sparse_linear_bench: %s\n", e.what());
    return 1;
  }
}
