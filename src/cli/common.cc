// What the subcommands share (common.h).
#include "pare/cli/common.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/base/file.h"
#include "pare/base/strings.h"
#include "pare/base/rng.h"

namespace pare::cli {

namespace {

data::Dataset load_file_dataset(const std::string& path, const std::string& labels, const char* what) {
  if (path.ends_with(".csv")) return data::read_csv(path);
  if (path.ends_with(".npy")) {
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

}  // namespace

data::Dataset select_classes_for(const data::Dataset& d, const std::vector<int>& classes, const char* flag) {
  try {
    return data::select_classes(d, classes);
  } catch (const Error& e) {
    fail(flag, ": ", e.what());  // a class out of range, a set without class labels
  }
}

// Loads the data; with --normalize, standardises it and records the
// statistics in the spec so the saved model carries them.
data::TrainTest load_data(const DataOptions& o, uint64_t seed, nn::ModelSpec* spec) {
  data::TrainTest tt = load_raw_data(o, seed);
  if (o.holdout != 0) tt = data::split_last(tt.train, o.holdout);  // before the statistics
  if (!o.train_classes.empty()) tt.train = select_classes_for(tt.train, o.train_classes, "--train-classes");
  if (!o.test_classes.empty()) {
    if (tt.test.size() == 0) fail("--test-classes: there is no test split to select from (give --test, or --holdout N)");
    tt.test = select_classes_for(tt.test, o.test_classes, "--test-classes");
  }
  if (o.normalize) {
    if (!spec) fail("--normalize applies to training; a saved model applies its own statistics");
    data::Normalization n = data::standardize(tt);
    spec->input_mean = n.mean;
    spec->input_std = n.std;
  }
  return tt;
}

nn::ModelSpec load_spec(const std::string& model, const DataOptions& o) {
  if (model.ends_with(".json")) return nn::parse_model_spec(read_file(model), model);
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
  cmd->add_option("--train-classes", o.train_classes,
                  "train only on these classes, e.g. 3,4 (the test split keeps every class)")
      ->delimiter(',');
  cmd->add_option("--test-classes", o.test_classes,
                  "evaluate only on these classes of the test split (or of the --holdout samples), e.g. 3,4")
      ->delimiter(',');
  cmd->add_option("--holdout", o.holdout,
                  "hold out the last N training samples and evaluate on them instead of the "
                  "test split (choose settings without looking at the test set)");
}

std::string fmt(const char* f, double v) { return strf(f, v); }

void standardize_for(const nn::Model& model, data::TrainTest& d) {
  if (model.spec().input_std <= 0) return;
  for (data::Dataset* set : {&d.train, &d.test})
    if (set->size() > 0) data::standardize_with(*set, {model.spec().input_mean, model.spec().input_std});
}

void add_recipe_options(CLI::App* t, train::TrainConfig& cfg) {
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
  t->add_option("--checkpoint-every", cfg.checkpoint_every, "steps between checkpoints (0: every epoch)")->capture_default_str();
  t->add_option("--patience", cfg.patience, "early stopping: epochs without test-loss improvement (0: off)")->capture_default_str();
  t->add_option("--target-accuracy", cfg.target_accuracy, "stop once test accuracy reaches this fraction");
  t->add_option("--max-steps", cfg.max_steps, "stop after this many steps (0: no limit)");
  t->add_option("--on-nan", cfg.on_nan,
                "when the loss or a gradient is not finite: stop (say where) | skip (the batch) | rollback (to the last checkpoint, half the lr)")
      ->capture_default_str();
  t->add_option("--grad-spike", cfg.grad_spike,
                "report a gradient norm above this many times its typical value (0: off)")
      ->capture_default_str();
  t->add_option("--shards", cfg.shards,
                "cut each batch into this many shards, each on one thread, summed in order: the same bits on any number of MPI ranks up to it (0: the usual step alone; ranks x threads under mpirun)")
      ->capture_default_str();
  t->add_option("--parallel", cfg.parallel, "how a step uses the threads: auto | data (split the batch) | ops (split each op)")->capture_default_str();
  t->add_option("--sparse", cfg.sparse_kernels,
                "masked linear layers: auto (sparse kernels below the crossover density measured on this machine) | on | off (dense on the masked weights)")
      ->capture_default_str();
  // The cost ledger (docs/cost.md): how energy becomes CO2e and time money.
  auto* grid = t->add_option("--grid-intensity", cfg.cost.grid_g_per_kwh,
                             "cost ledger: grams of CO2e per kWh of the electricity (default: world average, IEA 2019)")
                   ->capture_default_str();
  t->add_option("--region", cfg.cost.region,
                "cost ledger: where the electricity comes from, for its CO2e: world, or a country's ISO code (FRA, USA, DEU, ...; docs/cost.md)")
      ->capture_default_str()
      ->excludes(grid)
      ->check([](const std::string& r) {
        try {
          train::grid_intensity_of(r);
          return std::string();
        } catch (const Error& e) {
          return std::string(e.what());
        }
      })
      ->each([&cfg](const std::string& r) { cfg.cost.grid_g_per_kwh = train::grid_intensity_of(r); });
  t->add_option("--pue", cfg.cost.pue, "cost ledger: data-centre power usage effectiveness (1: a machine on a desk)")
      ->capture_default_str();
  t->add_option("--price-per-core-hour", cfg.cost.price_per_core_hour,
                "cost ledger: USD per core-hour, billed for every worker thread over the wall time (default: AWS c6i on demand)")
      ->capture_default_str();
  t->add_option("--watts-per-core", cfg.cost.watts_per_core,
                "cost ledger: power of a busy core for the energy estimate when RAPL is not readable (0: pare's model for this CPU)")
      ->capture_default_str();
}

std::string non_default_settings(const CLI::App* cmd, const std::vector<std::string>& ignore) {
  std::vector<std::string> parts;
  for (const CLI::Option* o : cmd->get_options()) {
    const std::string name = o->get_name(false, true);
    // The cost ledger's settings price a run; they do not change what it computes.
    static const std::vector<std::string> pricing = {"--grid-intensity", "--region", "--pue",
                                                     "--price-per-core-hour", "--watts-per-core"};
    if (o->count() == 0 || std::find(ignore.begin(), ignore.end(), name) != ignore.end() ||
        std::find(pricing.begin(), pricing.end(), name) != pricing.end())
      continue;
    std::string value;
    for (const auto& r : o->results()) value += (value.empty() ? "" : ",") + r;
    // CLI11 shows a list default as "[1,2,4,8]"; the value given reads "1,2,4,8".
    std::string fallback = o->get_default_str();
    std::erase_if(fallback, [](char c) { return c == '[' || c == ']' || c == ' '; });
    if (value == fallback) continue;
    parts.push_back(name + "=" + value);
  }
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) out += p + " ";
  return out;
}

nlohmann::json sparsity_json(const prune::SparsityReport& r) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& l : r.layers) a.push_back({{"name", l.name}, {"total", l.total}, {"kept", l.kept}, {"density", l.density()}});
  return a;
}

void print_sparsity(const prune::SparsityReport& r) {
  for (const auto& l : r.layers)
    std::cout << "  " << l.name << ": " << l.kept << " of " << l.total << " weights kept ("
              << fmt("%.2f%%", 100 * l.density()) << ")\n";
  std::cout << "  all: " << r.kept << " of " << r.total << " (" << fmt("%.2f%%", 100 * r.density())
            << " kept, sparsity " << fmt("%.2f%%", 100 * r.sparsity()) << ")" << std::endl;
}

const char* eval_split_name(const DataOptions& o) { return o.holdout != 0 ? "holdout" : "test"; }

nlohmann::json data_options_json(const DataOptions& o) {
  nlohmann::json j = {{"data", o.data},
          {"labels", o.labels},
          {"test", o.test},
          {"test_labels", o.test_labels},
          {"examples", o.examples},
          {"test_examples", o.test_examples},
          {"life_steps", o.life_steps},
          {"width", o.width},
          {"board", o.board},
          {"density", o.density},
          {"normalize", o.normalize},
          {"train_classes", o.train_classes},
          {"holdout", o.holdout}};
  // Only when given, so that run directories made before the flag existed
  // keep their settings.
  if (!o.test_classes.empty()) j["test_classes"] = o.test_classes;
  return j;
}

train::Observer epoch_printer(Progress& progress, int64_t epochs, bool as_json, bool quiet, bool binary,
                              const char* split) {
  const std::string name = split;
  train::Observer obs;
  if (progress.on_terminal() && !quiet && !as_json)  // per step: only when a bar is drawn
    obs.on_step = [&progress, epochs](int64_t epoch, int64_t batch, int64_t batches, double loss) {
      progress.update(batch, batches, "epoch " + std::to_string(epoch) + "/" + std::to_string(epochs),
                      fmt("loss %.4f", loss));
    };
  obs.on_epoch = [&progress, epochs, as_json, quiet, binary, name](const train::EpochResult& e) {
    progress.finish();
    if (as_json) {
      std::cout << nlohmann::json{{"event", "epoch"}, {"epoch", e.epoch}, {"train_loss", e.train_loss},
                                  {"train_seconds", e.train_seconds},
                                  {"samples_per_second", e.samples_per_second},
                                  {"test_loss", e.test.loss}, {"test_accuracy", e.test.accuracy},
                                  {"test_exact", e.test.exact}, {"sparsity", e.sparsity}}
                       .dump()
                << std::endl;
    } else if (!quiet) {
      std::cout << "epoch " << e.epoch << "/" << epochs << "  train loss " << fmt("%.4f", e.train_loss)
                << "  " << name << " loss " << fmt("%.4f", e.test.loss) << "  " << name << " accuracy "
                << fmt("%.2f%%", 100 * e.test.accuracy);
      if (binary) std::cout << "  boards all-correct " << fmt("%.1f%%", 100 * e.test.exact);
      if (e.sparsity > 0) std::cout << "  sparsity " << fmt("%.1f%%", 100 * e.sparsity);
      std::cout << "  " << fmt("%.2f s", e.train_seconds) << " (" << fmt("%.0f", e.samples_per_second)
                << " samples/s)" << std::endl;
    }
  };
  obs.on_warning = [&progress, as_json](const std::string& message) {
    progress.finish();
    if (as_json)
      std::cout << nlohmann::json{{"event", "warning"}, {"message", message}}.dump() << std::endl;
    else
      std::cerr << std::string("pare: warning: ") + message + "\n" << std::flush;
  };
  return obs;
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  // Optimal string alignment distance (Damerau-Levenshtein without
  // repeated edits of a substring).
  auto distance = [](const std::string& a, const std::string& b) {
    const size_t n = a.size(), m = b.size();
    std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
    for (size_t i = 0; i <= n; ++i) d[i][0] = i;
    for (size_t j = 0; j <= m; ++j) d[0][j] = j;
    for (size_t i = 1; i <= n; ++i)
      for (size_t j = 1; j <= m; ++j) {
        d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
          d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    return d[n][m];
  };
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const std::string& c : candidates) {
    const size_t dist = distance(word, c);
    if (dist < best_distance) {
      best = c;
      best_distance = dist;
    }
  }
  const size_t letters = word.size() - std::min<size_t>(word.find_first_not_of('-'), word.size());
  return best_distance <= 2 && 2 * best_distance < letters ? best : std::string();
}

std::string parse_error_message(const CLI::App& app, int argc, const char* const* argv,
                                const CLI::ParseError& err) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // The command: the first word that is not an option.
  const CLI::App* command = nullptr;
  std::string first;
  for (const std::string& a : args)
    if (a.empty() || a[0] != '-') {
      first = a;
      break;
    }
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands({})) {
    commands.push_back(sub->get_name());
    if (sub->get_name() == first) command = sub;
  }
  if (!first.empty() && !command) {
    const std::string near = closest(first, commands);
    return "unknown command " + first + (near.empty() ? "" : " (did you mean " + near + "?)") +
           "; pare --help lists the commands";
  }
  if (command && dynamic_cast<const CLI::ExtrasError*>(&err) != nullptr) {
    std::vector<std::string> names;
    for (const CLI::Option* o : command->get_options({}))
      for (const std::string& l : o->get_lnames()) names.push_back("--" + l);
    for (const std::string& a : args) {
      if (a.rfind("--", 0) != 0) continue;
      const std::string flag = a.substr(0, a.find('='));
      if (std::find(names.begin(), names.end(), flag) != names.end()) continue;
      const std::string near = closest(flag, names);
      return "unknown option " + flag + " for pare " + command->get_name() +
             (near.empty() ? "" : " (did you mean " + near + "?)") + "; pare " + command->get_name() +
             " --help lists the options";
    }
  }
  std::string msg = err.what();
  for (char& c : msg)
    if (c == '\n' || c == '\r') c = ' ';
  while (!msg.empty() && msg.back() == ' ') msg.pop_back();
  return msg + " (pare --help lists the commands, pare COMMAND --help the options)";
}

}  // namespace pare::cli
