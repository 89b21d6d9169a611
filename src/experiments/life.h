// The Game of Life study (Springer & Kenyon 2020, "It's Hard for Neural
// Networks to Learn the Game of Life"): for n steps and width factor m, how
// often does the life net trained from a random init find an exact solution?
//
// A run is (n, m, seed): the `life` preset of that shape initialised with the
// seed, trained on boards drawn from the seed and evaluated after every epoch
// on fresh test boards (density uniform per board). It succeeds when every
// cell of every test board is right (EvalResult.exact == 1); training stops
// there. A study lives in one directory:
//   DIR/settings.json              the recipe (what decides a run's result)
//   DIR/n<N>_m<M>/seed<S>/         fit()'s run directory: log.jsonl,
//                                  checkpoint.bin, model.bin (the trained net)
//   DIR/n<N>_m<M>/seed<S>/result.json   written last: its presence marks the
//                                  run done, so a restarted study skips it
//   DIR/results.json, results.md   the table per (n, m), rewritten after each run
// The recipe is in settings.json, the lists of n, m and seeds are not: a
// study can be widened (more seeds, more widths) in the same directory.
//
// Runs are independent and spread across threads, each run on one thread
// (SerialScope), so a run's bits never depend on how many run beside it;
// under mpirun, across the ranks too (dist/task_pool.h): rank 0 decides which
// runs are pending, hands them out one at a time to whichever worker is
// free, and writes settings.json and the summaries from the results the
// pool brings it. A run's directory is written by the rank that ran it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>
#include <vector>

#include "pare/data/data.h"
#include "pare/dist/communicator.h"
#include "pare/nn/module.h"
#include "pare/train/trainer.h"

namespace pare::experiments {

// How one run trains; the paper's recipe by default.
struct LifeRecipe {
  int64_t examples = 10000;      // training boards (one epoch)
  int64_t test_examples = 1000;  // fresh test boards
  // Density of the test boards: < 0 uniform per board (the mixed
  // densities), or fixed, e.g. 0.38: the critical density, where the rule's
  // rare neighbourhoods are most frequent, a harder certificate for n >= 2.
  float test_density = -1;
  int64_t batch = 8;
  int64_t epochs = 100;          // 100 x 10,000 = the paper's 1M examples
  float lr = 1e-3f;              // Adam
  float weight_decay = 0;        // Adam's L2 regularisation
  int64_t board = 32;            // side of the toroidal boards
  float density = -1;            // training boards: fixed density, or < 0: uniform per board
  bool stop_at_success = true;   // false: train all epochs (timing the full recipe)
  void validate() const;         // raises Error naming the flag
};

struct LifeStudyConfig {
  LifeRecipe recipe;
  std::vector<int> steps = {1};      // n, each >= 1
  std::vector<int> widths = {1};     // m, each >= 1
  int seeds = 32;                    // seeds 0 .. seeds-1 per (n, m)
  int jobs = 0;                      // runs at once per process (0: the cores this process may use)
  std::string out_dir;               // required
  void validate() const;
};

// One run's outcome; result.json holds the same fields.
struct LifeRun {
  int n = 0, m = 0;
  uint64_t seed = 0;
  bool success = false;          // every cell of every test board right at the end
  int64_t steps = 0;             // optimizer steps taken (to success, when it succeeded)
  int64_t epochs = 0;
  // Wall time of the fit() call that finished the run, evaluation included
  // (an interrupted run's earlier part is not counted), and the training
  // loop alone over the whole run (from the run log, across resumes).
  double seconds = 0, train_seconds = 0;
  double flops = 0;              // training FLOPs (TrainResult.flops)
  nlohmann::json cost;           // the ledger of the fit() that finished the run (train/cost.h)
  int64_t parameters = 0;        // of the model as built
  int64_t weights_alive = 0;     // prunable weights not masked
  double exact = 0, accuracy = 0, loss = 0;  // final test: boards all right, cells right, BCE
  std::string dir;               // the run directory
  bool skipped = false;          // found finished on disk
  int rank = -1;                 // run_life_study: the rank that ran it (-1: found finished before)
};

// The training and test boards of a run of n steps with `seed`: both drawn
// from streams forked off the seed (the same streams as
// `pare train --data life --seed S`); the test boards have the recipe's test density
// uniform per board.
data::TrainTest life_data(const LifeRecipe& r, int n, uint64_t seed);
// fit()'s settings for a run in `dir`: Adam, batch order from the seed,
// stop at success (target_exact 1), resume from an interrupted checkpoint.
train::TrainConfig life_train_config(const LifeRecipe& r, uint64_t seed, const std::string& dir);
// Trains `model` as run (n, m, seed) in `dir` unless dir/result.json exists,
// in which case it returns that record (skipped) and leaves `model` alone (the
// trained net is dir/model.bin). result.json is written last. The model may
// be masked or of any shape that reads n-step boards (the pruning studies).
// Multithreaded as the caller's thread pool allows; hold a SerialScope to run
// it on the calling thread alone.
LifeRun run_life(const LifeRecipe& r, int n, int m, uint64_t seed, nn::Model& model,
                 const std::string& dir, const train::Observer& obs = {});
// The life net of n steps and width m on the recipe's board, initialised with `seed`.
std::unique_ptr<nn::Model> life_model(const LifeRecipe& r, int n, int m, uint64_t seed);
// "DIR/n<N>_m<M>/seed<S>".
std::string life_run_dir(const std::string& out_dir, int n, int m, uint64_t seed);

// Progress, on rank 0, from its threads, one call at a time (under a lock).
struct LifeObserver {
  // A run finished (or was found finished: reported before any run starts);
  // `done` of `total` runs are finished now.
  std::function<void(const LifeRun& run, int done, int total)> on_result;
};

// Runs (or resumes) the study: every (n, m, seed), up to cfg.jobs at a time
// in each process of `comm` (every rank calls it with the same cfg; runs
// never use comm themselves, so a run's bits do not depend on the ranks).
// Returns, on rank 0, every run ordered by n, m, seed, and on other ranks
// nothing. If a run raises, no new run starts and the first error is raised
// (on every rank) once the running ones finish.
std::vector<LifeRun> run_life_study(const LifeStudyConfig& cfg, dist::Communicator& comm,
                                    const LifeObserver& obs = {});
// The study in this process alone.
std::vector<LifeRun> run_life_study(const LifeStudyConfig& cfg, const LifeObserver& obs = {});

// A two-sided confidence interval for a binomial proportion (Wilson score
// interval; z = 1.96 for 95 %). Sensible at 0 and n successes, unlike the
// normal approximation. runs == 0 gives [0, 1].
struct Interval {
  double lo = 0, hi = 1;
};
Interval wilson_interval(int64_t successes, int64_t runs, double z = 1.959963984540054);

// One row per (n, m) of the runs given.
struct LifeCell {
  int n = 0, m = 0;
  int64_t parameters = 0;
  int runs = 0, successes = 0;
  double rate = 0;
  Interval ci;                    // 95 % Wilson
  double mean_steps = 0;          // over successful runs (0 when none)
  double seconds = 0, flops = 0;  // all runs of the cell together
};
std::vector<LifeCell> life_cells(const std::vector<LifeRun>& runs);
// The Markdown table of life_cells.
std::string life_table(const std::vector<LifeRun>& runs);

}  // namespace pare::experiments
