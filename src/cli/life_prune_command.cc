// `pare life-prune` and `pare life-filters` (life_prune_command.h).
#include "pare/cli/life_prune_command.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/base/thread_pool.h"
#include "pare/cli/common.h"
#include "pare/cli/format_commands.h"
#include "pare/experiments/lottery.h"
#include "pare/train/trainer.h"

namespace pare::cli {

using json = nlohmann::json;

LifePruneCommand::LifePruneCommand(CLI::App& app) {
  prune_ = app.add_subcommand(
      "life-prune",
      "prune a life net that solved Life by magnitude (with and without rewinding) as far as it still solves it, "
      "then test the ticket against fresh inits and the minimal net");
  auto& c = cfg_;
  auto& r = cfg_.recipe;
  prune_->add_option("--steps", c.n, "Game of Life steps n")->capture_default_str();
  prune_->add_option("--width", c.m, "width factor m of the dense net")->capture_default_str();
  prune_->add_option("--seed", c.seed, "the dense net's init, boards and batch order")->capture_default_str();
  prune_->add_option("--modes", c.modes, "searches to run: rewind,finetune")->delimiter(',')->capture_default_str();
  prune_->add_option("--rate", c.rate, "fraction of the alive weights removed per round (halved on a failed round)")
      ->capture_default_str();
  prune_->add_option("--score", c.score, "global ranking of the alive weights: magnitude | lamp (layer-adaptive magnitude)")
      ->capture_default_str();
  prune_->add_option("--round-epochs", c.round_epochs, "epochs per pruning training at most (0: --epochs)")
      ->capture_default_str();
  prune_->add_option("--max-trainings", c.max_trainings, "trainings per search, retries included")
      ->capture_default_str();
  prune_->add_option("--channels", c.channels,
                     "when removing the smallest weight fails: hidden channels tried whole, least |in|*|out| L1 "
                     "first (0: none)")
      ->capture_default_str();
  prune_->add_option("--alternatives", c.alternatives,
                     "when removing the smallest weight fails: single weights tried further down the ranking, "
                     "after the channels (0: none)")
      ->capture_default_str();
  prune_->add_option("--tries", c.tries, "ticket test: runs per arm (0: no ticket test)")->capture_default_str();
  prune_->add_option("--test-epochs", c.test_epochs, "ticket test: epochs per run at most (0: --epochs)")
      ->capture_default_str();
  prune_->add_option("--try-seed", c.try_seed, "ticket test: try k uses the boards and order of seed S + k")
      ->capture_default_str();
  prune_->add_option("--examples", r.examples, "training boards (one epoch)")->capture_default_str();
  prune_->add_option("--test-examples", r.test_examples, "fresh test boards, density uniform per board")
      ->capture_default_str();
  prune_->add_option("--batch", r.batch, "boards per step")->capture_default_str();
  prune_->add_option("--epochs", r.epochs, "passes over the training boards at most (the dense net)")
      ->capture_default_str();
  prune_->add_option("--lr", r.lr, "Adam learning rate")->capture_default_str();
  prune_->add_option("--weight-decay", r.weight_decay, "L2 regularisation (Adam)")->capture_default_str();
  prune_->add_option("--board-size", r.board, "board side in cells (toroidal)")->capture_default_str();
  prune_->add_option("--density", r.density, "fixed initial density of the training boards (default: uniform per board)");
  prune_->add_option("--jobs", c.jobs, "trainings at once, one thread each (default: the cores this process may use)");
  prune_->add_option("--out", c.out_dir, "study directory (default: runs/life-prune-<hash of the non-default settings>)");
  prune_->add_flag("--json", json_, "print JSON lines on stdout instead of text");
  prune_->add_flag("--quiet", quiet_, "print only the results");

  filters_ = app.add_subcommand("life-filters",
                                "print the filters of a saved life net (3x3 kernels and biases per live channel)");
  filters_->add_option("model_file", model_file_, "a life net saved by pare (model.bin, smallest.bin)")->required();
}

int LifePruneCommand::run() {
  if (*prune_) return run_prune();
  if (*filters_) return run_filters();
  return -1;
}

int LifePruneCommand::run_filters() {
  auto model = load_any_model(model_file_);
  const experiments::ChannelReduction r = experiments::reduce_channels(*model);
  std::cout << model->spec().name << ": " << r.weights_alive << " weights alive; " << r.live_weights
            << " live weights + " << r.live_biases << " live biases = " << r.parameters()
            << " parameters; dense architecture " << r.architecture << " (" << r.dense_parameters
            << " parameters)\n"
            << experiments::describe_filters(*model);
  return 0;
}

int LifePruneCommand::run_prune() {
  experiments::LifePruneConfig cfg = cfg_;
  if (cfg.jobs == 0) cfg.jobs = default_num_threads();
  if (cfg.out_dir.empty())
    cfg.out_dir = "runs/" + experiments::settings_dir_name(
                                "life-prune", non_default_settings(prune_, {"--out", "--jobs", "--json", "--quiet",
                                                                            "--tries", "--modes"}));
  cfg.validate();
  const bool lines = !quiet_ && !json_;
  if (lines)
    std::cerr << "life pruning: n " << cfg.n << ", m " << cfg.m << ", seed " << cfg.seed << " in " << cfg.out_dir
              << std::endl;
  experiments::LifePruneObserver obs;
  obs.on_dense = [&](const experiments::LifeRun& d) {
    if (json_)
      std::cout << json{{"event", "dense"}, {"success", d.success}, {"steps", d.steps}, {"parameters", d.parameters}}
                       .dump()
                << std::endl;
    else if (lines)
      std::cout << "dense net (" << d.parameters << " parameters): "
                << (d.success ? "solved in " : "not solved after ") << d.steps << " steps"
                << (d.skipped ? " [done before]" : "") << std::endl;
  };
  obs.on_step = [&](const experiments::PruneStep& s) {
    if (json_)
      std::cout << json{{"event", "step"}, {"mode", s.mode}, {"round", s.round}, {"attempt", s.attempt},
                        {"alive_before", s.alive_before}, {"removed", s.removed}, {"solved", s.solved},
                        {"steps", s.steps}, {"test_exact", s.exact}, {"skipped", s.skipped}}
                       .dump()
                << std::endl;
    else if (lines)
      std::cout << s.mode << " round " << s.round << " try " << s.attempt << ": " << s.alive_before << " -> "
                << s.alive_after << " weights, "
                << (s.solved ? "solved" : "not solved (" + fmt("%.1f%%", 100 * s.exact) + " of boards)") << " after "
                << s.steps << " steps" << (s.skipped ? " [done before]" : "") << std::endl;
  };
  obs.on_try = [&](const std::string& arm, const experiments::LifeRun& r) {
    if (json_)
      std::cout << json{{"event", "try"}, {"arm", arm}, {"seed", r.seed}, {"success", r.success}, {"steps", r.steps},
                        {"skipped", r.skipped}}
                       .dump()
                << std::endl;
    else if (lines)
      std::cout << "ticket test " << arm << " seed " << r.seed << ": "
                << (r.success ? "solved in " : "not solved after ") << r.steps << " steps"
                << (r.skipped ? " [done before]" : "") << std::endl;
  };
  const experiments::LifePruneResult res = experiments::run_life_prune(cfg, obs);
  if (json_)
    std::cout << json{{"event", "end"}, {"out", cfg.out_dir}, {"results", cfg.out_dir + "/results.json"}}.dump()
              << std::endl;
  else
    std::cout << res.markdown << "\nresults in " << cfg.out_dir << "/results.md" << std::endl;
  return res.dense.success ? 0 : 2;
}

}  // namespace pare::cli
