// What the subcommands share: data loading, model specs, the training recipe
// flags, run-directory naming, and number formatting.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pare/cli/progress.h"
#include "pare/data/data.h"
#include "pare/nn/module.h"
#include "pare/prune/prune.h"
#include "pare/train/trainer.h"

namespace pare::cli {

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
  std::vector<int> train_classes;      // keep only these classes in the training split (empty: all)
  std::vector<int> test_classes;       // evaluate only on these classes of the test split (empty: all)
  int64_t holdout = 0;                 // evaluate on the last N training samples instead of the test split
};

// Loads the data; with --normalize, standardises it and records the
// statistics in the spec so the saved model carries them.
data::TrainTest load_data(const DataOptions& o, uint64_t seed, nn::ModelSpec* spec);
// data::select_classes with `flag` named in its errors.
data::Dataset select_classes_for(const data::Dataset& d, const std::vector<int>& classes, const char* flag);
// Standardises both splits with the statistics a saved model was trained on.
void standardize_for(const nn::Model& model, data::TrainTest& d);
nn::ModelSpec load_spec(const std::string& model, const DataOptions& o);
void add_data_options(CLI::App* cmd, DataOptions& o);
// The training recipe: epochs, batch, optimizer, schedule, seed, stopping, parallel mode.
void add_recipe_options(CLI::App* cmd, train::TrainConfig& cfg);
// "--name=value" of every option of `cmd` given with a value other than its
// default, sorted, except those listed in `ignore` (output and display flags).
std::string non_default_settings(const CLI::App* cmd, const std::vector<std::string>& ignore);
std::string fmt(const char* f, double v);
// Per-layer and overall sparsity of the prunable weights: JSON, and lines on stdout.
nlohmann::json sparsity_json(const prune::SparsityReport& r);
void print_sparsity(const prune::SparsityReport& r);
// The Observer that draws a bar per epoch on a terminal and prints a line
// (or a JSON line) per epoch. `split` names the evaluation set in the lines
// ("test", or "holdout" with --holdout; JSON keys stay test_*).
train::Observer epoch_printer(Progress& progress, int64_t epochs, bool as_json, bool quiet, bool binary,
                              const char* split = "test");
// "holdout" when --holdout replaced the test split, else "test".
const char* eval_split_name(const DataOptions& o);
// Every data flag's value, for a run's settings.json.
nlohmann::json data_options_json(const DataOptions& o);

// The candidate closest to `word` by edit distance (insertions, deletions,
// substitutions and swaps of neighbours each count 1), when it is close
// enough to be a typo (at most 2 edits, and fewer than half of word's
// letters); "" otherwise. For "did you mean ...?".
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

// The one-line message for a command line CLI11 could not parse: an unknown
// command or option gets a suggestion ("unknown option --epoch for pare
// train (did you mean --epochs?)"), anything else CLI11's own text.
std::string parse_error_message(const CLI::App& app, int argc, const char* const* argv,
                                const CLI::ParseError& err);

}  // namespace pare::cli
