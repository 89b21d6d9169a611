// What structured pruning buys at inference: LeNet-300-100 (or a saved model)
// against the same network shrunk to half its hidden units (prune/shrink.h),
// in parameter bytes, saved-file bytes and median forward time at batch 1000
// and batch 1. Not part of the tests; run by hand:
//
//   ./build/bench/structured_bench [model.bin] [keep_fraction]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pare/base/clock.h"
#include "pare/base/rng.h"
#include "pare/nn/module.h"
#include "pare/prune/shrink.h"
#include "pare/train/trainer.h"

namespace {

using namespace pare;

int64_t param_bytes(const nn::Model& m) {
  int64_t bytes = 0;
  for (const nn::Parameter* p : m.parameters()) {
    bytes += static_cast<int64_t>(p->value().nbytes());
    if (p->mask.defined()) bytes += static_cast<int64_t>(p->mask.nbytes());
  }
  return bytes;
}

int64_t saved_bytes(const nn::Model& m, const std::string& path) {
  train::save_model(m, path);
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path));
  std::filesystem::remove(path);
  return size;
}

// Median wall times of one inference forward pass of `a` and of `b` over
// `reps` runs each, after a few warm-up runs that fill the storage pool. The
// runs alternate between the models so that both see the same machine load
// (other processes, clock changes) rather than one getting a quiet stretch.
std::pair<double, double> median_forward_seconds(nn::Model& a, nn::Model& b, const Tensor& x,
                                                 int reps) {
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  auto time_one = [&](nn::Model& m) {
    Stopwatch w;
    autograd::Var y = m.forward(autograd::Var(x), ctx);
    return w.seconds();
  };
  for (int i = 0; i < 5; ++i) time_one(a), time_one(b);
  std::vector<double> ta(static_cast<size_t>(reps)), tb(static_cast<size_t>(reps));
  for (size_t i = 0; i < ta.size(); ++i) {
    ta[i] = time_one(a);
    tb[i] = time_one(b);
  }
  auto median = [](std::vector<double>& t) {
    std::nth_element(t.begin(), t.begin() + static_cast<long>(t.size() / 2), t.end());
    return t[t.size() / 2];
  };
  return {median(ta), median(tb)};
}

Tensor random_input(const nn::Model& m, int64_t batch) {
  std::vector<int64_t> dims{batch};
  dims.insert(dims.end(), m.spec().input.begin(), m.spec().input.end());
  Tensor x = Tensor::empty(Shape(std::span<const int64_t>(dims)));
  Rng r(1);
  for (float& v : x.span_f32()) v = r.uniform(0.0f, 1.0f);
  return x;
}

int run(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "";
  const double keep = argc > 2 ? std::atof(argv[2]) : 0.5;
  std::unique_ptr<nn::Model> dense =
      path.empty() ? nn::Model::build(nn::preset("lenet300"), 0) : train::load_model(path);
  const prune::UnitSelection units = prune::select_units_l1(*dense, keep);
  std::unique_ptr<nn::Model> small = prune::shrink(*dense, units);

  std::printf("model %s (%s), keep %.2f of hidden units (L1)\n", dense->spec().name.c_str(),
              path.empty() ? "untrained, seed 0" : path.c_str(), keep);
  std::printf("widths:");
  for (const auto& k : units.keep) std::printf(" %zu", k.size());
  std::printf("\n\n%-26s %14s %14s %8s\n", "", "dense", "shrunk", "ratio");
  auto row = [](const char* what, double a, double b, const char* fmt) {
    char sa[32], sb[32];
    std::snprintf(sa, sizeof sa, fmt, a);
    std::snprintf(sb, sizeof sb, fmt, b);
    std::printf("%-26s %14s %14s %7.2fx\n", what, sa, sb, a / b);
  };
  row("parameters", double(dense->num_parameters()), double(small->num_parameters()), "%.0f");
  row("parameter bytes", double(param_bytes(*dense)), double(param_bytes(*small)), "%.0f");
  const std::string tmp = (std::filesystem::temp_directory_path() / "structured_bench").string();
  row("saved model file bytes", double(saved_bytes(*dense, tmp + "_dense.bin")),
      double(saved_bytes(*small, tmp + "_small.bin")), "%.0f");
  row("MACs / sample", double(dense->forward_macs()), double(small->forward_macs()), "%.0f");
  for (const auto& [batch, reps] : {std::pair<int64_t, int>{1000, 200}, {1, 20000}}) {
    const Tensor x = random_input(*dense, batch);
    const auto [a, b] = median_forward_seconds(*dense, *small, x, reps);
    char what[64];
    std::snprintf(what, sizeof what, "forward batch %lld (us)", static_cast<long long>(batch));
    row(what, a * 1e6, b * 1e6, "%.1f");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "structured_bench: %s\n", e.what());
    return 1;
  }
}
