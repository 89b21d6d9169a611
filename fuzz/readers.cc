// The fuzz targets' feed functions (see readers.h).
#include "readers.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

#include "pare/base/bytes.h"
#include "pare/base/error.h"
#include "pare/base/read_limit.h"
#include "pare/data/csv.h"
#include "pare/data/idx.h"
#include "pare/data/npy.h"
#include "pare/experiments/cost_table.h"
#include "pare/experiments/life.h"
#include "pare/format/pare_file.h"
#include "pare/format/safetensors.h"
#include "pare/io/int8_net.h"
#include "pare/io/onnx.h"
#include "pare/io/pare_model.h"
#include "pare/nn/module.h"
#include "pare/nn/spec.h"
#include "pare/train/archive.h"
#include "pare/train/trainer.h"

namespace pare::fuzz {

namespace {

namespace fs = std::filesystem;

// ---- scratch files ------------------------------------------------------------

// A directory of this process's scratch files: in /dev/shm when there is
// one (no disk traffic at thousands of inputs a second), removed at exit.
const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    std::error_code ec;
    fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("pare_fuzz_" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::atexit([] { std::error_code e; fs::remove_all(scratch_dir(), e); });
    return d;
  }();
  return dir;
}

// Writes `bytes` to `name` in the scratch directory (plainly: the readers
// under test, not write_file_atomic, are what is fuzzed) and returns its path.
std::string scratch_file(const fs::path& name, std::string_view bytes) {
  const fs::path p = scratch_dir() / name;
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail("fuzz: cannot write the scratch file ", p.string());
  return p.string();
}

// A fresh, empty directory `name` in the scratch directory.
std::string scratch_run_dir(const std::string& name) {
  const fs::path p = scratch_dir() / name;
  std::error_code ec;
  fs::remove_all(p, ec);
  fs::create_directories(p);
  return p.string();
}

bool is_gzip(std::string_view b) { return b.size() >= 2 && b[0] == '\x1f' && b[1] == '\x8b'; }

// ---- the feed functions ---------------------------------------------------------

// IDX: the in-memory parser, and the streaming file reader (plain or gzip).
void feed_idx(std::string_view bytes) {
  if (is_gzip(bytes)) {
    data::read_idx(scratch_file("in.idx.gz", bytes));
    return;
  }
  data::parse_idx(bytes, "fuzz.idx");
}

// CSV: the first byte chooses the options (delimiter, header mode, label
// column), the rest is the text; gzip text goes through read_csv.
void feed_csv(std::string_view bytes) {
  if (bytes.empty()) return;
  const auto mode = static_cast<uint8_t>(bytes[0]);
  bytes.remove_prefix(1);
  static constexpr char kDelimiters[] = {',', ';', '\t', ' '};
  data::CsvOptions opt;
  opt.delimiter = kDelimiters[mode & 3];
  opt.header = static_cast<data::CsvHeader>(((mode >> 2) & 3) % 3);
  opt.label_column = static_cast<int>((mode >> 4) & 7) - 4;  // -4 .. 3
  const data::Dataset d = is_gzip(bytes) ? data::read_csv(scratch_file("in.csv.gz", bytes), opt)
                                         : data::parse_csv(bytes, "fuzz.csv", opt);
  data::validate(d);
}

// NPY: the in-memory parser, and read_npy for gzip.
void feed_npy(std::string_view bytes) {
  if (is_gzip(bytes)) {
    data::read_npy(scratch_file("in.npy.gz", bytes));
    return;
  }
  data::parse_npy(bytes, "fuzz.npy");
}

// The largest model the model_spec target builds: a spec may describe any
// network, and building a big one is a legitimate allocation (bounded by
// nn::kMaxModelElements), not a finding; nn::parameter_count checks the spec's
// shapes without allocating, and small models keep the target fast.
constexpr int64_t kMaxFuzzParameters = int64_t{1} << 16;

// The .pare file (checksums fixed, see readers.h), then the two readers of
// its contents: the float model (io::from_file) and integer inference
// (io::Int8Net, which refuses all but int8 files).
void feed_pare_file(std::string_view bytes) {
  const std::string fixed = fix_pare_checksums(bytes);
  // Decoded within the reader limit (64 MiB here, see target()).
  const format::File file = format::decode(fixed, "fuzz.pare");
  try {
    io::from_file(file, "fuzz.pare");
  } catch (const Error& e) {
    if (!is_expected_error(e)) throw;
  }
  io::Int8Net::from_file(file, "fuzz.pare");
}

void feed_safetensors(std::string_view bytes) {
  std::map<std::string, std::string> metadata;
  format::decode_safetensors(bytes, "fuzz.safetensors", &metadata);
}

void feed_onnx(std::string_view bytes) { io::from_onnx(bytes, "fuzz.onnx"); }

// A model spec: parsed, written back and parsed again (the same spec), and
// built when small.
void feed_model_spec(std::string_view bytes) {
  const std::string text(bytes);
  const nn::ModelSpec spec = nn::parse_model_spec(text, "fuzz.json");
  const std::string again = nn::model_spec_to_json(spec);
  if (nn::model_spec_to_json(nn::parse_model_spec(again, "fuzz.json (written back)")) != again)
    fail("fuzz: BUG: a model spec does not survive model_spec_to_json and parse_model_spec: ", again);
  if (nn::parameter_count(spec) <= kMaxFuzzParameters) nn::Model::build(spec, 0);
}

// A checkpoint or saved model (model.bin): the container (checksum fixed),
// then the model it holds, as pare eval and pare prune --from load it.
void feed_archive(std::string_view bytes) {
  const std::string fixed = fix_archive_checksum(bytes);
  train::parse_archive(fixed, "fuzz.bin");
  train::load_model(scratch_file("model.bin", fixed));
}

// A checkpoint.bin (checksum fixed) that fit() resumes from: its meta (step,
// epoch, optimizer state, log, ...) and tensors as the training loop reads them.
void feed_checkpoint(std::string_view bytes) {
  const std::string fixed = fix_archive_checksum(bytes);
  static const data::Dataset set = checkpoint_data();
  const std::string dir = scratch_run_dir("checkpoint_run");
  scratch_file("checkpoint_run/checkpoint.bin", fixed);
  auto model = nn::Model::build(checkpoint_spec(), 0);
  train::fit(*model, set, set, checkpoint_config(dir));
}

// The files a resumed study or `pare cost` reads back from a run directory.
// The first byte chooses the file: a Life run's result.json (run_life skips a
// run whose record it finds), a run's log.jsonl (its summary, and its cost
// row), or a ticket's results.json (its cost rows).
void feed_run_config(std::string_view bytes) {
  if (bytes.empty()) return;
  const int mode = static_cast<uint8_t>(bytes[0]) % 4;
  bytes.remove_prefix(1);
  const std::string dir = scratch_run_dir("run");
  switch (mode) {
    case 0: {
      static const experiments::LifeRecipe recipe = life_recipe();
      static const std::unique_ptr<nn::Model> model = experiments::life_model(recipe, 1, 1, 0);
      scratch_file("run/result.json", bytes);
      experiments::run_life(recipe, 1, 1, 0, *model, dir);
      return;
    }
    case 1:
      train::summarize_run_log(scratch_file("run/log.jsonl", bytes));
      return;
    case 2:
      scratch_file("run/log.jsonl", bytes);
      experiments::cost_table(experiments::cost_rows(dir));
      return;
    case 3:
      scratch_file("run/results.json", bytes);
      experiments::cost_table(experiments::cost_rows(dir));
      return;
  }
}

}  // namespace

nn::ModelSpec checkpoint_spec() {
  return nn::parse_model_spec(
      R"({"name": "fuzz", "input": [4], "layers": [{"type": "linear", "out": 3}], "loss": "softmax_cross_entropy"})",
      "fuzz");
}

data::Dataset checkpoint_data() {
  data::Dataset d;
  std::vector<float> x(8 * 4);
  std::vector<int32_t> y(8);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int32_t>(i % 3);
  d.inputs = Tensor::from({8, 4}, x);
  d.targets = Tensor::from_i32({8}, y);
  d.num_classes = 3;
  d.name = "fuzz";
  return d;
}

train::TrainConfig checkpoint_config(const std::string& out_dir) {
  train::TrainConfig cfg;
  cfg.epochs = 2;
  cfg.batch = 4;
  cfg.optimizer.name = "adam";
  cfg.out_dir = out_dir;
  cfg.resume = true;
  cfg.eval_batch = 8;
  return cfg;
}

experiments::LifeRecipe life_recipe() {
  experiments::LifeRecipe r;
  r.examples = 8;
  r.test_examples = 8;
  r.board = 8;
  r.epochs = 1;
  return r;
}

const std::vector<Target>& targets() {
  static const std::vector<Target> t = {
      {"idx", feed_idx, "data::parse_idx, data::read_idx (gzip)"},
      {"csv", feed_csv, "data::parse_csv, data::read_csv (gzip)"},
      {"npy", feed_npy, "data::parse_npy, data::read_npy (gzip)"},
      {"pare_file", feed_pare_file, "format::decode, io::from_file, io::Int8Net::from_file"},
      {"safetensors", feed_safetensors, "format::decode_safetensors"},
      {"onnx", feed_onnx, "io::from_onnx"},
      {"model_spec", feed_model_spec, "nn::parse_model_spec, nn::Model::build"},
      {"archive", feed_archive, "train::parse_archive, train::load_model"},
      {"checkpoint", feed_checkpoint, "train::fit resuming from checkpoint.bin"},
      {"run_config", feed_run_config,
       "experiments::run_life (result.json), train::summarize_run_log, experiments::cost_rows"},
  };
  return t;
}

const Target& target(std::string_view name) {
  // The reader limit (base/read_limit.h) below libFuzzer's -malloc_limit_mb
  // of 1 GiB: a claim over it is refused, not allocated. The regression
  // tests come through here too, so they read with the same limit.
  set_read_limit_bytes(int64_t{64} << 20);
  std::string names;
  for (const Target& t : targets()) {
    if (t.name == name) return t;
    names += std::string(names.empty() ? "" : ", ") + t.name;
  }
  fail("fuzz: no target \"", name, "\" (targets: ", names, ")");
}

bool is_expected_error(const std::exception& e) {
  if (dynamic_cast<const Error*>(&e) == nullptr) return false;
  // detail::check_failed: "... (room/file.cc:123)" or "room/file.cc:123: check failed: cond".
  static const std::regex check(R"(\([A-Za-z0-9_./-]+\.(cc|h):[0-9]+\)$|^[A-Za-z0-9_./-]+\.(cc|h):[0-9]+: check failed: )");
  return !std::regex_search(e.what(), check);
}

std::string fix_pare_checksums(std::string_view bytes) {
  std::string b(bytes);
  constexpr size_t kHeader = 32, kEntry = 32;
  if (b.size() < kHeader) return b;
  const uint32_t count = load_le<uint32_t>(b, 16);
  if (count > 64 || kHeader + kEntry * count > b.size()) return b;
  struct Section {
    uint32_t kind;
    uint64_t offset, length;
    size_t entry;
  };
  std::vector<Section> sections;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = kHeader + kEntry * i;
    sections.push_back({load_le<uint32_t>(b, e), load_le<uint64_t>(b, e + 8), load_le<uint64_t>(b, e + 16), e});
  }
  auto inside = [&](uint64_t off, uint64_t len) { return off <= b.size() && len <= b.size() - off; };
  auto find = [&](const char* kind) -> const Section* {
    uint32_t k;
    std::memcpy(&k, kind, 4);
    for (const Section& s : sections)
      if (s.kind == k && inside(s.offset, s.length)) return &s;
    return nullptr;
  };
  // Each tensor's data CRC in TTAB, walking the table as docs/format.md lays it out.
  const Section* table = find("TTAB");
  const Section* data = find("DATA");
  if (table && data) {
    size_t at = table->offset;
    const size_t end = table->offset + table->length;
    auto need = [&](size_t n) { return n <= end - at; };
    uint32_t tensors = need(4) ? load_le<uint32_t>(b, at) : 0;
    at += need(4) ? 4 : 0;
    for (uint32_t t = 0; t < tensors && t < 65536; ++t) {
      if (!need(2)) break;
      const uint16_t name = load_le<uint16_t>(b, at);
      at += 2;
      if (!need(name + 2u)) break;
      at += name;
      const uint8_t ndim = static_cast<uint8_t>(b[at + 1]);
      at += 2;
      if (ndim > 6 || !need(8u * ndim + 3u)) break;
      std::vector<uint64_t> dims;
      for (uint8_t d = 0; d < ndim; ++d, at += 8) dims.push_back(load_le<uint64_t>(b, at));
      at += 2;  // encoding, compression
      const uint8_t quant = static_cast<uint8_t>(b[at++]);
      if (quant == 1) {
        if (!need(8)) break;
        at += 8;
      } else if (quant == 2) {
        if (!need(1)) break;
        const uint8_t axis = static_cast<uint8_t>(b[at++]);
        if (axis >= dims.size() || dims[axis] > (end - at) / 4) break;
        at += 4 * dims[axis];
      } else if (quant == 3) {
        if (!need(1)) break;
        const uint8_t bits = static_cast<uint8_t>(b[at++]);
        if (bits < 1 || bits > 8 || !need(4u << bits)) break;
        at += 4u << bits;
      } else if (quant != 0) {
        break;
      }
      if (!need(28)) break;
      const uint64_t offset = load_le<uint64_t>(b, at), stored = load_le<uint64_t>(b, at + 8);
      if (offset <= data->length && stored <= data->length - offset)
        store_le<uint32_t>(b, at + 24, crc32_of(std::string_view(b).substr(data->offset + offset, stored)));
      at += 28;
    }
  }
  // Each section's CRC, then the directory's (which covers them).
  for (const Section& s : sections)
    if (inside(s.offset, s.length))
      store_le<uint32_t>(b, s.entry + 24, crc32_of(std::string_view(b).substr(s.offset, s.length)));
  std::string dir = b.substr(0, 20) + b.substr(kHeader, kEntry * count);
  store_le<uint32_t>(b, 20, crc32_of(dir));
  return b;
}

std::string fix_archive_checksum(std::string_view bytes) {
  std::string b(bytes);
  if (b.size() >= 24) store_le<uint32_t>(b, b.size() - 4, crc32_of(std::string_view(b).substr(0, b.size() - 4)));
  return b;
}

}  // namespace pare::fuzz
