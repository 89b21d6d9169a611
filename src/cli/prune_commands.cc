// `pare prune` and `pare ticket` (prune_commands.h).
#include "pare/cli/prune_commands.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "pare/base/clock.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/cli/format_commands.h"
#include "pare/data/batcher.h"
#include "pare/dist/communicator.h"
#include "pare/prune/prune.h"
#include "pare/prune/shrink.h"

namespace pare::cli {

using json = nlohmann::json;

void add_sparse_training_options(CLI::App* t, prune::SparseTrainingConfig& s) {
  t->add_option("--sparse-training", s.method,
                "prune while training: none | gmp (gradual magnitude, Zhu & Gupta) | set | rigl")
      ->capture_default_str();
  t->add_option("--sparsity", s.sparsity, "final fraction of weights removed (with --sparse-training)");
  t->add_option("--distribution", s.distribution, "layer densities: erk | uniform | global (gmp only)")
      ->capture_default_str();
  t->add_option("--update-interval", s.interval, "steps between mask updates")->capture_default_str();
  t->add_option("--drop-fraction", s.drop_fraction, "set/rigl: fraction rewired at the start (cosine decay)")
      ->capture_default_str();
  t->add_option("--prune-begin", s.begin, "gmp: fraction of training before pruning starts")
      ->capture_default_str();
  t->add_option("--prune-end", s.end, "fraction of training after which the mask is fixed")
      ->capture_default_str();
}

namespace {

std::string criteria_help() {
  std::string s = "pruning criterion:";
  for (const auto& n : prune::criterion_names()) s += " " + n;
  return s;
}

// A run directory: --out when given, else runs/<prefix>-<hash of the
// non-default settings>.
std::string resolve_out(const std::string& out, const CLI::App* cmd, const std::string& prefix) {
  if (!out.empty()) return out;
  return "runs/" + experiments::settings_dir_name(
                       prefix, non_default_settings(cmd, {"--out", "--threads", "--json", "--quiet",
                                                          "--overwrite"}));
}

// Up to `samples` training samples, in batches of `batch`, for SNIP and GraSP.
prune::ScoreInput score_input(const data::Dataset& train, int64_t samples, int64_t batch, uint64_t seed) {
  prune::ScoreInput in;
  in.seed = seed;
  data::Batcher b(train, batch, /*shuffle=*/true);
  Rng order = Rng(seed).fork(0x5C0E);
  b.start_epoch(order);
  Tensor x, y;
  for (int64_t n = 0; n < samples && b.next(x, y); n += x.dim(0)) in.batches.emplace_back(x.clone(), y.clone());
  return in;
}

int64_t file_bytes(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(n);
}

}  // namespace

PruneCommands::PruneCommands(CLI::App& app) : threads_(default_num_threads()) {
  prune_ = app.add_subcommand("prune", "prune a model in one shot (any criterion, or whole neurons/channels), then optionally train it");
  ticket_ = app.add_subcommand("ticket", "find a lottery ticket: iterative magnitude pruning with rewinding, with controls");
  for (CLI::App* c : {prune_, ticket_}) {
    c->add_option("--model", model_name_, "lenet300 | lenet5 | conv2 | life | SPEC.json");
    add_data_options(c, data_);
    add_recipe_options(c, train_);
    c->add_option("--threads", threads_, "worker threads")->capture_default_str();
    c->add_option("--out", out_, "run directory (default: runs/<command>-<hash of the non-default settings>)");
    c->add_flag("--overwrite", overwrite_, "redo a finished run in --out");
    c->add_flag("--json", json_, "print JSON lines on stdout instead of text");
    c->add_flag("--quiet", quiet_, "print only the result");
  }
  prune_->add_option("--from", from_, "a saved model (model.bin) to prune instead of a fresh --model");
  prune_->add_option("--criterion", criterion_, criteria_help())->capture_default_str();
  prune_->add_option("--sparsity", sparsity_, "fraction of weights to remove, in [0, 1)");
  prune_->add_option("--scope", scope_, "global (one ranking) | layerwise (each layer to --sparsity)")->capture_default_str();
  prune_->add_option("--score-samples", score_samples_, "training samples SNIP and GraSP score on")->capture_default_str();
  prune_->add_flag("--structured", structured_, "remove whole neurons/channels (L1 norm) and save the smaller dense model");
  prune_->add_option("--keep", keep_, "--structured: fraction of each hidden layer's units kept")->capture_default_str();
  prune_->add_flag("--train", train_after_, "train the pruned model with the recipe (pruning at init: SNIP, GraSP, SynFlow)");

  auto& t = ticket_cfg_;
  ticket_->add_option("--rounds", t.rounds, "pruning rounds after the dense round 0")->capture_default_str();
  ticket_->add_option("--rate", t.rate, "fraction of each layer's remaining weights pruned per round")->capture_default_str();
  ticket_->add_option("--output-rate", t.output_rate, "the same for the output layer")->capture_default_str();
  ticket_->add_option("--layer-rate", layer_rates_, "NAME=RATE for one parameter, e.g. fc1.weight=0.3 (repeatable)");
  ticket_->add_flag("--global", t.global, "rank all layers together at --rate instead of per layer");
  ticket_->add_option("--rewind-step", t.rewind_step, "rewind to the weights after this many steps (0: to init)")->capture_default_str();
  ticket_->add_flag("--controls", t.controls, "also train the random-reinit and random-mask controls every round");
  ticket_->add_option("--seeds", seeds_,
                      "N tickets, for seeds --seed .. --seed+N-1, each in OUT/seed<S>/ as "
                      "`pare ticket --seed S` makes it, with a summary over the seeds in OUT; "
                      "under mpirun the seeds spread over the ranks");
}

int PruneCommands::run() {
  if (*prune_) return run_prune();
  if (*ticket_) return run_ticket();
  return -1;
}

int PruneCommands::run_prune() {
  set_num_threads(threads_);
  if (from_.empty() == model_name_.empty()) fail("pare prune needs exactly one of --model and --from");
  if (!structured_ && sparsity_ < 0) fail("pare prune needs --sparsity (or --structured with --keep)");
  const std::string out = resolve_out(out_, prune_, "prune");
  train::TrainConfig cfg = train_;
  cfg.out_dir = out;
  cfg.resume = true;  // an interrupted --train continues from its checkpoint
  cfg.validate();
  const std::string result_path = out + "/result.json";
  const std::string settings = non_default_settings(prune_, {"--threads", "--json", "--quiet", "--overwrite"});
  if (file_exists(result_path)) {
    if (!overwrite_) {
      const std::string found = read_file(result_path);
      const json stored = json::parse(found, nullptr, /*allow_exceptions=*/false);
      if (stored.is_discarded()) fail(result_path, ": not JSON; --overwrite redoes the run");
      // A finished run is shown only when it is this one: the same flags.
      if (!stored.contains("settings") || stored["settings"] != settings)
        fail(out, " holds a pare prune run with other settings (see its result.json: ",
             stored.contains("settings") ? stored["settings"].dump() : std::string("none recorded"),
             "); choose another --out, or --overwrite to replace it");
      std::cout << found;
      std::cerr << "pare: " << out << " holds this finished run (shown above); --overwrite redoes it" << std::endl;
      return 0;
    }
    for (const char* f : {"/result.json", "/log.jsonl", "/checkpoint.bin", "/model.bin"}) std::filesystem::remove(out + f);
  }
  make_dirs(out);

  std::unique_ptr<nn::Model> model;
  data::TrainTest data;
  if (!from_.empty()) {
    if (data_.normalize) fail("--normalize: a saved model (--from) applies the statistics it was trained with");
    model = load_any_model(from_);
    data = load_data(data_, cfg.seed, nullptr);
    standardize_for(*model, data);
  } else {
    nn::ModelSpec spec = load_spec(model_name_, data_);
    data = load_data(data_, cfg.seed, &spec);
    model = nn::Model::build(spec, cfg.seed);
  }
  const prune::SparsityReport before = prune::sparsity(*model);
  const Stopwatch prune_clock;
  json result{{"command", "prune"}, {"settings", settings},
              {"model", model->spec().name}, {"from", from_}};
  if (structured_) {
    const prune::UnitSelection units = prune::select_units_l1(*model, keep_);
    prune::mask_units(*model, units);
    auto small = prune::shrink(*model, units);
    const double masked_acc = data.test.size() ? train::evaluate(*model, data.test, 1000).accuracy : 0;
    model = std::move(small);
    result["method"] = "structured_l1";
    result["keep"] = keep_;
    result["masked_accuracy"] = masked_acc;
    if (!quiet_ && !json_) std::cerr << model->summary() << "\n";
  } else {
    const prune::Criterion& c = prune::criterion(criterion_);
    prune::ScoreInput in;
    if (c.needs_data) in = score_input(data.train, score_samples_, cfg.batch, cfg.seed);
    in.seed = cfg.seed;
    prune::one_shot(*model, c, sparsity_, prune::parse_scope(scope_), in);
    result["method"] = c.name;
    result["target_sparsity"] = sparsity_;
    result["scope"] = scope_;
  }
  result["prune_seconds"] = prune_clock.seconds();
  const prune::SparsityReport after = prune::sparsity(*model);
  result["parameters"] = model->num_parameters();
  result["layers"] = sparsity_json(after);
  result["sparsity"] = after.sparsity();
  result["sparsity_before"] = before.sparsity();
  const train::EvalResult pruned = data.test.size() ? train::evaluate(*model, data.test, 1000) : train::EvalResult{};
  result["accuracy_after_pruning"] = pruned.accuracy;
  if (!json_ && !quiet_) {
    std::cout << "pruned " << model->spec().name << " (" << result["method"].get<std::string>() << "):\n";
    print_sparsity(after);
    std::cout << eval_split_name(data_) << " accuracy right after pruning " << fmt("%.2f%%", 100 * pruned.accuracy) << std::endl;
  }
  if (train_after_) {
    Progress progress(!quiet_ && !json_);
    const train::TrainResult r = train::fit(*model, data.train, data.test, cfg,
                                            epoch_printer(progress, cfg.epochs, json_, quiet_,
                                                          model->spec().loss == "bce_with_logits"));
    progress.finish();
    result["test_accuracy"] = r.final_test.accuracy;
    result["test_loss"] = r.final_test.loss;
    result["flops"] = r.flops;
    result["dense_flops"] = r.dense_flops;
    result["train_seconds"] = r.seconds;
    result["steps"] = r.steps;
  } else {
    train::save_model(*model, out + "/model.bin", json{{"pruned", result["method"]}}.dump());
    result["test_accuracy"] = pruned.accuracy;
  }
  result["eval_split"] = eval_split_name(data_);  // what "test_accuracy" was measured on
  result["model_file"] = out + "/model.bin";
  result["model_bytes"] = file_bytes(out + "/model.bin");
  write_file_atomic(result_path, result.dump(2) + "\n");
  if (json_) {
    std::cout << result.dump() << std::endl;
  } else {
    std::cout << eval_split_name(data_) << " accuracy " << fmt("%.2f%%", 100 * result["test_accuracy"].get<double>())
              << ", sparsity " << fmt("%.2f%%", 100 * after.sparsity()) << ", " << model->num_parameters()
              << " parameters; model saved to " << out << "/model.bin (" << result["model_bytes"].get<int64_t>()
              << " bytes)" << std::endl;
  }
  return 0;
}

int PruneCommands::run_ticket() {
  set_num_threads(threads_);
  if (model_name_.empty()) fail("pare ticket needs --model");
  experiments::TicketConfig cfg = ticket_cfg_;
  for (const auto& lr : layer_rates_) {
    const auto eq = lr.find('=');
    if (eq == std::string::npos) fail("--layer-rate wants NAME=RATE, got \"", lr, "\"");
    try {
      cfg.layer_rates[lr.substr(0, eq)] = std::stod(lr.substr(eq + 1));
    } catch (const std::exception&) {
      fail("--layer-rate ", lr, ": the rate is not a number");
    }
  }
  cfg.out_dir = resolve_out(out_, ticket_, "ticket");
  cfg.data = data_options_json(data_);
  cfg.eval_split = eval_split_name(data_);
  if (seeds_ != 0) return run_ticket_seeds(cfg);
  if (overwrite_ && file_exists(cfg.out_dir + "/settings.json")) std::filesystem::remove_all(cfg.out_dir);
  cfg.spec = load_spec(model_name_, data_);
  data::TrainTest data = load_data(data_, train_.seed, &cfg.spec);
  cfg.train = train_;
  {  // every layer-rate name must be a prunable parameter
    auto probe = nn::Model::build(cfg.spec, 0);
    for (const auto& [name, r] : cfg.layer_rates) {
      nn::Parameter* p = probe->find(name);
      if (!p || !p->is_weight) fail("--layer-rate ", name, ": no such weight in ", cfg.spec.name);
    }
  }
  Progress progress(!quiet_ && !json_);
  experiments::TicketObserver obs;
  // A bar per epoch on a terminal; one line per finished run (on_result).
  const train::Observer printer = epoch_printer(progress, cfg.train.epochs, json_, quiet_ || json_, false);
  obs.train.on_step = printer.on_step;
  obs.train.on_warning = printer.on_warning;
  const int total = cfg.rounds + 1 + (cfg.controls ? 2 * cfg.rounds : 0);
  obs.on_run = [&](const experiments::RunRecord& r, int done, int) {
    if (!quiet_ && !json_)
      std::cerr << "run " << done + 1 << "/" << total << ": round " << r.round << " " << r.kind << std::endl;
  };
  obs.on_result = [&](const experiments::RunRecord& r) {
    progress.finish();
    if (json_)
      std::cout << json{{"event", "run"}, {"round", r.round}, {"kind", r.kind}, {"density", r.density},
                        {"test_accuracy", r.test_accuracy}, {"best_accuracy", r.best_accuracy},
                        {"eval_split", cfg.eval_split}, {"flops", r.flops}, {"seconds", r.seconds},
                        {"skipped", r.skipped}}
                       .dump()
                << std::endl;
    else if (!quiet_)
      std::cout << "round " << r.round << " " << r.kind << ": " << fmt("%.2f%%", 100 * r.density)
                << " of weights, " << cfg.eval_split << " accuracy " << fmt("%.2f%%", 100 * r.test_accuracy) << " (best "
                << fmt("%.2f%%", 100 * r.best_accuracy) << "), " << fmt("%.3g", r.flops) << " FLOPs, "
                << fmt("%.1f s", r.seconds) << (r.skipped ? " [done before]" : "") << std::endl;
  };
  const auto records = experiments::run_ticket(cfg, data.train, data.test, obs);
  if (!json_) std::cout << "\n" << experiments::ticket_table(records, cfg.eval_split);
  std::cout << (json_ ? json{{"event", "end"}, {"out", cfg.out_dir}}.dump() : "results in " + cfg.out_dir + "/results.md")
            << std::endl;
  return 0;
}

int PruneCommands::run_ticket_seeds(experiments::TicketConfig ticket) {
  if (seeds_ < 1) fail("--seeds must be at least 1 (tickets for seeds --seed .. --seed+N-1), got ", seeds_);
  experiments::TicketSeedsConfig cfg;
  cfg.out_dir = ticket.out_dir;
  cfg.first_seed = train_.seed;
  cfg.seeds = seeds_;
  cfg.overwrite = overwrite_;
  ticket.spec = load_spec(model_name_, data_);  // each seed's own statistics come with its data
  ticket.train = train_;
  cfg.ticket = ticket;
  // What `pare ticket --seed S` trains on, loaded where seed S runs.
  cfg.inputs = [this](uint64_t seed) {
    experiments::TicketInputs in;
    in.spec = load_spec(model_name_, data_);
    in.data = load_data(data_, seed, &in.spec);
    return in;
  };
  {  // every layer-rate name must be a prunable parameter
    auto probe = nn::Model::build(ticket.spec, 0);
    for (const auto& [name, r] : ticket.layer_rates) {
      nn::Parameter* p = probe->find(name);
      if (!p || !p->is_weight) fail("--layer-rate ", name, ": no such weight in ", ticket.spec.name);
    }
  }
  cfg.validate();  // before MPI starts: every rank refuses bad flags alike
  // The seeds spread over the ranks under mpirun. The communicator lives in
  // this call, inside main's try block: a rank that raises unwinds past it,
  // and it then stops the whole job rather than leave the others waiting.
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator();
  // One seed at a time per rank, on this rank's share of the machine's cores.
  const int threads = ticket_->get_option("--threads")->count() > 0
                          ? threads_
                          : std::max(1, default_num_threads() / comm->local_size());
  set_num_threads(threads);
  if (comm->rank() != 0) {  // rank 0 reports for the job; the others print only errors
    experiments::run_ticket_seeds(cfg, *comm);
    return 0;
  }
  const bool talk = !quiet_ && !json_;
  if (talk)
    std::cerr << "ticket over seeds " << cfg.first_seed << " .. "
              << cfg.first_seed + static_cast<uint64_t>(seeds_ - 1) << ": one seed at a time"
              << (comm->size() > 1 ? " on each of " + std::to_string(comm->size()) + " ranks"
                                   : std::string())
              << ", " << threads << (threads == 1 ? " thread" : " threads")
              << (comm->size() > 1 ? " each" : "") << ", in " << cfg.out_dir << std::endl;
  experiments::TicketSeedsObserver obs;
  obs.on_seed = [&](const experiments::TicketSeed& s, int done, int total) {
    const experiments::RunRecord* last = nullptr;  // the sparsest ticket
    for (const auto& r : s.records)
      if (r.kind == "ticket") last = &r;
    if (json_) {
      json j{{"event", "seed"}, {"seed", s.seed}, {"rank", s.rank}, {"skipped", s.skipped},
             {"done", done}, {"total", total}, {"runs", s.records.size()}};
      if (last)
        j.update({{"last_round", last->round},
                  {"density", last->density},
                  {"test_accuracy", last->test_accuracy},
                  {"eval_split", ticket.eval_split}});
      std::cout << j.dump() << std::endl;
    } else if (!quiet_) {
      std::cout << "seed " << s.seed << " (" << done << "/" << total
                << (s.rank >= 0 ? ", rank " + std::to_string(s.rank) : "") << "): ";
      if (last)
        std::cout << "round " << last->round << " ticket " << fmt("%.2f%%", 100 * last->density)
                  << " of weights, " << ticket.eval_split << " accuracy " << fmt("%.2f%%", 100 * last->test_accuracy);
      std::cout << (s.skipped ? " [done before]" : "") << std::endl;
    }
  };
  const auto seeds = experiments::run_ticket_seeds(cfg, *comm, obs);
  if (json_) {
    json rows = json::array();
    for (const auto& r : experiments::ticket_seeds_rows(seeds))
      rows.push_back({{"round", r.round}, {"kind", r.kind}, {"seeds", r.seeds}, {"density", r.density},
                      {"test_accuracy_mean", r.mean_accuracy}, {"test_accuracy_std", r.std_accuracy}});
    std::cout << json{{"event", "end"}, {"out", cfg.out_dir}, {"rows", rows}}.dump() << std::endl;
  } else {
    std::cout << "\n" << experiments::ticket_seeds_table(seeds, ticket.eval_split) << "results in " << cfg.out_dir << "/results.md"
              << std::endl;
  }
  return 0;
}

}  // namespace pare::cli
