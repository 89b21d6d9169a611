// The training loop, evaluation, checkpoints and saved models.
#include "pare/train/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "pare/base/clock.h"
#include "pare/base/file.h"
#include "pare/base/json_number.h"
#include "pare/base/strings.h"
#include "pare/base/thread_pool.h"
#include "pare/data/batcher.h"
#include "pare/kernels/kernels.h"
#include "pare/prune/prune.h"
#include "pare/train/archive.h"
#include "pare/train/data_parallel.h"
#include "pare/train/numerics.h"
#include "pare/train/step.h"

namespace pare::train {

using autograd::Var;
using json = nlohmann::json;

void TrainConfig::validate() const {
  if (epochs < 1) fail("--epochs must be at least 1, got ", epochs);
  if (batch < 1) fail("--batch must be at least 1, got ", batch);
  if (checkpoint_every < 0) fail("--checkpoint-every must be >= 0");
  if (eval_batch < 1) fail("eval batch must be at least 1");
  if (patience < 0) fail("--patience must be >= 0");
  if (!(target_exact >= 0 && target_exact <= 1))
    fail("the target exact-match fraction must be in [0, 1], got ", target_exact);
  if (parallel != "auto" && parallel != "data" && parallel != "ops")
    fail("--parallel must be auto, data or ops, got \"", parallel, "\"");
  if (resume && out_dir.empty()) fail("--resume needs --out (the run directory to resume)");
  if (snapshot_step < 0) fail("snapshot step must be >= 0, got ", snapshot_step);
  if (shards < 0) fail("--shards must be >= 0, got ", shards);
  parse_on_nan(on_nan);
  if (!(grad_spike >= 0) || !std::isfinite(grad_spike))
    fail("--grad-spike ", grad_spike, ": the spike factor must be a finite number >= 0 (0: off)");
  if (grad_spike > 0 && grad_spike <= 1)
    fail("--grad-spike ", grad_spike, ": a spike is a norm this many times the typical one, so more than 1 (0: off)");
  if (snapshot_step > 0 && out_dir.empty()) fail("a weight snapshot needs --out (the run directory)");
  sparse.validate();
  nn::parse_sparse_mode(sparse_kernels);
  if (!(update_fraction >= 0 && update_fraction <= 1))
    fail("--update-fraction must be in [0, 1], got ", update_fraction);
  if (update_fraction > 0 && update_batches < 1) fail("--update-batches must be at least 1");
  if (update_fraction > 0 && sparse.enabled())
    fail("--update-fraction fine-tunes a fixed set of weights; it does not combine with --sparse-training");
  lora.validate();
  if (!lora.enabled() && lora.alpha > 0) fail("--lora-alpha applies to LoRA fine-tuning: give --lora-rank too");
  if (lora.enabled() && update_fraction > 0)
    fail("--lora-rank and --update-fraction are two ways to fine-tune; choose one");
  if (lora.enabled() && sparse.enabled())
    fail("--lora-rank fine-tunes the weights' low-rank update; it does not combine with --sparse-training");
  optim::validate(optimizer);
  optim::validate(schedule);
}

EvalResult evaluate(nn::Model& model, const data::Dataset& all, int64_t batch,
                    Tensor* outputs_out, dist::Communicator* comm) {
  const int ranks = comm ? comm->size() : 1;
  if (ranks > 1 && outputs_out) fail("evaluate: outputs are kept by a single-process evaluation only");
  // This rank's contiguous share of the samples (all of them with one rank).
  data::Dataset data = all;
  if (ranks > 1 && all.size() > 0) {
    const int64_t b0 = ThreadPool::chunk_begin(all.size(), ranks, comm->rank());
    const int64_t b1 = ThreadPool::chunk_begin(all.size(), ranks, comm->rank() + 1);
    data.inputs = all.inputs.slice_rows(b0, b1);
    data.targets = all.targets.slice_rows(b0, b1);
  }
  autograd::NoGradGuard no_grad;
  nn::ForwardContext ctx{.training = false};
  EvalResult r;
  int64_t n = data.size();
  const bool classify = model.spec().loss == "softmax_cross_entropy";
  const bool binary = model.spec().loss == "bce_with_logits";
  double loss_sum = 0, correct = 0, exact = 0, outputs = 0;
  // In order, in slices of `batch`, through a Batcher: datasets may store u8
  // (see data/dataset.h), and the Batcher hands the model f32.
  std::optional<data::Batcher> batches;
  if (n > 0) {
    batches.emplace(data, batch, /*shuffle=*/false);
    Rng unused(0);  // no shuffle: the order is 0..n-1 whatever the state
    batches->start_epoch(unused);
  }
  Tensor xb, y;
  for (int64_t b = 0; batches && batches->next(xb, y); b += batch) {
    const int64_t e = b + xb.dim(0);
    Var x(xb);
    Var out = model.forward(x, ctx);
    loss_sum += model.loss(out, y).value().f32()[0] * static_cast<double>(e - b);
    const float* o = out.value().f32();
    const int64_t per = out.numel() / (e - b);
    if (outputs_out) {
      if (b == 0) *outputs_out = Tensor::empty({n, per});
      std::copy(o, o + out.numel(), outputs_out->f32() + b * per);
    }
    if (classify) {
      const int32_t* lab = y.data<int32_t>();
      for (int64_t i = 0; i < e - b; ++i) {
        int64_t best = 0;
        for (int64_t j = 1; j < per; ++j)
          if (o[i * per + j] > o[i * per + best]) best = j;
        correct += best == lab[i];
      }
      outputs += static_cast<double>(e - b);
    } else if (binary) {
      const float* t = y.f32();
      for (int64_t i = 0; i < e - b; ++i) {
        int64_t ok = 0;
        for (int64_t j = 0; j < per; ++j) ok += (o[i * per + j] > 0.0f) == (t[i * per + j] > 0.5f);
        correct += static_cast<double>(ok);
        exact += ok == per;
      }
      outputs += static_cast<double>(out.numel());
    }
  }
  if (ranks > 1) {
    double sums[4] = {loss_sum, correct, exact, outputs};
    comm->allreduce_sum(std::span<double>(sums));
    loss_sum = sums[0];
    correct = sums[1];
    exact = sums[2];
    outputs = sums[3];
  }
  n = all.size();
  r.samples = n;
  r.loss = n ? loss_sum / static_cast<double>(n) : 0;
  r.accuracy = outputs > 0 ? correct / outputs : 0;
  r.exact = binary && n ? exact / static_cast<double>(n) : (classify ? r.accuracy : 0);
  return r;
}

namespace {

void put_params(Archive& a, const nn::Model& model, bool with_initial) {
  for (nn::Parameter* p : model.parameters()) {
    a.tensors.emplace_back("param/" + p->name, p->value());
    if (p->mask.defined()) a.tensors.emplace_back("mask/" + p->name, p->mask);
    if (with_initial) a.tensors.emplace_back("initial/" + p->name, p->initial);
  }
}

void take_tensor(const Archive& a, const std::string& key, Tensor& into, const std::string& path) {
  const Tensor* t = a.find(key);
  if (!t) fail(path, ": missing tensor ", key);
  if (t->shape() != into.shape() || t->dtype() != into.dtype())
    fail(path, ": ", key, " is ", t->shape().str(), " in the file, the model expects ",
         into.shape().str());
  into.copy_from(*t);
}

void take_params(const Archive& a, nn::Model& model, bool with_initial, const std::string& path) {
  for (nn::Parameter* p : model.parameters()) {
    take_tensor(a, "param/" + p->name, p->value(), path);
    if (a.find("mask/" + p->name)) {
      p->mask = Tensor::empty(p->value().shape());
      take_tensor(a, "mask/" + p->name, p->mask, path);
    }
    if (with_initial) take_tensor(a, "initial/" + p->name, p->initial, path);
  }
}

// Checkpoints (docs/checkpoint.md, docs/reliability.md): checkpoint.bin is
// the newest and checkpoint.prev.bin the one before it, so a damaged newest
// one costs the steps since the previous one, not the run. A new one is
// written atomically to checkpoint.next.bin, then moved in by
// replace_keeping_previous (base/file.h).
std::string checkpoint_sibling(const std::string& ckpt_path, const char* tag) {
  return ckpt_path.substr(0, ckpt_path.size() - 4) + "." + tag + ".bin";  // ".../checkpoint.<tag>.bin"
}

// An Error's message without its leading "<path>: ".
std::string without_path(const std::string& message, const std::string& path) {
  return message.rfind(path + ": ", 0) == 0 ? message.substr(path.size() + 2) : message;
}

// Checks the metadata fields resuming reads, each for its type and range
// (a file pare did not write may hold anything); raises Error naming one.
void check_checkpoint_meta(const json& meta, const std::string& path) {
  enum class Want { count, number, number_or_null, text, lines };
  struct Field {
    const char* key;
    Want want;
    bool required;
  };
  static const Field kFields[] = {
      {"kind", Want::text, true},
      {"step", Want::count, true},
      {"optimizer_steps", Want::count, true},
      {"epoch", Want::count, true},
      {"batch", Want::count, true},
      {"loss_sum", Want::number, true},
      {"epoch_seconds", Want::number, true},
      {"log", Want::lines, true},
      {"spec", Want::text, false},
      {"model", Want::text, false},
      {"best_test_loss", Want::number_or_null, false},
      {"epochs_without_improvement", Want::count, false},
      {"flops", Want::number, false},
      {"dense_flops", Want::number, false},
      {"executed_flops", Want::number, false},
      {"stopped_because", Want::text, false},
      {"lr_scale", Want::number, false},
      {"rollbacks", Want::count, false},
  };
  constexpr int64_t kMaxCount = int64_t{1} << 53;
  if (!meta.is_object()) fail(path, ": the checkpoint's metadata is not a JSON object");
  for (const Field& f : kFields) {
    if (!meta.contains(f.key)) {
      if (f.required) fail(path, ": the checkpoint lacks \"", f.key, "\"");
      continue;
    }
    const json& v = meta[f.key];
    bool ok = false;
    switch (f.want) {
      case Want::count: ok = is_whole_number(v, 0, kMaxCount); break;
      case Want::number: ok = v.is_number(); break;
      case Want::number_or_null: ok = v.is_number() || v.is_null(); break;
      case Want::text: ok = v.is_string(); break;
      case Want::lines:
        ok = v.is_array() && std::all_of(v.begin(), v.end(), [](const json& l) { return l.is_string(); });
        break;
    }
    if (!ok) fail(path, ": the checkpoint's \"", f.key, "\" is ", v.dump().substr(0, 40), ", not a valid value");
  }
  if (meta["kind"] != "checkpoint") fail(path, ": not a training checkpoint (kind ", meta["kind"].dump(), ")");
}

// Reads the checkpoint at `path` and checks what resuming needs of it (magic,
// CRC, sizes and header by parse_archive; the metadata fields). Returns its
// bytes, or nothing with the reason in `damage`.
std::string read_checked_checkpoint(const std::string& path, std::string& damage) {
  try {
    std::string bytes = read_file(path);
    check_checkpoint_meta(json::parse(parse_archive(bytes, path).meta_json), path);
    return bytes;
  } catch (const Error& e) {
    damage = without_path(e.what(), path);
  } catch (const json::exception& e) {
    damage = std::string("corrupt metadata: ") + e.what();
  }
  return {};
}

// The checkpoint a resumed run starts from: checkpoint.bin, or when that is
// damaged checkpoint.prev.bin. None when checkpoint.bin does not exist (a
// crash never removes it: replace_keeping_previous; so the run starts over,
// as one whose checkpoint was deleted should). Raises Error when neither is good.
struct GoodCheckpoint {
  std::string path, bytes;  // empty: the run has no checkpoint
  std::string damage;       // set when falling back: what is wrong with checkpoint.bin
};
GoodCheckpoint good_checkpoint(const std::string& ckpt_path) {
  GoodCheckpoint g;
  if (!file_exists(ckpt_path)) return g;
  const std::string prev = checkpoint_sibling(ckpt_path, "prev");
  std::string why, why_prev;
  g.bytes = read_checked_checkpoint(ckpt_path, why);
  if (!g.bytes.empty()) {
    g.path = ckpt_path;
    return g;
  }
  g.damage = "is damaged (" + why + ")";
  if (!file_exists(prev))
    fail(ckpt_path, " ", g.damage, " and there is no previous checkpoint (", prev,
         ") to fall back to; delete it to start the run over");
  g.bytes = read_checked_checkpoint(prev, why_prev);
  if (g.bytes.empty())
    fail(ckpt_path, " ", g.damage, " and the previous checkpoint ", prev, " is damaged too (", why_prev,
         "); no good checkpoint to resume from: delete both to start the run over");
  g.path = prev;
  return g;
}

// A warning from the loop: to the Observer, or (no Observer takes warnings,
// e.g. a run inside a sweep) one line on stderr, since a fallback to an
// older checkpoint must not pass unsaid.
void warn(const Observer& observer, const std::string& message) {
  if (observer.on_warning)
    observer.on_warning(message);
  else
    std::fprintf(stderr, "pare: warning: %s\n", message.c_str());
}

// The run log: JSON lines kept in memory and rewritten atomically on every
// change, so a crash never leaves a torn line and a resumed run continues
// the log exactly as it stood at its checkpoint.
class RunLog {
 public:
  explicit RunLog(std::string path) : path_(std::move(path)) {}
  void add(const json& line) {
    lines_.push_back(line.dump());
    flush();
  }
  void flush() const {
    if (path_.empty()) return;
    std::string all;
    for (const auto& l : lines_) all += l + "\n";
    write_file_atomic(path_, all);
  }
  std::vector<std::string>& lines() { return lines_; }

 private:
  std::string path_;
  std::vector<std::string> lines_;
};

// Counts training FLOPs of the weight layers at their current densities.
class FlopCounter {
 public:
  explicit FlopCounter(const nn::Model& model) : layers_(model.weight_macs()) {
    refresh();
  }
  // Re-reads the masks (after pruning changed them) and which layers run sparse.
  void refresh() {
    sparse_macs_ = dense_macs_ = executed_macs_ = 0;
    for (const auto& [p, macs] : layers_) {
      const double density =
          p->numel() ? static_cast<double>(prune::alive(*p)) / static_cast<double>(p->numel()) : 0;
      sparse_macs_ += density * static_cast<double>(macs);
      dense_macs_ += static_cast<double>(macs);
      executed_macs_ += (p->sparse ? density : 1.0) * static_cast<double>(macs);
    }
  }
  // One step over `samples` samples: forward, input gradient and weight
  // gradient are one product each, 2 FLOPs per MAC. A step that needs the
  // dense weight gradient (RigL's grow steps) pays the dense product there.
  double step_flops(int64_t samples, bool dense_weight_grad) const {
    const double weight_grad = dense_weight_grad ? dense_macs_ : sparse_macs_;
    return 2.0 * static_cast<double>(samples) * (2.0 * sparse_macs_ + weight_grad);
  }
  double dense_step_flops(int64_t samples) const {
    return 2.0 * static_cast<double>(samples) * 3.0 * dense_macs_;
  }
  // As the kernels ran it: layers without a sparse pattern at their dense cost.
  double executed_step_flops(int64_t samples) const {
    return 2.0 * static_cast<double>(samples) * 3.0 * executed_macs_;
  }

 private:
  std::vector<std::pair<const nn::Parameter*, int64_t>> layers_;
  double sparse_macs_ = 0, dense_macs_ = 0, executed_macs_ = 0;
};

}  // namespace

TrainResult fit(nn::Model& model, const data::Dataset& train, const data::Dataset& test,
                const TrainConfig& cfg_in, const Observer& observer) {
  TrainConfig cfg = cfg_in;
  cfg.validate();
  data::validate(train);
  if (test.size() > 0) data::validate(test);
  if (cfg.schedule.name == "cosine" && cfg.schedule.total_steps == 0)
    cfg.schedule.total_steps = cfg.epochs * ((train.size() + cfg.batch - 1) / cfg.batch);

  const Stopwatch wall;
  const double cpu0 = process_cpu_seconds();
  // The ledger times itself (its counters, its FLOP counts), so its own
  // overhead is on record (docs/cost.md).
  double ledger_seconds = 0;
  const Stopwatch ledger_start;
  const CostMeter meter(cfg.cost);  // validates the settings before any work
  ledger_seconds += ledger_start.seconds();
  // LoRA: the optimizer moves the factors only; W0 is the weights as given
  // (a resumed run reads its W0 and factors from the checkpoint below).
  std::unique_ptr<LoraTraining> lora;
  if (cfg.lora.enabled()) {
    if (cfg.comm && cfg.comm->size() > 1) fail("--lora-rank runs in one process (not under mpirun with several ranks)");
    lora = std::make_unique<LoraTraining>(model, cfg.lora, cfg.seed);
  }
  auto opt = optim::make_optimizer(cfg.optimizer, lora ? lora->parameters() : model.parameters());
  data::Batcher batcher(train, cfg.batch, /*shuffle=*/true);
  const int64_t batches = batcher.batches_per_epoch();

  // Data-parallel over the job's ranks (data_parallel.h); rank 0 ("lead")
  // alone writes the run directory, and decides what all ranks must agree
  // on: the checkpoint to resume, the step mode, the sparse kernels.
  DataParallel ranks(cfg.comm, cfg.shards);
  const bool lead = ranks.rank() == 0;
  std::string ckpt_path, log_path;
  if (!cfg.out_dir.empty()) {
    if (lead) make_dirs(cfg.out_dir);
    ckpt_path = cfg.out_dir + "/checkpoint.bin";
    log_path = cfg.out_dir + "/log.jsonl";
  }
  RunLog log(lead ? log_path : std::string());
  // Fixed shards (several ranks, or --shards): each shard on one thread
  // (data_parallel.h); else the step mode that suits the model.
  const int64_t shard_batch = ranks.active() ? std::max<int64_t>(1, cfg.batch / ranks.shards()) : cfg.batch;
  StepRunner runner(model, ranks.active() ? ParallelMode::data
                                          : choose_parallel_mode(cfg.parallel, model, cfg.batch, num_threads()));
  if (ranks.active()) runner.reserve_shards(ranks.max_local_shards());
  TrainResult result;
  int64_t epoch0 = 0, batch0 = 0, step = 0;
  double loss_sum = 0, epoch_seconds = 0, flops = 0, dense_flops = 0, executed_flops = 0;
  prune::SparseTrainer sparse(cfg.sparse, cfg.epochs * batches, cfg.seed);
  double best_test_loss = INFINITY;
  int64_t epochs_without_improvement = 0;
  // --on-nan rollback: the rollbacks so far and the learning rate's factor
  // (halved by each); checkpointed, so a resumed run goes on with both.
  int64_t rollbacks = 0;
  double lr_scale = 1.0;

  // Every rank starts from rank 0's weights, masks and initial values.
  ranks.broadcast_model(model);
  // Rank 0 reads the checkpoint (checkpoint.bin, or checkpoint.prev.bin when
  // that is damaged) and sends its bytes, so the other ranks need no shared
  // filesystem.
  GoodCheckpoint resume_from;
  std::string resumed_stop;  // why the run resumed had stopped early, if it had
  if (lead && !ckpt_path.empty()) remove_stale_temp_files(cfg.out_dir);  // what a killed run left
  if (lead && cfg.resume && !ckpt_path.empty()) resume_from = good_checkpoint(ckpt_path);
  const std::string ckpt_bytes = ranks.broadcast_string(resume_from.bytes);
  const std::string resume_path = ranks.broadcast_string(resume_from.path);
  resume_from.bytes.clear();
  std::optional<Archive> resumed;  // the checkpoint resumed from
  if (!ckpt_bytes.empty()) {
    resumed = parse_archive(ckpt_bytes, resume_path);
    const Archive& a = *resumed;
    json meta = json::parse(a.meta_json);
    if (meta.value("spec", std::string()) != nn::model_spec_to_json(model.spec()))
      fail(resume_path, ": the checkpoint is for a different model (", meta.value("model", std::string("?")),
           "); use a fresh --out directory");
    take_params(a, model, /*with_initial=*/true, resume_path);
    // A LoRA run resumes as the same LoRA run, and only a LoRA run resumes it
    // (its weights are the merged ones; without the factors it would go on
    // as full fine-tuning).
    const json saved_lora = meta.value("lora", json(nullptr));
    const json this_lora = lora ? lora->meta() : json(nullptr);
    if (saved_lora != this_lora)
      fail(resume_path, ": the checkpoint was written ",
           saved_lora.is_null() ? std::string("without --lora-rank")
                                : strf("with --lora-rank %lld --lora-alpha %g",
                                       static_cast<long long>(saved_lora.value("rank", int64_t{0})),
                                       saved_lora.value("alpha", 0.0)),
           ", this run has ",
           lora ? strf("--lora-rank %lld --lora-alpha %g", static_cast<long long>(cfg.lora.rank),
                       this_lora.value("alpha", 0.0))
                : std::string("none"),
           "; resume with the same settings or use a fresh --out directory");
    if (lora) lora->take_checkpoint(a, resume_path);
    for (auto& [name, t] : opt->state()) take_tensor(a, "opt/" + name, *t, resume_path);
    step = meta.at("step").get<int64_t>();
    opt->set_steps(meta.at("optimizer_steps").get<int64_t>());
    epoch0 = meta.at("epoch").get<int64_t>();
    batch0 = meta.at("batch").get<int64_t>();
    loss_sum = meta.at("loss_sum").get<double>();
    epoch_seconds = meta.at("epoch_seconds").get<double>();
    // JSON has no infinity: "no evaluation yet" is stored as null.
    best_test_loss = meta.contains("best_test_loss") && meta["best_test_loss"].is_number()
                         ? meta["best_test_loss"].get<double>()
                         : INFINITY;
    epochs_without_improvement = meta.value("epochs_without_improvement", int64_t{0});
    flops = meta.value("flops", 0.0);
    dense_flops = meta.value("dense_flops", 0.0);
    executed_flops = meta.value("executed_flops", 0.0);
    lr_scale = meta.value("lr_scale", 1.0);
    rollbacks = meta.value("rollbacks", int64_t{0});
    for (auto& l : meta.at("log")) log.lines().push_back(l.get<std::string>());
    if (!resume_from.damage.empty()) {
      // The damaged file goes, so the next checkpoint keeps this one as the previous.
      std::error_code ignored;
      std::filesystem::remove(ckpt_path, ignored);
      log.add({{"event", "checkpoint_fallback"}, {"file", ckpt_path}, {"damage", resume_from.damage},
               {"resumed_from", resume_path}, {"step", step}});
      warn(observer, strf("%s %s; resuming from %s at step %lld", ckpt_path.c_str(), resume_from.damage.c_str(),
                          resume_path.c_str(), static_cast<long long>(step)));
    }
    result.resumed = true;
    result.resumed_at_step = step;
    log.add({{"event", "resume"}, {"step", step}, {"epoch", epoch0 + 1}, {"batch", batch0}});
    // A run that stopped early (early stopping, a target reached) and was
    // killed before it saved its model is over: it trains no further.
    const std::string stopped = meta.value("stopped_because", std::string());
    if (stopped == "early_stopping" || stopped == "target_accuracy" || stopped == "target_exact") {
      resumed_stop = stopped;
      epoch0 = cfg.epochs;
      batch0 = 0;
    }
  } else {
    // A fresh start: checkpoints left from an earlier run here must not
    // become this run's previous one.
    if (lead && !ckpt_path.empty()) {
      std::error_code ignored;
      for (const char* tag : {"prev", "next"}) std::filesystem::remove(checkpoint_sibling(ckpt_path, tag), ignored);
      std::filesystem::remove(ckpt_path, ignored);
    }
    if (cfg.sparse.enabled()) sparse.begin(model);
    log.add({{"event", "start"},
             {"model", model.spec().name},
             {"spec", json::parse(nn::model_spec_to_json(model.spec()))},
             {"parameters", model.num_parameters()},
             {"train_samples", train.size()},
             {"test_samples", test.size()},
             {"epochs", cfg.epochs},
             {"batch", cfg.batch},
             {"optimizer", cfg.optimizer.name},
             {"lr", cfg.optimizer.lr},
             {"seed", cfg.seed},
             {"threads", num_threads()},
             {"ranks", ranks.size()},
             {"shards", ranks.shards()},
             {"parallel", parallel_mode_name(runner.mode())},
             {"blas", kernels::blas_description()},
             {"sparsity", prune::sparsity(model).sparsity()},
             {"lora", lora ? lora->meta() : json(nullptr)},
             {"sparse_training",
              cfg.sparse.enabled() ? json{{"method", cfg.sparse.method},
                                          {"sparsity", cfg.sparse.sparsity},
                                          {"distribution", cfg.sparse.distribution},
                                          {"interval", cfg.sparse.interval},
                                          {"drop_fraction", cfg.sparse.drop_fraction},
                                          {"begin", cfg.sparse.begin},
                                          {"end", cfg.sparse.end}}
                                   : json(nullptr)}});
  }

  // Sparse fine-tuning: which weights train (update masks, checkpointed so a
  // resumed run freezes the same ones) and the values the others keep.
  std::vector<Tensor> update_masks, frozen_values;
  int64_t checkpoint_step = result.resumed ? step : -1;  // of the newest good checkpoint on disk
  auto write_checkpoint = [&](int64_t epoch, int64_t batch) {
    if (ckpt_path.empty() || !lead) return;
    Archive a;
    json meta{{"kind", "checkpoint"},
              {"model", model.spec().name},
              {"spec", nn::model_spec_to_json(model.spec())},
              {"step", step},
              {"optimizer", cfg.optimizer.name},
              {"optimizer_steps", opt->steps()},
              {"epoch", epoch},
              {"batch", batch},
              {"loss_sum", loss_sum},
              {"epoch_seconds", epoch_seconds},
              {"best_test_loss", std::isfinite(best_test_loss) ? json(best_test_loss) : json(nullptr)},
              {"epochs_without_improvement", epochs_without_improvement},
              {"flops", flops},
              {"dense_flops", dense_flops},
              {"executed_flops", executed_flops},
              {"seed", cfg.seed},
              {"threads", num_threads()},
              {"stopped_because", result.stopped_because},
              {"lr_scale", lr_scale},
              {"rollbacks", rollbacks},
              {"lora", lora ? lora->meta() : json(nullptr)},
              {"log", log.lines()}};
    a.meta_json = meta.dump();
    nn::sync_sparse_to_dense(model);
    put_params(a, model, /*with_initial=*/true);
    for (auto& [name, t] : opt->state()) a.tensors.emplace_back("opt/" + name, *t);
    if (lora) lora->put_checkpoint(a);
    for (size_t i = 0; i < update_masks.size(); ++i) {
      if (!update_masks[i].defined()) continue;
      a.tensors.emplace_back("update/" + model.parameters()[i]->name, update_masks[i]);
      a.tensors.emplace_back("frozen/" + model.parameters()[i]->name, frozen_values[i]);
    }
    // To checkpoint.next.bin, then in as checkpoint.bin with the one it
    // replaces kept as checkpoint.prev.bin. A failure (a full disk) leaves
    // both as they were.
    const std::string next = checkpoint_sibling(ckpt_path, "next");
    try {
      write_archive(next, a);
      replace_keeping_previous(next, ckpt_path, checkpoint_sibling(ckpt_path, "prev"));
    } catch (const Error& e) {
      fail(ckpt_path, ": cannot write the checkpoint of step ", step, ": ", e.what(), "; ",
           checkpoint_step >= 0 ? strf("the checkpoint of step %lld is kept: make room, then continue with --resume",
                                       static_cast<long long>(checkpoint_step))
                                : std::string("no checkpoint was written before"));
    }
    checkpoint_step = step;
  };

  // Sparse kernels for the masked layers: chosen now and whenever the masks
  // change; the choice is dropped when fit returns (a pattern would go stale
  // once the caller changes a mask).
  // Sparse fine-tuning restores frozen weights in the dense blob after each
  // step, so its layers run dense.
  const nn::SparseMode sparse_mode =
      cfg.update_fraction > 0 ? nn::SparseMode::off : nn::parse_sparse_mode(cfg.sparse_kernels);
  struct ClearSparse {
    nn::Model& model;
    ~ClearSparse() { nn::clear_sparse(model); }
  } clear_sparse_at_exit{model};
  std::string dispatch_kinds;  // the last logged choice, "sparse,masked-dense,..."
  auto dispatch = [&] {
    // Sparse layers train on packed values (nn::Parameter::packed) unless the
    // step runs data-parallel, whose per-shard leaves are dense.
    // With several ranks, rank 0 chooses (from its measured crossovers) and
    // the others apply its choice: all must run and pack the same layers.
    const bool packed = runner.mode() == ParallelMode::ops && !ranks.active();
    std::vector<nn::LayerDispatch> layers;
    if (lead) {
      // Fixed shards each run on one thread: choose (and measure) for one.
      std::optional<SerialScope> one_thread;
      if (ranks.active()) one_thread.emplace();
      layers = nn::dispatch_sparse(model, sparse_mode, shard_batch, /*training=*/true, packed);
    }
    if (ranks.active()) {
      std::string kinds;
      for (const auto& d : layers) kinds += (kinds.empty() ? "" : ",") + d.kind;
      kinds = ranks.broadcast_string(kinds);
      if (!lead) {
        std::vector<std::string> chosen;
        for (size_t b = 0, e = 0; !kinds.empty() && b <= kinds.size(); b = e + 1) {
          e = std::min(kinds.find(',', b), kinds.size());
          chosen.push_back(kinds.substr(b, e - b));
        }
        layers = nn::dispatch_sparse(model, sparse_mode, shard_batch, /*training=*/true, packed, &chosen);
      }
    }
    if (ranks.active()) ranks.plan(model);
    // A weight that now updates only at its pattern must carry no optimizer
    // state outside it (a weight regrown later starts from zero state).
    opt->apply_masks();
    std::string kinds;
    json entries = json::array();
    for (const auto& d : layers) {
      kinds += d.kind + ",";
      entries.push_back({{"name", d.name},
                         {"shape", {d.rows, d.cols}},
                         {"density", d.density},
                         {"crossover", d.crossover >= 0 ? json(d.crossover) : json(nullptr)},
                         {"kind", d.kind}});
    }
    // Logged when a masked layer exists (else there is nothing to choose) and
    // the choice differs from the last one logged.
    bool masked = false;
    for (const auto& d : layers) masked = masked || d.kind != "dense";
    if (masked && kinds != dispatch_kinds)
      log.add({{"event", "sparse_dispatch"},
               {"step", step},
               {"mode", nn::sparse_mode_name(sparse_mode)},
               {"layers", entries}});
    dispatch_kinds = kinds;
  };
  dispatch();
  const Rng dropout_root = Rng(cfg.seed).fork(0xD0D0);
  FlopCounter counter(model);
  Tensor x, y;
  // Forward and backward of one global batch, leaving the gradient of its
  // mean loss on every rank; returns that loss. With fixed shards, through
  // DataParallel (send_dense: every entry of masked weights too); dropout
  // streams fork per shard.
  auto run_step = [&](const Tensor& xb, const Tensor& yb, const Rng& dropout, bool send_dense) {
    if (!ranks.active()) return runner.run(xb, yb, dropout);
    return ranks.step(runner, model, xb, yb, dropout, send_dense);
  };
  if (cfg.update_fraction > 0) {
    const auto& params = model.parameters();
    update_masks.resize(params.size());
    frozen_values.resize(params.size());
    bool restored = false;
    if (result.resumed) {
      const Archive& a = *resumed;
      for (size_t i = 0; i < params.size(); ++i) {
        if (!params[i]->is_weight) continue;
        update_masks[i] = Tensor::empty(params[i]->value().shape());
        frozen_values[i] = Tensor::empty(params[i]->value().shape());
        take_tensor(a, "update/" + params[i]->name, update_masks[i], resume_path);
        take_tensor(a, "frozen/" + params[i]->name, frozen_values[i], resume_path);
      }
      restored = true;
    }
    if (!restored) {
      // Summed |gradient| over the first batches of a fixed order.
      std::vector<Tensor> score(params.size());
      for (size_t i = 0; i < params.size(); ++i)
        if (params[i]->is_weight) score[i] = Tensor::zeros(params[i]->value().shape());
      Rng order = Rng(cfg.seed).fork(0xF17E);
      batcher.start_epoch(order);
      for (int64_t b = 0; b < cfg.update_batches && batcher.next(x, y); ++b) {
        run_step(x, y, dropout_root, /*send_dense=*/false);
        for (size_t i = 0; i < params.size(); ++i) {
          if (!score[i].defined()) continue;
          float* s = score[i].f32();
          const float* g = params[i]->grad().f32();
          for (int64_t j = 0; j < params[i]->numel(); ++j) s[j] += std::fabs(g[j]);
        }
      }
      for (size_t i = 0; i < params.size(); ++i) {
        if (!score[i].defined()) continue;
        const nn::Parameter& p = *params[i];
        std::vector<std::pair<float, int64_t>> alive;
        for (int64_t j = 0; j < p.numel(); ++j)
          if (!p.mask.defined() || p.mask.f32()[j] > 0.0f) alive.emplace_back(score[i].f32()[j], j);
        const size_t keep = static_cast<size_t>(std::llround(cfg.update_fraction * static_cast<double>(alive.size())));
        // Largest scores first; ties by position, so the choice is deterministic.
        std::sort(alive.begin(), alive.end(), [](const auto& a, const auto& b) {
          return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        update_masks[i] = Tensor::zeros(p.value().shape());
        for (size_t k = 0; k < keep && k < alive.size(); ++k) update_masks[i].f32()[alive[k].second] = 1.0f;
        frozen_values[i] = p.value().clone();
      }
      model.store().zero_grad();
    }
  }
  // Puts every frozen weight back to its starting value (after a step).
  auto restore_frozen = [&] {
    for (size_t i = 0; i < update_masks.size(); ++i) {
      if (!update_masks[i].defined()) continue;
      float* w = model.parameters()[i]->value().f32();
      const float* m = update_masks[i].f32();
      const float* w0 = frozen_values[i].f32();
      for (int64_t j = 0; j < update_masks[i].numel(); ++j)
        if (m[j] == 0.0f) w[j] = w0[j];
    }
  };
  // Numerical faults (--on-nan, numerics.h). With rollback, the state at
  // the last checkpoint (or the start) is also kept in memory, so a rollback
  // needs no run directory and reads no file.
  const OnNan on_nan = parse_on_nan(cfg.on_nan);
  GradientSpikes spikes(cfg.grad_spike);
  constexpr int64_t kMaxSkipsInARow = 10;
  constexpr int kMaxRollbacks = 8;
  int64_t skipped_in_a_row = 0;
  struct RollBack {
    std::string why;
  };
  struct GoodState {
    Tensor values;
    Tensor lora_values;  // the LoRA factors
    std::vector<Tensor> masks;
    std::vector<Tensor> optimizer;
    int64_t step = 0, epoch = 0, batch = 0, optimizer_steps = 0, epochs_without_improvement = 0;
    double loss_sum = 0, epoch_seconds = 0, best_test_loss = INFINITY;
    double flops = 0, dense_flops = 0, executed_flops = 0;
    size_t epochs_done = 0;
  };
  std::optional<GoodState> good;
  auto keep_good_state = [&](int64_t epoch, int64_t batch) {
    if (on_nan != OnNan::rollback) return;
    nn::sync_sparse_to_dense(model);
    GoodState g;
    g.values = model.store().values().clone();
    if (lora) g.lora_values = lora->values().clone();
    for (nn::Parameter* p : model.parameters()) g.masks.push_back(p->mask.defined() ? p->mask.clone() : Tensor());
    for (auto& [name, t] : opt->state()) g.optimizer.push_back(t->clone());
    g.step = step;
    g.epoch = epoch;
    g.batch = batch;
    g.optimizer_steps = opt->steps();
    g.epochs_without_improvement = epochs_without_improvement;
    g.loss_sum = loss_sum;
    g.epoch_seconds = epoch_seconds;
    g.best_test_loss = best_test_loss;
    g.flops = flops;
    g.dense_flops = dense_flops;
    g.executed_flops = executed_flops;
    g.epochs_done = result.epochs.size();
    good = std::move(g);
  };
  auto restore_good_state = [&] {
    const GoodState& g = *good;
    nn::clear_sparse(model);
    model.store().values().copy_from(g.values);
    if (lora) lora->values().copy_from(g.lora_values);
    for (size_t i = 0; i < g.masks.size(); ++i)
      model.parameters()[i]->mask = g.masks[i].defined() ? g.masks[i].clone() : Tensor();
    const auto state = opt->state();
    for (size_t i = 0; i < state.size(); ++i) state[i].second->copy_from(g.optimizer[i]);
    opt->set_steps(g.optimizer_steps);
    step = g.step;
    epoch0 = g.epoch;
    batch0 = g.batch;
    loss_sum = g.loss_sum;
    epoch_seconds = g.epoch_seconds;
    best_test_loss = g.best_test_loss;
    epochs_without_improvement = g.epochs_without_improvement;
    flops = g.flops;
    dense_flops = g.dense_flops;
    executed_flops = g.executed_flops;
    result.epochs.resize(g.epochs_done);
    dispatch();
    counter.refresh();
  };
  // A checkpoint on disk (when the run has a directory) and in memory.
  auto checkpoint = [&](int64_t epoch, int64_t batch) {
    write_checkpoint(epoch, batch);
    keep_good_state(epoch, batch);
  };
  keep_good_state(epoch0, batch0);
  result.stopped_because = "epochs";
  bool stop = false;
  // A rollback (--on-nan rollback) restarts the loop from the state kept at
  // the last checkpoint with half the learning rate.
  for (;;) {
    try {
      for (int64_t epoch = epoch0; epoch < cfg.epochs && !stop; ++epoch) {
        Rng order = Rng(cfg.seed).fork(0x5EED0000 + static_cast<uint64_t>(epoch));
        batcher.start_epoch(order);
        const int64_t first = epoch == epoch0 ? batch0 : 0;
        if (first == 0) {
          loss_sum = 0;
          epoch_seconds = 0;
        }
        batcher.seek(first);
        Stopwatch timer;
        int64_t next_batch = first;  // where this epoch continues if it stops early
        for (int64_t b = first; b < batches; ++b) {
          if (!batcher.next(x, y)) break;
          // RigL's grow steps need every weight's gradient: the layers run dense.
          const bool dense_gradient = sparse.needs_dense_gradient(step);
          const bool suspend_sparse = dense_gradient && nn::any_sparse(model);
          if (suspend_sparse) {
            nn::clear_sparse(model);
            counter.refresh();
          }
          const double l = run_step(x, y, dropout_root.fork(static_cast<uint64_t>(step)), dense_gradient);
          const double count_start = wall_seconds();
          flops += counter.step_flops(x.dim(0), dense_gradient);
          dense_flops += counter.dense_step_flops(x.dim(0));
          executed_flops += counter.executed_step_flops(x.dim(0));
          ledger_seconds += wall_seconds() - count_start;
          // Numerical faults (numerics.h): the loss every step, the gradients
          // every kGradientCheckInterval steps. Every rank sees the same numbers
          // (data-parallel gradients are summed first), so all decide alike.
          bool apply_update = true;
          bool finite = std::isfinite(l);
          if (finite && step % kGradientCheckInterval == 0) {
            const double norm = gradient_norm(model);
            finite = std::isfinite(norm);
            if (finite && spikes.observe(norm)) {
              log.add({{"event", "gradient_spike"}, {"step", step}, {"norm", norm}, {"typical", spikes.typical()}});
              if (observer.on_warning)
                observer.on_warning(strf("step %lld: the gradient norm %.3g is %.0fx its typical %.3g (exploding gradients?)",
                                         static_cast<long long>(step), norm, norm / spikes.typical(), spikes.typical()));
            }
          }
          if (finite) {
            skipped_in_a_row = 0;
          } else {
            const std::string where = strf("step %lld (epoch %lld, batch %lld of %lld)", static_cast<long long>(step),
                                           static_cast<long long>(epoch + 1), static_cast<long long>(b + 1),
                                           static_cast<long long>(batches));
            const std::string what = (std::isfinite(l) ? strf("the loss is %g", l)
                                                       : std::string("the loss is ") + (std::isnan(l) ? "nan" : "infinite")) +
                                     "; " + describe_nonfinite(model);
            if (on_nan == OnNan::stop)
              fail("training stopped at ", where, ": ", what,
                   ckpt_path.empty() ? "" : "; the run directory keeps its last checkpoint",
                   " (--on-nan skip or rollback would go on)");
            if (on_nan == OnNan::rollback && rollbacks >= kMaxRollbacks)
          fail("training stopped at ", where, ": ", what, "; ", kMaxRollbacks,
               " rollbacks, each halving the learning rate, did not help (--on-nan rollback)");
        log.add({{"event", "nonfinite"}, {"step", step}, {"epoch", epoch + 1}, {"batch", b + 1},
                     {"action", on_nan == OnNan::skip ? "skip" : "rollback"}, {"detail", what}});
            if (observer.on_warning)
              observer.on_warning(where + ": " + what + (on_nan == OnNan::skip ? "; batch skipped" : "; rolling back"));
            if (on_nan == OnNan::skip) {
              if (++skipped_in_a_row > kMaxSkipsInARow)
                fail("training stopped at ", where, ": ", kMaxSkipsInARow + 1,
                     " batches in a row were not finite (--on-nan skip); ", what);
              model.store().zero_grad();
              apply_update = false;
            } else {
              throw RollBack{where + ": " + what};
            }
          }
          // Masks change between backward (which left every weight's gradient in
          // the store) and the update, so the optimizer sees the new mask at once.
          // Pruning reads and writes the dense values.
          const bool masks_may_change = apply_update && cfg.sparse.enabled() && sparse.due(step);
          if (masks_may_change) nn::sync_sparse_to_dense(model);
          if ((apply_update && sparse.update(step, model)) || suspend_sparse) {
            dispatch();
            counter.refresh();
          }
          const float lr = static_cast<float>(optim::scheduled_lr(cfg.schedule, cfg.optimizer.lr, step) * lr_scale);
          if (apply_update) {
            if (lora) {
              lora->backward();
              const double lora_flops = lora->step_flops();  // the factors' gradients and the merge
              flops += lora_flops;
              executed_flops += lora_flops;
            }
            opt->step(lr);
            if (lora) lora->merge();
            restore_frozen();
            if (observer.after_update) observer.after_update(step, lr);
          }
          ++step;
          if (cfg.snapshot_step > 0 && step == cfg.snapshot_step && lead) {
            nn::sync_sparse_to_dense(model);
            save_model(model, cfg.out_dir + "/weights_step" + std::to_string(step) + ".bin",
                       json{{"step", step}}.dump());
          }
          if (finite) loss_sum += l;
          if (observer.on_step) observer.on_step(epoch + 1, b + 1, batches, l);
          if (cfg.max_steps > 0 && step >= cfg.max_steps) {
            stop = true;
            result.stopped_because = "max_steps";
          }
          if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && b + 1 < batches && !stop) {
            epoch_seconds += timer.seconds();
            checkpoint(epoch, b + 1);
            timer.reset();
          }
          next_batch = b + 1;
          if (stop) break;
        }
        epoch_seconds += timer.seconds();
        if (next_batch < batches) {
          // Stopped mid-epoch (--max-steps): keep the position, the running loss
          // and the time so a resumed run finishes this epoch exactly as an
          // uninterrupted one would; the partial epoch is not logged as one.
          write_checkpoint(epoch, next_batch);
          if (test.size() > 0) result.final_test = evaluate(model, test, cfg.eval_batch, nullptr, cfg.comm);
          break;
        }
        EpochResult er;
        er.epoch = epoch + 1;
        er.steps = step;
        const int64_t done = batches;
        er.train_loss = done > 0 ? loss_sum / static_cast<double>(done) : 0;
        er.train_seconds = epoch_seconds;
        const int64_t samples = std::min<int64_t>(done * cfg.batch, train.size());
        er.samples_per_second = epoch_seconds > 0 ? static_cast<double>(samples) / epoch_seconds : 0;
        er.sparsity = prune::sparsity(model).sparsity();
        if (test.size() > 0) er.test = evaluate(model, test, cfg.eval_batch, nullptr, cfg.comm);
        ranks.check_in_sync(model, "after epoch " + std::to_string(er.epoch));
        result.epochs.push_back(er);
        log.add({{"event", "epoch"},
                 {"epoch", er.epoch},
                 {"step", er.steps},
                 {"train_loss", er.train_loss},
                 {"train_seconds", er.train_seconds},
                 {"samples_per_second", er.samples_per_second},
                 {"sparsity", er.sparsity},
                 {"test_loss", er.test.loss},
                 {"test_accuracy", er.test.accuracy},
                 {"test_exact", er.test.exact}});
        if (observer.on_epoch) observer.on_epoch(er);
        if (test.size() > 0) {
          if (er.test.loss < best_test_loss) {
            best_test_loss = er.test.loss;
            epochs_without_improvement = 0;
          } else {
            ++epochs_without_improvement;
          }
          if (cfg.patience > 0 && epochs_without_improvement >= cfg.patience && !stop) {
            stop = true;
            result.stopped_because = "early_stopping";
          }
          if (cfg.target_accuracy > 0 && er.test.accuracy >= cfg.target_accuracy && !stop) {
            stop = true;
            result.stopped_because = "target_accuracy";
          }
          if (cfg.target_exact > 0 && er.test.exact >= cfg.target_exact && !stop) {
            stop = true;
            result.stopped_because = "target_exact";
          }
        }
        loss_sum = 0;
        epoch_seconds = 0;
        checkpoint(epoch + 1, 0);
      }
      break;
    } catch (const RollBack& back) {
      ++rollbacks;
      restore_good_state();
      lr_scale *= 0.5;
      log.add({{"event", "rollback"}, {"to_step", step}, {"lr_scale", lr_scale}, {"why", back.why}});
      stop = false;
    }
  }
  // Resumed from the checkpoint written after the last epoch, the run trains
  // nothing: it reports the net that checkpoint holds, evaluated now with the
  // kernels it trained with, as the uninterrupted run's last epoch did.
  if (result.final_test.samples == 0 && result.epochs.empty() && result.resumed && test.size() > 0)
    result.final_test = evaluate(model, test, cfg.eval_batch, nullptr, cfg.comm);
  if (!resumed_stop.empty()) result.stopped_because = resumed_stop;
  // The dense values are the model from here on (saved, returned).
  nn::clear_sparse(model);
  result.steps = step;
  result.ranks = ranks.size();
  result.allreduce_seconds = ranks.exchange_seconds();
  result.flops = flops;
  result.dense_flops = dense_flops;
  result.executed_flops = executed_flops;
  result.sparsity = prune::sparsity(model).sparsity();
  if (result.final_test.samples == 0 && !result.epochs.empty())
    result.final_test = result.epochs.back().test;
  result.seconds = wall.seconds();
  result.cpu_seconds = process_cpu_seconds() - cpu0;
  result.cost.flops = result.flops;
  result.cost.executed_flops = result.executed_flops;
  result.cost.dense_flops = result.dense_flops;
  result.cost.seconds = result.seconds;
  result.cost.cpu_seconds = result.cpu_seconds;
  result.cost.peak_rss_bytes = peak_rss_bytes();
  result.cost.threads = num_threads();
  const Stopwatch price_start;
  price(result.cost, meter);
  if (ranks.active()) {
    // The job's cost is every rank's: CPU time, energy, memory, threads and
    // money add up (each rank measured or estimated its own share).
    Cost& c = result.cost;
    double sums[] = {c.cpu_seconds, c.energy.joules, c.co2e_grams, c.money,
                     static_cast<double>(c.peak_rss_bytes), static_cast<double>(c.threads),
                     c.energy.measured ? 1.0 : 0.0};
    ranks.sum(sums);
    c.cpu_seconds = sums[0];
    c.energy.joules = sums[1];
    c.co2e_grams = sums[2];
    c.money = sums[3];
    c.peak_rss_bytes = static_cast<int64_t>(sums[4]);
    c.threads = static_cast<int>(sums[5]);
    c.energy.measured = sums[6] == ranks.size();
    c.energy.detail += strf(" (rank 0's figure; the joules are the sum over %d ranks)", ranks.size());
    result.cpu_seconds = c.cpu_seconds;
  }
  result.cost.ledger_seconds = ledger_seconds + price_start.seconds();
  if (!cfg.out_dir.empty() && lead) {
    json info{{"test_accuracy", result.final_test.accuracy}, {"steps", step}};
    std::vector<std::pair<std::string, Tensor>> factors;
    if (lora) {
      info["lora"] = lora->meta();
      Archive fa;
      lora->put_model(fa);
      factors = std::move(fa.tensors);
    }
    save_model(model, cfg.out_dir + "/model.bin", info.dump(), factors);
    log.add({{"event", "end"},
             {"steps", step},
             {"stopped_because", result.stopped_because},
             {"test_accuracy", result.final_test.accuracy},
             {"test_loss", result.final_test.loss},
             {"seconds", result.seconds},
             {"cpu_seconds", result.cpu_seconds},
             {"flops", result.flops},
             {"dense_flops", result.dense_flops},
             {"executed_flops", result.executed_flops},
             {"sparsity", result.sparsity},
             {"peak_rss_bytes", result.cost.peak_rss_bytes},
             {"cost", result.cost.to_json()},
             {"ranks", ranks.size()},
             {"shards", ranks.shards()},
             {"exchange_seconds", ranks.exchange_seconds()},
             {"floats_sent", ranks.floats_sent()},
             {"model_file", cfg.out_dir + "/model.bin"}});
  }
  return result;
}

RunLogSummary summarize_run_log(const std::string& path) {
  RunLogSummary r;
  std::istringstream in(read_file(path));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail(path, ":", n, ": not a JSON line (", e.what(), ")");
    }
    // A line of the wrong shape (not an object, a field of the wrong type)
    // is as unreadable as one that is not JSON.
    try {
      if (!j.is_object()) fail(path, ":", n, ": not a JSON object");
      if (j.value("event", "") == "end" && j.contains("cost")) r.cost = j["cost"];
      if (j.value("event", "") != "epoch") continue;
      ++r.epochs;
      r.train_seconds += j.value("train_seconds", 0.0);
      r.best_test_accuracy = std::max(r.best_test_accuracy, j.value("test_accuracy", 0.0));
    } catch (const json::exception& e) {
      fail(path, ":", n, ": not a run log line (", e.what(), ")");
    }
  }
  return r;
}

void save_model(const nn::Model& model, const std::string& path, const std::string& meta_json,
                const std::vector<std::pair<std::string, Tensor>>& extra) {
  Archive a;
  a.meta_json = json{{"kind", "model"},
                     {"model", model.spec().name},
                     {"spec", nn::model_spec_to_json(model.spec())},
                     {"info", json::parse(meta_json)}}
                    .dump();
  put_params(a, model, /*with_initial=*/false);
  for (const auto& [name, t] : extra) a.tensors.emplace_back(name, t);
  write_archive(path, a);
}

std::unique_ptr<nn::Model> load_model(const std::string& path) {
  Archive a = read_archive(path);
  json meta;
  try {
    meta = json::parse(a.meta_json);
  } catch (const json::exception& e) {
    fail(path, ": corrupt metadata: ", e.what());
  }
  if (!meta.contains("spec") || !meta["spec"].is_string())
    fail(path, ": no model spec inside (is this a pare model or checkpoint?)");
  const nn::ModelSpec spec = nn::parse_model_spec(meta["spec"].get<std::string>(), path);
  // The spec alone may describe any network; the archive's tensors (already
  // read, so bounded by the file) say what building it may allocate.
  for (const nn::ParameterShape& p : nn::parameter_shapes(spec)) {
    const Tensor* t = a.find("param/" + p.name);
    if (!t) fail(path, ": the model's parameter ", p.name, " is missing");
    if (t->shape().vec() != p.dims)
      fail(path, ": tensor param/", p.name, " is ", t->shape().str(), ", not the spec's ",
           Shape(std::span<const int64_t>(p.dims)).str());
  }
  auto model = nn::Model::build(spec, 0);
  take_params(a, *model, /*with_initial=*/false, path);
  return model;
}

}  // namespace pare::train
