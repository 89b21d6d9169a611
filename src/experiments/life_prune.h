// The pruning extension of the Game of Life study (issue #4): prune a wide
// life net that solved Life as far as it still solves it, count what is left
// (nonzero parameters, and the dense architecture once dead channels are
// gone), test the ticket against fresh inits and the minimal net, and read
// the learned filters.
//
// The search, per mode (rewind | finetune), starts from the dense net of
// (n, m, seed) trained by run_life until it solves its test boards. Round r
// keeps the alive weights of largest magnitude over all layers (global) of
// round r-1's net, removing round(rate * alive) of them (at least 1), and
// trains the result with the same boards and recipe:
//   rewind    survivors rewound to the dense net's initial values (Frankle &
//             Carbin 2019), then trained;
//   finetune  trained on from their current values.
// A round that re-solves (every cell of every test board right) is
// accepted. One that does not is retried from the same net removing half as
// many weights, down to one weight. When removing the single smallest weight
// fails too, the round tries the end candidates (end_candidates): up to
// `channels` whole hidden channels, least important first, then up to
// `alternatives` single weights further down the ranking, each only if it
// lowers the parameter count; the first that re-solves is accepted and the
// search goes on from it. When none does, the search ends. The trainings of
// a search (first tries and retries) are capped by max_trainings; each
// training gets round_epochs epochs at most.
//
// A study lives in one directory:
//   DIR/settings.json                      what decides the results
//   DIR/dense/                             run_life's run of the dense net
//   DIR/<mode>/round_<r>/try_<t>/          run_life's run (model.bin, result.json)
//                                          and step.json, written last: a
//                                          restarted search skips the
//                                          trainings it finds there
//   DIR/<mode>/smallest.bin                the smallest net that solved (masks inside)
//   DIR/<mode>/shrunk.bin                  the same net with dead channels removed
//   DIR/ticket_test/<arm>/try<k>/          the ticket test's runs (run_life)
//   DIR/results.json, results.md           rewritten at the end
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pare/experiments/life.h"
#include "pare/nn/module.h"

namespace pare::experiments {

// ---- dead channels ----------------------------------------------------------

// What a pruned life net (a chain of conv2d layers with a ReLU after every
// one but the last, as the `life` preset builds) reduces to.
//
// Counting. A hidden channel is
//   live      when it reads a live channel (or the board) through an alive
//             weight and a live channel (or the output) reads it;
//   dead      when no live channel reads it: it is removed with its weights
//             and bias, none of which can change the output;
//   constant  when it reads no live channel: its output is the constant
//             ReLU(bias + what constant channels feed it), which reaches
//             the next layer as a constant per output channel (a 1x1 conv,
//             or a circular one, sums a constant over its kernel), so it is
//             folded into the next layer's biases and removed. Its bias
//             "still matters" only through that fold, which adds nothing to
//             the count: the receiving biases are counted already.
// Decided to a fixed point (removing a channel can starve or orphan others).
// The board and the output channel are never removed.
struct ChannelReduction {
  // Per weight layer, in model order: its live output channels (ascending)
  // and its constant ones (folded). The last layer's are all its outputs.
  std::vector<std::vector<int64_t>> live, constant;
  std::vector<int64_t> kernels;  // kernel side of each weight layer
  int64_t weights_alive = 0;     // unmasked weights, all of them (what pruning counts)
  int64_t live_weights = 0;      // unmasked weights from a live channel (or the board) to a live one
  int64_t live_biases = 0;       // biases of the live channels, the output's included
  // The net's size that matters: live_weights + live_biases.
  int64_t parameters() const { return live_weights + live_biases; }
  // The dense net with the live widths: every weight between live channels
  // and every live bias ("1 -> 2 (3x3) -> 1 (1x1) -> 1 (1x1)").
  int64_t dense_parameters = 0;
  std::string architecture;
};

// Raises Error for a model that is not such a chain.
ChannelReduction reduce_channels(const nn::Model& model);

// A smaller model computing the same outputs as `model`: constant channels
// folded into the next biases, dead and constant channels removed
// (prune::shrink), masks kept inside the live weights. Raises Error when a
// layer has no live channel (the output is then a constant).
std::unique_ptr<nn::Model> shrink_to_live(const nn::Model& model, const ChannelReduction& r);

// A deep copy: values, masks and initial values.
std::unique_ptr<nn::Model> copy_model(const nn::Model& model);

// ---- the filter reader ------------------------------------------------------

// The learned filters, for a person to read: per weight layer, every live
// output channel's bias and its kernels from each live input channel (3x3
// kernels as a grid, "." for a pruned entry; 1x1 weights as one line), with
// a summary of each 3x3 kernel (centre, and mean and spread of the eight
// neighbour weights) that shows whether it counts neighbours. Dead and
// constant channels are listed by number only.
std::string describe_filters(const nn::Model& model);

// ---- the search -------------------------------------------------------------

struct LifePruneConfig {
  LifeRecipe recipe;          // the dense net's training and every pruning round's
  int n = 1;                  // Life steps
  int m = 8;                  // width factor of the dense net
  uint64_t seed = 0;          // the dense net: init, boards and batch order
  std::vector<std::string> modes = {"rewind", "finetune"};
  double rate = 0.2;          // fraction of the alive weights removed per round
  std::string score = "magnitude";  // global ranking: magnitude | lamp (prune_by_magnitude)
  int64_t round_epochs = 0;   // epochs per pruning training at most (0: recipe.epochs)
  int max_trainings = 60;     // per mode: first tries and retries together
  // When removing the smallest weight fails: hidden channels tried whole, and
  // single weights tried further down the ranking (end_candidates; 0: none).
  int channels = 4;
  int alternatives = 3;
  // The ticket test (0 tries: none): the rewind search's smallest net trained
  // again from its init, from fresh inits with its mask, and the m = 1 net
  // from scratch; try k uses the boards and batch order of seed try_seed + k.
  int tries = 0;
  int64_t test_epochs = 0;        // epochs per ticket-test run at most (0: recipe.epochs)
  uint64_t try_seed = 1000;
  uint64_t reinit_offset = 1000003;  // fresh init of try k: seed try_seed + k + this
  int jobs = 0;               // trainings at once (0: the cores this process may use)
  std::string out_dir;        // required
  void validate() const;      // raises Error naming the flag
};

// One training of a search.
struct PruneStep {
  std::string mode;
  int round = 0, attempt = 0;      // attempt 0: the round's first try
  // What was removed: "ranked" (the `removed` lowest-ranked weights), or an
  // end candidate's label ("channel conv2d3:1", "weight conv2d1.weight[13]").
  std::string candidate = "ranked";
  int64_t alive_before = 0, removed = 0, alive_after = 0;  // prunable weights
  bool solved = false;
  double exact = 0, accuracy = 0;  // on the test boards after training
  int64_t steps = 0;
  double seconds = 0, flops = 0;
  std::string dir;
  bool skipped = false;            // found finished on disk
};

struct PruneSearch {
  std::string mode;
  std::vector<PruneStep> steps;
  int rounds = 0;                  // accepted rounds
  // "a single weight fails" (no end candidates configured) | "no end
  // candidate solves" | "training budget" | "nothing left"
  std::string stopped_because;
  ChannelReduction smallest;       // the last accepted net (the dense net if none)
  double verify_exact = 0;         // on fresh boards never used to stop training
  double shrunk_exact = 0;         // the shrunk net on the test boards
  std::string model_path, shrunk_path;
};

struct TicketArm {
  std::string arm;  // ticket | reinit | minimal
  std::vector<LifeRun> runs;
  int successes = 0;
  double rate = 0;
  Interval ci;       // 95 % Wilson
  double mean_steps = 0;  // over the solved runs
  int64_t parameters = 0;  // ChannelReduction::parameters of the net trained
};

struct LifePruneResult {
  LifeRun dense;
  std::vector<PruneSearch> searches;  // in cfg.modes order; empty if the dense net did not solve
  std::vector<TicketArm> ticket_test; // empty without tries or a rewind search
  std::string markdown;               // results.md
};

// Progress, from whichever thread trained; one call at a time.
struct LifePruneObserver {
  std::function<void(const LifeRun& dense)> on_dense;
  std::function<void(const PruneStep& step)> on_step;
  std::function<void(const std::string& arm, const LifeRun& run)> on_try;
};

// Runs (or resumes) the whole extension for one (n, m, seed).
LifePruneResult run_life_prune(const LifePruneConfig& cfg, const LifePruneObserver& obs = {});

// The weights kept by one round: `trained` with the `keep` alive weights of
// largest magnitude over all layers (ties: position), rewound to `init`'s
// values when `init` is given. Returns a new model; `trained` is unchanged.
// `score`: "magnitude" ranks |w| over all layers together; "lamp" ranks
// LAMP scores (Lee et al. 2021, layer-adaptive magnitude: w^2 over the sum
// of w^2 of the layer's alive weights at least as large), which orders each
// layer by magnitude but lets layers of large weights (the 1x1 convs) be
// pruned as hard as the 3x3 one, and never empties a layer.
std::unique_ptr<nn::Model> prune_by_magnitude(const nn::Model& trained, int64_t keep,
                                              const nn::Model* init, const std::string& score = "magnitude");

// One alive weight of a model: the index of its parameter in
// prune::prunable order, and the entry.
struct WeightRef {
  size_t param = 0;
  int64_t offset = 0;
  bool operator==(const WeightRef&) const = default;
};

// The alive weights in the order a round removes them: lowest `score`
// (magnitude or LAMP, as prune_by_magnitude) first, ties as
// prune::keep_top_global breaks them, so removing the first k is what
// prune_by_magnitude(model, alive - k, ...) does.
std::vector<WeightRef> ranked_weights(const nn::Model& model, const std::string& score = "magnitude");

// An alternative removal tried when removing the smallest weight fails.
struct EndCandidate {
  std::string label;                // "channel conv2d3:1" | "weight conv2d1.weight[13]"
  std::vector<WeightRef> weights;   // the alive weights it removes
};

// The end candidates of a net whose smallest-weight removal failed, in the
// order they are tried:
//   channels      up to `channels` live hidden channels, each removed whole
//                 (every alive weight into and out of it), ranked by
//                 |in|_1 * |out|_1 (the L1 norms of its alive incoming and
//                 outgoing weights), smallest first. A ReLU net computes the
//                 same function when a channel's incoming weights and bias
//                 are scaled by a > 0 and its outgoing ones by 1/a; the
//                 product is unchanged by that, the plain L1 norm of all its
//                 weights is not. The only live channel of a layer is never
//                 a candidate (the output would be a constant).
//   alternatives  up to `alternatives` single weights after the smallest one
//                 in `score` ranking order.
// Only removals that lower ChannelReduction::parameters() and leave every
// layer a live channel are candidates, and of removals that leave the same
// weights into non-dead channels (so compute the same function and train the
// same way), only the first, counting the smallest weight's removal itself
// as tried. Deterministic: ties go by layer and channel, or by rank.
std::vector<EndCandidate> end_candidates(const nn::Model& model, const std::string& score, int channels,
                                         int alternatives);

// `trained` with `weights` removed, rewound to `init`'s values when given
// (as prune_by_magnitude). Returns a new model.
std::unique_ptr<nn::Model> remove_weights(const nn::Model& trained, const std::vector<WeightRef>& weights,
                                          const nn::Model* init);

}  // namespace pare::experiments
