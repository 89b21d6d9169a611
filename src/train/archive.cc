// Checkpoint/model container: serialisation and defensive parsing.
#include "pare/train/archive.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "pare/base/bytes.h"
#include "pare/base/file.h"
#include "pare/base/json_number.h"

namespace pare::train {

using json = nlohmann::json;

namespace {
constexpr char kMagic[8] = {'P', 'A', 'R', 'E', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kPrefix = 20;

DType parse_dtype(const std::string& s, const std::string& path) {
  for (DType t : {DType::f32, DType::i32, DType::i8, DType::u8})
    if (s == dtype_name(t)) return t;
  fail(path, ": corrupt archive: unknown dtype \"", s, "\"");
}
}  // namespace

const Tensor* Archive::find(const std::string& name) const {
  for (auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

void write_archive(const std::string& path, const Archive& archive) {
  json header;
  header["meta"] = json::parse(archive.meta_json);
  header["tensors"] = json::array();
  uint64_t offset = 0;
  for (auto& [name, t] : archive.tensors) {
    header["tensors"].push_back({{"name", name},
                                 {"dtype", dtype_name(t.dtype())},
                                 {"shape", t.shape().vec()},
                                 {"offset", offset},
                                 {"bytes", t.nbytes()}});
    offset += t.nbytes();
  }
  const std::string h = header.dump();
  std::string out;
  out.reserve(kPrefix + h.size() + offset + 4);
  out.append(kMagic, 8);
  append_le<uint32_t>(out, kVersion);
  append_le<uint64_t>(out, h.size());
  out += h;
  for (auto& [name, t] : archive.tensors)
    out.append(static_cast<const char*>(t.raw()), t.nbytes());
  append_le<uint32_t>(out, crc32_of(out.data(), out.size()));
  write_file_atomic(path, out);
}

Archive read_archive(const std::string& path) { return parse_archive(read_file(path), path); }

Archive parse_archive(const std::string& in, const std::string& path) {
  if (in.size() < kPrefix + 4 || std::memcmp(in.data(), kMagic, 8) != 0)
    fail(path, ": not a pare checkpoint (bad magic or too short: ", in.size(), " bytes)");
  const uint32_t version = load_le<uint32_t>(in, 8);
  if (version != kVersion) fail(path, ": checkpoint version ", version, " is not supported (expected ", kVersion, ")");
  const uint32_t stored_crc = load_le<uint32_t>(in, in.size() - 4);
  if (crc32_of(in.data(), in.size() - 4) != stored_crc)
    fail(path, ": corrupt checkpoint: checksum mismatch (the file is damaged or truncated)");
  const uint64_t hlen = load_le<uint64_t>(in, 12);
  if (hlen > in.size() - kPrefix - 4) fail(path, ": corrupt checkpoint: header length ", hlen, " exceeds the file");
  json header;
  try {
    header = json::parse(in.substr(kPrefix, hlen));
  } catch (const json::exception& e) {
    fail(path, ": corrupt checkpoint header: ", e.what());
  }
  const size_t data_start = kPrefix + hlen;
  const uint64_t data_len = in.size() - 4 - data_start;
  Archive a;
  try {
    a.meta_json = header.at("meta").dump();
    for (auto& e : header.at("tensors")) {
      const std::string name = e.at("name").get<std::string>();
      const DType dt = parse_dtype(e.at("dtype").get<std::string>(), path);
      // Integers only: nlohmann's get<int64_t>() of a float out of range
      // (a "shape" of [3.9e19]) is undefined behaviour, not an exception.
      const json& shape = e.at("shape");
      if (!shape.is_array()) fail(path, ": tensor ", name, ": shape is not an array");
      if (shape.size() > Shape::kMaxDims) fail(path, ": tensor ", name, " has too many dimensions");
      std::vector<int64_t> dims;
      for (const json& d : shape) {
        if (!is_whole_number(d, 0, INT64_MAX)) fail(path, ": tensor ", name, ": bad shape");
        dims.push_back(d.get<int64_t>());
      }
      uint64_t count = 1;
      for (int64_t d : dims) {
        if (d < 0 || (d > 0 && count > (uint64_t{1} << 40) / static_cast<uint64_t>(d)))
          fail(path, ": tensor ", name, ": bad shape");
        count *= static_cast<uint64_t>(d);
      }
      if (!e.at("offset").is_number_unsigned() || !e.at("bytes").is_number_unsigned())
        fail(path, ": tensor ", name, ": offset and bytes must be non-negative integers");
      const uint64_t offset = e.at("offset").get<uint64_t>(), bytes = e.at("bytes").get<uint64_t>();
      if (bytes != count * dtype_size(dt)) fail(path, ": tensor ", name, ": byte count does not match its shape");
      if (offset > data_len || bytes > data_len - offset)
        fail(path, ": tensor ", name, ": data [", offset, ", +", bytes, ") lies outside the file");
      Tensor t = Tensor::empty(Shape(std::span<const int64_t>(dims)), dt);
      if (bytes) std::memcpy(t.raw(), in.data() + data_start + offset, bytes);
      a.tensors.emplace_back(name, std::move(t));
    }
  } catch (const json::exception& e) {
    fail(path, ": corrupt checkpoint header: ", e.what());
  }
  return a;
}

}  // namespace pare::train
