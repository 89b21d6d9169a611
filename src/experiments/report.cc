// pare report (report.h): reads run directories, ticket and Life results and
// .pare files into one JSON document, and wraps it with Chart.js and the
// page's script (report_page.js) into a single HTML file.
#include "pare/experiments/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/format/pare_file.h"

namespace pare::experiments {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kMaxDepth = 3;  // how deep a directory of runs is searched

// ---- reading JSON that may lack any field ----

double num(const json& j, const char* key) {
  if (!j.is_object()) return kNaN;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

const json& obj(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// A number for the page: NaN and infinities become null.
json jnum(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// First finite of the values, else NaN.
double first(std::initializer_list<double> values) {
  for (double v : values)
    if (std::isfinite(v)) return v;
  return kNaN;
}

std::optional<json> read_json(const std::string& path, std::vector<std::string>& missing) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    missing.push_back(std::string(e.what()));
    return std::nullopt;
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    missing.push_back(path + ": not valid JSON, skipped");
    return std::nullopt;
  }
  return j;
}

// ---- what the runs hold ----

struct LayerDensity {
  std::string name;
  double density = kNaN;  // fraction of the layer's weights kept
};

std::vector<LayerDensity> layers_of(const json& layers) {
  std::vector<LayerDensity> out;
  if (!layers.is_array()) return out;
  for (const json& l : layers) {
    LayerDensity d{str(l, "name"), num(l, "density")};
    if (!std::isfinite(d.density)) {
      const double kept = num(l, "kept"), total = num(l, "total");
      if (total > 0) d.density = kept / total;
    }
    if (!d.name.empty() && std::isfinite(d.density)) out.push_back(d);
  }
  return out;
}

// The cost ledger's figures for one training (or a sum of them); NaN: absent.
struct Cost {
  double flops = kNaN, executed_flops = kNaN, dense_flops = kNaN;
  double seconds = kNaN, cpu_seconds = kNaN, peak_rss = kNaN;
  double joules = kNaN, co2e = kNaN, grid = kNaN, pue = kNaN, money = kNaN, price = kNaN;
  std::string currency, energy_method, energy_detail;
  int energy_parts = 0, energy_measured_parts = 0;  // trainings with energy / measured energy
  int parts = 0;                                    // trainings summed
  bool ledger = false;                              // some part had a "cost" object
};

// From an "end" event or a ticket round: the "cost" object when there is one,
// else the event's own flops / seconds fields.
Cost cost_of(const json& event) {
  Cost c;
  c.parts = 1;
  const json& k = obj(event, "cost");
  c.ledger = k.is_object();
  c.flops = first({num(k, "flops"), num(event, "flops")});
  c.executed_flops = first({num(k, "executed_flops"), num(event, "executed_flops")});
  c.dense_flops = first({num(k, "dense_flops"), num(event, "dense_flops")});
  c.seconds = first({num(k, "seconds"), num(event, "seconds")});
  c.cpu_seconds = first({num(k, "cpu_seconds"), num(event, "cpu_seconds")});
  c.peak_rss = first({num(k, "peak_rss_bytes"), num(event, "peak_rss_bytes")});
  c.joules = num(k, "joules");
  const json& energy = obj(k, "energy");
  c.energy_method = str(energy, "method");
  c.energy_detail = str(energy, "detail");
  if (std::isfinite(c.joules)) {
    c.energy_parts = 1;
    const json& m = obj(energy, "measured");
    c.energy_measured_parts = m.is_boolean() && m.get<bool>() ? 1 : 0;
  }
  c.co2e = num(k, "co2e_grams");
  c.grid = num(k, "grid_g_per_kwh");
  c.pue = num(k, "pue");
  c.money = num(k, "money");
  c.currency = str(k, "currency");
  c.price = num(k, "price_per_core_hour");
  return c;
}

double add(double a, double b) {
  if (!std::isfinite(a)) return b;
  if (!std::isfinite(b)) return a;
  return a + b;
}

void accumulate(Cost& into, const Cost& c) {
  into.flops = add(into.flops, c.flops);
  into.executed_flops = add(into.executed_flops, c.executed_flops);
  into.dense_flops = add(into.dense_flops, c.dense_flops);
  into.seconds = add(into.seconds, c.seconds);
  into.cpu_seconds = add(into.cpu_seconds, c.cpu_seconds);
  into.peak_rss = std::isfinite(into.peak_rss) && std::isfinite(c.peak_rss)
                      ? std::max(into.peak_rss, c.peak_rss)
                      : add(into.peak_rss, c.peak_rss);
  into.joules = add(into.joules, c.joules);
  into.co2e = add(into.co2e, c.co2e);
  into.money = add(into.money, c.money);
  if (!std::isfinite(into.grid)) into.grid = c.grid;
  if (!std::isfinite(into.pue)) into.pue = c.pue;
  if (!std::isfinite(into.price)) into.price = c.price;
  if (into.currency.empty()) into.currency = c.currency;
  if (into.energy_method.empty())
    into.energy_method = c.energy_method;
  else if (!c.energy_method.empty() && c.energy_method != into.energy_method)
    into.energy_method = "mixed";
  if (into.energy_detail.empty()) into.energy_detail = c.energy_detail;
  into.energy_parts += c.energy_parts;
  into.energy_measured_parts += c.energy_measured_parts;
  into.parts += c.parts;
  into.ledger = into.ledger || c.ledger;
}

struct Epoch {
  double epoch = kNaN, train_loss = kNaN, test_loss = kNaN, test_accuracy = kNaN;
};

// A training run: log.jsonl (and result.json of `pare prune`).
struct TrainRun {
  std::string path;
  std::string model;
  std::string method;  // "" dense; a pruning criterion or a sparse-training method
  double sparsity = kNaN;
  double accuracy = kNaN;
  double parameters = kNaN;  // of the model as trained (a structured shrink has fewer)
  std::vector<Epoch> epochs;
  Cost cost;
  bool has_end = false;
  std::vector<LayerDensity> layers;
  std::string from;  // the model it was pruned from (result.json "from")
};

struct TicketRound {
  int round = 0;
  std::string kind;
  double density = kNaN, accuracy = kNaN, cumulative_flops = kNaN;
  Cost cost;
  std::vector<LayerDensity> layers;
};

struct TicketRun {
  std::string path;
  std::string model;
  std::vector<TicketRound> rounds;
};

struct LifeCell {
  int n = 0, m = 0;
  double rate = kNaN, lo = kNaN, hi = kNaN, successes = kNaN, runs = kNaN, parameters = kNaN;
};

struct LifeStudy {
  std::string path;
  std::vector<LifeCell> cells;
};

// A life-prune search (experiments/life_prune.h): rounds of pruning a solved
// Life net, each retrained and checked on fresh boards.
struct LifePruneStep {
  double density = kNaN, exact = kNaN;
  int round = 0, attempt = 0;
  bool solved = false;
};
struct LifePrune {
  std::string path;
  int n = 0, m = 0;
  std::string score;
  double dense_exact = kNaN;
  std::vector<std::pair<std::string, std::vector<LifePruneStep>>> searches;  // mode -> steps
};

struct PareFile {
  std::string path;
  std::string model;
  double bytes = 0, dense_f32_bytes = 0;
  double accuracy = kNaN;
  std::string accuracy_source;  // how the accuracy was found
  std::string what;             // quantization, from META
  std::vector<LayerDensity> layers;
};

struct Collected {
  std::vector<TrainRun> trains;
  std::vector<TicketRun> tickets;
  std::vector<LifeStudy> lifes;
  std::vector<LifePrune> life_prunes;
  std::vector<PareFile> pares;
  std::vector<std::string> sources;
  std::vector<std::string> missing;
  std::set<std::string> seen;  // canonical paths read, so a run given twice counts once
};

bool first_visit(Collected& c, const fs::path& p) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(p, ec);
  return c.seen.insert(ec ? p.lexically_normal().string() : canon.string()).second;
}

std::string clean(const fs::path& p) {
  std::string s = p.lexically_normal().generic_string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// ---- readers ----

std::optional<TrainRun> read_train_run(const fs::path& dir, Collected& c) {
  TrainRun r;
  r.path = clean(dir);
  const fs::path log = dir / "log.jsonl";
  const fs::path result = dir / "result.json";
  bool any = false;
  if (fs::is_regular_file(log)) {
    std::string text;
    try {
      text = read_file(log.string());
    } catch (const Error& e) {
      c.missing.push_back(e.what());
    }
    c.sources.push_back(clean(log));
    std::istringstream in(text);
    std::string line;
    int bad = 0;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const json e = json::parse(line, nullptr, false);
      if (e.is_discarded() || !e.is_object()) {
        ++bad;
        continue;
      }
      const std::string event = str(e, "event");
      if (event == "start") {
        any = true;
        if (r.model.empty()) r.model = str(e, "model");
        const json& st = obj(e, "sparse_training");
        if (st.is_object() && !str(st, "method").empty()) r.method = str(st, "method");
        if (!std::isfinite(r.sparsity)) r.sparsity = num(e, "sparsity");
        if (!std::isfinite(r.parameters)) r.parameters = num(e, "parameters");
      } else if (event == "epoch") {
        any = true;
        r.epochs.push_back(
            {num(e, "epoch"), num(e, "train_loss"), num(e, "test_loss"), num(e, "test_accuracy")});
      } else if (event == "end") {
        any = true;
        r.has_end = true;
        r.accuracy = num(e, "test_accuracy");
        r.sparsity = first({num(e, "sparsity"), r.sparsity});
        r.cost = cost_of(e);
      } else if (event == "sparse_dispatch") {
        r.layers = layers_of(obj(e, "layers"));
      } else if (event == "resume") {
        // A resumed run logs its epochs again from the checkpoint on: keep the last of each.
        const double from = num(e, "epoch");
        if (std::isfinite(from))
          r.epochs.erase(std::remove_if(r.epochs.begin(), r.epochs.end(),
                                        [&](const Epoch& ep) { return ep.epoch >= from; }),
                         r.epochs.end());
      }
    }
    if (bad)
      c.missing.push_back(clean(log) + ": " + std::to_string(bad) +
                          " lines that are not JSON objects, skipped");
  }
  if (fs::is_regular_file(result)) {
    if (auto j = read_json(result.string(), c.missing)) {
      c.sources.push_back(clean(result));
      any = true;
      if (r.model.empty()) r.model = str(*j, "model");
      const std::string method = str(*j, "method");
      if (!method.empty()) r.method = method;
      if (str(*j, "command") == "prune" && r.method.empty()) r.method = "prune";
      r.sparsity = first({r.sparsity, num(*j, "sparsity")});
      r.accuracy = first({r.accuracy, num(*j, "test_accuracy")});
      const std::vector<LayerDensity> layers = layers_of(obj(*j, "layers"));
      if (!layers.empty()) r.layers = layers;
      r.from = str(*j, "from");
      r.parameters = first({num(*j, "parameters"), r.parameters});
      if (!r.has_end) {
        r.cost = cost_of(*j);
        if (!std::isfinite(r.cost.seconds)) r.cost.seconds = num(*j, "train_seconds");
      }
    }
  }
  if (!any) return std::nullopt;
  if (r.epochs.empty() && !r.has_end && !fs::is_regular_file(result))
    c.missing.push_back(r.path + ": log.jsonl has no epoch or end events yet");
  if (!std::isfinite(r.accuracy))
    for (auto it = r.epochs.rbegin(); it != r.epochs.rend(); ++it)
      if (std::isfinite(it->test_accuracy)) {
        r.accuracy = it->test_accuracy;
        break;
      }
  if (!std::isfinite(r.sparsity)) r.sparsity = 0;
  if (r.method.empty() && r.sparsity > 0) r.method = "pruned (from the log)";
  return r;
}

void read_ticket(const fs::path& dir, const json& results, Collected& c) {
  TicketRun t;
  t.path = clean(dir);
  t.model = str(obj(obj(results, "settings"), "spec"), "name");
  for (const json& r : obj(results, "runs")) {
    TicketRound x;
    const double round = num(r, "round");
    x.round = std::isfinite(round) ? static_cast<int>(round) : 0;
    x.kind = str(r, "kind");
    x.density = num(r, "density");
    if (!std::isfinite(x.density)) x.density = 1 - num(r, "sparsity");
    x.accuracy = num(r, "test_accuracy");
    x.cumulative_flops = num(r, "cumulative_flops");
    x.cost = cost_of(r);
    x.layers = layers_of(obj(r, "layers"));
    if (!x.kind.empty()) t.rounds.push_back(x);
  }
  if (t.rounds.empty())
    c.missing.push_back(t.path + "/results.json: a ticket file with no rounds yet");
  c.tickets.push_back(std::move(t));
}

void read_life(const fs::path& dir, const json& results, Collected& c) {
  LifeStudy s;
  s.path = clean(dir);
  for (const json& cell : obj(results, "cells")) {
    LifeCell x;
    const double n = num(cell, "n"), m = num(cell, "m");
    if (!std::isfinite(n) || !std::isfinite(m)) continue;
    x.n = static_cast<int>(n);
    x.m = static_cast<int>(m);
    x.rate = num(cell, "success_rate");
    x.successes = num(cell, "successes");
    x.runs = num(cell, "runs");
    x.parameters = num(cell, "parameters");
    const json& ci = obj(cell, "ci95");
    if (ci.is_array() && ci.size() == 2 && ci[0].is_number() && ci[1].is_number()) {
      x.lo = ci[0].get<double>();
      x.hi = ci[1].get<double>();
    }
    if (!std::isfinite(x.rate) && x.runs > 0) x.rate = x.successes / x.runs;
    s.cells.push_back(x);
  }
  if (s.cells.empty())
    c.missing.push_back(s.path + "/results.json: a Life study with no finished cells yet");
  c.lifes.push_back(std::move(s));
}

void read_life_prune(const fs::path& dir, const json& results, Collected& c) {
  LifePrune l;
  l.path = clean(dir);
  const json& settings = obj(results, "settings");
  l.n = static_cast<int>(first({num(settings, "n"), 0.0}));
  l.m = static_cast<int>(first({num(settings, "m"), 0.0}));
  l.score = str(settings, "score");
  l.dense_exact = num(obj(results, "dense"), "test_exact");
  for (const json& search : obj(results, "searches")) {
    const json& steps = obj(search, "steps");
    if (!steps.is_array() || steps.empty()) continue;
    const double alive0 = num(steps[0], "alive_before");  // the dense net's weights
    std::vector<LifePruneStep> out;
    for (const json& st : steps) {
      LifePruneStep x;
      x.density = alive0 > 0 ? num(st, "alive_after") / alive0 : kNaN;
      x.exact = num(st, "test_exact");
      x.round = static_cast<int>(first({num(st, "round"), 0.0}));
      x.attempt = static_cast<int>(first({num(st, "attempt"), 0.0}));
      x.solved = obj(st, "solved").is_boolean() && obj(st, "solved").get<bool>();
      out.push_back(x);
    }
    l.searches.push_back({str(search, "mode"), out});
  }
  if (l.searches.empty())
    c.missing.push_back(l.path + "/results.json: a life-prune search with no rounds yet");
  c.life_prunes.push_back(std::move(l));
}

// The test accuracy of the model a .pare file was made from: the run that
// wrote it (log.jsonl "end", or result.json).
double source_accuracy(const fs::path& pare, const std::string& source, std::string& found) {
  if (source.empty()) return kNaN;
  std::vector<fs::path> candidates = {fs::path(source)};
  // The path is as given to pare compress (relative to where it ran): try it
  // from each directory above the .pare file too.
  for (fs::path d = fs::absolute(pare).parent_path(); !d.empty(); d = d.parent_path()) {
    candidates.push_back(d / source);
    if (d == d.root_path()) break;
  }
  for (const fs::path& m : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(m, ec)) continue;
    Collected scratch;
    if (auto run = read_train_run(m.parent_path(), scratch); run && std::isfinite(run->accuracy)) {
      found = clean(m.parent_path());
      return run->accuracy;
    }
  }
  return kNaN;
}

void read_pare(const fs::path& path, Collected& c) {
  PareFile p;
  p.path = clean(path);
  format::File f;
  try {
    f = format::read_file(path.string());
  } catch (const Error& e) {
    c.missing.push_back(std::string(e.what()) + " (skipped)");
    return;
  }
  c.sources.push_back(p.path);
  std::error_code ec;
  p.bytes = static_cast<double>(fs::file_size(path, ec));
  const json spec = json::parse(f.spec_json, nullptr, false);
  p.model = str(spec, "name");
  for (const format::Tensor& t : f.tensors) {
    p.dense_f32_bytes += 4.0 * static_cast<double>(t.numel());
    if (t.dims.size() >= 2 && t.numel() > 0)
      p.layers.push_back(
          {t.name, static_cast<double>(t.present_count()) / static_cast<double>(t.numel())});
  }
  const json meta = f.meta_json.empty() ? json() : json::parse(f.meta_json, nullptr, false);
  const json& q = obj(meta, "quantization");
  if (q.is_object()) {
    p.what = str(q, "weights");
    if (std::isfinite(num(q, "bits")))
      p.what += " (" + std::to_string(static_cast<int>(num(q, "bits"))) + " bits)";
  }
  // Accuracy, best first: pare eval --json saved beside the file, the META's
  // own record, the model it was compressed from.
  std::string stem = p.path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".pare") == 0)
    stem.resize(stem.size() - 5);
  for (const std::string& e : {p.path + ".eval.json", stem + ".eval.json"}) {
    if (!fs::is_regular_file(e, ec)) continue;
    std::vector<std::string> ignored;
    if (auto j = read_json(e, ignored)) {
      const double a = first({num(*j, "accuracy"), num(*j, "test_accuracy")});
      if (std::isfinite(a)) {
        p.accuracy = a;
        p.accuracy_source = "pare eval (" + clean(e) + ")";
        c.sources.push_back(clean(e));
        break;
      }
    }
  }
  if (!std::isfinite(p.accuracy)) {
    const double a =
        first({num(meta, "test_accuracy"), num(obj(meta, "codebook_finetune"), "test_accuracy"),
               num(obj(meta, "qat"), "test_accuracy")});
    if (std::isfinite(a)) {
      p.accuracy = a;
      p.accuracy_source = "recorded in the file by pare compress";
    }
  }
  if (!std::isfinite(p.accuracy)) {
    std::string from;
    p.accuracy = source_accuracy(path, str(meta, "source"), from);
    if (std::isfinite(p.accuracy))
      p.accuracy_source =
          "the model it was compressed from (" + from +
          "), not re-evaluated: save `pare eval FILE --json` as FILE.eval.json for its own";
  }
  c.pares.push_back(std::move(p));
}

bool is_pare(const fs::path& p) { return p.extension() == ".pare"; }

// Reads what `path` holds; returns whether it held anything pare wrote.
bool scan(const fs::path& path, int depth, Collected& c) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    // A run's own file stands for its directory.
    const std::string name = path.filename().string();
    if (name == "log.jsonl" || name == "result.json" || name == "results.json")
      return scan(path.parent_path().empty() ? fs::path(".") : path.parent_path(), kMaxDepth, c);
    if (!is_pare(path)) return false;
    if (first_visit(c, path)) read_pare(path, c);
    return true;
  }
  if (!fs::is_directory(path, ec)) return false;
  if (!first_visit(c, path)) return true;
  bool found = false, is_run = false;
  const fs::path results = path / "results.json";
  if (fs::is_regular_file(results, ec)) {
    found = is_run = true;
    if (auto j = read_json(results.string(), c.missing)) {
      c.sources.push_back(clean(results));
      const std::string kind = str(obj(*j, "settings"), "kind");
      if (j->contains("cells") || kind == "life") {
        read_life(path, *j, c);
      } else if (kind == "ticket" || (obj(*j, "runs").is_array() && !obj(*j, "runs").empty() &&
                                      obj(*j, "runs")[0].contains("round"))) {
        read_ticket(path, *j, c);
      } else if (j->contains("searches")) {
        read_life_prune(path, *j, c);
      } else {
        c.missing.push_back(clean(results) +
                            ": not a results file pare report knows (ticket or Life study)");
      }
    }
  } else if (fs::is_regular_file(path / "log.jsonl", ec) ||
             fs::is_regular_file(path / "result.json", ec)) {
    is_run = true;
    if (auto r = read_train_run(path, c)) {
      c.trains.push_back(std::move(*r));
      found = true;
    }
  }
  std::vector<fs::path> children;
  for (const auto& e : fs::directory_iterator(path, ec)) children.push_back(e.path());
  std::sort(children.begin(), children.end());
  for (const fs::path& ch : children)
    if (is_pare(ch) && fs::is_regular_file(ch, ec)) found = scan(ch, depth, c) || found;
  // A directory of runs: read the runs in it (not inside a run: a ticket's
  // rounds or a study's seeds are summarised by its results.json).
  if (!is_run && depth < kMaxDepth)
    for (const fs::path& ch : children)
      if (fs::is_directory(ch, ec)) found = scan(ch, depth + 1, c) || found;
  return found;
}

// ---- names shown on the page: paths without their common leading directories ----

struct Namer {
  size_t strip = 0;
  explicit Namer(const std::vector<std::string>& paths) {
    std::vector<std::vector<std::string>> parts;
    for (const std::string& p : paths) {
      std::vector<std::string> v;
      for (const auto& e : fs::path(p)) v.push_back(e.string());
      parts.push_back(v);
    }
    if (parts.empty()) return;
    size_t k = parts[0].size();
    for (const auto& v : parts) {
      size_t i = 0;
      while (i < k && i < v.size() && v[i] == parts[0][i]) ++i;
      k = std::min(i, v.size() - 1);  // keep at least the last component
    }
    strip = k;
  }
  std::string operator()(const std::string& p) const {
    std::string out;
    size_t i = 0;
    for (const auto& e : fs::path(p)) {
      if (i++ < strip) continue;
      if (!out.empty()) out += '/';
      out += e.string();
    }
    return out.empty() ? p : out;
  }
};

std::string kind_label(const std::string& kind) {
  if (kind == "ticket") return "IMP ticket (rewound to init)";
  if (kind == "reinit") return "reinit: ticket mask, fresh init";
  if (kind == "random") return "random mask, same layer sparsity";
  return kind;
}

std::string model_or_unknown(const std::string& m) { return m.empty() ? "(model unknown)" : m; }

// Points not dominated by another: no other point costs no more and is at
// least as accurate, one of them strictly. Sorted by cost.
std::vector<size_t> pareto_front(const std::vector<std::pair<double, double>>& points) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j) {
      if (i == j) continue;
      const auto& [cx, ay] = points[j];
      dominated = cx <= points[i].first && ay >= points[i].second &&
                  (cx < points[i].first || ay > points[i].second);
    }
    if (!dominated) idx.push_back(i);
  }
  std::sort(idx.begin(), idx.end(),
            [&](size_t a, size_t b) { return points[a].first < points[b].first; });
  return idx;
}

std::string shortest(double v, int digits = 6) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}

// Rows of the cost table: each figure with its unit and how it was obtained.
json cost_rows(const Cost& c) {
  json rows = json::array();
  auto row = [&](const char* figure, double v, const std::string& unit, const std::string& how,
                 json measured) {
    if (std::isfinite(v))
      rows.push_back(
          {{"figure", figure}, {"value", v}, {"unit", unit}, {"how", how}, {"measured", measured}});
  };
  row("training FLOPs", c.flops, "FLOP", "from the layer shapes, counting the weights kept",
      "counted");
  row("FLOPs executed", c.executed_flops, "FLOP",
      "what the kernels ran (a masked layer on dense kernels runs every weight)", "counted");
  row("FLOPs if dense", c.dense_flops, "FLOP", "the same training with no weight pruned",
      "counted");
  row("wall time", c.seconds, "s", "wall clock", "measured");
  row("CPU time", c.cpu_seconds, "s", "the process's CPU clock, all threads", "measured");
  row("peak memory", c.peak_rss, "bytes", "peak resident set of the process", "measured");
  if (std::isfinite(c.joules)) {
    const bool all = c.energy_parts > 0 && c.energy_measured_parts == c.energy_parts;
    const bool none = c.energy_measured_parts == 0;
    std::string how = all || none ? ""
                                  : std::to_string(c.energy_measured_parts) + " of " +
                                        std::to_string(c.energy_parts) +
                                        " trainings measured, the rest estimated";
    if (!c.energy_method.empty()) how += (how.empty() ? "" : "; ") + c.energy_method;
    if (!c.energy_detail.empty() && c.parts == 1) how += ": " + c.energy_detail;
    if (how.empty()) how = "method not recorded";
    if (c.energy_parts < c.parts)
      how += "; " + std::to_string(c.parts - c.energy_parts) + " of " + std::to_string(c.parts) +
             " trainings lack it";
    row("energy", c.joules, "J", how, all ? "measured" : "estimated");
    std::string co2 = "from the energy (" + std::string(all ? "measured" : "estimated") +
                      ") and the grid's intensity";
    if (std::isfinite(c.grid)) co2 += " at " + shortest(c.grid) + " g/kWh";
    if (std::isfinite(c.pue)) co2 += ", PUE " + shortest(c.pue);
    row("CO2e", c.co2e, "g", co2, "estimated");
  } else {
    row("CO2e", c.co2e, "g", "from settings", "estimated");
  }
  std::string money = "from CPU time";
  if (std::isfinite(c.price))
    money += " at " + shortest(c.price) + " " + c.currency + " per core-hour";
  row("money", c.money, c.currency.empty() ? "(currency not given)" : c.currency, money,
      "estimated");
  return rows;
}

// Adds a series of per-layer densities to the model's layer chart.
void add_layers(std::map<std::string, json>& charts, const std::string& model,
                const std::string& label, const std::vector<LayerDensity>& layers) {
  if (layers.empty()) return;
  json& ch = charts[model];
  if (ch.is_null()) ch = {{"model", model}, {"layers", json::array()}, {"series", json::array()}};
  std::vector<std::string> names = ch["layers"].get<std::vector<std::string>>();
  for (const auto& l : layers)
    if (std::find(names.begin(), names.end(), l.name) == names.end()) names.push_back(l.name);
  ch["layers"] = names;
  json values = json::object();
  for (const auto& l : layers) values[l.name] = 100 * l.density;
  ch["series"].push_back({{"label", label}, {"values", values}});
}

json build_data(Collected& c, const ReportOptions& options, std::vector<std::string>& charts) {
  std::vector<std::string> all_paths;
  for (const auto& r : c.trains) all_paths.push_back(r.path);
  for (const auto& t : c.tickets) all_paths.push_back(t.path);
  for (const auto& l : c.lifes) all_paths.push_back(l.path);
  for (const auto& l : c.life_prunes) all_paths.push_back(l.path);
  for (const auto& p : c.pares) all_paths.push_back(p.path);
  const Namer name(all_paths);

  // The run that trained the model a run was pruned from (result.json "from").
  auto parent_of = [&](const TrainRun& r) -> const TrainRun* {
    if (r.from.empty()) return nullptr;
    const fs::path parent = fs::path(r.from).parent_path();
    std::error_code ec;
    for (const auto& q : c.trains)
      if (clean(parent) == q.path || fs::equivalent(parent, q.path, ec)) return &q;
    return nullptr;
  };

  json d;
  d["title"] = options.title;
  d["chartjs"] = report_chartjs_version();
  d["sources"] = c.sources;

  // Summary table of everything read.
  json runs = json::array();
  for (const auto& r : c.trains)
    runs.push_back({{"name", name(r.path)},
                    {"kind", r.method.empty() ? "training (dense)" : "pruned: " + r.method},
                    {"model", r.model},
                    {"accuracy", jnum(r.accuracy)},
                    {"sparsity", jnum(r.sparsity)},
                    {"epochs", r.epochs.size()},
                    {"flops", jnum(r.cost.flops)},
                    {"seconds", jnum(r.cost.seconds)}});
  for (const auto& t : c.tickets) {
    double best_density = kNaN, acc = kNaN;
    int rounds = 0;
    for (const auto& x : t.rounds)
      if (x.kind == "ticket") {
        ++rounds;
        if (!std::isfinite(best_density) || x.density < best_density)
          best_density = x.density, acc = x.accuracy;
      }
    runs.push_back({{"name", name(t.path)},
                    {"kind", "lottery ticket (" + std::to_string(rounds) + " rounds)"},
                    {"model", t.model},
                    {"accuracy", jnum(acc)},
                    {"sparsity", jnum(1 - best_density)},
                    {"epochs", nullptr},
                    {"flops", nullptr},
                    {"seconds", nullptr}});
  }
  for (const auto& l : c.lifes)
    runs.push_back({{"name", name(l.path)},
                    {"kind", "Game of Life study (" + std::to_string(l.cells.size()) + " cells)"},
                    {"model", "life"},
                    {"accuracy", nullptr},
                    {"sparsity", nullptr},
                    {"epochs", nullptr},
                    {"flops", nullptr},
                    {"seconds", nullptr}});
  for (const auto& l : c.life_prunes)
    runs.push_back({{"name", name(l.path)},
                    {"kind", "life-prune search (" + l.score + ", " +
                                 std::to_string(l.searches.size()) + " modes)"},
                    {"model", "life n=" + std::to_string(l.n) + " m=" + std::to_string(l.m)},
                    {"accuracy", jnum(l.dense_exact)},
                    {"sparsity", nullptr},
                    {"epochs", nullptr},
                    {"flops", nullptr},
                    {"seconds", nullptr}});
  for (const auto& p : c.pares)
    runs.push_back({{"name", name(p.path)},
                    {"kind", ".pare file" + (p.what.empty() ? "" : ": " + p.what)},
                    {"model", p.model},
                    {"accuracy", jnum(p.accuracy)},
                    {"sparsity", nullptr},
                    {"epochs", nullptr},
                    {"flops", nullptr},
                    {"seconds", nullptr},
                    {"bytes", p.bytes}});
  d["runs"] = runs;

  // Loss and accuracy curves.
  json curves = json::array();
  for (const auto& r : c.trains) {
    if (r.epochs.empty()) continue;
    json e = json::array(), trl = json::array(), tel = json::array(), acc = json::array();
    for (const auto& ep : r.epochs) {
      e.push_back(jnum(ep.epoch));
      trl.push_back(jnum(ep.train_loss));
      tel.push_back(jnum(ep.test_loss));
      acc.push_back(jnum(std::isfinite(ep.test_accuracy) ? 100 * ep.test_accuracy : kNaN));
    }
    curves.push_back({{"run", name(r.path)},
                      {"epoch", e},
                      {"train_loss", trl},
                      {"test_loss", tel},
                      {"test_accuracy", acc}});
  }
  d["curves"] = curves;
  if (!curves.empty()) {
    charts.push_back("curves-loss");
    charts.push_back("curves-accuracy");
  } else {
    c.missing.push_back(
        "Loss and accuracy curves: no training run with epoch events (a run directory with "
        "log.jsonl from pare train or pare prune --train).");
  }

  // Accuracy vs remaining weights, per model.
  std::map<std::string, json> prune;  // model -> chart
  auto prune_chart = [&](const std::string& model) -> json& {
    json& ch = prune[model];
    if (ch.is_null()) ch = {{"model", model}, {"series", json::object()}, {"dense", json::array()}};
    return ch;
  };
  auto add_point = [&](const std::string& model, const std::string& series, double density,
                       double acc, const std::string& label) {
    if (!std::isfinite(density) || !std::isfinite(acc) || density <= 0) return;
    json& s = prune_chart(model)["series"][series];
    s.push_back({{"x", 100 * density}, {"y", 100 * acc}, {"label", label}});
  };
  for (const auto& t : c.tickets) {
    const std::string model = model_or_unknown(t.model);
    for (const auto& x : t.rounds) {
      if (x.kind == "ticket" && x.round == 0) {
        if (std::isfinite(x.accuracy))
          prune_chart(model)["dense"].push_back(
              {{"label", "dense (" + name(t.path) + " round 0)"}, {"y", 100 * x.accuracy}});
        continue;
      }
      add_point(model, kind_label(x.kind), x.density, x.accuracy,
                name(t.path) + " round " + std::to_string(x.round));
    }
  }
  for (const auto& r : c.trains) {
    const std::string model = model_or_unknown(r.model);
    double density = 1 - r.sparsity;
    if (r.method.rfind("structured", 0) == 0) {
      // Whole neurons or channels removed: what remains is the share of the
      // parent's parameters the smaller network has.
      const TrainRun* parent = parent_of(r);
      if (!parent || !(parent->parameters > 0) || !(r.parameters > 0)) {
        c.missing.push_back(name(r.path) + ": a structured shrink whose parent run (" +
                            (r.from.empty() ? std::string("not recorded") : r.from) +
                            ") is not among the runs, so its remaining share is unknown; left out "
                            "of accuracy vs remaining weights.");
        continue;
      }
      density *= r.parameters / parent->parameters;
    }
    if (r.method.empty()) {
      if (std::isfinite(r.accuracy) && r.sparsity == 0)
        prune_chart(model)["dense"].push_back(
            {{"label", "dense (" + name(r.path) + ")"}, {"y", 100 * r.accuracy}});
      continue;
    }
    add_point(model, r.method, density, r.accuracy, name(r.path));
  }
  // Life nets pruned until a single weight more fails: accuracy there is the
  // share of test boards entirely right (a run is solved at 100 %).
  for (const auto& l : c.life_prunes) {
    const std::string model = "life n=" + std::to_string(l.n) + " m=" + std::to_string(l.m) +
                              " (accuracy: test boards entirely right)";
    if (std::isfinite(l.dense_exact))
      prune_chart(model)["dense"].push_back(
          {{"label", "dense (" + name(l.path) + ")"}, {"y", 100 * l.dense_exact}});
    for (const auto& [mode, steps] : l.searches)
      for (const auto& st : steps)
        // The search's path: the rounds it kept (a failed attempt is retried
        // or ends the search).
        if (st.solved)
          add_point(model, "life-prune " + l.score + ", " + mode, st.density, st.exact,
                    name(l.path) + " round " + std::to_string(st.round) +
                        (st.attempt ? " attempt " + std::to_string(st.attempt) : ""));
  }
  // Several dense runs of a model (seeds, recipes): one line at their mean,
  // as the lottery-ticket figures draw it.
  for (auto& [model, ch] : prune) {
    json& dense = ch["dense"];
    if (dense.size() < 2) continue;
    double sum = 0, lo = 1e300, hi = -1e300;
    std::string runs;
    for (const json& x : dense) {
      const double y = x["y"].get<double>();
      sum += y, lo = std::min(lo, y), hi = std::max(hi, y);
      runs += (runs.empty() ? "" : ", ") + x["label"].get<std::string>();
    }
    const json mean = {{"label", "dense: mean of " + std::to_string(dense.size()) + " runs (" +
                                     shortest(lo, 4) + "-" + shortest(hi, 4) + " %)"},
                       {"y", sum / static_cast<double>(dense.size())},
                       {"runs", runs}};
    dense = json::array({mean});
  }
  json prune_charts = json::array();
  for (auto& [model, ch] : prune) {
    if (ch["series"].empty()) continue;
    json series = json::array();
    for (auto& [label, points] : ch["series"].items()) {
      // Several runs (seeds) of one method: their mean at each density, the
      // spread in the tooltip.
      std::map<double, std::vector<json>, std::greater<>> at;
      for (const json& p : points) at[std::round(p["x"].get<double>() * 1e4) / 1e4].push_back(p);
      json pts = json::array();
      size_t most = 0;
      for (auto& [x, ps] : at) {
        double sum = 0, lo = 1e300, hi = -1e300;
        std::string labels;
        for (const json& p : ps) {
          const double y = p["y"].get<double>();
          sum += y, lo = std::min(lo, y), hi = std::max(hi, y);
          labels += (labels.empty() ? "" : ", ") + p["label"].get<std::string>();
        }
        most = std::max(most, ps.size());
        pts.push_back({{"x", x},
                       {"y", sum / ps.size()},
                       {"n", ps.size()},
                       {"min", lo},
                       {"max", hi},
                       {"label", labels}});
      }
      series.push_back({{"label", label}, {"points", pts}, {"runs", most}});
    }
    ch["series"] = series;
    prune_charts.push_back(ch);
    charts.push_back("prune-" + std::to_string(prune_charts.size() - 1));
  }
  d["prune"] = prune_charts;
  if (prune_charts.empty())
    c.missing.push_back(
        "Accuracy vs remaining weights: no pruned runs (a ticket directory from pare ticket, or "
        "runs of pare prune / pare train --sparse-training).");
  else
    for (const json& ch : prune_charts)
      if (ch["dense"].empty())
        c.missing.push_back("Accuracy vs remaining weights (" + ch["model"].get<std::string>() +
                            "): no dense run of this model given, so no dense line.");

  // Accuracy vs bytes.
  std::map<std::string, json> bytes;
  int without_accuracy = 0;
  for (const auto& p : c.pares) {
    if (!std::isfinite(p.accuracy)) {
      ++without_accuracy;
      c.missing.push_back(name(p.path) + ": its accuracy is unknown (no " + name(p.path) +
                          ".eval.json from pare eval --json, nothing in its META, its source model "
                          "not found); left out of accuracy vs bytes.");
      continue;
    }
    json& ch = bytes[model_or_unknown(p.model)];
    if (ch.is_null())
      ch = {{"model", model_or_unknown(p.model)},
            {"points", json::array()},
            {"float", json::array()}};
    ch["points"].push_back({{"x", p.bytes},
                            {"y", 100 * p.accuracy},
                            {"label", name(p.path)},
                            {"what", p.what},
                            {"accuracy_source", p.accuracy_source}});
  }
  // The dense float32 weights of each model, at the dense accuracy: the size
  // every compressed file is measured against.
  for (auto& [model, ch] : bytes) {
    double dense_bytes = 0;
    for (const auto& p : c.pares)
      if (model_or_unknown(p.model) == model)
        dense_bytes = std::max(dense_bytes, p.dense_f32_bytes);
    for (const json& dl : prune.count(model) ? prune[model]["dense"] : json::array())
      ch["float"].push_back(
          {{"x", dense_bytes},
           {"y", dl["y"]},
           {"label", "float32, every weight: " + dl["label"].get<std::string>()}});
  }
  json bytes_charts = json::array();
  for (auto& [model, ch] : bytes) bytes_charts.push_back(ch);
  d["bytes"] = bytes_charts;
  if (!bytes_charts.empty())
    charts.push_back("bytes");
  else if (without_accuracy == 0)
    c.missing.push_back(
        "Accuracy vs bytes: no .pare files among the runs (give FILE.pare, or a directory holding "
        "one; pare compress writes them).");

  // Accuracy vs training cost, per model, with the Pareto front.
  std::map<std::string, std::vector<json>>
      cost_points;  // model -> {label, flops, joules, accuracy, note}
  for (const auto& r : c.trains) {
    if (!std::isfinite(r.accuracy)) continue;
    Cost total = r.cost;
    std::string note;
    if (!r.from.empty()) {
      // Pruned from a trained model: the training that made it is part of the cost.
      if (const TrainRun* q = parent_of(r)) {
        accumulate(total, q->cost);
        note = "includes training " + name(q->path);
      }
      if (note.empty()) {
        // Its cost would lack the training that made its parent: on a cost
        // chart it would look cheaper than it was.
        c.missing.push_back(name(r.path) + ": pruned from " + r.from +
                            ", which is not among the runs, so the cost of training it is unknown; "
                            "left out of accuracy vs training cost.");
        continue;
      }
    }
    cost_points[model_or_unknown(r.model)].push_back(
        {{"label", name(r.path)},
         {"flops", jnum(total.flops)},
         {"joules", jnum(total.joules)},
         {"accuracy", 100 * r.accuracy},
         {"note", note},
         {"energy", total.energy_parts == 0                             ? ""
                    : total.energy_measured_parts == total.energy_parts ? "measured"
                                                                        : "estimated"}});
  }
  for (const auto& t : c.tickets) {
    Cost running;
    std::vector<const TicketRound*> rounds;
    for (const auto& x : t.rounds)
      if (x.kind == "ticket") rounds.push_back(&x);
    std::sort(rounds.begin(), rounds.end(), [](auto* a, auto* b) { return a->round < b->round; });
    for (const TicketRound* x : rounds) {
      accumulate(running, x->cost);
      if (!std::isfinite(x->accuracy)) continue;
      const double flops =
          std::isfinite(x->cumulative_flops) && x->cumulative_flops > 0 && !x->cost.ledger
              ? x->cumulative_flops
              : running.flops;
      char density[32];
      std::snprintf(density, sizeof density, "%.3g", 100 * x->density);
      cost_points[model_or_unknown(t.model)].push_back(
          {{"label", name(t.path) + " round " + std::to_string(x->round) + " (" + density +
                         " % of weights)"},
           {"flops", jnum(flops)},
           {"joules", jnum(running.joules)},
           {"accuracy", 100 * x->accuracy},
           {"note", "IMP rounds 0.." + std::to_string(x->round) + " together"},
           {"energy", running.energy_parts == 0                               ? ""
                      : running.energy_measured_parts == running.energy_parts ? "measured"
                                                                              : "estimated"}});
    }
  }
  json cost_charts = json::array();
  for (const auto& [model, points] : cost_points) {
    for (const char* axis : {"flops", "joules"}) {
      std::vector<json> have;
      for (const json& p : points)
        if (p[axis].is_number() && p[axis].get<double>() > 0) have.push_back(p);
      if (have.empty()) {
        if (std::string(axis) == "joules")
          c.missing.push_back(
              "Accuracy vs energy (" + model +
              "): no run's log carries the cost ledger's joules; the cost chart uses FLOPs.");
        continue;
      }
      std::vector<std::pair<double, double>> xy;
      json pts = json::array();
      for (const json& p : have) {
        xy.push_back({p[axis].get<double>(), p["accuracy"].get<double>()});
        pts.push_back({{"x", p[axis]},
                       {"y", p["accuracy"]},
                       {"label", p["label"]},
                       {"note", p["note"]},
                       {"energy", p["energy"]}});
      }
      json front = json::array();
      for (size_t i : pareto_front(xy)) front.push_back(pts[i]);
      cost_charts.push_back({{"model", model}, {"axis", axis}, {"points", pts}, {"front", front}});
      charts.push_back("cost-" + std::to_string(cost_charts.size() - 1));
    }
  }
  d["cost"] = cost_charts;
  if (cost_charts.empty())
    c.missing.push_back(
        "Accuracy vs training cost: no finished run with both an accuracy and its FLOPs (log.jsonl "
        "\"end\" events, ticket rounds).");

  // The cost table.
  json table = json::array();
  bool any_ledger = false;
  for (const auto& r : c.trains) {
    if (r.cost.parts == 0) continue;
    any_ledger = any_ledger || r.cost.ledger;
    json rows = cost_rows(r.cost);
    if (!rows.empty())
      table.push_back({{"run", name(r.path)}, {"what", "one training"}, {"rows", rows}});
  }
  for (const auto& t : c.tickets) {
    std::map<std::string, Cost> per_kind;
    for (const auto& x : t.rounds) accumulate(per_kind[x.kind], x.cost);
    for (const auto& [kind, cost] : per_kind) {
      any_ledger = any_ledger || cost.ledger;
      json rows = cost_rows(cost);
      if (!rows.empty())
        table.push_back(
            {{"run", name(t.path)},
             {"what", kind_label(kind) + ": " + std::to_string(cost.parts) + " trainings together"},
             {"rows", rows}});
    }
  }
  d["cost_table"] = table;
  if (!table.empty()) charts.push_back("cost-table");
  if (!table.empty() && !any_ledger)
    c.missing.push_back(
        "Energy, CO2e and money: the logs carry no cost ledger (\"cost\" objects), so the cost "
        "table shows FLOPs, seconds and memory only.");

  // Life success tables.
  json lifes = json::array();
  for (const auto& l : c.lifes) {
    if (l.cells.empty()) continue;
    std::set<int> ns, ms;
    json cells = json::array();
    for (const auto& x : l.cells) {
      ns.insert(x.n), ms.insert(x.m);
      cells.push_back({{"n", x.n},
                       {"m", x.m},
                       {"rate", jnum(x.rate)},
                       {"lo", jnum(x.lo)},
                       {"hi", jnum(x.hi)},
                       {"successes", jnum(x.successes)},
                       {"runs", jnum(x.runs)},
                       {"parameters", jnum(x.parameters)}});
    }
    lifes.push_back({{"name", name(l.path)}, {"ns", ns}, {"ms", ms}, {"cells", cells}});
    charts.push_back("life-" + std::to_string(lifes.size() - 1));
  }
  d["life"] = lifes;
  if (lifes.empty())
    c.missing.push_back(
        "Game of Life success table: no Life study among the runs (a directory from pare life, "
        "with results.json).");

  // Per-layer sparsity.
  std::map<std::string, json> layer_charts;
  for (const auto& r : c.trains)
    if (r.sparsity > 0) add_layers(layer_charts, model_or_unknown(r.model), name(r.path), r.layers);
  for (const auto& t : c.tickets) {
    const TicketRound* last = nullptr;
    for (const auto& x : t.rounds)
      if (x.kind == "ticket" && (!last || x.round > last->round)) last = &x;
    if (last)
      add_layers(layer_charts, model_or_unknown(t.model),
                 name(t.path) + " (IMP round " + std::to_string(last->round) + ")", last->layers);
  }
  for (const auto& p : c.pares) {
    bool sparse = false;
    for (const auto& l : p.layers) sparse = sparse || l.density < 1;
    if (sparse) add_layers(layer_charts, model_or_unknown(p.model), name(p.path), p.layers);
  }
  json layers = json::array();
  for (auto& [model, ch] : layer_charts) {
    layers.push_back(ch);
    charts.push_back("layers-" + std::to_string(layers.size() - 1));
  }
  d["layers"] = layers;
  if (layers.empty())
    c.missing.push_back(
        "Per-layer sparsity: no pruned model with per-layer densities (result.json of pare prune, "
        "a ticket's rounds, a sparse .pare file).");

  d["charts"] = charts;
  d["missing"] = c.missing;
  return d;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

}  // namespace

std::string json_for_script(const std::string& json_text) {
  std::string out;
  out.reserve(json_text.size());
  for (size_t i = 0; i < json_text.size(); ++i) {
    const char ch = json_text[i];
    if (ch == '<')
      out += "\\u003c";
    else if (ch == '>')
      out += "\\u003e";
    else if (ch == '&')
      out += "\\u0026";
    else if (ch == '\xe2' && i + 2 < json_text.size() && json_text[i + 1] == '\x80' &&
             (json_text[i + 2] == '\xa8' || json_text[i + 2] == '\xa9')) {
      out += json_text[i + 2] == '\xa8' ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += ch;
    }
  }
  return out;
}

Report collect_report(const std::vector<std::string>& runs, const ReportOptions& options) {
  if (runs.empty()) fail("pare report: give at least one run directory or .pare file");
  Collected c;
  for (const std::string& run : runs) {
    std::error_code ec;
    if (!fs::exists(run, ec)) fail("pare report: ", run, ": no such file or directory");
    if (fs::is_regular_file(run, ec) && !is_pare(run) && fs::path(run).filename() != "log.jsonl" &&
        fs::path(run).filename() != "result.json" && fs::path(run).filename() != "results.json")
      fail("pare report: ", run, ": not a run directory, log.jsonl, results.json or .pare file");
    if (!scan(run, 0, c))
      fail("pare report: ", run,
           ": holds nothing pare wrote (no log.jsonl, result.json, results.json or .pare file in "
           "it or in its subdirectories)");
  }
  Report r;
  json d = build_data(c, options, r.charts);
  r.data_json = d.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  r.missing = c.missing;
  r.sources = c.sources;
  return r;
}

std::string render_report_html(const Report& report, const ReportOptions& options) {
  std::string html;
  html.reserve(report.data_json.size() + 260000);
  html += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  html += "<meta name=\"generator\" content=\"pare report\">\n";
  html += "<title>" + html_escape(options.title) + "</title>\n<style>\n";
  html += report_page_style();
  // Errors are recorded from the first moment, before Chart.js loads, so the
  // browser test sees any of them (report_page.js writes them into the DOM).
  html +=
      "</style>\n<script>\n"
      "window.pareErrors = [];\n"
      "window.addEventListener('error', function (e) { window.pareErrors.push(String(e.message || "
      "e)); });\n"
      "(function () { var orig = console.error; console.error = function () {\n"
      "  window.pareErrors.push(Array.prototype.map.call(arguments, String).join(' '));\n"
      "  return orig.apply(console, arguments); }; })();\n"
      "</script>\n";
  html += "<script>\n/* Chart.js, inlined by pare report (Debian's libjs-chart.js) */\n";
  html += report_chartjs_text();
  html += "\n</script>\n</head>\n<body>\n";
  html += "<header><h1 id=\"title\">" + html_escape(options.title) +
          "</h1><p id=\"subtitle\"></p></header>\n";
  html +=
      "<main id=\"report\"><noscript>This report draws its charts with "
      "JavaScript.</noscript></main>\n";
  html += "<script type=\"application/json\" id=\"pare-data\">";
  html += json_for_script(report.data_json);
  html += "</script>\n<script>\n";
  html += report_page_script();
  html += "\n</script>\n</body>\n</html>\n";
  return html;
}

Report write_report(const std::vector<std::string>& runs, const std::string& out_path,
                    const ReportOptions& options) {
  Report r = collect_report(runs, options);
  write_file_atomic(out_path, render_report_html(r, options));
  return r;
}

}  // namespace pare::experiments
