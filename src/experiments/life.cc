// The Game of Life study: runs, their records on disk, the sweep over
// threads and ranks, and the table with Wilson intervals (life.h).
#include "pare/experiments/life.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include "pare/base/error.h"
#include "pare/base/json_number.h"
#include "pare/base/strings.h"
#include "pare/base/file.h"
#include "pare/base/rng.h"
#include "pare/base/thread_pool.h"
#include "pare/dist/task_pool.h"
#include "pare/nn/spec.h"
#include "pare/prune/prune.h"

namespace pare::experiments {

using json = nlohmann::json;

void LifeRecipe::validate() const {
  if (examples < 1) fail("--examples must be at least 1 (training boards), got ", examples);
  if (test_examples < 1) fail("--test-examples must be at least 1 (test boards), got ", test_examples);
  if (batch < 1) fail("--batch must be at least 1, got ", batch);
  if (epochs < 1) fail("--epochs must be at least 1, got ", epochs);
  if (!(lr > 0) || !std::isfinite(lr)) fail("--lr must be a positive number, got ", lr);
  if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
    fail("--weight-decay must be >= 0, got ", weight_decay);
  if (board < 3) fail("--board-size must be at least 3 (a 3x3 neighbourhood), got ", board);
  if (board > 4096) fail("--board-size must be at most 4096, got ", board);
  if (std::isnan(density) || density > 1)
    fail("--density must be in [0, 1] (leave it out for a density uniform per board), got ", density);
  if (std::isnan(test_density) || test_density > 1)
    fail("--test-density must be in [0, 1] (leave it out for a density uniform per board), got ",
         test_density);
}

void LifeStudyConfig::validate() const {
  recipe.validate();
  if (out_dir.empty()) fail("a life study needs a directory (--out)");
  auto check_list = [](const char* flag, const char* what, const std::vector<int>& v) {
    if (v.empty()) fail(flag, " needs at least one ", what, ", e.g. ", flag, " 1,2");
    std::set<int> seen;
    for (int x : v) {
      if (x < 1) fail(flag, ": every ", what, " must be at least 1, got ", x);
      if (x > 1000) fail(flag, ": ", what, " ", x, " is too large (at most 1000)");
      if (!seen.insert(x).second) fail(flag, " lists ", x, " twice");
    }
  };
  check_list("--steps", "step count n", steps);
  check_list("--widths", "width factor m", widths);
  if (seeds < 1) fail("--seeds must be at least 1, got ", seeds);
  if (jobs < 0) fail("--jobs must be at least 1 (or 0: one per core), got ", jobs);
}

std::string life_run_dir(const std::string& out_dir, int n, int m, uint64_t seed) {
  return out_dir + "/n" + std::to_string(n) + "_m" + std::to_string(m) + "/seed" + std::to_string(seed);
}

std::unique_ptr<nn::Model> life_model(const LifeRecipe& r, int n, int m, uint64_t seed) {
  return nn::Model::build(
      nn::preset("life", {.life_steps = n, .width = m, .board = static_cast<int>(r.board)}), seed);
}

data::TrainTest life_data(const LifeRecipe& r, int n, uint64_t seed) {
  r.validate();
  // The streams of `pare train --data life --seed S` (cli/common.cc), so a
  // run can be redone there; the test boards mix densities (or take the
  // recipe's test density) whatever the training density.
  Rng train_rng = Rng(seed).fork(0x11FE);
  Rng test_rng = Rng(seed).fork(0x7E57);
  const data::LifeConfig train_cfg{.size = r.board, .steps = n, .density = r.density};
  const data::LifeConfig test_cfg{.size = r.board, .steps = n, .density = r.test_density};
  return {data::life_boards(r.examples, train_cfg, train_rng),
          data::life_boards(r.test_examples, test_cfg, test_rng)};
}

train::TrainConfig life_train_config(const LifeRecipe& r, uint64_t seed, const std::string& dir) {
  train::TrainConfig t;
  t.epochs = r.epochs;
  t.batch = r.batch;
  t.seed = seed;
  t.optimizer.name = "adam";
  t.optimizer.lr = r.lr;
  t.optimizer.weight_decay = r.weight_decay;
  t.target_exact = r.stop_at_success ? 1.0 : 0.0;
  t.out_dir = dir;
  t.resume = !dir.empty();  // continues an interrupted run; starts fresh otherwise
  return t;
}

namespace {

constexpr int64_t kEvalBatch = 1000;  // fit()'s default evaluation batch

// True when the fit() run log in `path` ends with its "end" event (copied to `end`).
bool finished_log(const std::string& path, json& end) {
  if (!file_exists(path)) return false;
  std::istringstream in(read_file(path));
  json last;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) last = json::parse(line);
  if (!last.is_object() || last.value("event", "") != "end") return false;
  end = last;
  return true;
}

// The epoch at which an unfinished run's log reports every test sample
// right (0: none).
int64_t solved_epoch(const std::string& path) {
  if (!file_exists(path)) return 0;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      if (j.value("event", "") == "epoch" && j.value("test_exact", 0.0) >= 1.0)
        return whole_number_or(j, "epoch", 0, 0, int64_t{1} << 40, path + ": the epoch event's");
    } catch (const json::exception& e) {
      fail(path, ": not a run log line (", e.what(), ")");
    }
  }
  return 0;
}

// A float setting as JSON, with the digits a person typed (1e-3f is
// 0.0010000000474974513 as a double).
json short_float(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.7g", static_cast<double>(v));
  return json(std::strtod(b, nullptr));
}

json recipe_json(const LifeRecipe& r) {
  return {{"kind", "life"},
          {"examples", r.examples},
          {"test_examples", r.test_examples},
          {"test_density", r.test_density < 0 ? json("uniform per board") : short_float(r.test_density)},
          {"batch", r.batch},
          {"epochs", r.epochs},
          {"optimizer", "adam"},
          {"lr", short_float(r.lr)},
          {"weight_decay", short_float(r.weight_decay)},
          {"loss", "bce_with_logits"},
          {"board", r.board},
          {"density", r.density < 0 ? json("uniform per board") : short_float(r.density)},
          {"stop_at_success", r.stop_at_success}};
}

json run_json(const LifeRun& r) {
  return {{"n", r.n},
          {"m", r.m},
          {"seed", r.seed},
          {"success", r.success},
          {"steps", r.steps},
          {"epochs", r.epochs},
          {"seconds", r.seconds},
          {"train_seconds", r.train_seconds},
          {"flops", r.flops},
          {"cost", r.cost},
          {"parameters", r.parameters},
          {"weights_alive", r.weights_alive},
          {"test_exact", r.exact},
          {"test_accuracy", r.accuracy},
          {"test_loss", r.loss}};
}

// A run record from its JSON (run_json's fields); raises json::exception
// when a field is missing or of the wrong type.
// j[key] as a whole number in [lo, hi] (base/json_number.h).
int64_t whole_number(const json& j, const char* key, int64_t lo, int64_t hi) {
  return pare::whole_number(j.at(key), lo, hi, std::string("\"") + key + "\"");
}

LifeRun run_from_json(const json& j) {
  constexpr int64_t kMaxCount = int64_t{1} << 53;
  LifeRun r;
  r.n = static_cast<int>(whole_number(j, "n", 1, 1 << 20));
  r.m = static_cast<int>(whole_number(j, "m", 1, 1 << 20));
  // Seeds use all 64 bits; nlohmann keeps any non-negative integer unsigned.
  if (const json& seed = j.at("seed"); seed.is_number_unsigned())
    r.seed = seed.get<uint64_t>();
  else
    fail("\"seed\" is ", seed.dump().substr(0, 40), ", not a whole number >= 0");
  r.success = j.at("success").get<bool>();
  r.steps = whole_number(j, "steps", 0, kMaxCount);
  r.epochs = whole_number(j, "epochs", 0, kMaxCount);
  r.seconds = j.at("seconds").get<double>();
  r.train_seconds = j.at("train_seconds").get<double>();
  r.flops = j.at("flops").get<double>();
  if (j.contains("cost")) r.cost = j["cost"];  // results written before the ledger have none
  r.parameters = whole_number(j, "parameters", 0, kMaxCount);
  r.weights_alive = whole_number(j, "weights_alive", 0, kMaxCount);
  r.exact = j.at("test_exact").get<double>();
  r.accuracy = j.at("test_accuracy").get<double>();
  r.loss = j.at("test_loss").get<double>();
  return r;
}

LifeRun read_run(const std::string& dir) {
  const std::string path = dir + "/result.json";
  LifeRun r;
  try {
    r = run_from_json(json::parse(read_file(path)));
  } catch (const json::exception& e) {
    fail(path, ": not a life run result (", e.what(), "); delete it to redo the run");
  } catch (const Error& e) {
    fail(path, ": not a life run result (", e.what(), "); delete it to redo the run");
  }
  r.dir = dir;
  r.skipped = true;
  return r;
}

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f %%", 100 * v);
  return b;
}

}  // namespace

LifeRun run_life(const LifeRecipe& r, int n, int m, uint64_t seed, nn::Model& model,
                 const std::string& dir, const train::Observer& obs) {
  r.validate();
  if (dir.empty()) fail("a life run needs a run directory");
  if (file_exists(dir + "/result.json")) {
    LifeRun done = read_run(dir);
    if (done.n != n || done.m != m || done.seed != seed)
      fail(dir, "/result.json is run n=", done.n, " m=", done.m, " seed=", done.seed, ", not n=", n,
           " m=", m, " seed=", seed, "; choose another directory");
    return done;
  }
  const std::vector<int64_t> want = {1, r.board, r.board};
  if (model.spec().input != want || model.spec().loss != "bce_with_logits")
    fail("a life run needs a net that reads 1x", r.board, "x", r.board,
         " boards with a bce_with_logits loss; ", model.spec().name, " does not");
  const data::TrainTest d = life_data(r, n, seed);
  LifeRun rec;
  rec.n = n;
  rec.m = m;
  rec.seed = seed;
  rec.dir = dir;
  rec.parameters = model.num_parameters();
  rec.weights_alive = prune::sparsity(model).kept;
  train::EvalResult final;
  if (json end; finished_log(dir + "/log.jsonl", end)) {
    // fit() finished but the process stopped before result.json: resuming
    // would train on past a success, so take the saved net as it ended.
    model.store().values().copy_from(train::load_model(dir + "/model.bin")->store().values());
    final = train::evaluate(model, d.test, kEvalBatch);
    rec.steps = whole_number_or(end, "steps", 0, 0, int64_t{1} << 53, "the end event's");
    rec.seconds = end.value("seconds", 0.0);
    rec.flops = end.value("flops", 0.0);
    if (end.contains("cost")) rec.cost = end["cost"];
  } else {
    train::TrainConfig tc = life_train_config(r, seed, dir);
    // Stopped by a crash after the checkpoint of its solving epoch: end the
    // run there (fit then only loads the checkpoint and saves the net).
    if (const int64_t solved = solved_epoch(dir + "/log.jsonl"); solved > 0 && r.stop_at_success)
      tc.epochs = solved;
    const train::TrainResult tr = train::fit(model, d.train, d.test, tc, obs);
    // A run resumed from its last checkpoint trains no epoch and reports no test.
    final = tr.final_test.samples > 0 ? tr.final_test : train::evaluate(model, d.test, kEvalBatch);
    rec.steps = tr.steps;
    rec.seconds = tr.seconds;
    rec.flops = tr.flops;
    rec.cost = tr.cost.to_json();
  }
  rec.success = final.exact >= 1.0;
  rec.exact = final.exact;
  rec.accuracy = final.accuracy;
  rec.loss = final.loss;
  const train::RunLogSummary log = train::summarize_run_log(dir + "/log.jsonl");
  rec.epochs = log.epochs;
  rec.train_seconds = log.train_seconds;
  write_file_atomic(dir + "/result.json", run_json(rec).dump(2) + "\n");
  return rec;
}

Interval wilson_interval(int64_t successes, int64_t runs, double z) {
  PARE_CHECK(successes >= 0 && successes <= runs, "successes ", successes, " of ", runs, " runs");
  if (runs == 0) return {0, 1};
  const double k = static_cast<double>(runs);
  const double p = static_cast<double>(successes) / k;
  const double z2 = z * z;
  const double centre = (p + z2 / (2 * k)) / (1 + z2 / k);
  const double half = z / (1 + z2 / k) * std::sqrt(p * (1 - p) / k + z2 / (4 * k * k));
  // At 0 or all successes one end is exactly 0 or 1; say so rather than
  // leave a rounding residue.
  return {successes == 0 ? 0.0 : std::max(0.0, centre - half),
          successes == runs ? 1.0 : std::min(1.0, centre + half)};
}

std::vector<LifeCell> life_cells(const std::vector<LifeRun>& runs) {
  std::map<std::pair<int, int>, LifeCell> cells;
  std::map<std::pair<int, int>, double> solved_steps;
  for (const LifeRun& r : runs) {
    LifeCell& c = cells[{r.n, r.m}];
    c.n = r.n;
    c.m = r.m;
    c.parameters = r.parameters;
    ++c.runs;
    c.seconds += r.seconds;
    c.flops += r.flops;
    if (r.success) {
      ++c.successes;
      solved_steps[{r.n, r.m}] += static_cast<double>(r.steps);
    }
  }
  std::vector<LifeCell> out;
  for (auto& [key, c] : cells) {
    c.rate = static_cast<double>(c.successes) / c.runs;
    c.ci = wilson_interval(c.successes, c.runs);
    c.mean_steps = c.successes ? solved_steps[key] / c.successes : 0;
    out.push_back(c);
  }
  return out;
}

std::string life_table(const std::vector<LifeRun>& runs) {
  std::ostringstream os;
  os << "| n | m | parameters | solved / runs | success rate | 95 % CI (Wilson) | mean steps to solve |"
        " seconds | GFLOP |\n"
        "|---|---|---|---|---|---|---|---|---|\n";
  for (const LifeCell& c : life_cells(runs))
    os << "| " << c.n << " | " << c.m << " | " << c.parameters << " | " << c.successes << " / " << c.runs
       << " | " << pct(c.rate) << " | " << pct(c.ci.lo) << " - " << pct(c.ci.hi) << " | "
       << (c.successes ? strf("%.0f", c.mean_steps) : "-") << " | " << strf("%.1f", c.seconds) << " | "
       << strf("%.1f", c.flops / 1e9) << " |\n";
  return os.str();
}

namespace {

// The threads of one process that run the study's runs (each run on one).
int study_threads(const LifeStudyConfig& cfg) { return cfg.jobs > 0 ? cfg.jobs : default_num_threads(); }

// Runs the study's run described by `task` ({"n", "m", "seed"}, from rank 0)
// on this thread alone and returns its record as JSON, with "skipped".
std::string run_study_task(const LifeStudyConfig& cfg, const std::string& task) {
  const json t = json::parse(task);
  const int n = t.at("n").get<int>(), m = t.at("m").get<int>();
  const uint64_t seed = t.at("seed").get<uint64_t>();
  // Each run on this thread alone: the shared pool takes one loop at a
  // time, and a run's bits must not depend on --jobs or the ranks.
  SerialScope serial;
  auto model = life_model(cfg.recipe, n, m, seed);
  const LifeRun r = run_life(cfg.recipe, n, m, seed, *model, life_run_dir(cfg.out_dir, n, m, seed));
  json j = run_json(r);
  j["skipped"] = r.skipped;  // found finished on the disk of the rank that ran it
  return j.dump();
}

}  // namespace

std::vector<LifeRun> run_life_study(const LifeStudyConfig& cfg, const LifeObserver& obs) {
  dist::LocalCommunicator local;
  return run_life_study(cfg, local, obs);
}

std::vector<LifeRun> run_life_study(const LifeStudyConfig& cfg, dist::Communicator& comm,
                                    const LifeObserver& obs) {
  cfg.validate();
  const auto task = [&cfg](int64_t, const std::string& t) { return run_study_task(cfg, t); };
  if (comm.rank() != 0) {
    // Rank 0 decides what runs and keeps the records; this rank runs what it is given.
    dist::run_task_pool(comm, {}, study_threads(cfg), task);
    return {};
  }
  make_dirs(cfg.out_dir);
  const std::string settings_path = cfg.out_dir + "/settings.json";
  const json settings = recipe_json(cfg.recipe);
  const std::string settings_text = settings.dump(2) + "\n";
  if (file_exists(settings_path)) {
    if (read_file(settings_path) != settings_text)
      fail(cfg.out_dir, " holds a life study with another recipe (see its settings.json); choose another --out");
  } else {
    write_file_atomic(settings_path, settings_text);
  }

  struct Job {
    int n, m;
    uint64_t seed;
  };
  std::vector<Job> jobs;
  for (int n : cfg.steps)
    for (int m : cfg.widths)
      for (int s = 0; s < cfg.seeds; ++s) jobs.push_back({n, m, static_cast<uint64_t>(s)});
  std::vector<LifeRun> runs(jobs.size());
  std::vector<bool> finished(jobs.size(), false);
  // Runs of the same recipe finished earlier in this directory for other
  // cells or seeds (a study widened or run in parts): the table shows them too.
  std::vector<LifeRun> earlier;
  {
    std::set<std::tuple<int, int, uint64_t>> wanted;
    for (const Job& j : jobs) wanted.insert({j.n, j.m, j.seed});
    static const std::regex cell(R"(n(\d+)_m(\d+))"), seed_dir(R"(seed(\d+))");
    std::error_code ec;
    for (const auto& c : std::filesystem::directory_iterator(cfg.out_dir, ec)) {
      std::smatch cm;
      const std::string cname = c.path().filename().string();
      if (!c.is_directory() || !std::regex_match(cname, cm, cell)) continue;
      for (const auto& sd : std::filesystem::directory_iterator(c.path(), ec)) {
        std::smatch sm;
        const std::string sname = sd.path().filename().string();
        if (!std::regex_match(sname, sm, seed_dir) || !file_exists(sd.path().string() + "/result.json")) continue;
        if (wanted.count({std::stoi(cm[1]), std::stoi(cm[2]), std::stoull(sm[1])})) continue;
        earlier.push_back(read_run(sd.path().string()));
      }
    }
    std::sort(earlier.begin(), earlier.end(), [](const LifeRun& a, const LifeRun& b) {
      return std::tie(a.n, a.m, a.seed) < std::tie(b.n, b.m, b.seed);
    });
  }
  const int total = static_cast<int>(jobs.size());
  int done = 0;

  // Ordered by (n, m, seed) whatever order the runs finished in.
  auto write_summaries = [&] {
    std::vector<LifeRun> have = earlier;
    for (size_t i = 0; i < runs.size(); ++i)
      if (finished[i]) have.push_back(runs[i]);
    std::stable_sort(have.begin(), have.end(), [](const LifeRun& a, const LifeRun& b) {
      return std::tie(a.n, a.m, a.seed) < std::tie(b.n, b.m, b.seed);
    });
    json all = json::array();
    for (const LifeRun& r : have) all.push_back(run_json(r));
    json cells = json::array();
    for (const LifeCell& c : life_cells(have))
      cells.push_back({{"n", c.n}, {"m", c.m}, {"parameters", c.parameters}, {"runs", c.runs},
                       {"successes", c.successes}, {"success_rate", c.rate}, {"ci95", {c.ci.lo, c.ci.hi}},
                       {"mean_steps_to_solve", c.mean_steps}, {"seconds", c.seconds}, {"flops", c.flops}});
    write_file_atomic(cfg.out_dir + "/results.json",
                      json{{"settings", settings}, {"steps", cfg.steps}, {"widths", cfg.widths},
                           {"seeds", cfg.seeds}, {"finished", have.size()},
                           {"total", total + static_cast<int>(earlier.size())},
                           {"cells", cells}, {"runs", all}}
                              .dump(2) + "\n");
    std::string md = "Game of Life study: " + std::to_string(have.size()) + " of " +
                     std::to_string(total + static_cast<int>(earlier.size())) +
                     " runs finished. A run is solved when every cell of every one of its " +
                     std::to_string(cfg.recipe.test_examples) + " test boards is right.\n\n";
    write_file_atomic(cfg.out_dir + "/results.md", md + life_table(have));
  };

  std::vector<size_t> pending;
  std::vector<std::string> tasks;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const std::string dir = life_run_dir(cfg.out_dir, jobs[i].n, jobs[i].m, jobs[i].seed);
    if (file_exists(dir + "/result.json")) {
      runs[i] = read_run(dir);
      finished[i] = true;
      ++done;
      if (obs.on_result) obs.on_result(runs[i], done, total);
    } else {
      pending.push_back(i);
      tasks.push_back(json{{"n", jobs[i].n}, {"m", jobs[i].m}, {"seed", jobs[i].seed}}.dump());
    }
  }

  // The pool calls this one result at a time, in the order runs finish.
  const auto on_result = [&](int64_t k, const dist::TaskResult& res) {
    const size_t i = pending[static_cast<size_t>(k)];
    const json j = json::parse(res.text);
    LifeRun r = run_from_json(j);
    r.skipped = j.value("skipped", false);
    r.rank = res.rank;
    r.dir = life_run_dir(cfg.out_dir, r.n, r.m, r.seed);
    runs[i] = r;
    finished[i] = true;
    ++done;
    write_summaries();
    if (obs.on_result) obs.on_result(r, done, total);
  };
  const int threads = static_cast<int>(std::max<size_t>(
      1, std::min<size_t>(pending.size(), static_cast<size_t>(study_threads(cfg)))));
  dist::run_task_pool(comm, tasks, threads, task, on_result);
  write_summaries();
  return runs;
}

}  // namespace pare::experiments
