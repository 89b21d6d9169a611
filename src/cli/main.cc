// `pare`: the command line. Parses flags, calls the library, prints results,
// and turns errors into one line on stderr and a non-zero exit code.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "pare/base/clock.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/cli/common.h"
#include "pare/codegen/program.h"
#include "pare/cli/format_commands.h"
#include "pare/io/int8_net.h"
#include "pare/io/pare_model.h"
#include "pare/format/pare_file.h"
#include "pare/cli/life_command.h"
#include "pare/cli/life_prune_command.h"
#include "pare/cli/progress.h"
#include "pare/cli/prune_commands.h"
#include "pare/cli/report_command.h"
#include "pare/cli/cost_command.h"
#include "pare/data/data.h"
#include "pare/dist/communicator.h"
#include "pare/kernels/kernels.h"
#include "pare/train/lora.h"
#include "pare/train/trainer.h"

namespace {

using json = nlohmann::json;
using namespace pare;
using cli::DataOptions;
using cli::fmt;
using cli::load_data;
using cli::load_spec;
using cli::add_data_options;

constexpr const char* kVersion = "0.1.0";

int run_train(const train::TrainConfig& cfg_in, const std::string& model_name, const std::string& from,
              const DataOptions& dopt, int threads, bool threads_given, bool as_json, bool quiet,
              bool overwrite) {
  train::TrainConfig cfg = cfg_in;
  // Under mpirun/srun, one rank of a data-parallel job (docs/distributed.md).
  // The communicator lives in this call, inside main's try: a rank that fails
  // stops the job instead of leaving the others waiting.
  const auto comm = dist::make_communicator();
  cfg.comm = comm.get();
  const bool lead = comm->rank() == 0;
  // Ranks on one machine share its cores.
  if (!threads_given) threads = std::max(1, threads / comm->local_size());
  if (!lead) quiet = true, as_json = false;  // rank 0 reports for the job
  set_num_threads(threads);
  cfg.validate();
  if (lead && !cfg.out_dir.empty() && !cfg.resume && file_exists(cfg.out_dir + "/log.jsonl")) {
    if (!overwrite)
      fail("--out ", cfg.out_dir, " already holds a run: add --resume to continue it, --overwrite to replace it, or choose another directory");
    for (const char* f : {"/log.jsonl", "/checkpoint.bin", "/checkpoint.prev.bin", "/model.bin"})
      std::filesystem::remove(cfg.out_dir + f);
  }
  std::unique_ptr<nn::Model> model;
  data::TrainTest data;
  if (!from.empty()) {
    if (dopt.normalize) fail("--normalize: a saved model (--from) applies the statistics it was trained with");
    model = cli::load_any_model(from);
    data = load_data(dopt, cfg.seed, nullptr);
    cli::standardize_for(*model, data);
  } else {
    nn::ModelSpec fresh = load_spec(model_name, dopt);
    data = load_data(dopt, cfg.seed, &fresh);
    model = nn::Model::build(fresh, cfg.seed);
  }
  const nn::ModelSpec& spec = model->spec();
  if (!quiet && !as_json) {
    std::cerr << model->summary() << "\n";
    std::cerr << "data " << dopt.data << ": " << data.train.size() << " train, " << data.test.size()
              << " " << cli::eval_split_name(dopt) << " samples; " << threads << " threads";
    if (comm->size() > 1) std::cerr << " per rank, " << comm->size() << " ranks (data-parallel)";
    std::cerr << "\n";
    if (cfg.lora.enabled()) {
      int64_t weights = 0;
      for (const nn::Parameter* p : model->parameters())
        if (train::lora_adapts(*p)) weights += p->numel();
      const int64_t factors = train::lora_factor_values(*model, cfg.lora.rank);
      std::cerr << "LoRA rank " << cfg.lora.rank << " (scale " << cfg.lora.scale() << "): " << factors
                << " factor values train in place of " << weights << " weights; biases frozen\n";
    }
  }
  cli::Progress progress(!quiet && !as_json);
  const train::Observer obs = cli::epoch_printer(progress, cfg.epochs, as_json, quiet,
                                                  spec.loss == "bce_with_logits",
                                                  cli::eval_split_name(dopt));
  train::TrainResult r = train::fit(*model, data.train, data.test, cfg, obs);
  progress.finish();  // a run stopped mid-epoch leaves its bar open
  if (!lead) return 0;
  if (as_json) {
    std::cout << json{{"event", "end"}, {"model", spec.name}, {"steps", r.steps},
                      {"stopped_because", r.stopped_because}, {"test_accuracy", r.final_test.accuracy},
                      {"test_loss", r.final_test.loss}, {"eval_split", cli::eval_split_name(dopt)},
                      {"seconds", r.seconds}, {"cpu_seconds", r.cpu_seconds},
                      {"peak_rss_bytes", r.cost.peak_rss_bytes}, {"resumed", r.resumed},
                      {"ranks", r.ranks}, {"allreduce_seconds", r.allreduce_seconds},
                      {"flops", r.flops}, {"dense_flops", r.dense_flops}, {"sparsity", r.sparsity}}
                     .dump()
              << std::endl;
  } else {
    std::cout << cli::eval_split_name(dopt) << " accuracy " << fmt("%.2f%%", 100 * r.final_test.accuracy)
              << " (" << spec.name << ", "
              << r.epochs.size() << " epochs this run, " << r.steps << " steps, " << fmt("%.1f s", r.seconds);
    if (cfg.sparse.enabled() || r.sparsity > 0)
      std::cout << "; " << fmt("%.1f%%", 100 * r.sparsity) << " of weights pruned, "
                << fmt("%.3g", r.flops) << " training FLOPs (dense: " << fmt("%.3g", r.dense_flops) << ")";
    if (!cfg.out_dir.empty()) std::cout << "; model saved to " << cfg.out_dir << "/model.bin";
    std::cout << ")" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pare: train neural networks cheaply on a CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion);

  // ---- train ----
  train::TrainConfig cfg;
  DataOptions dopt;
  std::string model_name;
  int threads = default_num_threads();
  bool as_json = false, quiet = false, overwrite = false;
  auto* t = app.add_subcommand("train", "train a model; writes DIR/log.jsonl, checkpoint.bin, model.bin");
  std::string from_model;
  auto* model_opt = t->add_option("--model", model_name, "lenet300 | lenet5 | conv2 | life | SPEC.json");
  t->add_option("--from", from_model,
                "fine-tune a saved model (model.bin or .pare: its spec, weights, masks and input statistics) instead of a fresh --model")
      ->excludes(model_opt);
  t->add_option("--update-fraction", cfg.update_fraction,
                "train only this fraction of each weight (largest early gradients); the rest keep their values, so `pare delta` stays small")
      ->capture_default_str();
  t->add_option("--update-batches", cfg.update_batches, "batches that choose the --update-fraction weights")
      ->capture_default_str();
  t->add_option("--lora-rank", cfg.lora.rank,
                "LoRA: train each weight as W0 + (alpha/rank) B A with rank-r factors only (biases frozen); `pare delta` then keeps the factors (0: off)")
      ->capture_default_str();
  t->add_option("--lora-alpha", cfg.lora.alpha, "LoRA's alpha: the update is scaled by alpha/rank (0: alpha = rank)")
      ->capture_default_str();
  add_data_options(t, dopt);
  cli::add_recipe_options(t, cfg);
  cli::add_sparse_training_options(t, cfg.sparse);
  auto* threads_opt = t->add_option("--threads", threads,
                                    "worker threads (default: the cores this process may use, shared among the ranks on this machine under mpirun)")
                          ->capture_default_str();
  t->add_option("--out", cfg.out_dir, "run directory (log.jsonl, checkpoint.bin, model.bin)");
  t->add_flag("--resume", cfg.resume, "continue the run in --out from its checkpoint");
  t->add_flag("--overwrite", overwrite, "replace a finished or interrupted run in --out");
  t->add_flag("--json", as_json, "print JSON lines on stdout instead of text");
  t->add_flag("--quiet", quiet, "print only the final line");

  // ---- eval ----
  std::string model_file;
  DataOptions eval_data;
  int eval_threads = default_num_threads();
  bool eval_json = false;
  auto* e = app.add_subcommand("eval", "evaluate a saved model (DIR/model.bin) on a test set");
  e->add_option("model_file", model_file, "a model saved by pare (model.bin or .pare)")->required();
  add_data_options(e, eval_data);
  e->add_option("--threads", eval_threads, "worker threads")->capture_default_str();
  e->add_flag("--json", eval_json, "print JSON");
  std::string eval_sparse = "auto";
  int64_t eval_batch = 1000;
  e->add_option("--sparse", eval_sparse,
                "masked linear layers: auto (sparse kernels below the measured crossover density) | on | off")
      ->capture_default_str();
  e->add_option("--batch", eval_batch, "samples per forward pass")->capture_default_str();
  bool eval_program = false;
  e->add_flag("--program", eval_program,
              "run the integer-only program pare export --target c emits (a .pare file from pare compress --int8 --calibrate): what a microcontroller computes, bit for bit");
  std::string eval_outputs;
  e->add_option("--save-outputs", eval_outputs,
                "write the network's outputs (logits) for every test sample, in order, as a float32 .npy (samples, outputs)");
  bool eval_int8 = false;
  e->add_flag("--int8", eval_int8,
              "integer inference on the int8 kernels (a .pare file from pare compress --int8 --calibrate; linear and conv nets)");

  cli::PruneCommands prune_commands(app);
  cli::FormatCommands format_commands(app);
  cli::LifeCommand life_command(app);
  cli::LifePruneCommand life_prune_command(app);
  cli::ReportCommand report_command(app);
  cli::CostCommand cost_command(app);

  // ---- info ----
  auto* info = app.add_subcommand("info", "what was built: version, compiler, BLAS, threads, presets");
  bool info_json = false;
  info->add_flag("--json", info_json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    if (err.get_exit_code() == 0) return app.exit(err);  // --help, --version
    // One line, as every other error of pare's (docs/architecture.md).
    std::cerr << "pare: error: " + cli::parse_error_message(app, argc, argv, err) + "\n" << std::flush;
    return 1;
  }

  try {
    // Under mpirun/srun with several ranks, only the commands that divide
    // their work among ranks may run; any other would run once per rank,
    // every copy writing the same files.
    if (dist::launched_under_mpi()) {
      const CLI::App* chosen = app.get_subcommands().front();
      const std::string name = chosen->get_name();
      const bool uses_ranks =
          name == "train" || name == "life" || (name == "ticket" && chosen->count("--seeds") > 0);
      if (!uses_ranks) {
        const auto comm = dist::make_communicator();
        if (comm->size() > 1)
          fail("pare ", name, " runs in one process, and mpirun started ", comm->size(),
               " of it; under mpirun only train, life and ticket --seeds share the work among "
               "ranks (docs/distributed.md): run pare ", name, " without mpirun");
      }
    }
    if (const int rc = prune_commands.run(); rc >= 0) return rc;
    if (const int rc = format_commands.run(); rc >= 0) return rc;
    if (const int rc = life_command.run(); rc >= 0) return rc;
    if (const int rc = life_prune_command.run(); rc >= 0) return rc;
    if (const int rc = report_command.run(); rc >= 0) return rc;
    if (const int rc = cost_command.run(); rc >= 0) return rc;
    if (*t) {
      if (model_name.empty() == from_model.empty()) fail("pare train needs exactly one of --model and --from");
      return run_train(cfg, model_name, from_model, dopt, threads, threads_opt->count() > 0, as_json,
                       quiet, overwrite);
    }
    if (*e) {
      set_num_threads(eval_threads);
      if (eval_batch < 1) fail("--batch must be at least 1, got ", eval_batch);
      if (eval_int8 && !io::is_pare_path(model_file))
        fail("--int8 evaluates a .pare file, got ", model_file);
      // A .pare file is read once: the float model (for its input statistics)
      // and, with --int8, the integer network both come from it.
      std::optional<format::File> file;
      if (io::is_pare_path(model_file)) file = format::read_file(model_file);
      auto model = file ? io::from_file(*file, model_file) : cli::load_any_model(model_file);
      // --test-classes selects in the set scored: the test split, or the
      // --data file itself when there is none.
      cli::DataOptions load_options = eval_data;
      load_options.test_classes.clear();
      data::TrainTest d = load_data(load_options, 0, nullptr);
      cli::standardize_for(*model, d);
      if (!eval_data.test_classes.empty()) {
        data::Dataset& scored = d.test.size() > 0 ? d.test : d.train;
        scored = cli::select_classes_for(scored, eval_data.test_classes, "--test-classes");
      }
      const data::Dataset& set = d.test.size() > 0 ? d.test : d.train;
      if (eval_program) {
        if (!file) fail("--program evaluates a .pare file, got ", model_file);
        if (eval_int8) fail("--program and --int8 are alternatives");
        const codegen::Program program = codegen::plan(*file, model_file);
        Stopwatch sw;
        const cli::ProgramScore score = cli::program_score(program, set, eval_batch, eval_outputs);
        const double seconds = sw.seconds();
        if (eval_json)
          std::cout << json{{"model", model->spec().name}, {"samples", set.size()}, {"accuracy", score.accuracy},
                            {"exact", score.exact}, {"seconds", seconds}, {"kernels", "integer program"},
                            {"arena_bytes", program.arena_bytes}, {"constant_bytes", program.constant_bytes()}}
                           .dump()
                    << std::endl;
        else
          std::cout << model->spec().name << " on " << set.size() << " samples, integer-only program ("
                    << program.ops.size() << " steps, arena " << program.arena_bytes << " bytes): accuracy "
                    << fmt("%.2f%%", 100 * score.accuracy)
                    << (program.binary_output ? ", every output right " + fmt("%.2f%%", 100 * score.exact) : "")
                    << " (" << fmt("%.3f", seconds) << " s)\n";
        return 0;
      }
      if (eval_int8) {
        const io::Int8Net net = io::Int8Net::from_file(*file, model_file);
        Stopwatch sw;
        std::vector<float> logits;
        const double acc = cli::int8_accuracy(net, set, eval_batch, eval_outputs.empty() ? nullptr : &logits);
        const double seconds = sw.seconds();
        if (!eval_outputs.empty()) {
          Tensor t = Tensor::empty({set.size(), static_cast<int64_t>(logits.size()) / std::max<int64_t>(set.size(), 1)});
          std::copy(logits.begin(), logits.end(), t.f32());
          data::write_npy(eval_outputs, t);
        }
        if (eval_json)
          std::cout << json{{"model", model->spec().name}, {"samples", set.size()}, {"accuracy", acc},
                            {"seconds", seconds}, {"kernels", "int8"},
                            {"sparse_layers", net.sparse_layers()}, {"conv_layers", net.conv_layers()}}.dump() << std::endl;
        else
          std::cout << model->spec().name << " on " << set.size() << " samples, int8 kernels ("
                    << net.sparse_layers() << " layers sparse): accuracy " << fmt("%.2f%%", 100 * acc)
                    << " (" << fmt("%.3f", seconds) << " s)\n";
        return 0;
      }
      // A pruned model runs its masked layers sparse (nn/sparse_dispatch.h).
      const auto dispatch = nn::dispatch_sparse(*model, nn::parse_sparse_mode(eval_sparse),
                                                eval_batch, /*training=*/false, /*packed=*/true);
      Stopwatch sw;
      Tensor outputs;
      train::EvalResult r = train::evaluate(*model, set, eval_batch, eval_outputs.empty() ? nullptr : &outputs);
      const double seconds = sw.seconds();
      if (!eval_outputs.empty()) data::write_npy(eval_outputs, outputs);
      const prune::SparsityReport sp = prune::sparsity(*model);
      if (eval_json) {
        json kinds = json::object();
        for (const auto& d : dispatch) kinds[d.name] = d.kind;
        std::cout << json{{"model", model->spec().name}, {"samples", r.samples}, {"loss", r.loss},
                          {"accuracy", r.accuracy}, {"exact", r.exact}, {"seconds", seconds},
                          {"parameters", model->num_parameters()}, {"sparsity", sp.sparsity()},
                          {"layers", cli::sparsity_json(sp)}, {"kernels", kinds}}
                         .dump()
                  << std::endl;
      } else {
        std::cout << model->spec().name << " on " << r.samples << " samples: accuracy "
                  << fmt("%.2f%%", 100 * r.accuracy) << ", loss " << fmt("%.4f", r.loss) << " ("
                  << fmt("%.3f", seconds) << " s)\n"
                  << model->num_parameters() << " parameters; weights kept per layer:\n";
        cli::print_sparsity(sp);
        bool masked = false;
        for (const auto& d : dispatch) masked = masked || d.kind != "dense";
        if (masked) std::cout << "kernels (--sparse " << eval_sparse << "):\n" << nn::describe(dispatch);
      }
      return 0;
    }
    if (*info) {
      json j{{"version", kVersion},
             {"compiler", __VERSION__},
             {"cxx_standard", __cplusplus},
#if defined(__AVX512F__)
             {"simd", "avx512"},
#elif defined(__AVX2__)
             {"simd", "avx2"},
#else
             {"simd", "portable"},
#endif
             {"blas", kernels::blas_description()},
             {"threads", default_num_threads()},
             {"presets", nn::preset_names()},
             {"optimizers", optim::optimizer_names()},
             {"layers", nn::layer_types()}};
      if (info_json) {
        std::cout << j.dump() << std::endl;
      } else {
        for (auto& [k, v] : j.items()) std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
      }
      return 0;
    }
  } catch (const pare::Error& err) {
    // One write, so that the lines of several ranks do not interleave.
    std::cerr << std::string("pare: error: ") + err.what() + "\n" << std::flush;
    return 1;
  } catch (const std::exception& err) {
    std::cerr << std::string("pare: internal error: ") + err.what() + "\n" << std::flush;
    return 3;
  }
  return 0;
}
