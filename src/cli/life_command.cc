// `pare life` (life_command.h).
#include "pare/cli/life_command.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/cli/common.h"
#include "pare/cli/progress.h"
#include "pare/dist/communicator.h"
#include "pare/experiments/lottery.h"

namespace pare::cli {

using json = nlohmann::json;

namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

json run_json(const experiments::LifeRun& r, int done, int total) {
  return {{"event", "run"},         {"n", r.n},
          {"m", r.m},               {"seed", r.seed},
          {"success", r.success},   {"steps", r.steps},
          {"epochs", r.epochs},     {"seconds", r.seconds},
          {"flops", r.flops},       {"parameters", r.parameters},
          {"test_exact", r.exact},  {"test_accuracy", r.accuracy},
          {"skipped", r.skipped},   {"rank", r.rank},
          {"done", done},           {"total", total}};
}

std::string run_line(const experiments::LifeRun& r, int done, int total) {
  std::string s = "run " + std::to_string(done) + "/" + std::to_string(total) + ": n=" + std::to_string(r.n) +
                  " m=" + std::to_string(r.m) + " seed=" + std::to_string(r.seed) + " ";
  if (r.success)
    s += "solved in " + std::to_string(r.steps) + " steps";
  else
    s += "not solved after " + std::to_string(r.steps) + " steps (" + fmt("%.3f%%", 100 * r.accuracy) +
         " of cells, " + fmt("%.1f%%", 100 * r.exact) + " of boards right)";
  s += ", " + fmt("%.1f s", r.seconds);
  if (r.skipped) s += " [done before]";
  return s;
}

}  // namespace

LifeCommand::LifeCommand(CLI::App& app) {
  cmd_ = app.add_subcommand(
      "life", "the Game of Life study: how often the life net of n steps and width m learns the rule exactly");
  auto& c = cfg_;
  auto& r = cfg_.recipe;
  c.widths = {1, 2, 4, 8};
  cmd_->add_option("--steps", c.steps, "Game of Life steps n, a list: 1,2,3")->delimiter(',')->capture_default_str();
  cmd_->add_option("--widths", c.widths, "width factors m, a list: 1,2,4,8")->delimiter(',')->capture_default_str();
  cmd_->add_option("--seeds", c.seeds, "runs per (n, m): seeds 0 .. N-1")->capture_default_str();
  cmd_->add_option("--examples", r.examples, "training boards (one epoch)")->capture_default_str();
  cmd_->add_option("--test-density", r.test_density,
                   "fixed density of the test boards, e.g. 0.38 (default: uniform per board)");
  cmd_->add_option("--test-examples", r.test_examples, "fresh test boards")
      ->capture_default_str();
  cmd_->add_option("--batch", r.batch, "boards per step")->capture_default_str();
  cmd_->add_option("--epochs", r.epochs, "passes over the training boards at most")->capture_default_str();
  cmd_->add_option("--lr", r.lr, "Adam learning rate")->capture_default_str();
  cmd_->add_option("--weight-decay", r.weight_decay, "L2 regularisation (Adam)")->capture_default_str();
  cmd_->add_option("--board-size", r.board, "board side in cells (toroidal)")->capture_default_str();
  cmd_->add_option("--density", r.density,
                   "fixed initial density of the training boards, e.g. 0.38 (default: uniform per board)");
  cmd_->add_flag("--no-early-stop", no_early_stop_, "train every epoch even after a run is solved (timing)");
  cmd_->add_option("--jobs", c.jobs,
                   "runs at once per process, one thread each (default: the cores this process may use; "
                   "under mpirun, shared among the ranks on this machine)");
  cmd_->add_option("--out", c.out_dir, "study directory (default: runs/life-<hash of the non-default settings>)");
  cmd_->add_flag("--json", json_, "print JSON lines on stdout instead of text");
  cmd_->add_flag("--quiet", quiet_, "print only the table");
}

int LifeCommand::run() {
  if (!*cmd_) return -1;
  // CLI11 reads an empty list ("--widths ''") as one 0; say what is wrong.
  for (const char* flag : {"--steps", "--widths"})
    for (const std::string& v : cmd_->get_option(flag)->results())
      if (v.empty()) fail(flag, " needs a list of numbers, e.g. ", flag, " 1,2,4 (got an empty entry)");
  experiments::LifeStudyConfig cfg = cfg_;
  cfg.recipe.stop_at_success = !no_early_stop_;
  if (cfg.out_dir.empty())
    cfg.out_dir = "runs/" + experiments::settings_dir_name(
                                "life", non_default_settings(cmd_, {"--out", "--jobs", "--json", "--quiet"}));
  cfg.validate();  // before MPI starts: every rank refuses bad flags alike
  // Under mpirun the runs spread over the ranks (experiments/life.h). The
  // communicator lives in this call, inside main's try block: a rank that
  // raises unwinds past it, and it then stops the whole job rather than
  // leave the other ranks waiting for this one.
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator();
  // Ranks on one machine share its cores.
  if (cfg.jobs == 0) cfg.jobs = std::max(1, default_num_threads() / comm->local_size());
  if (comm->rank() != 0) {  // rank 0 reports for the job; the others print only errors
    experiments::run_life_study(cfg, *comm);
    return 0;
  }
  const int total = static_cast<int>(cfg.steps.size() * cfg.widths.size()) * cfg.seeds;
  if (!quiet_ && !json_) {
    std::cerr << "life study: n " << join(cfg.steps) << "; m " << join(cfg.widths) << "; " << cfg.seeds
              << " seeds: " << total << " runs, " << cfg.jobs << " at a time";
    if (comm->size() > 1) std::cerr << " in each of " << comm->size() << " ranks";
    std::cerr << ", in " << cfg.out_dir << std::endl;
  }

  // A bar over the runs that train on a terminal; a line per run otherwise.
  Progress progress(!quiet_ && !json_);
  const bool bar = progress.on_terminal() && !quiet_ && !json_;
  int skipped = 0, solved = 0;
  experiments::LifeObserver obs;
  obs.on_result = [&](const experiments::LifeRun& r, int done, int all) {
    skipped += r.skipped;
    solved += r.success;
    if (json_) {
      std::cout << run_json(r, done, all).dump() << std::endl;
    } else if (bar) {
      if (!r.skipped)
        progress.update(done - skipped, all - skipped, "runs",
                        std::to_string(solved) + "/" + std::to_string(done) + " solved");
    } else if (!quiet_) {
      std::cout << run_line(r, done, all) << std::endl;
    }
  };
  const auto runs = experiments::run_life_study(cfg, *comm, obs);
  progress.finish();
  if (json_) {
    json cells = json::array();
    for (const auto& c : experiments::life_cells(runs))
      cells.push_back({{"n", c.n}, {"m", c.m}, {"parameters", c.parameters}, {"runs", c.runs},
                       {"successes", c.successes}, {"success_rate", c.rate}, {"ci95", {c.ci.lo, c.ci.hi}},
                       {"mean_steps_to_solve", c.mean_steps}, {"seconds", c.seconds}, {"flops", c.flops}});
    std::cout << json{{"event", "end"}, {"out", cfg.out_dir}, {"cells", cells}}.dump() << std::endl;
  } else {
    if (!quiet_ && skipped > 0)
      std::cerr << skipped << " of " << total << " runs were done before (found in " << cfg.out_dir << ")\n";
    std::cout << experiments::life_table(runs) << "results in " << cfg.out_dir << "/results.md" << std::endl;
  }
  return 0;
}

}  // namespace pare::cli
