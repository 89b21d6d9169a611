// pare compress / pare inspect (see format_commands.h).
#include "pare/cli/format_commands.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "pare/base/file.h"
#include "pare/base/strings.h"
#include "pare/codegen/emit_c.h"
#include "pare/codegen/program.h"
#include "pare/cli/common.h"
#include "pare/format/pare_file.h"
#include "pare/format/safetensors.h"
#include "pare/nn/spec.h"
#include "pare/io/compress.h"
#include "pare/io/delta.h"
#include "pare/io/int8_net.h"
#include "pare/io/onnx.h"
#include "pare/data/batcher.h"
#include "pare/io/pare_model.h"
#include "pare/train/codebook_finetune.h"
#include "pare/train/lora.h"
#include "pare/train/qat.h"
#include "pare/train/trainer.h"

namespace pare::cli {

using json = nlohmann::json;

std::unique_ptr<nn::Model> load_any_model(const std::string& path) {
  return io::is_pare_path(path) ? io::load_pare(path) : train::load_model(path);
}

double int8_accuracy(const io::Int8Net& net, const data::Dataset& set, int64_t batch,
                     std::vector<float>* outputs) {
  if (set.size() == 0) fail("no samples to evaluate");
  data::Batcher batcher(set, batch, /*shuffle=*/false);
  Rng order(0);
  batcher.start_epoch(order);
  Tensor x, y;
  int64_t correct = 0;
  std::vector<float> logits;
  while (batcher.next(x, y)) {
    const int64_t b = x.dim(0);
    if (x.numel() != b * net.inputs()) fail("int8 eval: inputs of ", x.numel() / b, " features, the net takes ", net.inputs());
    if (y.dtype() != DType::i32) fail("int8 eval: classification labels expected");
    logits.resize(static_cast<size_t>(b * net.outputs()));
    net.forward(b, x.f32(), logits.data());
    if (outputs) outputs->insert(outputs->end(), logits.begin(), logits.end());
    for (int64_t i = 0; i < b; ++i) {
      const float* row = logits.data() + i * net.outputs();
      const int64_t guess = std::max_element(row, row + net.outputs()) - row;
      correct += guess == y.data<int32_t>()[i];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(set.size());
}

ProgramScore program_score(const codegen::Program& program, const data::Dataset& set, int64_t batch,
                           const std::string& outputs_npy) {
  if (set.size() == 0) fail("no samples to evaluate");
  data::Batcher batcher(set, batch, /*shuffle=*/false);
  Rng order(0);
  batcher.start_epoch(order);
  Tensor x, y;
  std::vector<int8_t> out, all;
  double right = 0, exact = 0, outputs = 0;
  const int64_t per = program.output_size;
  while (batcher.next(x, y)) {
    const int64_t b = x.dim(0);
    if (x.numel() != b * program.input_size)
      fail("program eval: inputs of ", x.numel() / b, " values, the model takes ", program.input_size);
    out.resize(static_cast<size_t>(b * per));
    codegen::run_batch(program, b, x.f32(), out.data());
    if (!outputs_npy.empty()) all.insert(all.end(), out.begin(), out.end());
    for (int64_t i = 0; i < b; ++i) {
      const int8_t* row = out.data() + i * per;
      if (y.dtype() == DType::i32) {
        right += (std::max_element(row, row + per) - row) == y.data<int32_t>()[i];
        outputs += 1;
      } else {
        int64_t ok = 0;
        for (int64_t j = 0; j < per; ++j) ok += (row[j] > program.output.zero_point) == (y.f32()[i * per + j] > 0.5f);
        right += static_cast<double>(ok);
        exact += ok == per;
        outputs += static_cast<double>(per);
      }
    }
  }
  if (!outputs_npy.empty()) {
    Tensor t = Tensor::empty({set.size(), per}, DType::i8);
    std::copy(all.begin(), all.end(), t.data<int8_t>());
    data::write_npy(outputs_npy, t);
  }
  ProgramScore s;
  s.accuracy = outputs > 0 ? right / outputs : 0;
  s.exact = y.dtype() == DType::i32 ? s.accuracy : exact / static_cast<double>(set.size());
  return s;
}

FormatCommands::FormatCommands(CLI::App& app) {
  compress_ = app.add_subcommand(
      "compress", "write a saved model as a .pare file: pruned weights sparse, each tensor in its smallest encoding, zstd where it pays");
  compress_->add_option("model", from_, "a model saved by pare (model.bin or .pare)")->required();
  compress_->add_option("-o,--out", out_, "the .pare file to write")->required();
  compress_->add_flag("--no-zstd", no_zstd_, "no entropy-coding stage");
  compress_->add_option("--share-bits", share_bits_,
                        "weight sharing: each weight tensor's kept values as k-bit indices into a per-tensor k-means codebook (1-8)");
  compress_->add_flag("--int8", int8_, "weights as int8 per output channel (symmetric)");
  compress_->add_flag("--calibrate", calibrate_,
                      "with --int8 (or --share-bits): calibrate each linear and conv2d layer's u8 input grid on training samples of --data (--calibration), for pare eval --int8");
  compress_->add_option("--calibration-samples", calibration_samples_, "training samples for --calibrate")
      ->capture_default_str();
  compress_->add_option("--calibration", calibration_,
                        "with --calibrate: minmax (the range seen) | percentile (values beyond the --percentile range saturate)")
      ->capture_default_str();
  compress_->add_option("--percentile", percentile_,
                        "with --calibration percentile: the range from the (100-P)-th to the P-th percentile, P in (0, 100]")
      ->capture_default_str();
  compress_->add_option("--qat-epochs", qat_epochs_,
                        "with --calibrate: quantization-aware fine-tuning (fake-quantized weights and activations, straight-through gradients; masks kept) for this many epochs on the training set of --data before the int8 conversion")
      ->capture_default_str();
  compress_->add_option("--qat-lr", qat_lr_, "with --qat-epochs: Adam learning rate")->capture_default_str();
  compress_->add_option("--qat-batch", qat_batch_, "with --qat-epochs: samples per step")->capture_default_str();
  compress_->add_option("--qat-ema", qat_ema_,
                        "with --qat-epochs: 0 keeps the calibrated activation ranges; F in (0, 1) moves each range toward every batch's min and max by F")
      ->capture_default_str();
  compress_->add_option("--max-bytes", max_bytes_,
                        "the least lossy storage (float, int8, 8..2-bit sharing) that fits this many bytes");
  compress_->add_option("--max-accuracy-drop", max_accuracy_drop_,
                        "choose the smallest storage whose test accuracy on --data is at most this many points below the model's");
  compress_->add_option("--finetune-epochs", finetune_epochs_,
                        "with --share-bits: codebook fine-tuning for this many epochs on the training set of --data (each weight keeps its centroid, each centroid trains on the summed gradients of its weights, biases train, pruned weights stay zero); the recipe flags (--lr, --batch, --optimizer, --schedule, --seed, ...) apply to it")
      ->capture_default_str();
  {
    // The training recipe's flags, for the fine-tuning only. --finetune-epochs
    // counts the passes; no run directory, so no checkpoints.
    CLI::Option_group* recipe = compress_->add_option_group(
        "codebook fine-tuning", "with --finetune-epochs: the training recipe of the fine-tuning");
    finetune_.optimizer.lr = 1e-4f;
    add_recipe_options(recipe, finetune_);
    for (const char* name : {"--epochs", "--checkpoint-every"})
      recipe->remove_option(recipe->get_option(name));
    for (const CLI::Option* o : recipe->get_options()) finetune_options_.push_back(o);
  }
  add_data_options(compress_, data_);
  compress_->add_flag("--json", json_, "print JSON");

  export_ = app.add_subcommand("export", "write a saved model for other tools: safetensors (weights, masks as <name>.mask, the spec in the metadata) or ONNX (the network; int8 .pare files in QDQ form)");
  export_->add_option("model", from_, "a model saved by pare (model.bin or .pare)")->required();
  export_->add_option("--format", export_format_, "safetensors | onnx")
      ->check(CLI::IsMember({"safetensors", "onnx"}))
      ->capture_default_str();
  export_->add_option("-o,--out", out_, "the file to write (with --target c: the directory)")->required();
  export_->add_option("--target", export_target_,
                      "c: the int8 .pare file as C99 for a microcontroller (model.h, model.c, pare_runtime.h/.c; docs/mcu.md)")
      ->check(CLI::IsMember({"c"}));
  export_->add_option("--sparse", export_sparse_,
                      "with --target c: linear layers in CSR: auto (when smaller) | on | off")
      ->capture_default_str();
  add_data_options(export_, export_data_);
  export_->add_option("--calibration-samples", calibration_samples_,
                      "with --target c and --data: training samples that calibrate the output grid when the file has none")
      ->capture_default_str();
  export_->add_flag("--device-cost", device_cost_,
                    "with --target c: build a minimal Cortex-M0+ firmware around the C and measure flash, RAM and instructions per inference in QEMU; estimate time, energy and inferences per CR2032 (docs/mcu.md); writes DIR/device_cost.json");
  export_->add_option("--test-vectors", test_vectors_,
                      "with --target c and --data: also write pare_test_vectors.h, this many test samples quantized with pare's outputs for them (a device harness compares byte for byte)")
      ->capture_default_str();
  export_->add_flag("--json", json_, "print JSON");

  import_ = app.add_subcommand("import", "read an ONNX model (a float MLP or CNN, e.g. from torch.onnx.export) as a .pare file pare can evaluate, prune, fine-tune and compress");
  import_->add_option("model", from_, "the .onnx file")->required();
  import_->add_option("-o,--out", out_, "the .pare file (or model.bin) to write")->required();
  import_->add_flag("--json", json_, "print JSON");

  delta_ = app.add_subcommand("delta", "keep a fine-tuned variant as what changed from its base (a .pare file of differences)");
  delta_->add_option("base", base_, "the base model (model.bin or .pare)")->required();
  delta_->add_option("tuned", tuned_, "the fine-tuned variant (same spec)")->required();
  delta_->add_option("-o,--out", out_, "the delta file to write (.pdelta)")->required();
  delta_->add_flag("--int8", int8_, "the differences as int8 per output channel (apply is then within half a step); a LoRA-tuned model's factors as int8 per rank component");
  delta_->add_flag("--json", json_, "print JSON");
  apply_ = app.add_subcommand("apply", "rebuild a variant from its base and a delta");
  apply_->add_option("base", base_, "the base model the delta was made against")->required();
  apply_->add_option("delta", tuned_, "the delta file")->required();
  apply_->add_option("-o,--out", out_, "the rebuilt model (model.bin, or .pare)")->required();

  inspect_ = app.add_subcommand("inspect", "what a .pare file holds: per tensor shape, kept weights, encoding, bytes, bits per weight");
  inspect_->add_option("file", file_, "a .pare file")->required();
  inspect_->add_flag("--json", json_, "print JSON");
}

int FormatCommands::run() {
  if (*compress_) return run_compress();
  if (*inspect_) return run_inspect();
  if (*export_) return run_export();
  if (*import_) return run_import();
  if (*delta_) return run_delta();
  if (*apply_) return run_apply();
  return -1;
}

namespace {

// Per-tensor rows and totals of a decoded or just-encoded file.
json describe(const format::File& f, int64_t file_bytes) {
  json tensors = json::array();
  int64_t data = 0, params = 0;
  for (const format::Tensor& t : f.tensors) {
    tensors.push_back({{"name", t.name},
                       {"dims", t.dims},
                       {"dtype", format::dtype_name(t.dtype)},
                       {"kept", t.present_count()},
                       {"numel", t.numel()},
                       {"encoding", format::encoding_name(t.encoding)},
                       {"zstd", t.zstd},
                       {"bytes", t.stored_bytes},
                       {"bits_per_weight", t.numel() ? 8.0 * static_cast<double>(t.stored_bytes) /
                                                           static_cast<double>(t.numel())
                                                     : 0.0}});
    data += t.stored_bytes;
    params += t.numel();
  }
  const int64_t dense_f32 = 4 * params;
  return {{"tensors", tensors},
          {"parameters", params},
          {"file_bytes", file_bytes},
          {"tensor_bytes", data},
          {"other_bytes", file_bytes - data},
          {"dense_f32_bytes", dense_f32},
          {"ratio", file_bytes ? static_cast<double>(dense_f32) / static_cast<double>(file_bytes) : 0.0}};
}

void print_table(const json& d) {
  std::cout << strf("%-20s %-16s %10s %8s %-8s %5s %10s %8s\n", "tensor", "dims", "kept", "of",
                   "encoding", "zstd", "bytes", "bits/w");
  for (const auto& t : d["tensors"]) {
    std::string dims;
    for (const auto& x : t["dims"]) {
      if (!dims.empty()) dims += 'x';
      dims += std::to_string(x.get<int64_t>());
    }
    std::cout << strf("%-20s %-16s %10lld %8lld %-8s %5s %10lld %8.3f\n",
                     t["name"].get<std::string>().c_str(), dims.c_str(),
                     static_cast<long long>(t["kept"].get<int64_t>()),
                     static_cast<long long>(t["numel"].get<int64_t>()),
                     t["encoding"].get<std::string>().c_str(), t["zstd"].get<bool>() ? "yes" : "no",
                     static_cast<long long>(t["bytes"].get<int64_t>()),
                     t["bits_per_weight"].get<double>());
  }
  const double ratio = d["ratio"].get<double>();
  std::cout << strf("file %lld bytes (tensors %lld, header, table, spec and metadata %lld); "
                   "its tensors as fp32 dense %lld bytes: %.1fx %s\n",
                   static_cast<long long>(d["file_bytes"].get<int64_t>()),
                   static_cast<long long>(d["tensor_bytes"].get<int64_t>()),
                   static_cast<long long>(d["other_bytes"].get<int64_t>()),
                   static_cast<long long>(d["dense_f32_bytes"].get<int64_t>()),
                   ratio >= 1 || ratio <= 0 ? ratio : 1 / ratio, ratio >= 1 || ratio <= 0 ? "smaller" : "larger");
}

// Codebook fine-tuning (train/codebook_finetune.h) of the shared tensors of
// `f`: their indices and presence stay, their codebooks become the tuned ones,
// and every other tensor (the biases) is rewritten from the tuned model.
// Returns what META records about it.
json finetune_codebooks(nn::Model& model, format::File& f, const DataOptions& data_options,
                        train::TrainConfig cfg, int64_t epochs, bool quiet) {
  data::TrainTest d = load_data(data_options, cfg.seed, nullptr);
  standardize_for(model, d);
  cfg.epochs = epochs;
  std::vector<train::SharedWeight> shared;
  for (const format::Tensor& t : f.tensors)
    if (t.quant.kind == format::QuantKind::codebook)
      shared.push_back({.name = t.name, .index = t.values, .present = t.present, .centroids = t.quant.centroids});
  // The shared model before tuning, for the report.
  for (const train::SharedWeight& s : shared) {
    nn::Parameter* p = model.find(s.name);
    train::tie_weights(p->numel(), p->value().f32(), s.index.data(), s.present.empty() ? nullptr : s.present.data(),
                       s.centroids.data());
  }
  const train::EvalResult train_before = train::evaluate(model, d.train, 1000);
  const train::EvalResult before = d.test.size() ? train::evaluate(model, d.test, 1000) : train::EvalResult{};
  Progress progress(!quiet);
  const train::TrainResult r = train::codebook_finetune(
      model, shared, d.train, d.test, cfg,
      epoch_printer(progress, epochs, /*as_json=*/false, quiet, model.spec().loss == "bce_with_logits"));
  progress.finish();
  const format::File tuned = io::to_file(model, "{}");
  size_t next = 0;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    format::Tensor& t = f.tensors[i];
    PARE_CHECK(t.name == tuned.tensors[i].name, "tensor order changed: ", t.name);
    if (t.quant.kind == format::QuantKind::codebook)
      t.quant.centroids = shared[next++].centroids;
    else
      t = tuned.tensors[i];
  }
  const train::EvalResult train_after = train::evaluate(model, d.train, 1000);
  if (!quiet)
    std::cout << "codebook fine-tuning: " << epochs << " epochs, " << r.steps << " steps, training-set loss "
              << fmt("%.4f", train_before.loss) << " -> " << fmt("%.4f", train_after.loss)
              << (d.test.size() ? ", test accuracy " + fmt("%.2f%%", 100 * before.accuracy) + " -> " +
                                      fmt("%.2f%%", 100 * r.final_test.accuracy)
                                : std::string())
              << " (" << fmt("%.1f s", r.seconds) << ")\n";
  json record{{"epochs", epochs}, {"batch", cfg.batch}, {"optimizer", cfg.optimizer.name},
              {"lr", cfg.optimizer.lr}, {"schedule", cfg.schedule.name}, {"seed", cfg.seed},
              {"steps", r.steps}, {"train_loss_before", train_before.loss}, {"train_loss", train_after.loss},
              {"seconds", r.seconds}};
  if (d.test.size()) {
    record["test_accuracy_before"] = before.accuracy;
    record["test_accuracy"] = r.final_test.accuracy;
  }
  return record;
}

}  // namespace

int FormatCommands::run_compress() {
  if (!io::is_pare_path(out_)) fail("pare compress: the output must end in .pare, got ", out_);
  if (share_bits_ != 0 && int8_) fail("pare compress: choose one of --share-bits and --int8");
  if (share_bits_ != 0 && (share_bits_ < 1 || share_bits_ > 8))
    fail("--share-bits ", share_bits_, ": the codebook index takes 1 to 8 bits");
  for (const CLI::Option* o : finetune_options_)
    if (o->count() && finetune_epochs_ == 0)
      fail(o->get_name(false, true), " is a codebook fine-tuning setting: it goes with --finetune-epochs N");
  if (compress_->count("--finetune-epochs")) {
    if (finetune_epochs_ < 1) fail("--finetune-epochs must be at least 1, got ", finetune_epochs_);
    if (share_bits_ == 0)
      fail("--finetune-epochs trains the codebooks of weight sharing: give --share-bits K (not --int8, --max-bytes or --max-accuracy-drop)");
    if (!compress_->count("--data"))
      fail("--finetune-epochs trains on data: give the training set with --data (e.g. --data fashion-mnist)");
  }
  auto model = load_any_model(from_);
  if (max_bytes_ != 0 || max_accuracy_drop_ >= 0) {
    if (share_bits_ || int8_) fail("--max-bytes / --max-accuracy-drop choose the storage themselves: drop --int8 / --share-bits");
    if (max_bytes_ < 0) fail("--max-bytes must be positive");
    const int chosen = choose_storage(*model);  // 0 float, -1 int8, k sharing bits
    if (chosen == -1) int8_ = true;
    if (chosen > 0) share_bits_ = chosen;
  }
  json meta{{"created_by", "pare compress"}, {"source", from_}};
  if (share_bits_) meta["quantization"] = {{"weights", "k-means codebook per tensor"}, {"bits", share_bits_}};
  if (int8_) meta["quantization"] = {{"weights", "s8 per output channel"}};
  if (calibrate_) {
    if (!int8_ && !share_bits_)
      fail("--calibrate goes with --int8 (or --share-bits K, for the integer program of pare export --target c)");
    if (qat_epochs_ != 0 && !int8_) fail("--qat-epochs fine-tunes through int8 weights: it goes with --int8");
    if (calibration_samples_ < 1) fail("--calibration-samples must be at least 1");
    const io::CalibrationOptions calibration{.method = calibration_, .percentile = percentile_};
    calibration.validate();
    if (compress_->count("--percentile") && calibration_ != "percentile")
      fail("--percentile goes with --calibration percentile");
    data::TrainTest d = load_data(data_, 0, nullptr);
    standardize_for(*model, d);
    const int64_t n = std::min<int64_t>(calibration_samples_, d.train.size());
    data::Batcher batcher(d.train, n, /*shuffle=*/false);
    Rng order(0);
    batcher.start_epoch(order);
    Tensor x, y;
    batcher.next(x, y);
    json acts = io::calibrate_activations(*model, x.f32(), x.dim(0), calibration);
    meta["quantization"]["activations"] =
        "u8 per tensor, " + (calibration_ == "percentile" ? fmt("percentile %g", percentile_) : std::string("min-max")) +
        " over the first " + std::to_string(x.dim(0)) + " training samples";
    if (qat_epochs_ > 0) {
      // Fine-tune through the fake-quantized network; the file then stores the
      // tuned weights and the grids the tuning ended with.
      io::FakeQuantModel fq(*model, io::grids_from_json(acts, from_), qat_ema_);
      const train::QatConfig qc{.epochs = qat_epochs_, .batch = qat_batch_,
                                .optimizer = {.name = "adam", .lr = qat_lr_}};
      const train::QatResult r = train::qat_finetune(
          *model, d.train, qc, [&](const autograd::Var& in, nn::ForwardContext& ctx) { return fq.forward(in, ctx); });
      json method = json::object();
      for (const auto& [k, v] : acts.items())
        if (!v.is_object()) method[k] = v;
      acts = io::grids_to_json(fq.grids(), method);
      meta["qat"] = {{"epochs", qat_epochs_}, {"batch", qat_batch_}, {"lr", qat_lr_}, {"ema", qat_ema_},
                     {"steps", r.steps}, {"first_epoch_loss", r.first_epoch_loss},
                     {"last_epoch_loss", r.last_epoch_loss}, {"seconds", r.seconds}};
      if (!json_)
        std::cout << "quantization-aware fine-tuning: " << qat_epochs_ << " epochs, " << r.steps
                  << " steps, training loss " << fmt("%.4f", r.first_epoch_loss) << " -> "
                  << fmt("%.4f", r.last_epoch_loss) << " (" << fmt("%.1f", r.seconds) << " s)\n";
    }
    // The network's output grid too: the integer-only program of
    // pare export --target c and pare eval --program requantize onto it.
    const io::ActivationGrid out_grid = codegen::calibrate_output(*model, x.f32(), x.dim(0), calibration);
    acts["output"] = {{"scale", out_grid.scale}, {"zero_point", out_grid.zero_point},
                      {"min", out_grid.min}, {"max", out_grid.max}};
    meta["activations"] = acts;
  } else if (qat_epochs_ != 0 || compress_->count("--calibration") || compress_->count("--percentile")) {
    fail("--calibration, --percentile and --qat-epochs go with --int8 --calibrate");
  }
  format::File f = io::to_file(*model, meta.dump());
  // Weights only (biases and 1-D tensors stay f32: few values, much effect).
  for (format::Tensor& t : f.tensors) {
    if (t.dims.size() < 2) continue;
    if (share_bits_) io::share_weights(t, share_bits_);
    if (int8_) io::quantize_s8_per_channel(t);
  }
  if (finetune_epochs_ > 0) {
    meta["codebook_finetune"] = finetune_codebooks(*model, f, data_, finetune_, finetune_epochs_, json_);
    f.meta_json = meta.dump();
  }
  format::WriteOptions options;
  options.allow_zstd = !no_zstd_;
  const std::string bytes = format::encode(f, options);
  write_file_atomic(out_, bytes);
  const json d = describe(f, static_cast<int64_t>(bytes.size()));
  if (json_) {
    std::cout << d.dump() << std::endl;
  } else {
    print_table(d);
    std::cout << "wrote " << out_ << "\n";
  }
  return 0;
}

int FormatCommands::choose_storage(nn::Model& model) {
  // Candidates from the largest to the smallest file they usually give.
  struct Candidate {
    int code;  // 0 float, -1 int8, k: k-bit sharing
    std::string name;
    int64_t bytes = 0;
    double accuracy = -1;
  };
  std::vector<Candidate> candidates{{0, "float"}, {-1, "int8"}};
  for (int k = 8; k >= 2; --k) candidates.push_back({k, std::to_string(k) + "-bit sharing"});
  std::optional<data::TrainTest> d;
  double base_accuracy = 0;
  if (max_accuracy_drop_ >= 0) {
    d = load_data(data_, 0, nullptr);
    standardize_for(model, *d);
    const data::Dataset& set = d->test.size() > 0 ? d->test : d->train;
    base_accuracy = train::evaluate(model, set, 1000).accuracy;
  }
  format::WriteOptions options;
  options.allow_zstd = !no_zstd_;
  const Candidate* best = nullptr;
  for (Candidate& c : candidates) {
    format::File f = io::to_file(model, "{}");
    for (format::Tensor& t : f.tensors) {
      if (t.dims.size() < 2) continue;
      if (c.code > 0) io::share_weights(t, c.code);
      if (c.code == -1) io::quantize_s8_per_channel(t);
    }
    const std::string bytes = format::encode(f, options);
    c.bytes = static_cast<int64_t>(bytes.size());
    if (d) {
      auto m = io::from_file(format::decode(bytes, "candidate"), "candidate");
      const data::Dataset& set = d->test.size() > 0 ? d->test : d->train;
      c.accuracy = train::evaluate(*m, set, 1000).accuracy;
    }
    const bool fits = (max_bytes_ == 0 || c.bytes <= max_bytes_) &&
                      (max_accuracy_drop_ < 0 || 100 * (base_accuracy - c.accuracy) <= max_accuracy_drop_);
    // A byte budget alone takes the least lossy storage that fits (the
    // candidates' order); with an accuracy budget, the smallest file within it.
    if (fits && (!best || (d && c.bytes < best->bytes))) best = &c;
    if (!json_)
      std::cerr << strf("  %-16s %10lld bytes", c.name.c_str(), static_cast<long long>(c.bytes))
                << (d ? strf("  accuracy %.2f%%", 100 * c.accuracy) : std::string()) << (fits ? "" : "  (outside the budget)")
                << "\n";
  }
  if (!best) {
    const Candidate& smallest = *std::min_element(candidates.begin(), candidates.end(),
                                                  [](const Candidate& a, const Candidate& b) { return a.bytes < b.bytes; });
    fail("pare compress: no storage meets the budget (the smallest, ", smallest.name, ", takes ",
         smallest.bytes, " bytes", d ? strf(" at %.2f%%", 100 * smallest.accuracy) : std::string(),
         d ? strf("; the model: %.2f%%", 100 * base_accuracy) : std::string(), ")");
  }
  if (!json_) std::cerr << "chosen: " << best->name << "\n";
  return best->code;
}

int FormatCommands::run_export() {
  if (!export_target_.empty()) return run_export_c();
  if (export_format_ == "onnx") {
    // From a .pare file as it is (int8 weights stay int8); a model.bin as its float .pare form.
    const format::File file = io::is_pare_path(from_) ? format::read_file(from_)
                                                       : io::to_file(*load_any_model(from_), "");
    const io::OnnxExport e = io::to_onnx(file, from_);
    write_file_atomic(out_, e.bytes);
    if (json_)
      std::cout << json{{"out", out_}, {"bytes", e.bytes.size()}, {"nodes", e.nodes},
                        {"opset", io::kOnnxOpset}, {"ir_version", io::kOnnxIrVersion},
                        {"int8_weights", e.int8_weights}, {"quantized_inputs", e.quantized_inputs},
                        {"checker", "passed"}}.dump() << std::endl;
    else
      std::cout << "wrote " << out_ << " (" << e.bytes.size() << " bytes, " << e.nodes << " nodes, opset "
                << io::kOnnxOpset << ", IR " << io::kOnnxIrVersion << "; " << e.int8_weights
                << " int8 weights, " << e.quantized_inputs
                << " quantized layer inputs); the ONNX checker passes it\n";
    return 0;
  }
  auto model = load_any_model(from_);
  const std::string bytes = format::encode_safetensors(
      io::to_safetensors(*model), {{"pare_spec", nn::model_spec_to_json(model->spec())},
                                   {"format", "pt"},
                                   {"source", from_}});
  write_file_atomic(out_, bytes);
  std::cout << "wrote " << out_ << " (" << bytes.size() << " bytes, " << model->parameters().size()
            << " parameters)\n";
  return 0;
}

namespace {
bool file_has_output_grid(const format::File& file) {
  const json meta = json::parse(file.meta_json.empty() ? "{}" : file.meta_json, nullptr, false);
  return meta.is_object() && meta.contains("activations") && meta["activations"].is_object() &&
         meta["activations"].contains("output");
}
}  // namespace

int FormatCommands::run_export_c() {
  if (export_->count("--format")) fail("pare export: --target c and --format are alternatives");
  if (!io::is_pare_path(from_))
    fail("pare export --target c reads an int8 .pare file (pare compress --int8 --calibrate), got ", from_);
  format::File file = format::read_file(from_);
  codegen::PlanOptions options;
  options.sparse = export_sparse_;
  if (test_vectors_ < 0) fail("--test-vectors must be at least 0, got ", test_vectors_);
  if (test_vectors_ > 0 && export_data_.data.empty()) fail("--test-vectors needs --data (its test samples)");
  std::optional<data::TrainTest> d;
  std::unique_ptr<nn::Model> model;
  if (!export_data_.data.empty()) {
    model = io::from_file(file, from_);
    d = load_data(export_data_, 0, nullptr);
    standardize_for(*model, *d);
  }
  if (d && !file_has_output_grid(file)) {
    // The output's grid, when the file was written without one.
    const int64_t n = std::min<int64_t>(calibration_samples_, d->train.size());
    if (n < 1) fail("--calibration-samples must be at least 1");
    data::Batcher batcher(d->train, n, /*shuffle=*/false);
    Rng order(0);
    batcher.start_epoch(order);
    Tensor x, y;
    batcher.next(x, y);
    const io::ActivationGrid g = codegen::calibrate_output(*model, x.f32(), x.dim(0));
    options.output = codegen::grid_from_u8(g.scale, g.zero_point);
  }
  const codegen::Program program = codegen::plan(file, from_, options);
  std::vector<codegen::SourceFile> files = codegen::emit_c(program);
  if (test_vectors_ > 0) {
    const data::Dataset& set = d->test.size() > 0 ? d->test : d->train;
    const int64_t n = std::min<int64_t>(test_vectors_, set.size());
    data::Batcher batcher(set, n, /*shuffle=*/false);
    Rng order(0);
    batcher.start_epoch(order);
    Tensor x, y;
    batcher.next(x, y);
    if (x.numel() != n * program.input_size) fail("--data: samples of ", x.numel() / n, " values, the model takes ", program.input_size);
    std::vector<int8_t> q(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < n; ++i)
      codegen::quantize_input(program, x.f32() + i * program.input_size, q.data() + i * program.input_size,
                              /*standardized=*/true);
    std::vector<int32_t> labels;
    std::vector<uint8_t> targets;
    if (y.dtype() == DType::i32) {
      labels.assign(y.data<int32_t>(), y.data<int32_t>() + n);
    } else if (program.binary_output && y.numel() == n * program.output_size) {
      for (int64_t i = 0; i < y.numel(); ++i) targets.push_back(y.f32()[i] > 0.5f ? 1 : 0);
    }
    files.push_back(codegen::emit_test_vectors(program, q, labels, targets));
  }
  std::filesystem::create_directories(out_);
  int64_t bytes = 0;
  for (const codegen::SourceFile& f : files) {
    write_file_atomic((std::filesystem::path(out_) / f.name).string(), f.text);
    bytes += static_cast<int64_t>(f.text.size());
  }
  std::optional<codegen::DeviceCost> cost;
  if (device_cost_) {
    // Measured on the C just written; model.h then states the figures.
    cost = codegen::measure_device_cost(out_, (std::filesystem::path(out_) / "device").string());
    const std::vector<codegen::SourceFile> again = codegen::emit_c(program, &*cost);
    write_file_atomic((std::filesystem::path(out_) / again[0].name).string(), again[0].text);
    write_file_atomic((std::filesystem::path(out_) / "device_cost.json").string(), cost->to_json().dump(2) + "\n");
    std::filesystem::remove_all(std::filesystem::path(out_) / "device");
  }
  json ops = json::array();
  for (const codegen::Op& op : program.ops)
    ops.push_back({{"layer", op.layer}, {"kernel", codegen::kernel_name(op)}, {"macs", op.macs},
                   {"constant_bytes", op.constant_bytes()}});
  if (json_) {
    json j{{"out", out_}, {"arena_bytes", program.arena_bytes},
                      {"constant_bytes", program.constant_bytes()}, {"macs", program.macs()},
                      {"input_size", program.input_size}, {"output_size", program.output_size}, {"ops", ops}};
    if (cost) j["device_cost"] = cost->to_json();
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << "wrote " << out_ << "/{model.h, model.c, pare_runtime.h, pare_runtime.c} (" << bytes
              << " bytes of C): arena " << program.arena_bytes << " bytes, constants " << program.constant_bytes()
              << " bytes, " << program.macs() << " MACs per inference\n";
    for (const codegen::Op& op : program.ops)
      std::cout << "  " << op.layer << ": " << codegen::kernel_name(op) << ", " << op.macs << " MACs, "
                << op.constant_bytes() << " bytes\n";
    if (cost)
      std::cout << "on " << cost->mcu.cpu << " (measured: minimal firmware, " << cost->compiler << " -Os; QEMU "
                << cost->mcu.qemu_board << "): flash " << cost->flash_bytes << " bytes, RAM " << cost->ram_bytes
                << " bytes (data " << cost->firmware_data << ", bss " << cost->firmware_bss << ", stack "
                << cost->stack_bytes << "), " << cost->instructions << " instructions per inference\n"
                << "estimated at " << fmt("%.0f", cost->mcu.clock_hz / 1e6) << " MHz, CPI "
                << fmt("%.1f", cost->mcu.cycles_per_instruction) << ", "
                << fmt("%.0f", cost->mcu.amps_per_hz * 1e12) << " uA/MHz, " << fmt("%.1f", cost->mcu.volts)
                << " V: " << fmt("%.3f", cost->seconds * 1e3) << " ms, " << fmt("%.2f", cost->joules * 1e6)
                << " uJ per inference; a CR2032 (225 mAh) powers " << fmt("%.3g", cost->inferences_per_coin_cell)
                << " inferences\n";
  }
  return 0;
}

int FormatCommands::run_import() {
  const io::OnnxImport im = io::from_onnx(read_file(from_), from_);
  const std::string meta = json{{"created_by", "pare import"}, {"source", from_}}.dump();
  if (io::is_pare_path(out_))
    io::save_pare(*im.model, out_, meta);
  else
    train::save_model(*im.model, out_, meta);
  if (json_) {
    std::cout << json{{"out", out_}, {"spec", json::parse(nn::model_spec_to_json(im.model->spec()))},
                      {"parameters", im.model->num_parameters()}, {"notes", im.notes}}.dump()
              << std::endl;
  } else {
    std::cout << "wrote " << out_ << "\n" << im.model->summary() << "\n";
    for (const std::string& n : im.notes) std::cout << "note: " << n << "\n";
  }
  return 0;
}

int FormatCommands::run_delta() {
  auto base = load_any_model(base_);
  auto tuned = load_any_model(tuned_);
  // A model tuned with --lora-rank carries its factors: the delta keeps them
  // (f32, exact; with --int8 as s8 with one scale per rank component).
  const train::SavedLora lora = io::is_pare_path(tuned_) ? train::SavedLora{} : train::read_lora(tuned_);
  const bool low_rank = !lora.factors.empty();
  format::File f = low_rank ? io::make_lowrank_delta(*base, *tuned, lora.factors, lora.scale, int8_)
                            : io::make_delta(*base, *tuned, int8_);
  const std::string bytes = format::encode(f);
  write_file_atomic(out_, bytes);
  int64_t changed = 0, total = 0, factor_values = 0;
  for (const format::Tensor& t : f.tensors) {
    if (t.name.ends_with(".lora_a") || t.name.ends_with(".lora_b"))
      factor_values += t.present_count();
    else if (!io::is_mask_tensor(t.name))
      changed += t.present_count();
  }
  for (const nn::Parameter* p : base->parameters()) total += p->numel();
  if (json_) {
    json j{{"bytes", bytes.size()}, {"changed", changed}, {"parameters", total}};
    if (low_rank) j["lora"] = {{"rank", lora.rank}, {"weights", lora.factors.size()}, {"factor_values", factor_values}};
    std::cout << j.dump() << std::endl;
  } else if (low_rank) {
    std::cout << "wrote " << out_ << ": " << bytes.size() << " bytes, LoRA factors of rank " << lora.rank << " for "
              << lora.factors.size() << " weights (" << factor_values << " values), " << changed << " other of "
              << total << " parameters changed\n";
  } else {
    std::cout << "wrote " << out_ << ": " << bytes.size() << " bytes, " << changed << " of " << total
              << " parameters changed\n";
  }
  return 0;
}

int FormatCommands::run_apply() {
  auto base = load_any_model(base_);
  const format::File delta = format::read_file(tuned_);
  auto variant = io::apply_delta(*base, delta, tuned_);
  if (io::is_pare_path(out_))
    io::save_pare(*variant, out_, json{{"created_by", "pare apply"}, {"base", base_}, {"delta", tuned_}}.dump());
  else
    train::save_model(*variant, out_, json{{"base", base_}, {"delta", tuned_}}.dump());
  std::cout << "wrote " << out_ << "\n";
  return 0;
}

int FormatCommands::run_inspect() {
  const std::string bytes = read_file(file_);
  const format::File f = format::decode(bytes, file_);
  json d = describe(f, static_cast<int64_t>(bytes.size()));
  if (!f.meta_json.empty()) d["meta"] = json::parse(f.meta_json);
  if (json_) {
    std::cout << d.dump() << std::endl;
  } else {
    print_table(d);
    if (!f.meta_json.empty()) std::cout << "meta: " << f.meta_json << "\n";
  }
  return 0;
}

}  // namespace pare::cli
