// The readers of outside bytes as the fuzz targets drive them (docs/reliability.md,
// "Fuzzing"). Each feed function hands `bytes` to the real reader (through an
// in-memory entry point, or a scratch file or run directory when the reader
// takes a path) and lets whatever it raises propagate: pare::Error is the
// expected outcome of bad bytes, anything else is a finding. The libFuzzer
// entry point (fuzz_main.cc) and the regression tests of the inputs that once
// crashed a reader (tests/fuzz_regressions/) call the same functions.
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "pare/data/dataset.h"
#include "pare/experiments/life.h"
#include "pare/nn/spec.h"
#include "pare/train/trainer.h"

namespace pare::fuzz {

struct Target {
  const char* name;                   // "idx": fuzz/corpus/idx/, tests/fuzz_regressions/idx/
  void (*feed)(std::string_view bytes);
  const char* reader;                 // what it exercises, for the docs and --help
};

// Every target, in the order `make fuzz` runs them.
const std::vector<Target>& targets();
// The target called `name`; raises pare::Error listing the names on a miss.
const Target& target(std::string_view name);

// True when `e` is what a reader should raise on bad bytes: a pare::Error
// from fail(). A PARE_CHECK failure (an internal invariant that bad bytes
// reached because a reader did not check them first; its message ends with
// "(room/file.cc:LINE)") and every other exception are findings.
bool is_expected_error(const std::exception& e);

// The bytes with every CRC-32 recomputed where the structure can be walked,
// so that the fuzzer's mutations reach the checks behind the checksums:
// a .pare file's directory, sections and tensor data (docs/format.md), and a
// checkpoint's trailing CRC (docs/checkpoint.md). Anything that cannot be
// walked is left as it is (the reader refuses it before any checksum).
std::string fix_pare_checksums(std::string_view bytes);
std::string fix_archive_checksum(std::string_view bytes);

// What the checkpoint and run_config targets run, so that fuzz/make_seeds.cc
// writes their seeds with the same: a 4-3 linear net resumed by fit() on 8
// samples, and a Life recipe on 8x8 boards.
nn::ModelSpec checkpoint_spec();
data::Dataset checkpoint_data();
train::TrainConfig checkpoint_config(const std::string& out_dir);
experiments::LifeRecipe life_recipe();

}  // namespace pare::fuzz
