// safetensors writer and checking reader (see safetensors.h).
#include "pare/format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"

namespace pare::format {

using json = nlohmann::json;

namespace {

size_t element_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "U8") return 1;
  return 0;
}

// Header size limit of the reference implementation (100 MB).
constexpr uint64_t kMaxHeader = 100'000'000;

}  // namespace

std::string encode_safetensors(const std::vector<SafeTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  uint64_t offset = 0;
  for (const SafeTensor& t : tensors) {
    const size_t es = element_size(t.dtype);
    if (es == 0) fail("safetensors: tensor ", t.name, ": dtype ", t.dtype, " (pare writes F32 and U8)");
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
      fail("safetensors: tensor name \"", t.name, "\" is empty, reserved or repeated");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail("safetensors: tensor ", t.name, ": negative dim");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * es != t.bytes.size())
      fail("safetensors: tensor ", t.name, ": ", t.bytes.size(), " bytes for ", numel, " ", t.dtype);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned.
  while ((8 + text.size()) % 8) text.push_back(' ');
  std::string out;
  const uint64_t n = text.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += text;
  for (const SafeTensor& t : tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  return out;
}

std::vector<SafeTensor> decode_safetensors(std::string_view bytes, const std::string& source,
                                           std::map<std::string, std::string>* metadata) {
  if (bytes.size() < 8) fail(source, ": not a safetensors file (", bytes.size(), " bytes)");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeader || n > bytes.size() - 8)
    fail(source, ": header length ", n, " does not fit the ", bytes.size(), "-byte file");
  json header;
  try {
    header = json::parse(bytes.substr(8, n));
  } catch (const json::exception& e) {
    fail(source, ": header: not valid JSON (", e.what(), ")");
  }
  if (!header.is_object()) fail(source, ": header: not a JSON object");
  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  std::vector<SafeTensor> out;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(source, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(source, ": __metadata__ values must be strings");
        if (metadata) (*metadata)[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string where = source + ": tensor " + it.key();
    const json& e = *it;
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets") ||
        !e["dtype"].is_string() || !e["shape"].is_array() || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2)
      fail(where, ": needs dtype, shape and two data_offsets");
    SafeTensor t;
    t.name = it.key();
    t.dtype = e["dtype"].get<std::string>();
    const size_t es = element_size(t.dtype);
    if (es == 0) fail(where, ": dtype ", t.dtype, " is not one pare reads (F32, U8)");
    uint64_t numel = 1;
    for (const json& d : e["shape"]) {
      if (!d.is_number_unsigned()) fail(where, ": a dim is not a non-negative integer");
      const uint64_t v = d.get<uint64_t>();
      // Each dim too, not only the product: after a 0 the product stays 0,
      // and a dim past 2^63 would come out negative.
      if (v > (uint64_t{1} << 40) || (v != 0 && numel > (uint64_t{1} << 40) / v))
        fail(where, ": shape product too large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    if (!e["data_offsets"][0].is_number_unsigned() || !e["data_offsets"][1].is_number_unsigned())
      fail(where, ": data_offsets are not non-negative integers");
    const uint64_t begin = e["data_offsets"][0].get<uint64_t>(), end = e["data_offsets"][1].get<uint64_t>();
    if (begin > end || end > data_size) fail(where, ": data [", begin, ", ", end, ") outside the ", data_size, " data bytes");
    if (end - begin != numel * es) fail(where, ": ", end - begin, " bytes for ", numel, " ", t.dtype);
    spans.emplace_back(begin, end);
    t.bytes.assign(data + begin, data + end);
    out.push_back(std::move(t));
  }
  // The data is covered exactly: no overlap, no gap, nothing left over.
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (auto [b, e] : spans) {
    if (b != at) fail(source, ": tensor data overlaps or leaves a gap at byte ", std::min(b, at));
    at = e;
  }
  if (at != data_size) fail(source, ": ", data_size - at, " data bytes belong to no tensor");
  return out;
}

}  // namespace pare::format
