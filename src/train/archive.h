// A small container for named tensors plus a JSON header, used for training
// checkpoints and saved models until the .pare format (issue #6) replaces it.
//
// Layout (little-endian), specified in docs/checkpoint.md:
//   0   8  magic "PARECKPT"
//   8   4  version (1)
//   12  8  header length H
//   20  H  header: JSON {"meta": {...}, "tensors": [{"name", "dtype", "shape", "offset", "bytes"}]}
//   20+H   tensor data, each tensor at header offset (relative to the data start)
//   end-4  CRC-32 (zlib) of every byte before it
// The reader checks the magic, version, CRC, and that every offset, length and
// shape product fits the file before it allocates or copies.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "pare/tensor/tensor.h"

namespace pare::train {

struct Archive {
  std::string meta_json = "{}";              // free-form JSON object
  std::vector<std::pair<std::string, Tensor>> tensors;

  const Tensor* find(const std::string& name) const;
};

// Serialises and writes atomically (temp file, fsync, rename).
void write_archive(const std::string& path, const Archive& archive);
// Reads and validates; raises Error naming the path and what is wrong.
Archive read_archive(const std::string& path);
// The same for bytes already in memory; `name` names them in errors.
Archive parse_archive(const std::string& bytes, const std::string& name);

}  // namespace pare::train
