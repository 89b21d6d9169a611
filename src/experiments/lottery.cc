// Iterative magnitude pruning with rewinding, its controls, the table, and
// tickets over seeds spread across ranks.
#include "pare/experiments/lottery.h"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/base/rng.h"
#include "pare/dist/task_pool.h"
#include "pare/prune/prune.h"

namespace pare::experiments {

using json = nlohmann::json;

void TicketConfig::validate() const {
  if (out_dir.empty()) fail("a ticket run needs a run directory (--out)");
  if (rounds < 0 || rounds > 200) fail("--rounds must be in [0, 200], got ", rounds);
  auto check_rate = [](const std::string& what, double r) {
    if (!(r >= 0.0 && r < 1.0)) fail(what, " must be in [0, 1), got ", r);
  };
  check_rate("--rate", rate);
  if (rate == 0.0) fail("--rate must be above 0 (the fraction pruned per round)");
  check_rate("--output-rate", output_rate);
  for (const auto& [name, r] : layer_rates) check_rate("the rate of " + name, r);
  if (rewind_step < 0) fail("--rewind-step must be >= 0, got ", rewind_step);
  if (train.sparse.enabled()) fail("a ticket run prunes between rounds; --sparse-training must be none");
  train.validate();
}

std::string settings_dir_name(const std::string& prefix, const std::string& settings) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : settings) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return prefix + "-" + buf;
}

namespace {

json settings_json(const TicketConfig& c) {
  const auto& t = c.train;
  json rates = json::object();
  for (const auto& [k, v] : c.layer_rates) rates[k] = v;
  json j{{"kind", "ticket"},
         {"spec", json::parse(nn::model_spec_to_json(c.spec))},
         {"rounds", c.rounds},
         {"rate", c.rate},
         {"output_rate", c.output_rate},
         {"layer_rates", rates},
         {"global", c.global},
         {"rewind_step", c.rewind_step},
         {"controls", c.controls},
         {"control_seed", c.control_seed},
         {"train",
          {{"epochs", t.epochs},
           {"batch", t.batch},
           {"seed", t.seed},
           {"optimizer",
            {{"name", t.optimizer.name},
             {"lr", t.optimizer.lr},
             {"momentum", t.optimizer.momentum},
             {"nesterov", t.optimizer.nesterov},
             {"beta1", t.optimizer.beta1},
             {"beta2", t.optimizer.beta2},
             {"eps", t.optimizer.eps},
             {"weight_decay", t.optimizer.weight_decay}}},
           {"schedule",
            {{"name", t.schedule.name},
             {"warmup_steps", t.schedule.warmup_steps},
             {"step_size", t.schedule.step_size},
             {"gamma", t.schedule.gamma},
             {"lr_min", t.schedule.lr_min}}},
           {"max_steps", t.max_steps}}}};
  if (!c.data.is_null()) j["data"] = c.data;
  return j;
}

// Whether settings found on disk are the run's: the same, where settings
// written before the data were recorded are compared without them.
bool same_settings(const json& found, json wanted) {
  if (!found.contains("data")) wanted.erase("data");
  return found == wanted;
}

json record_json(const RunRecord& r) {
  json layers = json::array();
  for (const auto& [name, d] : r.layer_density) layers.push_back({{"name", name}, {"density", d}});
  return {{"round", r.round},
          {"kind", r.kind},
          {"density", r.density},
          {"sparsity", r.sparsity},
          {"layers", layers},
          {"test_accuracy", r.test_accuracy},
          {"test_loss", r.test_loss},
          {"best_accuracy", r.best_accuracy},
          {"flops", r.flops},
          {"dense_flops", r.dense_flops},
          {"executed_flops", r.executed_flops},
          {"seconds", r.seconds},
          {"cumulative_flops", r.cumulative_flops},
          {"cumulative_seconds", r.cumulative_seconds},
          {"cost", r.cost},
          {"cumulative_cost", r.cumulative_cost},
          {"steps", r.steps}};
}

// A record from its JSON (record_json's fields; the cumulative ones when
// present); raises json::exception when a field is missing or mistyped.
RunRecord record_from_json(const json& j) {
  RunRecord r;
  r.round = j.at("round").get<int>();
  r.kind = j.at("kind").get<std::string>();
  r.density = j.at("density").get<double>();
  r.sparsity = j.at("sparsity").get<double>();
  for (const auto& l : j.at("layers"))
    r.layer_density.emplace_back(l.at("name").get<std::string>(), l.at("density").get<double>());
  r.test_accuracy = j.at("test_accuracy").get<double>();
  r.test_loss = j.at("test_loss").get<double>();
  r.best_accuracy = j.at("best_accuracy").get<double>();
  r.flops = j.at("flops").get<double>();
  r.dense_flops = j.at("dense_flops").get<double>();
  // Results written before the sparse kernels ran every layer dense.
  r.executed_flops = j.value("executed_flops", r.dense_flops);
  r.seconds = j.at("seconds").get<double>();
  r.steps = j.at("steps").get<int64_t>();
  if (j.contains("cost")) r.cost = j["cost"];  // results written before the ledger have none
  r.cumulative_flops = j.value("cumulative_flops", 0.0);
  r.cumulative_seconds = j.value("cumulative_seconds", 0.0);
  if (j.contains("cumulative_cost")) r.cumulative_cost = j["cumulative_cost"];
  return r;
}

RunRecord parse_record(const std::string& path) {
  RunRecord r;
  try {
    r = record_from_json(json::parse(read_file(path)));
  } catch (const json::exception& e) {
    fail(path, ": not a ticket result (", e.what(), "); delete it to redo the run");
  }
  r.skipped = true;
  return r;
}

// The "end" event that fit() writes last to a run log, when the log in
// `path` ends with one (the run finished training); raises Error when the
// log is not JSON lines.
std::optional<json> fit_end_event(const std::string& path) {
  if (!file_exists(path)) return std::nullopt;
  std::istringstream in(read_file(path));
  json last;
  try {
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) last = json::parse(line);
  } catch (const json::exception& e) {
    fail(path, ": not a run log (", e.what(), "); delete the run's directory to redo it");
  }
  if (!last.is_object() || last.value("event", "") != "end") return std::nullopt;
  return last;
}

struct Masks {
  std::vector<Tensor> of;  // per prunable parameter
};

Masks copy_masks(const nn::Model& m) {
  Masks out;
  for (nn::Parameter* p : prune::prunable(m)) out.of.push_back(p->mask.clone());
  return out;
}

void set_masks(nn::Model& m, const Masks& masks) {
  const auto ps = prune::prunable(m);
  PARE_CHECK(ps.size() == masks.of.size(), "mask count");
  for (size_t i = 0; i < ps.size(); ++i) ps[i]->mask = masks.of[i].clone();
  prune::apply_masks(m);
}

// The rate of prunable parameter i of n under the config.
double rate_of(const TicketConfig& c, const nn::Parameter& p, size_t i, size_t n) {
  if (auto it = c.layer_rates.find(p.name); it != c.layer_rates.end()) return it->second;
  return i + 1 == n ? c.output_rate : c.rate;
}

// Prunes `trained` (round r-1's result) by magnitude for the next round.
void prune_round(const TicketConfig& c, nn::Model& trained) {
  prune::ensure_masks(trained);
  const auto ps = prune::prunable(trained);
  const prune::Scores scores = prune::criterion("magnitude").score(trained, {});
  if (c.global) {
    const auto alive = prune::sparsity(trained).kept;
    prune::keep_top_global(trained, scores, alive - std::llround(c.rate * static_cast<double>(alive)));
    return;
  }
  std::vector<int64_t> keep;
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t alive = prune::alive(*ps[i]);
    keep.push_back(alive - std::llround(rate_of(c, *ps[i], i, ps.size()) * static_cast<double>(alive)));
  }
  prune::keep_top_per_layer(trained, scores, keep);
}

}  // namespace

std::unique_ptr<nn::Model> rewind_weights(const TicketConfig& cfg) {
  auto model = nn::Model::build(cfg.spec, cfg.train.seed);
  if (cfg.rewind_step > 0) {
    const std::string snap =
        cfg.out_dir + "/round_0/ticket/weights_step" + std::to_string(cfg.rewind_step) + ".bin";
    if (!file_exists(snap))
      fail(snap, " is missing: round 0 has not run --rewind-step ", cfg.rewind_step, " steps yet");
    model->store().values().copy_from(train::load_model(snap)->store().values());
  }
  return model;
}

std::unique_ptr<nn::Model> ticket_start(const TicketConfig& cfg, int round) {
  // Round 0 trains the dense net from its initialisation (and takes the
  // rewind snapshot on the way); later rounds start from the rewind point.
  auto model = round == 0 ? nn::Model::build(cfg.spec, cfg.train.seed) : rewind_weights(cfg);
  prune::ensure_masks(*model);
  if (round > 0) {
    const std::string prev = cfg.out_dir + "/round_" + std::to_string(round - 1) + "/ticket/model.bin";
    if (!file_exists(prev)) fail(prev, " is missing: round ", round - 1, " has not finished");
    auto trained = train::load_model(prev);
    prune_round(cfg, *trained);
    set_masks(*model, copy_masks(*trained));
  }
  return model;
}

std::string ticket_table(const std::vector<RunRecord>& records, const std::string& eval_split) {
  std::map<int, std::map<std::string, const RunRecord*>> by_round;
  for (const auto& r : records) by_round[r.round][r.kind] = &r;
  std::ostringstream os;
  auto pct = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f %%", 100 * v);
    return std::string(b);
  };
  auto num = [](const char* f, double v) {
    char b[32];
    std::snprintf(b, sizeof b, f, v);
    return std::string(b);
  };
  os << "| round | weights left | ticket: " << eval_split << " acc (best) | reinit control | random-mask control |"
        " ticket train GFLOP (dense) | cumulative GFLOP | cumulative s |\n"
        "|---|---|---|---|---|---|---|---|\n";
  for (const auto& [round, kinds] : by_round) {
    // clang before 16 cannot capture a structured binding by [&] alone.
    auto acc = [&, &kinds = kinds](const char* kind) {
      auto it = kinds.find(kind);
      if (it == kinds.end()) return std::string("-");
      return pct(it->second->test_accuracy) + " (" + pct(it->second->best_accuracy) + ")";
    };
    const RunRecord* t = kinds.count("ticket") ? kinds.at("ticket") : nullptr;
    os << "| " << round << " | " << (t ? pct(t->density) : "-") << " | " << acc("ticket") << " | "
       << acc("reinit") << " | " << acc("random") << " | "
       << (t ? num("%.1f", t->flops / 1e9) + " (" + num("%.1f", t->dense_flops / 1e9) + ")" : "-")
       << " | " << (t ? num("%.1f", t->cumulative_flops / 1e9) : "-") << " | "
       << (t ? num("%.1f", t->cumulative_seconds) : "-") << " |\n";
  }
  return os.str();
}

std::vector<RunRecord> run_ticket(const TicketConfig& cfg, const data::Dataset& train_set,
                                  const data::Dataset& test_set, const TicketObserver& obs) {
  cfg.validate();
  make_dirs(cfg.out_dir);
  const std::string settings_path = cfg.out_dir + "/settings.json";
  json settings = settings_json(cfg);
  if (file_exists(settings_path)) {
    const json found = json::parse(read_file(settings_path), nullptr, /*allow_exceptions=*/false);
    if (found.is_discarded()) fail(settings_path, ": not JSON; delete the directory or choose another --out");
    if (!same_settings(found, settings))
      fail(cfg.out_dir, " holds a ticket run with other settings (see its settings.json); choose another --out");
    settings = found;  // an older file without the data stays as it was
  } else {
    write_file_atomic(settings_path, settings.dump(2) + "\n");
  }

  const int total = (cfg.rounds + 1) + (cfg.controls ? 2 * cfg.rounds : 0);
  int done = 0;
  std::vector<RunRecord> records;
  double cum_flops = 0, cum_seconds = 0;
  std::optional<train::Cost> cum_cost;  // unset until a round carries a ledger

  auto write_summaries = [&] {
    json all = json::array();
    std::string lines;
    for (const auto& r : records) {
      all.push_back(record_json(r));
      lines += record_json(r).dump() + "\n";
    }
    write_file_atomic(cfg.out_dir + "/log.jsonl", lines);
    write_file_atomic(cfg.out_dir + "/results.json", json{{"settings", settings}, {"runs", all}}.dump(2) + "\n");
    write_file_atomic(cfg.out_dir + "/results.md", ticket_table(records, cfg.eval_split));
  };

  // Trains `model` as run (round, kind) unless that run finished before.
  auto run = [&](int round, const std::string& kind, nn::Model& model) -> RunRecord {
    const std::string dir = cfg.out_dir + "/round_" + std::to_string(round) + "/" + kind;
    const std::string result_path = dir + "/result.json";
    RunRecord rec;
    if (file_exists(result_path)) {
      rec = parse_record(result_path);
    } else {
      rec.round = round;
      rec.kind = kind;
      const prune::SparsityReport sp = prune::sparsity(model);
      if (obs.on_run) obs.on_run(rec, done, total);
      train::TrainConfig tc = cfg.train;
      tc.out_dir = dir;
      tc.resume = true;  // continues an interrupted run; starts fresh otherwise
      tc.snapshot_step = round == 0 && kind == "ticket" ? cfg.rewind_step : 0;
      rec.density = sp.density();
      rec.sparsity = sp.sparsity();
      for (const auto& l : sp.layers) rec.layer_density.emplace_back(l.name, l.density());
      if (const std::optional<json> end = fit_end_event(dir + "/log.jsonl")) {
        // fit() finished but the process stopped before result.json: take
        // the run as it ended. (Resuming would train nothing, report no
        // test and save the net again with that empty test.)
        rec.test_accuracy = end->at("test_accuracy").get<double>();
        rec.test_loss = end->at("test_loss").get<double>();
        rec.flops = end->at("flops").get<double>();
        rec.dense_flops = end->at("dense_flops").get<double>();
        rec.executed_flops = end->value("executed_flops", rec.dense_flops);
        rec.steps = end->at("steps").get<int64_t>();
      } else {
        const train::TrainResult tr = train::fit(model, train_set, test_set, tc, obs.train);
        rec.test_accuracy = tr.final_test.accuracy;
        rec.test_loss = tr.final_test.loss;
        rec.flops = tr.flops;
        rec.dense_flops = tr.dense_flops;
        rec.executed_flops = tr.executed_flops;
        rec.steps = tr.steps;
      }
      const train::RunLogSummary log = train::summarize_run_log(dir + "/log.jsonl");
      rec.seconds = log.train_seconds;
      rec.best_accuracy = log.best_test_accuracy;
      rec.cost = log.cost;
      write_file_atomic(result_path, record_json(rec).dump(2) + "\n");
    }
    ++done;
    return rec;
  };

  for (int round = 0; round <= cfg.rounds; ++round) {
    auto ticket = ticket_start(cfg, round);
    const Masks masks = copy_masks(*ticket);
    RunRecord rec = run(round, "ticket", *ticket);
    cum_flops += rec.flops;
    cum_seconds += rec.seconds;
    rec.cumulative_flops = cum_flops;
    rec.cumulative_seconds = cum_seconds;
    if (rec.cost.is_object()) {
      const train::Cost c = train::cost_from_json(rec.cost);
      cum_cost = cum_cost ? train::add(*cum_cost, c) : c;
      rec.cumulative_cost = cum_cost->to_json();
    }
    records.push_back(rec);
    if (obs.on_result) obs.on_result(rec);
    if (cfg.controls && round > 0) {
      // Control 1: the same mask on a fresh random initialisation.
      auto reinit = nn::Model::build(cfg.spec, cfg.train.seed + cfg.control_seed);
      set_masks(*reinit, masks);
      records.push_back(run(round, "reinit", *reinit));
      if (obs.on_result) obs.on_result(records.back());
      // Control 2: a random mask with the ticket's per-layer counts, on the
      // ticket's own starting weights.
      auto random = rewind_weights(cfg);
      prune::ensure_masks(*random);
      std::vector<int64_t> keep;
      prune::Scores scores;
      Rng root = Rng(cfg.train.seed).fork(0xC0A7201ull + static_cast<uint64_t>(round));
      const auto ps = prune::prunable(*random);
      for (size_t i = 0; i < ps.size(); ++i) {
        keep.push_back(prune::alive(*prune::prunable(*ticket)[i]));
        Rng r = root.fork(i);
        Tensor s = Tensor::empty(ps[i]->value().shape());
        for (int64_t j = 0; j < s.numel(); ++j) s.f32()[j] = r.uniform();
        scores.push_back(std::move(s));
      }
      prune::keep_top_per_layer(*random, scores, keep);
      records.push_back(run(round, "random", *random));
      if (obs.on_result) obs.on_result(records.back());
    }
    write_summaries();
  }
  return records;
}

// ---- tickets over seeds ----

void TicketSeedsConfig::validate() const {
  if (out_dir.empty()) fail("a sweep over seeds needs a directory (--out)");
  if (seeds < 1) fail("--seeds must be at least 1, got ", seeds);
  if (first_seed > std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(seeds - 1))
    fail("--seed ", first_seed, " with --seeds ", seeds, " runs past the largest seed");
  if (!inputs) fail("a sweep over seeds needs a way to load each seed's data");
  TicketConfig one = ticket;
  one.out_dir = ticket_seed_dir(out_dir, first_seed);
  one.validate();
}

std::string ticket_seed_dir(const std::string& out_dir, uint64_t seed) {
  return out_dir + "/seed" + std::to_string(seed);
}

namespace {

int total_runs(const TicketConfig& c) { return (c.rounds + 1) + (c.controls ? 2 * c.rounds : 0); }

TicketConfig seed_config(const TicketSeedsConfig& c, uint64_t seed) {
  TicketConfig t = c.ticket;
  t.train.seed = seed;
  t.train.comm = nullptr;  // a seed trains on the rank that runs it, never split across ranks
  t.out_dir = ticket_seed_dir(c.out_dir, seed);
  return t;
}

// Settings as rank 0 can compare them without loading a seed's data: the
// spec's input statistics (--normalize) come from that data.
json comparable_settings(json settings) {
  if (settings.contains("spec") && settings["spec"].is_object()) settings["spec"].erase("input_norm");
  return settings;
}

// Seed `seed`'s records when its ticket finished before (its results.json
// holds every run); raises Error when its directory holds other settings.
std::optional<std::vector<RunRecord>> finished_seed(const TicketSeedsConfig& c, uint64_t seed) {
  const TicketConfig t = seed_config(c, seed);
  const std::string path = t.out_dir + "/results.json";
  if (!file_exists(path)) return std::nullopt;
  std::vector<RunRecord> records;
  try {
    const json j = json::parse(read_file(path));
    if (!same_settings(comparable_settings(j.at("settings")), comparable_settings(settings_json(t))))
      fail(t.out_dir, " holds a ticket run with other settings (see its settings.json); choose another --out");
    for (const json& r : j.at("runs")) {
      records.push_back(record_from_json(r));
      records.back().skipped = true;
    }
  } catch (const json::exception& e) {
    fail(path, ": not a ticket's results (", e.what(), "); delete it to redo seed ", seed);
  }
  if (static_cast<int>(records.size()) < total_runs(t)) return std::nullopt;  // resumes on a worker
  return records;
}

// Runs seed `seed`'s ticket on this rank and returns its records as JSON.
std::string run_seed_task(const TicketSeedsConfig& c, uint64_t seed) {
  TicketConfig t = seed_config(c, seed);
  if (c.overwrite && file_exists(t.out_dir + "/settings.json")) std::filesystem::remove_all(t.out_dir);
  TicketInputs in = c.inputs(seed);
  t.spec = std::move(in.spec);
  const std::vector<RunRecord> records = run_ticket(t, in.data.train, in.data.test);
  json runs = json::array();
  bool all_skipped = true;
  for (const RunRecord& r : records) {
    json j = record_json(r);
    j["skipped"] = r.skipped;
    runs.push_back(j);
    all_skipped = all_skipped && r.skipped;
  }
  return json{{"seed", seed}, {"skipped", all_skipped}, {"runs", runs}}.dump();
}

json seeds_row_json(const TicketSeedsRow& r) {
  return {{"round", r.round},
          {"kind", r.kind},
          {"seeds", r.seeds},
          {"density", r.density},
          {"test_accuracy_mean", r.mean_accuracy},
          {"test_accuracy_std", r.std_accuracy},
          {"test_accuracy_min", r.min_accuracy},
          {"test_accuracy_max", r.max_accuracy},
          {"best_accuracy_mean", r.mean_best_accuracy}};
}

}  // namespace

std::vector<TicketSeedsRow> ticket_seeds_rows(const std::vector<TicketSeed>& seeds) {
  const std::vector<std::string> order = {"ticket", "reinit", "random"};
  auto kind_rank = [&](const std::string& k) {
    return std::find(order.begin(), order.end(), k) - order.begin();
  };
  std::map<std::pair<int, int64_t>, std::vector<const RunRecord*>> groups;
  std::map<std::pair<int, int64_t>, std::string> kinds;
  for (const TicketSeed& s : seeds)
    for (const RunRecord& r : s.records) {
      const std::pair<int, int64_t> key{r.round, kind_rank(r.kind)};
      groups[key].push_back(&r);
      kinds[key] = r.kind;
    }
  std::vector<TicketSeedsRow> rows;
  for (const auto& [key, runs] : groups) {
    TicketSeedsRow row;
    row.round = key.first;
    row.kind = kinds[key];
    row.seeds = static_cast<int>(runs.size());
    const double n = static_cast<double>(runs.size());
    row.min_accuracy = runs[0]->test_accuracy;
    row.max_accuracy = runs[0]->test_accuracy;
    for (const RunRecord* r : runs) {
      row.density += r->density / n;
      row.mean_accuracy += r->test_accuracy / n;
      row.mean_best_accuracy += r->best_accuracy / n;
      row.min_accuracy = std::min(row.min_accuracy, r->test_accuracy);
      row.max_accuracy = std::max(row.max_accuracy, r->test_accuracy);
    }
    double ss = 0;
    for (const RunRecord* r : runs) {
      const double d = r->test_accuracy - row.mean_accuracy;
      ss += d * d;
    }
    row.std_accuracy = runs.size() > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
    rows.push_back(row);
  }
  return rows;
}

std::string ticket_seeds_table(const std::vector<TicketSeed>& seeds, const std::string& eval_split) {
  auto pct = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f %%", 100 * v);
    return std::string(b);
  };
  std::ostringstream os;
  os << "| round | kind | seeds | weights left | " << eval_split << " acc mean | std | min - max | best acc mean |\n"
        "|---|---|---|---|---|---|---|---|\n";
  for (const TicketSeedsRow& r : ticket_seeds_rows(seeds))
    os << "| " << r.round << " | " << r.kind << " | " << r.seeds << " | " << pct(r.density) << " | "
       << pct(r.mean_accuracy) << " | " << pct(r.std_accuracy) << " | " << pct(r.min_accuracy) << " - "
       << pct(r.max_accuracy) << " | " << pct(r.mean_best_accuracy) << " |\n";
  return os.str();
}

std::vector<TicketSeed> run_ticket_seeds(const TicketSeedsConfig& cfg, dist::Communicator& comm,
                                         const TicketSeedsObserver& obs) {
  cfg.validate();
  // One seed at a time per rank: its training takes the process's threads.
  constexpr int kWorkers = 1;
  const auto task = [&cfg](int64_t, const std::string& t) {
    return run_seed_task(cfg, json::parse(t).at("seed").get<uint64_t>());
  };
  if (comm.rank() != 0) {
    dist::run_task_pool(comm, {}, kWorkers, task);
    return {};
  }
  make_dirs(cfg.out_dir);
  const int total = cfg.seeds;
  std::vector<TicketSeed> seeds(static_cast<size_t>(total));
  std::vector<bool> finished(seeds.size(), false);
  int done = 0;

  auto write_summaries = [&] {
    std::vector<TicketSeed> have;
    json per_seed = json::array();
    for (size_t i = 0; i < seeds.size(); ++i) {
      if (!finished[i]) continue;
      have.push_back(seeds[i]);
      json runs = json::array();
      for (const RunRecord& r : seeds[i].records) runs.push_back(record_json(r));
      per_seed.push_back({{"seed", seeds[i].seed}, {"rank", seeds[i].rank}, {"runs", runs}});
    }
    json rows = json::array();
    for (const TicketSeedsRow& r : ticket_seeds_rows(have)) rows.push_back(seeds_row_json(r));
    json settings = settings_json(seed_config(cfg, cfg.first_seed));
    settings["train"].erase("seed");  // each seed's own is in its directory
    write_file_atomic(cfg.out_dir + "/results.json",
                      json{{"settings", settings}, {"first_seed", cfg.first_seed}, {"seeds", cfg.seeds},
                           {"finished", have.size()}, {"rows", rows}, {"per_seed", per_seed}}
                              .dump(2) + "\n");
    const std::string head =
        "Lottery tickets over seeds " + std::to_string(cfg.first_seed) + " .. " +
        std::to_string(cfg.first_seed + static_cast<uint64_t>(cfg.seeds - 1)) + ": " +
        std::to_string(have.size()) + " of " + std::to_string(total) +
        " finished (each in seed<S>/). Accuracy on the " + cfg.ticket.eval_split +
        " split at the end of each run, over the seeds.\n\n";
    write_file_atomic(cfg.out_dir + "/results.md", head + ticket_seeds_table(have, cfg.ticket.eval_split));
  };

  std::vector<size_t> pending;
  std::vector<std::string> tasks;
  for (int k = 0; k < total; ++k) {
    const uint64_t seed = cfg.first_seed + static_cast<uint64_t>(k);
    TicketSeed& s = seeds[static_cast<size_t>(k)];
    s.seed = seed;
    std::optional<std::vector<RunRecord>> records;
    if (!cfg.overwrite) records = finished_seed(cfg, seed);
    if (records) {
      s.records = std::move(*records);
      s.skipped = true;
      finished[static_cast<size_t>(k)] = true;
      ++done;
      if (obs.on_seed) obs.on_seed(s, done, total);
    } else {
      pending.push_back(static_cast<size_t>(k));
      tasks.push_back(json{{"seed", seed}}.dump());
    }
  }
  const auto on_result = [&](int64_t k, const dist::TaskResult& res) {
    TicketSeed& s = seeds[pending[static_cast<size_t>(k)]];
    const json j = json::parse(res.text);
    s.rank = res.rank;
    s.skipped = j.at("skipped").get<bool>();
    s.records.clear();
    for (const json& r : j.at("runs")) {
      s.records.push_back(record_from_json(r));
      s.records.back().skipped = r.at("skipped").get<bool>();
    }
    finished[pending[static_cast<size_t>(k)]] = true;
    ++done;
    write_summaries();
    if (obs.on_seed) obs.on_seed(s, done, total);
  };
  dist::run_task_pool(comm, tasks, kWorkers, task, on_result);
  write_summaries();
  return seeds;
}

}  // namespace pare::experiments
