// `pare compress` (a saved model to a .pare file), `pare inspect` (what a
// .pare file holds, tensor by tensor, with the bits each weight costs) and
// `pare export` (a saved model for other tools: safetensors, ONNX), `pare import`
// (an ONNX model as a .pare file), `pare delta` and
// `pare apply` (a fine-tuned variant kept as its difference from a base).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "pare/cli/common.h"
#include "pare/codegen/program.h"
#include "pare/io/int8_net.h"
#include "pare/nn/module.h"

namespace pare::cli {

// A model saved by pare: a .pare file (docs/format.md) or model.bin (docs/checkpoint.md).
std::unique_ptr<nn::Model> load_any_model(const std::string& path);

// Top-1 accuracy of an int8 network (io/int8_net.h) on a classification set.
// outputs: when given, receives the logits of every sample in order.
double int8_accuracy(const io::Int8Net& net, const data::Dataset& set, int64_t batch,
                     std::vector<float>* outputs = nullptr);

// The integer-only program (codegen/program.h) on a test set: top-1
// accuracy, or for independent logits (bce) the fraction of outputs right and
// of samples with every output right. outputs_npy: when not empty, the int8
// outputs are written there (samples, outputs).
struct ProgramScore {
  double accuracy = 0, exact = 0;
};
ProgramScore program_score(const codegen::Program& program, const data::Dataset& set, int64_t batch,
                           const std::string& outputs_npy);

class FormatCommands {
 public:
  explicit FormatCommands(CLI::App& app);
  // After parsing: runs the chosen subcommand and returns its exit code, or -1.
  int run();

 private:
  int run_compress();
  int run_inspect();
  int run_export();
  int run_import();
  int run_export_c();
  int run_delta();
  int run_apply();

  CLI::App* compress_ = nullptr;
  CLI::App* inspect_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* import_ = nullptr;
  CLI::App* delta_ = nullptr;
  CLI::App* apply_ = nullptr;
  std::string base_, tuned_;
  std::string export_format_ = "safetensors";
  std::string export_target_;           // "c": pare export --target c
  std::string export_sparse_ = "auto";  // --target c: CSR linear layers
  DataOptions export_data_;
  int64_t test_vectors_ = 0;            // --target c: pare_test_vectors.h samples
  bool device_cost_ = false;            // --target c: measure on a Cortex-M0+ in QEMU
  std::string from_, out_, file_;
  bool no_zstd_ = false, json_ = false;
  int share_bits_ = 0;     // 0: no weight sharing
  bool int8_ = false;      // s8 weights per output channel
  bool calibrate_ = false; // with int8: the activation grids for integer inference
  int64_t calibration_samples_ = 1000;
  std::string calibration_ = "minmax";  // with calibrate: minmax | percentile
  double percentile_ = 99.99;           // percentile: P in (0, 100]
  int64_t qat_epochs_ = 0;              // quantization-aware fine-tuning epochs (0: none)
  int64_t qat_batch_ = 60;
  float qat_lr_ = 1e-4f;                // Adam
  float qat_ema_ = 0.0f;                // 0: QAT keeps the calibrated activation ranges
  int64_t max_bytes_ = 0;            // 0: no byte budget
  double max_accuracy_drop_ = -1;    // < 0: no accuracy budget
  int choose_storage(nn::Model& model);  // --max-bytes / --max-accuracy-drop
  // --finetune-epochs: codebook fine-tuning of --share-bits (train/codebook_finetune.h)
  // with the training recipe flags (add_recipe_options), which are refused without it.
  int64_t finetune_epochs_ = 0;  // 0: none
  train::TrainConfig finetune_;  // a fine-tune's small step: Adam at 1e-4 unless --lr
  std::vector<const CLI::Option*> finetune_options_;
  DataOptions data_;
};

}  // namespace pare::cli
