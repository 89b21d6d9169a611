// `pare`: the command line. Parses flags, calls the library, prints results,
// and turns errors into one line on stderr and a non-zero exit code.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/base/clock.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/cli/progress.h"
#include "pare/data/data.h"
#include "pare/kernels/kernels.h"
#include "pare/train/trainer.h"

namespace {

using json = nlohmann::json;
using namespace pare;

constexpr const char* kVersion = "0.1.0";

struct DataOptions {
  std::string data = "fashion-mnist";  // fashion-mnist | life | X.csv | X.npy
  std::string labels;                  // Y.npy for an .npy dataset
  std::string test;                    // test inputs (.csv / .npy)
  std::string test_labels;             // test labels (.npy)
  int64_t examples = 10000;            // life: training boards
  int64_t test_examples = 1000;        // life: test boards
  int life_steps = 1;
  int width = 1;
  int board = 32;
  float density = -1;                  // life: fixed density; <0 = uniform per board
  bool normalize = false;              // standardise inputs with the training split's mean/std
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

data::Dataset load_file_dataset(const std::string& path, const std::string& labels, const char* what) {
  if (ends_with(path, ".csv")) return data::read_csv(path);
  if (ends_with(path, ".npy")) {
    if (labels.empty()) fail(what, " ", path, " is an .npy file: give its targets with --labels/--test-labels Y.npy");
    return data::npy_dataset(path, labels);
  }
  fail("--data ", path, ": use fashion-mnist, life, a .csv file or an .npy file");
}

data::TrainTest load_raw_data(const DataOptions& o, uint64_t seed) {
  if (o.data == "fashion-mnist") return data::fashion_mnist();
  if (o.data == "life") {
    if (o.examples < 1 || o.test_examples < 1) fail("--examples and --test-examples must be at least 1");
    data::LifeConfig cfg{.size = o.board, .steps = o.life_steps, .density = o.density};
    Rng train_rng = Rng(seed).fork(0x11FE);
    Rng test_rng = Rng(seed).fork(0x7E57);
    return {data::life_boards(o.examples, cfg, train_rng), data::life_boards(o.test_examples, cfg, test_rng)};
  }
  data::TrainTest tt;
  tt.train = load_file_dataset(o.data, o.labels, "--data");
  if (!o.test.empty()) tt.test = load_file_dataset(o.test, o.test_labels, "--test");
  return tt;
}

// Loads the data; with --normalize, standardises it and records the
// statistics in the spec so the saved model carries them.
data::TrainTest load_data(const DataOptions& o, uint64_t seed, nn::ModelSpec* spec) {
  data::TrainTest tt = load_raw_data(o, seed);
  if (o.normalize) {
    if (!spec) fail("--normalize applies to training; a saved model applies its own statistics");
    data::Normalization n = data::standardize(tt);
    spec->input_mean = n.mean;
    spec->input_std = n.std;
  }
  return tt;
}

nn::ModelSpec load_spec(const std::string& model, const DataOptions& o) {
  if (ends_with(model, ".json")) return nn::parse_model_spec(read_file(model), model);
  return nn::preset(model, {.life_steps = o.life_steps, .width = o.width, .board = o.board});
}

void add_data_options(CLI::App* cmd, DataOptions& o) {
  cmd->add_option("--data", o.data, "fashion-mnist | life | FILE.csv | FILE.npy")->capture_default_str();
  cmd->add_option("--labels", o.labels, "targets for an .npy --data (Y.npy)");
  cmd->add_option("--test", o.test, "test set for a file --data (.csv or .npy)");
  cmd->add_option("--test-labels", o.test_labels, "targets for an .npy --test");
  cmd->add_option("--examples", o.examples, "life: training boards")->capture_default_str();
  cmd->add_option("--test-examples", o.test_examples, "life: test boards")->capture_default_str();
  cmd->add_option("--life-steps", o.life_steps, "life: Game of Life steps n (data and model)")->capture_default_str();
  cmd->add_option("--width", o.width, "life: width factor m of the life model")->capture_default_str();
  cmd->add_option("--board-size", o.board, "life: board side in cells")->capture_default_str();
  cmd->add_option("--density", o.density, "life: fixed initial density (default: uniform per board)");
  cmd->add_flag("--normalize", o.normalize, "standardise inputs with the training split's mean and std");
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

int run_train(const train::TrainConfig& cfg_in, const std::string& model_name, const DataOptions& dopt,
              int threads, bool as_json, bool quiet, bool overwrite) {
  train::TrainConfig cfg = cfg_in;
  set_num_threads(threads);
  cfg.validate();
  if (!cfg.out_dir.empty() && !cfg.resume && file_exists(cfg.out_dir + "/log.jsonl")) {
    if (!overwrite)
      fail("--out ", cfg.out_dir, " already holds a run: add --resume to continue it, --overwrite to replace it, or choose another directory");
    for (const char* f : {"/log.jsonl", "/checkpoint.bin", "/model.bin"}) std::filesystem::remove(cfg.out_dir + f);
  }
  nn::ModelSpec spec = load_spec(model_name, dopt);
  data::TrainTest data = load_data(dopt, cfg.seed, &spec);
  auto model = nn::Model::build(spec, cfg.seed);
  if (!quiet && !as_json) {
    std::cerr << model->summary() << "\n";
    std::cerr << "data " << dopt.data << ": " << data.train.size() << " train, " << data.test.size()
              << " test samples; " << threads << " threads\n";
  }
  cli::Progress progress(!quiet && !as_json);
  train::Observer obs;
  if (progress.on_terminal() && !quiet && !as_json)  // per step: only when a bar is drawn
    obs.on_step = [&](int64_t epoch, int64_t batch, int64_t batches, double loss) {
      progress.update(batch, batches, "epoch " + std::to_string(epoch) + "/" + std::to_string(cfg.epochs),
                      fmt("loss %.4f", loss));
    };
  obs.on_epoch = [&](const train::EpochResult& e) {
    progress.finish();
    if (as_json) {
      std::cout << json{{"event", "epoch"}, {"epoch", e.epoch}, {"train_loss", e.train_loss},
                        {"train_seconds", e.train_seconds}, {"samples_per_second", e.samples_per_second},
                        {"test_loss", e.test.loss}, {"test_accuracy", e.test.accuracy},
                        {"test_exact", e.test.exact}}
                       .dump()
                << std::endl;
    } else if (!quiet) {
      std::cout << "epoch " << e.epoch << "/" << cfg.epochs << "  train loss " << fmt("%.4f", e.train_loss)
                << "  test loss " << fmt("%.4f", e.test.loss) << "  test accuracy "
                << fmt("%.2f%%", 100 * e.test.accuracy);
      if (spec.loss == "bce_with_logits") std::cout << "  boards all-correct " << fmt("%.1f%%", 100 * e.test.exact);
      std::cout << "  " << fmt("%.2f s", e.train_seconds) << " (" << fmt("%.0f", e.samples_per_second)
                << " samples/s)" << std::endl;
    }
  };
  train::TrainResult r = train::fit(*model, data.train, data.test, cfg, obs);
  progress.finish();  // a run stopped mid-epoch leaves its bar open
  if (as_json) {
    std::cout << json{{"event", "end"}, {"model", spec.name}, {"steps", r.steps},
                      {"stopped_because", r.stopped_because}, {"test_accuracy", r.final_test.accuracy},
                      {"test_loss", r.final_test.loss}, {"seconds", r.seconds}, {"cpu_seconds", r.cpu_seconds},
                      {"peak_rss_bytes", peak_rss_bytes()}, {"resumed", r.resumed}}
                     .dump()
              << std::endl;
  } else {
    std::cout << "test accuracy " << fmt("%.2f%%", 100 * r.final_test.accuracy) << " (" << spec.name << ", "
              << r.epochs.size() << " epochs this run, " << r.steps << " steps, " << fmt("%.1f s", r.seconds);
    if (!cfg.out_dir.empty()) std::cout << "; model saved to " << cfg.out_dir << "/model.bin";
    std::cout << ")" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pare: train neural networks cheaply on a CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion);

  // ---- train ----
  train::TrainConfig cfg;
  DataOptions dopt;
  std::string model_name;
  int threads = default_num_threads();
  bool as_json = false, quiet = false, overwrite = false;
  auto* t = app.add_subcommand("train", "train a model; writes DIR/log.jsonl, checkpoint.bin, model.bin");
  t->add_option("--model", model_name, "lenet300 | lenet5 | conv2 | life | SPEC.json")->required();
  add_data_options(t, dopt);
  t->add_option("--epochs", cfg.epochs, "passes over the training set")->capture_default_str();
  t->add_option("--batch", cfg.batch, "samples per step")->capture_default_str();
  t->add_option("--optimizer", cfg.optimizer.name, "sgd | adam | adamw")->capture_default_str();
  t->add_option("--lr", cfg.optimizer.lr, "learning rate")->capture_default_str();
  t->add_option("--momentum", cfg.optimizer.momentum, "sgd momentum")->capture_default_str();
  t->add_flag("--nesterov", cfg.optimizer.nesterov, "sgd: Nesterov momentum");
  t->add_option("--weight-decay", cfg.optimizer.weight_decay, "L2 (sgd, adam) or decoupled (adamw)")->capture_default_str();
  t->add_option("--beta1", cfg.optimizer.beta1, "adam beta1")->capture_default_str();
  t->add_option("--beta2", cfg.optimizer.beta2, "adam beta2")->capture_default_str();
  t->add_option("--eps", cfg.optimizer.eps, "adam epsilon")->capture_default_str();
  t->add_option("--schedule", cfg.schedule.name, "lr schedule: constant | step | cosine")->capture_default_str();
  t->add_option("--warmup", cfg.schedule.warmup_steps, "linear lr warm-up steps")->capture_default_str();
  t->add_option("--lr-step-size", cfg.schedule.step_size, "step schedule: steps between decays");
  t->add_option("--gamma", cfg.schedule.gamma, "step schedule: decay factor")->capture_default_str();
  t->add_option("--lr-min", cfg.schedule.lr_min, "cosine schedule: final lr")->capture_default_str();
  t->add_option("--seed", cfg.seed, "seed for weights, batch order and dropout")->capture_default_str();
  t->add_option("--threads", threads, "worker threads (default: the cores this process may use)")->capture_default_str();
  t->add_option("--out", cfg.out_dir, "run directory (log.jsonl, checkpoint.bin, model.bin)");
  t->add_flag("--resume", cfg.resume, "continue the run in --out from its checkpoint");
  t->add_flag("--overwrite", overwrite, "replace a finished or interrupted run in --out");
  t->add_option("--checkpoint-every", cfg.checkpoint_every, "steps between checkpoints (0: every epoch)")->capture_default_str();
  t->add_option("--patience", cfg.patience, "early stopping: epochs without test-loss improvement (0: off)")->capture_default_str();
  t->add_option("--target-accuracy", cfg.target_accuracy, "stop once test accuracy reaches this fraction");
  t->add_option("--max-steps", cfg.max_steps, "stop after this many steps (0: no limit)");
  t->add_option("--parallel", cfg.parallel, "how a step uses the threads: auto | data (split the batch) | ops (split each op)")->capture_default_str();
  t->add_flag("--json", as_json, "print JSON lines on stdout instead of text");
  t->add_flag("--quiet", quiet, "print only the final line");

  // ---- eval ----
  std::string model_file;
  DataOptions eval_data;
  int eval_threads = default_num_threads();
  bool eval_json = false;
  auto* e = app.add_subcommand("eval", "evaluate a saved model (DIR/model.bin) on a test set");
  e->add_option("model_file", model_file, "a model saved by pare train (model.bin)")->required();
  add_data_options(e, eval_data);
  e->add_option("--threads", eval_threads, "worker threads")->capture_default_str();
  e->add_flag("--json", eval_json, "print JSON");

  // ---- info ----
  auto* info = app.add_subcommand("info", "what was built: version, compiler, BLAS, threads, presets");
  bool info_json = false;
  info->add_flag("--json", info_json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }

  try {
    if (*t) return run_train(cfg, model_name, dopt, threads, as_json, quiet, overwrite);
    if (*e) {
      set_num_threads(eval_threads);
      auto model = train::load_model(model_file);
      data::TrainTest d = load_data(eval_data, 0, nullptr);
      if (model->spec().input_std > 0)
        for (data::Dataset* set : {&d.train, &d.test})
          if (set->size() > 0)
            data::standardize_with(*set, {model->spec().input_mean, model->spec().input_std});
      const data::Dataset& set = d.test.size() > 0 ? d.test : d.train;
      Stopwatch sw;
      train::EvalResult r = train::evaluate(*model, set, 1000);
      if (eval_json)
        std::cout << json{{"model", model->spec().name}, {"samples", r.samples}, {"loss", r.loss},
                          {"accuracy", r.accuracy}, {"exact", r.exact}, {"seconds", sw.seconds()}}
                         .dump()
                  << std::endl;
      else
        std::cout << model->spec().name << " on " << r.samples << " samples: accuracy "
                  << fmt("%.2f%%", 100 * r.accuracy) << ", loss " << fmt("%.4f", r.loss) << std::endl;
      return 0;
    }
    if (*info) {
      json j{{"version", kVersion},
             {"compiler", __VERSION__},
             {"cxx_standard", __cplusplus},
#if defined(__AVX512F__)
             {"simd", "avx512"},
#elif defined(__AVX2__)
             {"simd", "avx2"},
#else
             {"simd", "portable"},
#endif
             {"blas", kernels::blas_description()},
             {"threads", default_num_threads()},
             {"presets", nn::preset_names()},
             {"optimizers", optim::optimizer_names()},
             {"layers", nn::layer_types()}};
      if (info_json) {
        std::cout << j.dump() << std::endl;
      } else {
        for (auto& [k, v] : j.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
      }
      return 0;
    }
  } catch (const pare::Error& err) {
    std::cerr << "pare: error: " << err.what() << std::endl;
    return 1;
  } catch (const std::exception& err) {
    std::cerr << "pare: internal error: " << err.what() << std::endl;
    return 3;
  }
  return 0;
}
