// Lottery tickets by iterative magnitude pruning with rewinding (Frankle &
// Carbin 2019; late rewinding: Frankle et al. 2020), with the controls that
// show whether a ticket is real, and one-shot pruning runs.
//
// A ticket run lives in one directory:
//   DIR/settings.json         the resolved settings
//   DIR/round_<r>/ticket/     fit()'s run directory for round r (log.jsonl,
//                             checkpoint.bin, model.bin with the masks)
//   DIR/round_<r>/reinit/     control: the same mask, a fresh random init
//   DIR/round_<r>/random/     control: a random mask at the same per-layer
//                             sparsity, rewound to the same weights
//   DIR/round_<r>/<kind>/result.json   written last: its presence marks the
//                             run done, so a restarted ticket skips it
//   DIR/log.jsonl             one line per finished run
//   DIR/results.json, results.md   the table
// Round 0 trains the dense network; before round r > 0 the alive weights of
// round r-1's trained model are pruned by magnitude, layer by layer at the
// layer's rate, and the survivors rewound to their values at initialisation
// (or after `rewind_step` steps of round 0).
//
// Tickets over seeds (run_ticket_seeds, `pare ticket --seeds N`): the ticket
// for each seed S .. S+N-1 in OUT/seed<S>/, exactly as run_ticket makes it
// with that seed and directory, one seed per task of dist/task_pool.h (a
// ticket's rounds are sequential), and on rank 0
//   OUT/results.json, results.md   per round and kind, over the seeds
//                             finished: density, mean and standard deviation
//                             of the test accuracy; rewritten as seeds finish
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pare/data/dataset.h"
#include "pare/dist/communicator.h"
#include "pare/nn/spec.h"
#include "pare/train/trainer.h"

namespace pare::experiments {

struct TicketConfig {
  nn::ModelSpec spec;
  train::TrainConfig train;  // the recipe of every round (out_dir and resume are set per run)
  int rounds = 10;           // pruning rounds after the dense round 0
  double rate = 0.2;         // fraction of a layer's alive weights removed per round
  double output_rate = 0.1;  // the same for the output layer (the last weight)
  std::map<std::string, double> layer_rates;  // per parameter name, overriding both
  bool global = false;       // one magnitude ranking over all layers at `rate` instead
  int64_t rewind_step = 0;   // 0: rewind to initialisation; k: to the weights after k steps
  bool controls = false;     // also train the reinit and random-mask controls every round
  uint64_t control_seed = 1000003;  // offset of the reinit control's init seed
  std::string out_dir;       // required
  // Where the data came from (the CLI's data flags: dataset, split, ...), kept
  // in settings.json so that a directory never mixes runs on other data;
  // null: not recorded (directories written before it resume as they were).
  nlohmann::json data;
  std::string eval_split = "test";  // what the accuracies are measured on, for the tables
  void validate() const;
};

struct RunRecord {
  int round = 0;
  std::string kind;  // ticket | reinit | random
  double density = 1, sparsity = 0;  // of the prunable weights
  std::vector<std::pair<std::string, double>> layer_density;
  double test_accuracy = 0, test_loss = 0, best_accuracy = 0;
  double flops = 0, dense_flops = 0, seconds = 0;  // this run's training
  // FLOPs as the kernels ran them (masked-dense layers at their dense cost;
  // TrainResult::executed_flops): what `seconds` paid for.
  double executed_flops = 0;
  double cumulative_flops = 0, cumulative_seconds = 0;  // ticket: rounds 0..r summed
  int64_t steps = 0;
  // The run's ledger (train/cost.h; its log's "end" event), and for a ticket
  // the sum over rounds 0..r (what finding it cost so far).
  nlohmann::json cost, cumulative_cost;
  bool skipped = false;  // found finished on disk
};

// Progress: called when a run starts (`done` runs of `total` so far) and
// with each epoch of the run in flight.
struct TicketObserver {
  std::function<void(const RunRecord& starting, int done, int total)> on_run;
  train::Observer train;
  std::function<void(const RunRecord& finished)> on_result;
};

// Runs (or resumes) the ticket experiment. Returns every run, in order.
std::vector<RunRecord> run_ticket(const TicketConfig& cfg, const data::Dataset& train_set,
                                  const data::Dataset& test_set, const TicketObserver& obs = {});

// The weights every round starts from: the initialisation, or round 0's
// weights after rewind_step steps (raises Error until round 0 got there).
std::unique_ptr<nn::Model> rewind_weights(const TicketConfig& cfg);
// Round r's ticket before training: round r-1's trained model pruned by
// magnitude (per-layer rates, or global), its survivors rewound. Round 0 is
// the dense network at its rewind point.
std::unique_ptr<nn::Model> ticket_start(const TicketConfig& cfg, int round);

// The Markdown table of a ticket run's records.
// `eval_split` names the accuracy columns ("test", "holdout").
std::string ticket_table(const std::vector<RunRecord>& records, const std::string& eval_split = "test");

// What one seed's ticket trains on: the model spec (with the input
// statistics --normalize took from that seed's data) and the data.
struct TicketInputs {
  nn::ModelSpec spec;
  data::TrainTest data;
};

struct TicketSeedsConfig {
  // The recipe of every seed. Per seed, train.seed is the seed, out_dir is
  // OUT/seed<S> and spec comes from `inputs`; rank 0 compares the settings
  // of seeds found finished with this spec (its input statistics aside).
  TicketConfig ticket;
  uint64_t first_seed = 0;  // S
  int seeds = 1;            // N: seeds S .. S+N-1
  std::string out_dir;      // OUT, required
  // Redo every seed: the rank that runs a seed first removes its directory
  // (as `pare ticket --overwrite` does), and no seed counts as finished.
  bool overwrite = false;
  // Seed s's spec and data, as `pare ticket --seed s` loads them. Called on
  // the rank that runs the seed, on one of its worker threads. Required.
  std::function<TicketInputs(uint64_t seed)> inputs;
  void validate() const;
};

// One seed's ticket as rank 0 holds it.
struct TicketSeed {
  uint64_t seed = 0;
  int rank = -1;          // the rank that ran it; -1: found finished before the sweep started
  bool skipped = false;   // every run of it was found finished
  std::vector<RunRecord> records;  // as run_ticket returns them
};

struct TicketSeedsObserver {
  // Rank 0: a seed finished, or was found finished (reported before any
  // seed starts); `done` of `total` seeds are finished now. One call at a time.
  std::function<void(const TicketSeed& seed, int done, int total)> on_seed;
};

// The directory of seed `seed` in a sweep over seeds: "OUT/seed<S>".
std::string ticket_seed_dir(const std::string& out_dir, uint64_t seed);

// Runs (or resumes) the tickets of cfg's seeds over the ranks of `comm`,
// one seed at a time per rank, each seed's training multithreaded as the
// process's thread pool allows (never using comm). Every rank calls it with
// the same cfg. Seeds finished before (OUT/seed<S>/results.json holding
// every run) are not run again; an unfinished one resumes run by run as
// run_ticket does. Returns, on rank 0, every seed in seed order; on other
// ranks nothing. A seed that raises stops the sweep on every rank
// (dist/task_pool.h).
std::vector<TicketSeed> run_ticket_seeds(const TicketSeedsConfig& cfg, dist::Communicator& comm,
                                         const TicketSeedsObserver& obs = {});

// Over the seeds given, per round and kind (ticket, reinit, random).
struct TicketSeedsRow {
  int round = 0;
  std::string kind;
  int seeds = 0;          // seeds that have this run
  double density = 0;     // of the prunable weights, mean over the seeds
  double mean_accuracy = 0, std_accuracy = 0;  // final test accuracy; std with n - 1 (0 for one seed)
  double min_accuracy = 0, max_accuracy = 0;
  double mean_best_accuracy = 0;
};
std::vector<TicketSeedsRow> ticket_seeds_rows(const std::vector<TicketSeed>& seeds);
// The Markdown table of ticket_seeds_rows.
std::string ticket_seeds_table(const std::vector<TicketSeed>& seeds, const std::string& eval_split = "test");

// "<prefix>-<16 hex digits>": a run directory named by a hash (FNV-1a 64) of
// the settings that differ from their defaults, so the same command finds
// its own directory again and a different one never collides with it.
std::string settings_dir_name(const std::string& prefix, const std::string& non_default_settings);

}  // namespace pare::experiments
