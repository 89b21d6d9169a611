// The .pare writer and checking reader (docs/format.md).
#include "pare/format/pare_file.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "pare/base/bytes.h"
#include "pare/base/error.h"
#include "pare/base/file.h"
#include "pare/base/read_limit.h"

namespace pare::format {

namespace {

constexpr uint8_t kMagic[8] = {0x89, 'P', 'A', 'R', 'E', 0x0D, 0x0A, 0x1A};
constexpr uint16_t kMajor = 1, kMinor = 0;
constexpr size_t kHeaderBytes = 32, kDirEntryBytes = 32, kAlign = 64;
constexpr uint32_t kMinSections = 3, kMaxSections = 64;

uint32_t fourcc(const char (&s)[5]) {
  return static_cast<uint32_t>(static_cast<uint8_t>(s[0])) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(s[3])) << 24;
}
const uint32_t kSpec = fourcc("SPEC"), kTable = fourcc("TTAB"), kData = fourcc("DATA"),
               kMeta = fourcc("META");

std::string kind_name(uint32_t kind) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>((kind >> (8 * i)) & 0xFF);
    s += c >= 0x20 && c < 0x7F ? c : '?';
  }
  return s;
}

void put_varint(std::string& out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void pad_to(std::string& out, size_t align) {
  while (out.size() % align) out.push_back('\0');
}

size_t value_size(DType d) { return d == DType::f32 ? 4 : 1; }

// Valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) without
// control characters: names appear in one-line error messages.
bool is_clean_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    int extra;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { extra = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { extra = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { extra = 3; cp = c & 0x07; }
    else return false;
    if (i + static_cast<size_t>(extra) >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const auto d = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += static_cast<size_t>(extra) + 1;
  }
  return true;
}

// SPEC and META: at most 1 MiB, no NUL (a JSON parser would stop there), a
// JSON object.
void check_json(const std::string& text, const std::string& where) {
  if (static_cast<int64_t>(text.size()) > kMaxJsonBytes) fail(where, ": larger than 1 MiB");
  if (text.find('\0') != std::string::npos) fail(where, ": holds a NUL byte");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(where, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(where, ": not a JSON object");
}

// The dtype/quantization pairs docs/format.md allows.
bool dtype_fits(DType d, QuantKind q) {
  return (d == DType::f32 && q == QuantKind::none) ||
         ((d == DType::s8 || d == DType::u8) && (q == QuantKind::affine || q == QuantKind::channel)) ||
         (d == DType::code && q == QuantKind::codebook);
}

bool zero_point_fits(DType d, int32_t z) {
  return d == DType::s8 ? z >= -128 && z <= 127 : z >= 0 && z <= 255;
}

// Bytes that `count` stored values take (codes packed `bits` wide).
int64_t packed_bytes(DType d, int bits, int64_t count) {
  if (d == DType::code) return (count * bits + 7) / 8;
  return count * static_cast<int64_t>(value_size(d));
}

// Reads bounded little-endian fields of one section; every read checks first.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n, std::string where) : p_(p), n_(n), where_(std::move(where)) {}
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  const uint8_t* take(size_t bytes, const char* what) {
    need(bytes, what);
    const uint8_t* q = p_ + at_;
    at_ += bytes;
    return q;
  }
  uint32_t varint(const char* what) {
    uint32_t v = 0;
    for (int i = 0; i < 5; ++i) {
      const uint8_t b = get<uint8_t>(what);
      if (i == 4 && (b & 0xF0)) fail(where_, ": ", what, ": varint exceeds 32 bits");
      v |= static_cast<uint32_t>(b & 0x7F) << (7 * i);
      if (!(b & 0x80)) return v;
    }
    fail(where_, ": ", what, ": varint longer than 5 bytes");
  }
  size_t left() const { return n_ - at_; }
  size_t at() const { return at_; }
  const std::string& where() const { return where_; }
  void set_where(std::string where) { where_ = std::move(where); }

 private:
  void need(size_t bytes, const char* what) const {
    if (bytes > n_ - at_)
      fail(where_, ": truncated: ", what, " needs ", bytes, " bytes at offset ", at_, ", ",
           n_ - at_, " left");
  }
  const uint8_t* p_;
  size_t n_, at_ = 0;
  std::string where_;
};

// ---- encodings ----------------------------------------------------------------

// Appends the values at `positions` (all when null) packed by dtype.
void put_values(std::string& out, const Tensor& t, const std::vector<int64_t>* positions) {
  const size_t s = value_size(t.dtype);
  const int64_t count = positions ? static_cast<int64_t>(positions->size()) : t.numel();
  auto index = [&](int64_t k) { return positions ? (*positions)[static_cast<size_t>(k)] : k; };
  if (t.dtype != DType::code) {
    for (int64_t k = 0; k < count; ++k)
      out.append(reinterpret_cast<const char*>(t.values.data() + index(k) * s), s);
    return;
  }
  const int bits = t.quant.bits;
  uint32_t acc = 0;
  int filled = 0;
  for (int64_t k = 0; k < count; ++k) {
    acc |= static_cast<uint32_t>(t.values[static_cast<size_t>(index(k))]) << filled;
    filled += bits;
    while (filled >= 8) {
      out.push_back(static_cast<char>(acc & 0xFF));
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) out.push_back(static_cast<char>(acc & 0xFF));
}

// Reads `count` values into t.values at `positions` (all when null).
void get_values(Reader& r, Tensor& t, const std::vector<int64_t>* positions, int64_t count) {
  const size_t s = value_size(t.dtype);
  auto index = [&](int64_t k) { return positions ? (*positions)[static_cast<size_t>(k)] : k; };
  if (t.dtype != DType::code) {
    const uint8_t* src = r.take(static_cast<size_t>(count) * s, "values");
    for (int64_t k = 0; k < count; ++k)
      std::memcpy(t.values.data() + index(k) * s, src + k * static_cast<int64_t>(s), s);
    if (t.dtype == DType::f32)
      for (int64_t k = 0; k < count; ++k) {
        float v;
        std::memcpy(&v, t.values.data() + index(k) * 4, 4);
        if (!std::isfinite(v)) fail(r.where(), ": value ", k, " is not finite");
      }
    return;
  }
  const int bits = t.quant.bits;
  const uint8_t* src = r.take(static_cast<size_t>(packed_bytes(t.dtype, bits, count)), "codes");
  uint64_t bit = 0;
  for (int64_t k = 0; k < count; ++k, bit += static_cast<uint64_t>(bits)) {
    uint32_t v = 0;
    for (int b = 0; b < bits; ++b) v |= ((src[(bit + b) / 8] >> ((bit + b) % 8)) & 1u) << b;
    t.values[static_cast<size_t>(index(k))] = static_cast<uint8_t>(v);
  }
  const uint64_t used = bit % 8;
  if (count > 0 && used != 0 && (src[bit / 8] >> used) != 0)
    fail(r.where(), ": unused bits of the last code byte are not 0");
}

std::vector<int64_t> present_positions(const Tensor& t) {
  std::vector<int64_t> pos;
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i)
    if (t.present.empty() || t.present[static_cast<size_t>(i)]) pos.push_back(i);
  return pos;
}

std::string encode_dense(const Tensor& t) {
  std::string out;
  put_values(out, t, nullptr);
  return out;
}

std::string encode_bitmask(const Tensor& t, const std::vector<int64_t>& pos) {
  const int64_t n = t.numel();
  std::string out(static_cast<size_t>((n + 7) / 8), '\0');
  for (int64_t i : pos) out[static_cast<size_t>(i / 8)] |= static_cast<char>(1u << (i % 8));
  put_values(out, t, &pos);
  return out;
}

// R = dims[0], C = numel / R; empty when the tensor has no rows.
std::string encode_csr(const Tensor& t, const std::vector<int64_t>& pos) {
  if (t.dims.empty() || t.dims[0] < 1 || pos.size() > std::numeric_limits<uint32_t>::max())
    return {};
  const int64_t rows = t.dims[0], cols = t.numel() / rows;
  std::string out;
  append_le<uint32_t>(out, static_cast<uint32_t>(pos.size()));
  std::vector<uint32_t> count(static_cast<size_t>(rows), 0);
  for (int64_t i : pos) ++count[static_cast<size_t>(i / cols)];
  for (uint32_t c : count) put_varint(out, c);
  int64_t row = -1, last = -1;
  for (int64_t i : pos) {
    if (i / cols != row) {
      row = i / cols;
      last = -1;
    }
    int64_t gap = i % cols - last;
    while (gap > 255) {
      out.push_back('\0');  // a filler: advance 255 columns, no entry
      gap -= 255;
    }
    out.push_back(static_cast<char>(static_cast<uint8_t>(gap)));
    last = i % cols;
  }
  put_values(out, t, &pos);
  return out;
}

void check_tensor_for_writing(const Tensor& t, size_t index) {
  if (t.name.empty() || t.name.size() > kMaxNameBytes || !is_clean_utf8(t.name))
    fail("tensor ", index, ": a name is 1 to ", kMaxNameBytes,
         " bytes of UTF-8 without control characters");
  const std::string where = "tensor " + t.name;
  if (t.dims.size() > static_cast<size_t>(kMaxDims)) fail(where, ": more than ", kMaxDims, " dims");
  for (int64_t d : t.dims)
    if (d < 0 || d > std::numeric_limits<uint32_t>::max()) fail(where, ": dim ", d, " out of range");
  if (t.numel() > kMaxNumel) fail(where, ": more than 2^34 elements");
  if (static_cast<int64_t>(t.values.size()) != t.numel() * static_cast<int64_t>(value_size(t.dtype)))
    fail(where, ": ", t.values.size(), " value bytes for ", t.numel(), " ", dtype_name(t.dtype),
         " values");
  if (!t.present.empty() && static_cast<int64_t>(t.present.size()) != t.numel())
    fail(where, ": the presence mask has ", t.present.size(), " entries for ", t.numel(), " values");
  const Quantization& q = t.quant;
  if (!dtype_fits(t.dtype, q.kind))
    fail(where, ": dtype ", dtype_name(t.dtype), " does not go with its quantization");
  if (q.kind == QuantKind::affine && !(q.scale > 0 && std::isfinite(q.scale)))
    fail(where, ": the scale must be positive and finite");
  if (q.kind == QuantKind::affine && !zero_point_fits(t.dtype, q.zero_point))
    fail(where, ": zero point ", q.zero_point, " outside the ", dtype_name(t.dtype), " range");
  if (q.kind == QuantKind::channel) {
    if (q.axis >= t.dims.size()) fail(where, ": channel axis ", int{q.axis}, " >= ndim");
    if (static_cast<int64_t>(q.scales.size()) != t.dims[q.axis])
      fail(where, ": ", q.scales.size(), " channel scales for ", t.dims[q.axis], " channels");
    for (float sc : q.scales)
      if (!(sc > 0 && std::isfinite(sc))) fail(where, ": channel scales must be positive and finite");
    if (t.dtype == DType::s8)
      for (uint8_t v : t.values)
        if (static_cast<int8_t>(v) == -128) fail(where, ": symmetric s8 values lie in [-127, 127]");
  }
  if (t.dtype == DType::f32)
    for (size_t i = 0; i < t.values.size(); i += 4) {
      float v;
      std::memcpy(&v, t.values.data() + i, 4);
      const bool absent = !t.present.empty() && !t.present[i / 4];
      if (!absent && !std::isfinite(v)) fail(where, ": value ", i / 4, " is not finite");
    }
  if (q.kind == QuantKind::codebook) {
    if (q.bits < 1 || q.bits > 8) fail(where, ": codebook bits must be 1 to 8");
    if (q.centroids.size() != (size_t{1} << q.bits))
      fail(where, ": ", q.centroids.size(), " centroids for ", int{q.bits}, " bits");
    for (float c : q.centroids)
      if (!std::isfinite(c)) fail(where, ": centroids must be finite");
    for (uint8_t c : t.values)
      if (c >> q.bits) fail(where, ": code ", int{c}, " exceeds ", int{q.bits}, " bits");
  }
}

void put_quantization(std::string& out, const Quantization& q) {
  append_le<uint8_t>(out, static_cast<uint8_t>(q.kind));
  switch (q.kind) {
    case QuantKind::none: break;
    case QuantKind::affine:
      append_le<float>(out, q.scale);
      append_le<int32_t>(out, q.zero_point);
      break;
    case QuantKind::channel:
      append_le<uint8_t>(out, q.axis);
      for (float s : q.scales) append_le<float>(out, s);
      break;
    case QuantKind::codebook:
      append_le<uint8_t>(out, q.bits);
      for (float c : q.centroids) append_le<float>(out, c);
      break;
  }
}

// The largest encoded size a tensor of these dims can have in `e`: no
// allocation for decoding exceeds what the dims imply.
int64_t max_encoded_bytes(Encoding e, const Tensor& t) {
  const int64_t n = t.numel(), values = packed_bytes(t.dtype, t.quant.bits, n);
  switch (e) {
    case Encoding::dense: return values;
    case Encoding::bitmask: return (n + 7) / 8 + values;
    case Encoding::csr: {
      const int64_t rows = t.dims.empty() ? 0 : t.dims[0];
      const int64_t cols = rows > 0 ? n / rows : 0;
      return 4 + 5 * rows + n + rows * (cols / 255 + 1) + values;
    }
  }
  return 0;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::s8: return "s8";
    case DType::u8: return "u8";
    case DType::code: return "code";
  }
  return "?";
}

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::dense: return "dense";
    case Encoding::bitmask: return "bitmask";
    case Encoding::csr: return "csr";
  }
  return "?";
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    if (d != 0 && n > kMaxNumel / d) return kMaxNumel + 1;  // saturates: over the limit
    n *= d;
  }
  return n;
}

int64_t Tensor::present_count() const {
  if (present.empty()) return numel();
  int64_t c = 0;
  for (uint8_t p : present) c += p != 0;
  return c;
}

std::string encode(File& file, const WriteOptions& options) {
  if (file.tensors.empty() || static_cast<int64_t>(file.tensors.size()) > kMaxTensors)
    fail(".pare: a file holds 1 to ", kMaxTensors, " tensors, not ", file.tensors.size());
  check_json(file.spec_json, ".pare: SPEC");
  if (!file.meta_json.empty()) check_json(file.meta_json, ".pare: META");
  std::set<std::string> names;
  std::string table, data;
  append_le<uint32_t>(table, static_cast<uint32_t>(file.tensors.size()));
  for (size_t index = 0; index < file.tensors.size(); ++index) {
    Tensor& t = file.tensors[index];
    check_tensor_for_writing(t, index);
    if (!names.insert(t.name).second) fail("tensor ", t.name, ": the name appears twice");
    const std::vector<int64_t> pos = present_positions(t);
    // Every encoding this tensor allows, the smallest kept (ties: the simpler,
    // which is tried first).
    std::optional<std::string> best;
    Encoding chosen = Encoding::dense;
    auto consider = [&](Encoding e, auto make) {
      if (options.force_encoding && *options.force_encoding != e) return;
      std::string bytes = make();
      if (best && bytes.size() >= best->size()) return;
      best = std::move(bytes);
      chosen = e;
    };
    const bool all_present = static_cast<int64_t>(pos.size()) == t.numel();
    if (all_present) consider(Encoding::dense, [&] { return encode_dense(t); });
    consider(Encoding::bitmask, [&] { return encode_bitmask(t, pos); });
    if (!t.dims.empty() && t.dims[0] >= 1) consider(Encoding::csr, [&] { return encode_csr(t, pos); });
    if (!best)
      fail("tensor ", t.name, ": cannot be stored as ", encoding_name(*options.force_encoding),
           *options.force_encoding == Encoding::csr ? " (it has no rows)"
                                                    : " (it has absent positions)");
    t.encoding = chosen;
    t.encoded_bytes = static_cast<int64_t>(best->size());
    t.zstd = false;
    std::string stored = *best;
    if (options.allow_zstd && !best->empty()) {
      std::string frame(ZSTD_compressBound(best->size()), '\0');
      const size_t z = ZSTD_compress(frame.data(), frame.size(), best->data(), best->size(),
                                     options.zstd_level);
      if (!ZSTD_isError(z) && z < best->size()) {
        frame.resize(z);
        stored = std::move(frame);
        t.zstd = true;
      }
    }
    t.stored_bytes = static_cast<int64_t>(stored.size());
    pad_to(data, kAlign);
    const uint64_t offset = data.size();
    data += stored;

    append_le<uint16_t>(table, static_cast<uint16_t>(t.name.size()));
    table += t.name;
    append_le<uint8_t>(table, static_cast<uint8_t>(t.dtype));
    append_le<uint8_t>(table, static_cast<uint8_t>(t.dims.size()));
    for (int64_t d : t.dims) append_le<uint64_t>(table, static_cast<uint64_t>(d));
    append_le<uint8_t>(table, static_cast<uint8_t>(chosen));
    append_le<uint8_t>(table, t.zstd ? 1 : 0);
    put_quantization(table, t.quant);
    append_le<uint64_t>(table, offset);
    append_le<uint64_t>(table, stored.size());
    append_le<uint64_t>(table, best->size());
    append_le<uint32_t>(table, crc32_of(stored.data(), stored.size()));
  }

  struct Section {
    uint32_t kind;
    const std::string* payload;
  };
  std::vector<Section> sections{{kSpec, &file.spec_json}, {kTable, &table}, {kData, &data}};
  if (!file.meta_json.empty()) sections.push_back({kMeta, &file.meta_json});
  const size_t dir_end = kHeaderBytes + kDirEntryBytes * sections.size();
  std::vector<uint64_t> offsets;
  uint64_t at = (dir_end + kAlign - 1) / kAlign * kAlign;
  for (const Section& s : sections) {
    offsets.push_back(at);
    at = (at + s.payload->size() + kAlign - 1) / kAlign * kAlign;
  }
  const uint64_t file_length = offsets.back() + sections.back().payload->size();

  std::string out;
  out.append(reinterpret_cast<const char*>(kMagic), 8);
  append_le<uint16_t>(out, kMajor);
  append_le<uint16_t>(out, kMinor);
  append_le<uint32_t>(out, 0);
  append_le<uint32_t>(out, static_cast<uint32_t>(sections.size()));
  append_le<uint32_t>(out, 0);  // directory_crc, filled below
  append_le<uint64_t>(out, file_length);
  for (size_t i = 0; i < sections.size(); ++i) {
    append_le<uint32_t>(out, sections[i].kind);
    append_le<uint32_t>(out, 0);
    append_le<uint64_t>(out, offsets[i]);
    append_le<uint64_t>(out, sections[i].payload->size());
    append_le<uint32_t>(out, crc32_of(sections[i].payload->data(), sections[i].payload->size()));
    append_le<uint32_t>(out, 0);
  }
  std::string crc_input = out.substr(0, 20) + out.substr(kHeaderBytes);
  const uint32_t dir_crc = crc32_of(crc_input.data(), crc_input.size());
  std::memcpy(out.data() + 20, &dir_crc, 4);
  for (size_t i = 0; i < sections.size(); ++i) {
    out.resize(offsets[i], '\0');
    out += *sections[i].payload;
  }
  PARE_CHECK(out.size() == file_length, "pare file length");
  return out;
}

namespace {

struct SectionRef {
  uint32_t kind;
  uint64_t offset, length;
};


Quantization get_quantization(Reader& r, const Tensor& t) {
  Quantization q;
  const uint8_t kind = r.get<uint8_t>("quantization");
  if (kind > 3) fail(r.where(), ": unknown quantization ", int{kind});
  q.kind = static_cast<QuantKind>(kind);
  switch (q.kind) {
    case QuantKind::none: break;
    case QuantKind::affine:
      q.scale = r.get<float>("scale");
      q.zero_point = r.get<int32_t>("zero point");
      if (!(q.scale > 0 && std::isfinite(q.scale))) fail(r.where(), ": scale not positive and finite");
      if (!zero_point_fits(t.dtype, q.zero_point))
        fail(r.where(), ": zero point ", q.zero_point, " outside the ", dtype_name(t.dtype), " range");
      break;
    case QuantKind::channel: {
      q.axis = r.get<uint8_t>("channel axis");
      if (q.axis >= t.dims.size()) fail(r.where(), ": channel axis ", int{q.axis}, " >= ndim");
      const int64_t n = t.dims[q.axis];
      if (static_cast<uint64_t>(n) > r.left() / 4)
        fail(r.where(), ": truncated: ", n, " channel scales do not fit");
      q.scales.resize(static_cast<size_t>(n));
      for (float& s : q.scales) {
        s = r.get<float>("channel scale");
        if (!(s > 0 && std::isfinite(s))) fail(r.where(), ": channel scale not positive and finite");
      }
      break;
    }
    case QuantKind::codebook: {
      q.bits = r.get<uint8_t>("codebook bits");
      if (q.bits < 1 || q.bits > 8) fail(r.where(), ": codebook bits ", int{q.bits}, " not in 1..8");
      q.centroids.resize(size_t{1} << q.bits);
      for (float& c : q.centroids) {
        c = r.get<float>("centroid");
        if (!std::isfinite(c)) fail(r.where(), ": centroid not finite");
      }
      break;
    }
  }
  if (!dtype_fits(t.dtype, q.kind))
    fail(r.where(), ": dtype ", dtype_name(t.dtype), " does not go with quantization ", int{kind});
  return q;
}

// Decodes one tensor's encoded bytes into t.values / t.present.
void decode_tensor(const uint8_t* bytes, size_t n, Tensor& t, const std::string& where) {
  Reader r(bytes, n, where);
  const int64_t numel = t.numel();
  const size_t s = value_size(t.dtype);
  t.values.assign(static_cast<size_t>(numel) * s, 0);
  switch (t.encoding) {
    case Encoding::dense:
      get_values(r, t, nullptr, numel);
      break;
    case Encoding::bitmask: {
      const uint8_t* mask = r.take(static_cast<size_t>((numel + 7) / 8), "presence mask");
      std::vector<int64_t> pos;
      for (int64_t i = 0; i < numel; ++i)
        if ((mask[i / 8] >> (i % 8)) & 1) pos.push_back(i);
      if (numel % 8 && (mask[numel / 8] >> (numel % 8)) != 0)
        fail(where, ": unused bits of the presence mask are not 0");
      t.present.assign(static_cast<size_t>(numel), 0);
      for (int64_t i : pos) t.present[static_cast<size_t>(i)] = 1;
      get_values(r, t, &pos, static_cast<int64_t>(pos.size()));
      break;
    }
    case Encoding::csr: {
      if (t.dims.empty() || t.dims[0] < 1) fail(where, ": csr needs at least one row");
      const int64_t rows = t.dims[0], cols = numel / rows;
      const uint32_t nnz = r.get<uint32_t>("nnz");
      if (nnz > static_cast<uint64_t>(numel)) fail(where, ": nnz ", nnz, " exceeds ", numel, " elements");
      std::vector<uint32_t> count(static_cast<size_t>(rows));
      uint64_t total = 0;
      for (auto& c : count) {
        c = r.varint("row count");
        if (c > static_cast<uint64_t>(cols)) fail(where, ": a row count ", c, " exceeds ", cols, " columns");
        total += c;
      }
      if (total != nnz) fail(where, ": row counts add up to ", total, ", nnz is ", nnz);
      std::vector<int64_t> pos;
      pos.reserve(nnz);
      for (int64_t row = 0; row < rows; ++row) {
        int64_t col = -1;
        for (uint32_t k = 0; k < count[static_cast<size_t>(row)];) {
          const uint8_t step = r.get<uint8_t>("column step");
          col += step == 0 ? 255 : step;
          if (col >= cols) fail(where, ": row ", row, ": column ", col, " >= ", cols);
          if (step == 0) continue;  // a filler
          pos.push_back(row * cols + col);
          ++k;
        }
      }
      t.present.assign(static_cast<size_t>(numel), 0);
      for (int64_t i : pos) t.present[static_cast<size_t>(i)] = 1;
      get_values(r, t, &pos, static_cast<int64_t>(pos.size()));
      break;
    }
  }
  if (r.left() != 0) fail(where, ": ", r.left(), " bytes left over after the values");
  if (!t.present.empty() && t.present_count() == numel) t.present.clear();
  if (t.quant.kind == QuantKind::channel && t.dtype == DType::s8)
    for (uint8_t v : t.values)
      if (static_cast<int8_t>(v) == -128) fail(where, ": symmetric s8 values lie in [-127, 127]");
  if (t.dtype == DType::code)
    for (size_t i = 0; i < t.values.size(); ++i)
      if (t.values[i] >> t.quant.bits) fail(where, ": code exceeds ", int{t.quant.bits}, " bits");
}

}  // namespace

File decode(std::string_view bytes, const std::string& source, const DecodeOptions& options) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  Reader header(p, size, source + ": header");
  if (size < kHeaderBytes) fail(source, ": header: ", size, " bytes, a .pare file has at least 32");
  if (std::memcmp(p, kMagic, 8) != 0) fail(source, ": header: not a .pare file (bad magic)");
  header.take(8, "magic");
  const uint16_t major = header.get<uint16_t>("major version");
  header.get<uint16_t>("minor version");
  if (major != kMajor) fail(source, ": header: version ", major, ".x, this reader reads 1.x");
  if (header.get<uint32_t>("flags") != 0) fail(source, ": header: unknown flags");
  const uint32_t count = header.get<uint32_t>("section count");
  const uint32_t dir_crc = header.get<uint32_t>("directory crc");
  const uint64_t file_length = header.get<uint64_t>("file length");
  if (count < kMinSections || count > kMaxSections)
    fail(source, ": header: ", count, " sections, a .pare file has 3 to 64");
  const size_t dir_end = kHeaderBytes + kDirEntryBytes * count;
  if (dir_end > size) fail(source, ": directory: truncated (", size, " bytes, the directory ends at ", dir_end, ")");
  if (file_length != size)
    fail(source, ": header: the file is ", size, " bytes, its header says ", file_length,
         size < file_length ? " (truncated)" : " (trailing bytes)");
  {
    std::string crc_input(bytes.substr(0, 20));
    crc_input.append(bytes.substr(kHeaderBytes, dir_end - kHeaderBytes));
    const uint32_t got = crc32_of(crc_input.data(), crc_input.size());
    if (got != dir_crc) fail(source, ": directory: CRC-32 mismatch (the header or directory is damaged)");
  }
  Reader dir(p + kHeaderBytes, dir_end - kHeaderBytes, source + ": directory");
  std::vector<SectionRef> refs;
  std::set<uint32_t> kinds_seen;
  std::vector<std::pair<uint64_t, uint64_t>> spans{{0, dir_end}};
  const SectionRef* spec = nullptr;
  for (uint32_t i = 0; i < count; ++i) {
    SectionRef s{dir.get<uint32_t>("kind"), 0, 0};
    const uint32_t flags = dir.get<uint32_t>("flags");
    s.offset = dir.get<uint64_t>("offset");
    s.length = dir.get<uint64_t>("length");
    const uint32_t crc = dir.get<uint32_t>("crc");
    const uint32_t reserved = dir.get<uint32_t>("reserved");
    const std::string where = source + ": " + kind_name(s.kind);
    const bool known = s.kind == kSpec || s.kind == kTable || s.kind == kData || s.kind == kMeta;
    const char first = static_cast<char>(s.kind & 0xFF);
    if (!known && first >= 'A' && first <= 'Z') fail(where, ": unknown critical section");
    if (flags != 0 || reserved != 0) fail(where, ": reserved fields are not 0");
    if (s.offset % kAlign) fail(where, ": offset ", s.offset, " is not a multiple of 64");
    if (s.offset > size || s.length > size - s.offset)
      fail(where, ": [", s.offset, ", +", s.length, ") lies outside the ", size, "-byte file");
    for (auto [a, b] : spans)
      if (s.offset < b && a < s.offset + s.length) fail(where, ": overlaps another section or the directory");
    spans.emplace_back(s.offset, s.offset + s.length);
    if (!kinds_seen.insert(s.kind).second) fail(where, ": appears twice");
    if (crc32_of(p + s.offset, s.length) != crc) fail(where, ": CRC-32 mismatch (the section is damaged)");
    if (known) refs.push_back(s);
  }
  auto find = [&](uint32_t kind) -> const SectionRef* {
    for (const SectionRef& s : refs)
      if (s.kind == kind) return &s;
    return nullptr;
  };
  spec = find(kSpec);
  const SectionRef* table = find(kTable);
  const SectionRef* data = find(kData);
  const SectionRef* meta = find(kMeta);
  if (!spec || !table || !data)
    fail(source, ": directory: missing a required section (SPEC, TTAB and DATA)");

  File file;
  file.spec_json.assign(bytes.substr(spec->offset, spec->length));
  check_json(file.spec_json, source + ": SPEC");
  if (meta) {
    file.meta_json.assign(bytes.substr(meta->offset, meta->length));
    check_json(file.meta_json, source + ": META");
  }

  Reader r(p + table->offset, table->length, source + ": TTAB");
  const uint32_t tensors = r.get<uint32_t>("tensor count");
  if (tensors < 1 || tensors > kMaxTensors) fail(source, ": TTAB: ", tensors, " tensors, a file holds 1 to 65536");
  std::set<std::string> names;
  const uint8_t* data_base = p + data->offset;
  for (uint32_t i = 0; i < tensors; ++i) {
    Tensor t;
    const std::string at = source + ": TTAB: tensor " + std::to_string(i);
    Reader& e = r;
    const uint16_t name_length = e.get<uint16_t>("name length");
    if (name_length < 1 || name_length > kMaxNameBytes) fail(at, ": name length ", name_length, " not in 1..256");
    const uint8_t* name = e.take(name_length, "name");
    t.name.assign(reinterpret_cast<const char*>(name), name_length);
    if (!is_clean_utf8(t.name)) fail(at, ": the name is not UTF-8 without control characters");
    const std::string where = at + " (" + t.name + ")";
    e.set_where(where);
    if (!names.insert(t.name).second) fail(where, ": the name appears twice");
    const uint8_t dtype = e.get<uint8_t>("dtype");
    if (dtype > 3) fail(where, ": unknown dtype ", int{dtype});
    t.dtype = static_cast<DType>(dtype);
    const uint8_t ndim = e.get<uint8_t>("ndim");
    if (ndim > kMaxDims) fail(where, ": ", int{ndim}, " dims, at most 6");
    for (uint8_t d = 0; d < ndim; ++d) {
      const uint64_t dim = e.get<uint64_t>("dim");
      if (dim > std::numeric_limits<uint32_t>::max()) fail(where, ": dim ", dim, " exceeds 2^32 - 1");
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    if (t.numel() > kMaxNumel) fail(where, ": dims product exceeds 2^34");
    const uint8_t encoding = e.get<uint8_t>("encoding");
    if (encoding > 2) fail(where, ": unknown encoding ", int{encoding});
    t.encoding = static_cast<Encoding>(encoding);
    const uint8_t compression = e.get<uint8_t>("compression");
    if (compression > 1) fail(where, ": unknown compression ", int{compression});
    t.zstd = compression == 1;
    t.quant = get_quantization(e, t);
    const uint64_t offset = e.get<uint64_t>("data offset");
    const uint64_t stored = e.get<uint64_t>("stored length");
    const uint64_t encoded = e.get<uint64_t>("encoded length");
    const uint32_t crc = e.get<uint32_t>("data crc");
    if (offset % kAlign) fail(where, ": data offset ", offset, " is not a multiple of 64");
    if (offset > data->length || stored > data->length - offset)
      fail(where, ": data [", offset, ", +", stored, ") lies outside DATA (", data->length, " bytes)");
    const int64_t bound = max_encoded_bytes(t.encoding, t);
    if (encoded > static_cast<uint64_t>(bound))
      fail(where, ": encoded length ", encoded, " exceeds the ", bound, " bytes a ",
           encoding_name(t.encoding), " tensor of this shape can take");
    if (!t.zstd && stored != encoded) fail(where, ": stored and encoded lengths differ without compression");
    // The least an encoding of these dims takes: a short encoding is refused
    // here, before decoding allocates for numel values.
    const int64_t numel = t.numel();
    const uint64_t least =
        t.encoding == Encoding::dense     ? static_cast<uint64_t>(packed_bytes(t.dtype, t.quant.bits, numel))
        : t.encoding == Encoding::bitmask ? static_cast<uint64_t>((numel + 7) / 8)
                                          : 4 + static_cast<uint64_t>(t.dims.empty() ? 0 : t.dims[0]);
    if (t.encoding == Encoding::dense ? encoded != least : encoded < least)
      fail(where, ": encoded length ", encoded, t.encoding == Encoding::dense ? " is not " : " is under ",
           "the ", least, " bytes a ", encoding_name(t.encoding), " tensor of this shape takes");
    // zstd expands at most about 32,768-fold (an RLE block: 4 bytes for 128 KiB).
    if (t.zstd && encoded > stored * 32768 + 131072)
      fail(where, ": encoded length ", encoded, " is more than ", stored, " zstd bytes can hold");
    const uint64_t decoded_bytes = static_cast<uint64_t>(t.numel()) *
                                   (value_size(t.dtype) + (t.encoding == Encoding::dense ? 0 : 1));
    if (options.max_tensor_bytes <= 0)
      check_read_size(decoded_bytes, where, "decoding");
    else if (decoded_bytes > static_cast<uint64_t>(options.max_tensor_bytes))
      fail(where, ": decoding takes ", decoded_bytes, " bytes, over the limit of ",
           options.max_tensor_bytes);
    const uint8_t* src = data_base + offset;
    const std::string data_where = source + ": DATA: tensor " + t.name;
    if (crc32_of(src, stored) != crc) fail(data_where, ": CRC-32 mismatch (the tensor is damaged)");
    std::vector<uint8_t> plain;
    const uint8_t* enc = src;
    if (t.zstd) {
      const unsigned long long content = ZSTD_getFrameContentSize(src, stored);
      if (content == ZSTD_CONTENTSIZE_UNKNOWN || content == ZSTD_CONTENTSIZE_ERROR || content != encoded)
        fail(data_where, ": the zstd frame does not state a content size of ", encoded, " bytes");
      plain.resize(encoded);
      const size_t got = ZSTD_decompress(plain.data(), plain.size(), src, stored);
      if (ZSTD_isError(got) || got != encoded) fail(data_where, ": the zstd frame does not decode");
      enc = plain.data();
    }
    t.encoded_bytes = static_cast<int64_t>(encoded);
    t.stored_bytes = static_cast<int64_t>(stored);
    try {
      decode_tensor(enc, encoded, t, data_where);
    } catch (const std::bad_alloc&) {
      fail(data_where, ": out of memory decoding ", t.numel(), " values");
    }
    file.tensors.push_back(std::move(t));
    e.set_where(source + ": TTAB");
  }
  if (r.left() != 0) fail(source, ": TTAB: ", r.left(), " bytes left over after ", tensors, " tensors");
  return file;
}

void write_file(const std::string& path, File& file, const WriteOptions& options) {
  write_file_atomic(path, encode(file, options));
}

File read_file(const std::string& path, const DecodeOptions& options) {
  return decode(pare::read_file(path), path, options);
}

}  // namespace pare::format
