// Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from
// real files: Debian's Fashion-MNIST cut to a few images, and what pare's own
// writers make of small networks (.pare files of every encoding and
// quantization, safetensors, ONNX, model specs, saved models, checkpoints,
// run logs and study results). The same bytes on every run but for the
// timings in run logs and results; every file a few KB at most.
//
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus     (make fuzz-seeds)
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/base/rng.h"
#include "pare/data/idx.h"
#include "pare/data/npy.h"
#include "pare/format/pare_file.h"
#include "pare/format/safetensors.h"
#include "pare/io/compress.h"
#include "pare/io/int8_net.h"
#include "pare/io/onnx.h"
#include "pare/io/pare_model.h"
#include "pare/nn/module.h"
#include "pare/train/archive.h"
#include "readers.h"

namespace pare::fuzz {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path g_out;

void put(const std::string& target, const std::string& name, std::string_view bytes) {
  const fs::path dir = g_out / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) fail("cannot write ", (dir / name).string());
}

std::string gzip(std::string_view in) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) fail("deflateInit2");
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) fail("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An IDX header: type, dims.
std::string idx_header(uint8_t type, std::initializer_list<uint32_t> dims) {
  std::string h = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) h += be32(d);
  return h;
}

void idx_seeds() {
  // Fashion-MNIST's test files, cut to 2 images and 8 labels.
  const std::string dir = data::kFashionMnistDir;
  if (file_exists(dir + "/t10k-images-idx3-ubyte.gz")) {
    const std::string images = read_file_maybe_gz(dir + "/t10k-images-idx3-ubyte.gz");
    const std::string labels = read_file_maybe_gz(dir + "/t10k-labels-idx1-ubyte.gz");
    put("idx", "fashion_t10k_images_2", idx_header(0x08, {2, 28, 28}) + images.substr(16, 2 * 784));
    const std::string l8 = idx_header(0x08, {8}) + labels.substr(8, 8);
    put("idx", "fashion_t10k_labels_8", l8);
    put("idx", "fashion_t10k_labels_8.gz", gzip(l8));
  } else {
    std::cerr << "make_seeds: " << dir << " missing (dataset-fashion-mnist): no Fashion-MNIST idx seeds\n";
  }
  // Every element type, small.
  put("idx", "i8_2x3", idx_header(0x09, {2, 3}) + std::string("\x01\xff\x02\xfe\x03\x7f", 6));
  put("idx", "i16_4", idx_header(0x0B, {4}) + std::string("\x00\x01\xff\xfe\x7f\xff\x80\x00", 8));
  put("idx", "i32_2x2", idx_header(0x0C, {2, 2}) + be32(1) + be32(0xffffffff) + be32(65536) + be32(0x80000000));
  put("idx", "f32_3", idx_header(0x0D, {3}) + be32(0x3f800000) + be32(0xc0000000) + be32(0x7f800000));
  put("idx", "f64_2", idx_header(0x0E, {2}) + std::string("\x3f\xf0\0\0\0\0\0\0\xc0\x09\x21\xfb\x54\x44\x2d\x18", 16));
  put("idx", "u8_empty_0x5", idx_header(0x08, {0, 5}));
}

// CSV seeds: the first byte is the options byte of feed_csv.
void csv_seeds() {
  const std::string comma = "sepal,petal,label\n5.1,1.4,0\n7.0,4.7,1\n6.3,6.0,2\r\n\n+5, 6 ,1\n";
  put("csv", "header_auto_label_last", std::string("\x30", 1) + comma);
  put("csv", "semicolon_header_label_first",
      std::string("\x45", 1) + "y;x1;x2\n1;0.5;2\n0;\"1.5\";3\n2;-1e-3;\"4\"\n");
  put("csv", "tab_no_header", std::string("\x3a", 1) + "0.1\t0.2\t1\n0.3\t0.4\t0\n");
  put("csv", "space_quoted", std::string("\x33", 1) + "\"a b\" \"c\"\"d\" label\n1 2 3\n4 5 6\n");
  put("csv", "gzip", std::string("\x30", 1) + gzip(comma));
  // Fashion-MNIST's first 3 test images as pixels and label rows.
  const std::string dir = data::kFashionMnistDir;
  if (file_exists(dir + "/t10k-images-idx3-ubyte.gz")) {
    const Tensor images = data::read_idx(dir + "/t10k-images-idx3-ubyte.gz");
    const Tensor labels = data::read_idx(dir + "/t10k-labels-idx1-ubyte.gz");
    std::string text;
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 784; k += 8) text += std::to_string(images.data<uint8_t>()[i * 784 + k]) + ",";
      text += std::to_string(labels.data<uint8_t>()[i]) + "\n";
    }
    put("csv", "fashion_t10k_3rows", std::string("\x30", 1) + text);
  }
}

void npy_seeds() {
  put("npy", "f32_2x3", data::encode_npy(Tensor::from({2, 3}, std::vector<float>{1, -2, 3.5f, 0, 1e-3f, 7})));
  put("npy", "i32_4", data::encode_npy(Tensor::from_i32({4}, std::vector<int32_t>{0, 1, 2, -5})));
  put("npy", "f32_scalar", data::encode_npy(Tensor::from({}, std::vector<float>{42})));
  Tensor u8 = Tensor::zeros({2, 2}, DType::u8);
  u8.data<uint8_t>()[1] = 255;
  put("npy", "u8_2x2", data::encode_npy(u8));
  Tensor i8 = Tensor::zeros({3}, DType::i8);
  i8.data<int8_t>()[0] = -128;
  put("npy", "i8_3", data::encode_npy(i8));
  // As numpy writes other dtypes and versions.
  auto npy = [](int major, const std::string& dict, std::string_view data) {
    std::string out = "\x93NUMPY";
    out += static_cast<char>(major);
    out += '\0';
    std::string h = dict;
    const size_t pre = 8 + (major == 1 ? 2 : 4);
    h.append((64 - (pre + h.size() + 1) % 64) % 64, ' ');
    h += '\n';
    const uint32_t n = static_cast<uint32_t>(h.size());
    out += static_cast<char>(n & 0xff);
    out += static_cast<char>((n >> 8) & 0xff);
    if (major != 1) out += std::string{static_cast<char>(n >> 16), static_cast<char>(n >> 24)};
    return out + h + std::string(data);
  };
  put("npy", "f8_2", npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                         std::string("\0\0\0\0\0\0\xf0\x3f\0\0\0\0\0\0\0\xc0", 16)));
  put("npy", "i8_3_v2", npy(2, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                            std::string(8, '\x01') + std::string(8, '\0') + std::string(8, '\xff')));
  put("npy", "b1_2x2_v3", npy(3, "{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": (2, 2)}",
                              std::string("\x01\x00\x00\x01", 4)));
  put("npy", "f32_1x2_gz", gzip(data::encode_npy(Tensor::from({1, 2}, std::vector<float>{0.5f, -0.5f}))));
}

nn::ModelSpec mlp_spec() {
  return nn::parse_model_spec(
      R"({"name": "mlp", "input": [6], "input_norm": {"mean": 0.5, "std": 0.25},
          "layers": [{"type": "linear", "out": 5}, {"type": "relu"}, {"type": "linear", "out": 3}]})",
      "mlp");
}
nn::ModelSpec cnn_spec() {
  return nn::parse_model_spec(
      R"({"name": "cnn", "input": [1, 6, 6],
          "layers": [{"type": "conv2d", "out": 2, "kernel": 3, "pad": 1}, {"type": "relu"},
                     {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "out": 3}]})",
      "cnn");
}

// Masks out about 70 % of every weight (a pruned net), deterministically.
void prune_weights(nn::Model& m) {
  Rng rng(7);
  for (nn::Parameter* p : m.parameters()) {
    if (!p->is_weight) continue;
    p->mask = Tensor::empty(p->value().shape());
    for (int64_t i = 0; i < p->numel(); ++i) p->mask.f32()[i] = rng.uniform(0, 1) < 0.3f ? 1.0f : 0.0f;
    p->apply_mask();
  }
}

// Calibration inputs: `n` samples of `m`'s input, uniform in [0, 1).
std::vector<float> samples(const nn::Model& m, int64_t n) {
  int64_t width = 1;
  for (int64_t d : m.spec().input) width *= d;
  Rng rng(3);
  std::vector<float> x(static_cast<size_t>(n * width));
  for (float& v : x) v = rng.uniform(0, 1);
  return x;
}

// The int8 file of `pare compress --int8 --calibrate`: weights s8 per output
// channel, META "activations".
format::File int8_file(const nn::Model& m) {
  const std::vector<float> x = samples(m, 16);
  json meta{{"created_by", "pare compress"}, {"quantization", {{"weights", "s8 per output channel"}}}};
  meta["activations"] = io::calibrate_activations(m, x.data(), 16);
  format::File f = io::to_file(m, meta.dump());
  for (format::Tensor& t : f.tensors)
    if (t.dims.size() >= 2) io::quantize_s8_per_channel(t);
  return f;
}

std::string encoded(format::File f, format::WriteOptions options = {}) { return format::encode(f, options); }

void model_file_seeds() {
  auto mlp = nn::Model::build(mlp_spec(), 1);
  auto cnn = nn::Model::build(cnn_spec(), 2);
  auto pruned = nn::Model::build(mlp_spec(), 3);
  prune_weights(*pruned);
  auto pruned_cnn = nn::Model::build(cnn_spec(), 4);
  prune_weights(*pruned_cnn);
  const std::string meta = R"({"created_by": "fuzz/make_seeds", "test_accuracy": 0.5})";

  // .pare: every encoding, zstd or not, every quantization.
  put("pare_file", "mlp_dense", encoded(io::to_file(*mlp, meta), {.allow_zstd = false}));
  put("pare_file", "cnn_auto", encoded(io::to_file(*cnn, "")));
  put("pare_file", "mlp_pruned_auto", encoded(io::to_file(*pruned, meta)));
  put("pare_file", "mlp_pruned_bitmask",
      encoded(io::to_file(*pruned, meta), {.allow_zstd = false, .force_encoding = format::Encoding::bitmask}));
  put("pare_file", "mlp_pruned_csr",
      encoded(io::to_file(*pruned, meta), {.allow_zstd = false, .force_encoding = format::Encoding::csr}));
  {
    // Weights zstd shrinks: a constant layer.
    auto flat = nn::Model::build(nn::parse_model_spec(
        R"({"name": "flat", "input": [64], "layers": [{"type": "linear", "out": 16}]})", "flat"), 5);
    for (nn::Parameter* p : flat->parameters())
      for (int64_t i = 0; i < p->numel(); ++i) p->value().f32()[i] = 0.5f;
    put("pare_file", "flat_zstd", encoded(io::to_file(*flat, "")));
  }
  {
    format::File f = io::to_file(*pruned_cnn, meta);
    for (format::Tensor& t : f.tensors)
      if (t.dims.size() >= 2) io::share_weights(t, 3);
    put("pare_file", "cnn_pruned_codebook3", encoded(f));
  }
  put("pare_file", "cnn_int8", encoded(int8_file(*cnn)));
  put("pare_file", "mlp_pruned_int8", encoded(int8_file(*pruned), {.allow_zstd = false}));
  {
    // A u8 affine bias (docs/format.md allows it; pare's writers do not make it).
    format::File f = io::to_file(*mlp, meta);
    format::Tensor& b = f.tensors.back();
    b.dtype = format::DType::u8;
    b.quant = {.kind = format::QuantKind::affine, .scale = 0.01f, .zero_point = 128};
    b.values.assign(static_cast<size_t>(b.numel()), 130);
    put("pare_file", "mlp_affine_bias", encoded(f, {.allow_zstd = false}));
  }

  // safetensors, as pare export writes them (masks and the spec included).
  for (auto& [name, model] : {std::pair<const char*, nn::Model*>{"mlp_pruned", pruned.get()},
                              {"cnn", cnn.get()}}) {
    put("safetensors", name,
        format::encode_safetensors(io::to_safetensors(*model),
                                   {{"pare_spec", nn::model_spec_to_json(model->spec())}, {"format", "pt"}}));
  }

  // ONNX, as pare export --target onnx writes them (float, and int8 QDQ).
  put("onnx", "mlp_norm", io::to_onnx(io::to_file(*mlp, meta), "mlp").bytes);
  put("onnx", "cnn", io::to_onnx(io::to_file(*cnn, ""), "cnn").bytes);
  put("onnx", "cnn_int8_qdq", io::to_onnx(int8_file(*cnn), "cnn").bytes);

  // Saved models (model.bin) and a container with every dtype.
  const std::string tmp = (fs::temp_directory_path() / ("pare_seeds_" + std::to_string(::getpid()))).string();
  make_dirs(tmp);
  train::save_model(*mlp, tmp + "/model.bin", meta);
  put("archive", "mlp_model_bin", read_file(tmp + "/model.bin"));
  train::save_model(*pruned_cnn, tmp + "/model.bin");
  put("archive", "cnn_pruned_model_bin", read_file(tmp + "/model.bin"));
  train::Archive a;
  a.meta_json = R"({"kind": "test", "note": "dtypes"})";
  a.tensors.emplace_back("f32", Tensor::from({2, 2}, std::vector<float>{1, 2, 3, 4}));
  a.tensors.emplace_back("i32", Tensor::from_i32({3}, std::vector<int32_t>{-1, 0, 1}));
  a.tensors.emplace_back("u8", Tensor::zeros({2, 1}, DType::u8));
  a.tensors.emplace_back("i8", Tensor::zeros({1}, DType::i8));
  train::write_archive(tmp + "/dtypes.bin", a);
  put("archive", "dtypes", read_file(tmp + "/dtypes.bin"));
  fs::remove_all(tmp);
}

void spec_seeds() {
  for (const std::string& name : nn::preset_names())
    put("model_spec", name, nn::model_spec_to_json(nn::preset(name)));
  put("model_spec", "docs_example",
      R"({"name": "tiny", "input": [1, 28, 28],
 "layers": [{"type": "conv2d", "out": 8, "kernel": 3, "pad": 1}, {"type": "relu"},
            {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
            {"type": "linear", "out": 10}],
 "loss": "softmax_cross_entropy"})");
  put("model_spec", "every_field",
      R"({"name": "all", "input": [2, 9, 9], "init": "glorot_normal", "loss": "mse",
 "input_norm": {"mean": 0.1, "std": 0.3},
 "layers": [{"type": "conv2d", "out": 3, "kernel": 3, "stride": 2, "pad": 1, "circular": true, "bias": false},
            {"type": "tanh"}, {"type": "avgpool", "kernel": 2, "stride": 1}, {"type": "sigmoid"},
            {"type": "flatten"}, {"type": "dropout", "p": 0.25}, {"type": "linear", "out": 4, "bias": false}]})");
}

// The "cost" of a run log's "end" event.
json read_log_cost(const std::string& log_path) {
  std::istringstream in(read_file(log_path));
  json cost;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) {
      const json j = json::parse(line);
      if (j.value("event", "") == "end" && j.contains("cost")) cost = j["cost"];
    }
  return cost;
}

// A run of the checkpoint target's recipe: its checkpoints, log and model.
void run_seeds() {
  const std::string tmp = (fs::temp_directory_path() / ("pare_seeds_run_" + std::to_string(::getpid()))).string();
  fs::remove_all(tmp);
  const data::Dataset set = checkpoint_data();
  {
    // One epoch: the checkpoint at its end, which the target resumes into epoch 2.
    train::TrainConfig cfg = checkpoint_config(tmp + "/a");
    cfg.epochs = 1;
    cfg.resume = false;
    auto model = nn::Model::build(checkpoint_spec(), 0);
    train::fit(*model, set, set, cfg);
    put("checkpoint", "after_epoch1", read_file(tmp + "/a/checkpoint.bin"));
    const std::string log = read_file(tmp + "/a/log.jsonl");
    put("run_config", "log_summary", std::string("\x01", 1) + log);
    put("run_config", "log_cost", std::string("\x02", 1) + log);
    put("archive", "checkpoint_epoch1", read_file(tmp + "/a/checkpoint.bin"));
  }
  {
    // A checkpoint after every step, stopped after the first: mid-epoch.
    train::TrainConfig cfg = checkpoint_config(tmp + "/b");
    cfg.checkpoint_every = 1;
    cfg.max_steps = 1;
    cfg.resume = false;
    auto model = nn::Model::build(checkpoint_spec(), 0);
    train::fit(*model, set, set, cfg);
    put("checkpoint", "mid_epoch_step1", read_file(tmp + "/b/checkpoint.bin"));
  }
  {
    // A Life run of the run_config target's recipe: its result.json.
    const experiments::LifeRecipe r = life_recipe();
    auto model = experiments::life_model(r, 1, 1, 0);
    experiments::run_life(r, 1, 1, 0, *model, tmp + "/life");
    put("run_config", "life_result", std::string("\x00", 1) + read_file(tmp + "/life/result.json"));
  }
  {
    // A ticket study's results.json (experiments/lottery.cc writes it; its
    // records as record_json lays them out): rounds 0 and 1 with controls,
    // one run from before the cost ledger.
    const json cost = read_log_cost(tmp + "/a/log.jsonl");
    json runs = json::array();
    for (int round = 0; round <= 1; ++round)
      for (const char* kind : {"ticket", "reinit", "random"}) {
        if (round == 0 && std::string(kind) != "ticket") continue;
        const double density = round == 0 ? 1.0 : 0.8;
        json r{{"round", round}, {"kind", kind}, {"density", density}, {"sparsity", 1 - density},
               {"layers", json::array({{{"name", "linear1.weight"}, {"density", density}}})},
               {"test_accuracy", 0.5}, {"test_loss", 1.05}, {"best_accuracy", 0.625},
               {"flops", 768.0}, {"dense_flops", 768.0 / density}, {"executed_flops", 768.0},
               {"seconds", 0.01}, {"cumulative_flops", 768.0 * (round + 1)},
               {"cumulative_seconds", 0.02}, {"steps", 2}};
        if (std::string(kind) != "reinit") r["cost"] = cost;
        runs.push_back(r);
      }
    const json settings{{"kind", "ticket"}, {"spec", json::parse(nn::model_spec_to_json(checkpoint_spec()))},
                        {"rounds", 1}, {"rate", 0.2}, {"controls", true}};
    put("run_config", "ticket_results",
        std::string("\x03", 1) + json{{"settings", settings}, {"runs", runs}}.dump(2) + "\n");
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace pare::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds CORPUS_DIR (fuzz/corpus)\n";
    return 2;
  }
  try {
    pare::fuzz::g_out = argv[1];
    pare::fuzz::idx_seeds();
    pare::fuzz::csv_seeds();
    pare::fuzz::npy_seeds();
    pare::fuzz::model_file_seeds();
    pare::fuzz::spec_seeds();
    pare::fuzz::run_seeds();
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
