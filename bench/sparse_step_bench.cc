// Issue #5's training-step figure: one LeNet-300-100 training step (forward +
// backward through train::StepRunner, then an Adam update) on a random batch
// of 60, with every weight pruned per layer to a sparsity S, in three settings:
//
//   dense         the model without masks (what an unpruned step costs)
//   masked-dense  masks, layers forced dense (--sparse off): zeros multiplied
//   sparse        masks, layers forced sparse (--sparse on): CSR products,
//                 weight gradient only at the pattern, Adam over the nonzeros
//
// The three models step in turn (dense, masked-dense, sparse, dense, ...) so
// that all see the same machine load; the median of REPS steps after WARMUP
// is reported, at threads 1 and 2, for S = 0.9, 0.95, 0.98 and magnitude or
// random masks. Also reports what --sparse auto would choose per layer.
// Output: one JSON object per line (stdout), then a table (stdout).
// Not part of the tests; run by bench/sparse_imp.sh or by hand:
//
//   ./build/bench/sparse_step_bench [reps=1000] [warmup=100] [threads="1,2"] [sparsities="0.9,0.95,0.98"]
//
// PARE_BENCH_PARALLEL=ops|data|auto (default auto, as train::fit chooses)
// forces how a step splits over the threads.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "pare/base/clock.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/nn/module.h"
#include "pare/nn/sparse_dispatch.h"
#include "pare/optim/optimizer.h"
#include "pare/prune/prune.h"
#include "pare/train/step.h"

namespace {

using namespace pare;

constexpr int64_t kBatch = 60;
constexpr float kLr = 1.2e-3f;

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::atof(item.c_str()));
  return v;
}

// Masks every prunable weight of `model` to `sparsity` per layer, by the
// criterion's scores (magnitude of the initial weights, or random).
void mask_model(nn::Model& model, const std::string& criterion, double sparsity) {
  prune::ensure_masks(model);
  prune::ScoreInput in;
  in.seed = 7;
  const prune::Scores scores = prune::criterion(criterion).score(model, in);
  std::vector<int64_t> keep;
  for (const nn::Parameter* p : prune::prunable(model))
    keep.push_back(static_cast<int64_t>(static_cast<double>(p->numel()) * (1.0 - sparsity) + 0.5));
  prune::keep_top_per_layer(model, scores, keep);
  prune::apply_masks(model);
}

struct Setting {
  std::string name;
  std::unique_ptr<nn::Model> model;
  std::unique_ptr<optim::Optimizer> opt;
  std::unique_ptr<train::StepRunner> runner;
  std::vector<double> seconds, fwdbwd, adam;  // whole step, runner.run, optimizer step
  std::string kinds;  // per-layer dispatch
};

// PARE_BENCH_PARALLEL=data|ops|auto (default auto): how the step splits over threads.
std::string parallel_setting() {
  const char* v = std::getenv("PARE_BENCH_PARALLEL");
  return v ? v : "auto";
}

void prepare(Setting& s, nn::SparseMode mode, bool masked) {
  optim::OptimizerConfig cfg;
  cfg.name = "adam";
  cfg.lr = kLr;
  s.opt = optim::make_optimizer(cfg, s.model->parameters());
  s.runner = std::make_unique<train::StepRunner>(
      *s.model, train::choose_parallel_mode(parallel_setting(), *s.model, kBatch, num_threads()));
  if (masked) {
    // As train::fit does: sparse layers train packed when the step splits ops.
    const auto layers =
        nn::dispatch_sparse(*s.model, mode, kBatch, /*training=*/true,
                            /*packed=*/s.runner->mode() == train::ParallelMode::ops);
    for (const auto& d : layers) s.kinds += (s.kinds.empty() ? "" : ",") + d.kind;
  } else {
    s.kinds = "dense";
  }
  s.opt->apply_masks();
}

void step(Setting& s, const Tensor& x, const Tensor& y, uint64_t i, bool keep) {
  Stopwatch w;
  s.runner->run(x, y, Rng(1).fork(i));
  const double a = w.seconds();
  s.opt->step(kLr);
  const double b = w.seconds();
  if (keep) {
    s.seconds.push_back(b);
    s.fwdbwd.push_back(a);
    s.adam.push_back(b - a);
  }
}

double quantile(std::vector<double> v, double q) {
  const auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

struct Row {
  int threads;
  double sparsity;
  std::string mask, parallel;
  double dense_us, masked_us, sparse_us, sparse_fwdbwd_us, sparse_adam_us;
};

int run(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int warmup = argc > 2 ? std::atoi(argv[2]) : 100;
  const std::vector<double> threads = parse_list(argc > 3 ? argv[3] : "1,2");
  const std::vector<double> sparsities = parse_list(argc > 4 ? argv[4] : "0.9,0.95,0.98");

  Tensor x = Tensor::empty(Shape({kBatch, 784}));
  Rng r(3);
  for (float& v : x.span_f32()) v = r.normal();
  std::vector<int32_t> labels(kBatch);
  for (auto& l : labels) l = static_cast<int32_t>(r.below(10));
  const Tensor y = Tensor::from_i32(Shape({kBatch}), labels);

  std::vector<Row> rows;
  for (double t : threads) {
    set_num_threads(static_cast<int>(t));
    for (double s : sparsities) {
      for (const std::string mask : {"magnitude", "random"}) {
        Setting st[3];
        st[0].name = "dense";
        st[0].model = nn::Model::build(nn::preset("lenet300"), 0);
        prepare(st[0], nn::SparseMode::off, false);
        st[1].name = "masked-dense";
        st[1].model = nn::Model::build(nn::preset("lenet300"), 0);
        mask_model(*st[1].model, mask, s);
        prepare(st[1], nn::SparseMode::off, true);
        st[2].name = "sparse";
        st[2].model = nn::Model::build(nn::preset("lenet300"), 0);
        mask_model(*st[2].model, mask, s);
        prepare(st[2], nn::SparseMode::on, true);
        // What --sparse auto would choose for this model (measured crossover, cached).
        std::string auto_kinds;
        {
          auto m = nn::Model::build(nn::preset("lenet300"), 0);
          mask_model(*m, mask, s);
          for (const auto& d : nn::dispatch_sparse(*m, nn::SparseMode::automatic, kBatch, true)) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "%s%s:%.3f<%.3f?%s", auto_kinds.empty() ? "" : " ",
                          d.name.c_str(), d.density, d.crossover, d.kind.c_str());
            auto_kinds += buf;
          }
          nn::clear_sparse(*m);
        }
        for (int i = 0; i < warmup; ++i)
          for (auto& z : st) step(z, x, y, static_cast<uint64_t>(i), false);
        for (int i = 0; i < reps; ++i)
          for (auto& z : st) step(z, x, y, static_cast<uint64_t>(warmup + i), true);
        const std::string parallel = train::parallel_mode_name(st[2].runner->mode());
        double med[3];
        for (int k = 0; k < 3; ++k) {
          med[k] = quantile(st[k].seconds, 0.5);
          std::printf(
              "{\"bench\":\"sparse_step\",\"model\":\"lenet300\",\"batch\":%lld,\"threads\":%d,"
              "\"sparsity\":%.2f,\"mask\":\"%s\",\"setting\":\"%s\",\"layers\":\"%s\","
              "\"parallel\":\"%s\",\"reps\":%d,\"median_us\":%.1f,\"p10_us\":%.1f,\"p90_us\":%.1f,"
              "\"fwd_bwd_median_us\":%.1f,\"adam_median_us\":%.1f}\n",
              static_cast<long long>(kBatch), static_cast<int>(t), s, mask.c_str(),
              st[k].name.c_str(), st[k].kinds.c_str(),
              train::parallel_mode_name(st[k].runner->mode()), reps, med[k] * 1e6,
              quantile(st[k].seconds, 0.1) * 1e6, quantile(st[k].seconds, 0.9) * 1e6,
              quantile(st[k].fwdbwd, 0.5) * 1e6, quantile(st[k].adam, 0.5) * 1e6);
        }
        std::printf(
            "{\"bench\":\"sparse_step_ratio\",\"threads\":%d,\"sparsity\":%.2f,\"mask\":\"%s\","
            "\"dense_over_sparse\":%.2f,\"masked_over_sparse\":%.2f,\"auto\":\"%s\"}\n",
            static_cast<int>(t), s, mask.c_str(), med[0] / med[2], med[1] / med[2],
            auto_kinds.c_str());
        std::fflush(stdout);
        rows.push_back({static_cast<int>(t), s, mask, parallel, med[0] * 1e6, med[1] * 1e6,
                        med[2] * 1e6, quantile(st[2].fwdbwd, 0.5) * 1e6,
                        quantile(st[2].adam, 0.5) * 1e6});
        for (auto& z : st) nn::clear_sparse(*z.model);
      }
    }
  }

  std::printf("\nLeNet-300-100 training step (forward + backward + Adam), batch %lld, median of %d "
              "steps (us)\n",
              static_cast<long long>(kBatch), reps);
  std::printf("%7s %8s %9s %9s %10s %13s %9s %18s %13s %15s\n", "threads", "sparsity", "mask",
              "parallel", "dense", "masked-dense", "sparse", "(fwd+bwd / adam)", "dense/sparse",
              "masked/sparse");
  for (const Row& w : rows)
    std::printf("%7d %8.2f %9s %9s %10.1f %13.1f %9.1f %9.1f / %6.1f %12.2fx %14.2fx%s\n", w.threads,
                w.sparsity, w.mask.c_str(), w.parallel.c_str(), w.dense_us, w.masked_us, w.sparse_us,
                w.sparse_fwdbwd_us, w.sparse_adam_us,
                w.dense_us / w.sparse_us, w.masked_us / w.sparse_us,
                w.sparsity > 0.94 && w.sparsity < 0.96
                    ? (w.dense_us / w.sparse_us >= 4 ? "  (target 4x: met)" : "  (target 4x: NOT met)")
                    : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sparse_step_bench: %s\n", e.what());
    return 1;
  }
}
