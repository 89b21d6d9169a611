// NPY decoding with a strict parser for the header dict.
#include "pare/data/npy.h"

#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/file.h"

namespace pare::data {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

struct NpyType {
  const char* descr;  // without the byte-order character
  size_t size;        // bytes per element in the file
  DType dtype;        // what pare stores it as
};

constexpr NpyType kNpyTypes[] = {
    {"f4", 4, DType::f32}, {"f8", 8, DType::f32}, {"i4", 4, DType::i32}, {"i8", 8, DType::i32},
    {"u1", 1, DType::u8},  {"b1", 1, DType::u8},  {"i1", 1, DType::i8},
};

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Recursive-descent parser for the dict literal numpy writes. It accepts
// exactly the keys descr, fortran_order and shape, as numpy's reader does.
class HeaderParser {
 public:
  HeaderParser(std::string_view s, const std::string& name) : s_(s), name_(name) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      size_t key_at = i_;
      std::string key = string_literal("a key");
      expect(':');
      bool* seen = nullptr;
      if (key == "descr") {
        skip_ws();
        if (peek() == '[') error("structured (record) dtypes are not supported");
        h.descr = string_literal("the 'descr' string");
        seen = &seen_descr;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        seen = &seen_fortran;
      } else if (key == "shape") {
        h.shape = tuple();
        seen = &seen_shape;
      } else {
        i_ = key_at;
        error("unexpected key '" + key + "' (expected descr, fortran_order, shape)");
      }
      if (*seen) {
        i_ = key_at;
        error("key '" + key + "' appears twice");
      }
      *seen = true;
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') error("expected ',' or '}'");
    }
    ++i_;
    skip_ws();
    if (i_ != s_.size()) error("unexpected text after the closing '}'");
    if (!seen_descr) missing("descr");
    if (!seen_fortran) missing("fortran_order");
    if (!seen_shape) missing("shape");
    return h;
  }

 private:
  [[noreturn]] void error(const std::string& what) {
    fail(name_, ": bad NPY header: ", what, " at offset ", i_, " of the header dict");
  }
  [[noreturn]] void missing(const char* key) {
    fail(name_, ": bad NPY header: key '", key, "' is missing");
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string_literal(const char* what) {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') error(std::string("expected ") + what + " in quotes");
    size_t end = s_.find(q, i_ + 1);
    if (end == std::string_view::npos) error("unterminated string");
    std::string out(s_.substr(i_ + 1, end - i_ - 1));
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_ws();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    error("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    for (;;) {
      skip_ws();
      if (peek() == ')') break;
      if (dims.size() == static_cast<size_t>(Shape::kMaxDims))
        error("more than " + std::to_string(Shape::kMaxDims) +
              " dimensions (pare tensors have at most that many)");
      int64_t v = 0;
      auto [p, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), v);
      if (ec == std::errc::result_out_of_range) error("a dimension is too large");
      if (ec != std::errc() || v < 0) error("expected a non-negative integer dimension");
      i_ = static_cast<size_t>(p - s_.data());
      if (peek() == 'L') ++i_;  // Python 2 long literals
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') error("expected ',' or ')' in the shape");
    }
    ++i_;
    return dims;
  }

  std::string_view s_;
  const std::string& name_;
  size_t i_ = 0;
};

uint32_t load_le32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// The tensor's bytes, whatever its dtype (Tensor::data<T> checks T).
const void* raw_data(const Tensor& t) {
  switch (t.dtype()) {
    case DType::f32:
      return t.f32();
    case DType::i32:
      return t.data<int32_t>();
    case DType::u8:
      return t.data<uint8_t>();
    case DType::i8:
      return t.data<int8_t>();
  }
  return nullptr;
}
void* raw_data(Tensor& t) { return const_cast<void*>(raw_data(static_cast<const Tensor&>(t))); }

// f32 tensors pass through; integer ones are converted value by value.
Tensor to_f32(const Tensor& t) {
  if (t.dtype() == DType::f32) return t;
  Tensor out = Tensor::empty(t.shape());
  float* o = out.f32();
  auto convert = [&](const auto* src) {
    for (int64_t i = 0, n = t.numel(); i < n; ++i) o[i] = static_cast<float>(src[i]);
  };
  switch (t.dtype()) {
    case DType::i32:
      convert(t.data<int32_t>());
      break;
    case DType::u8:
      convert(t.data<uint8_t>());
      break;
    case DType::i8:
      convert(t.data<int8_t>());
      break;
    case DType::f32:
      break;
  }
  return out;
}

}  // namespace

Tensor parse_npy(std::string_view bytes, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  if (size < kMagicSize + 2 || std::memcmp(b, kMagic, kMagicSize) != 0)
    fail(name, ": not an NPY file (it does not start with \\x93NUMPY)");
  const int major = b[6], minor = b[7];
  size_t len_bytes;
  if (major == 1)
    len_bytes = 2;
  else if (major == 2 || major == 3)
    len_bytes = 4;
  else
    fail(name, ": NPY version ", major, ".", minor, " is not supported (1.0, 2.0, 3.0 are)");
  const size_t prefix = kMagicSize + 2 + len_bytes;
  if (size < prefix)
    fail(name, ": truncated: NPY preamble needs ", prefix, " bytes, file has ", size);
  const uint64_t header_len =
      len_bytes == 2 ? (uint64_t{b[8]} | (uint64_t{b[9]} << 8)) : uint64_t{load_le32(b + 8)};
  if (header_len > size - prefix)
    fail(name, ": truncated: NPY header length is ", header_len, " bytes, file has ", size - prefix,
         " after the preamble");
  const Header h = HeaderParser(bytes.substr(prefix, header_len), name).parse();

  if (h.fortran_order)
    fail(name,
         ": fortran_order is True; only C-order arrays are supported "
         "(save np.ascontiguousarray(a))");
  std::string_view descr = h.descr;
  const NpyType* type = nullptr;
  if (descr.size() == 3)
    for (const NpyType& t : kNpyTypes)
      if (descr.substr(1) == t.descr) type = &t;
  if (!type || std::string_view("<>|=").find(descr[0]) == std::string_view::npos)
    fail(name, ": dtype '", h.descr, "' is not supported (supported: <f4 <f8 <i4 <i8 |u1 |i1 |b1)");
  // '=' (native) is little-endian on every machine pare builds for.
  if (type->size > 1 && descr[0] != '<' && descr[0] != '=')
    fail(name, ": dtype '", h.descr,
         "' is big-endian or has no byte order; save as little-endian (a.astype('<", type->descr,
         "'))");

  // The product of the nonzero dimensions must fit int64 even when a zero
  // makes the array empty: Shape::numel() multiplies them all.
  uint64_t count = 1;
  bool overflow = false, empty = false;
  for (int64_t d : h.shape) {
    if (d == 0) empty = true;
    else overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(d), &count);
  }
  uint64_t need = 0;
  overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(type->size), &need);
  if (overflow || count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(name, ": shape ", shape_str(h.shape), " overflows 64 bits (corrupt header?)");
  if (empty) count = need = 0;
  const uint64_t have = size - prefix - header_len;
  if (have < need)
    fail(name, ": truncated: shape ", shape_str(h.shape), " '", h.descr, "' needs ", need,
         " bytes of data, file has ", have);
  if (have > need)
    fail(name, ": shape ", shape_str(h.shape), " '", h.descr, "' needs ", need,
         " bytes of data, file has ", have, " (", have - need, " unexpected trailing bytes)");

  Tensor t = Tensor::empty(Shape(std::span<const int64_t>(h.shape)), type->dtype);
  const unsigned char* src = b + prefix + header_len;
  const int64_t n = static_cast<int64_t>(count);
  if (n == 0) return t;
  const std::string_view code = type->descr;
  if (code == "f8") {
    float* out = t.f32();
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, src + 8 * i, 8);
      out[i] = static_cast<float>(v);
    }
  } else if (code == "i8") {
    int32_t* out = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, src + 8 * i, 8);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        fail(name, ": element ", i, " = ", v, " does not fit in i32");
      out[i] = static_cast<int32_t>(v);
    }
  } else if (code == "b1") {
    uint8_t* out = t.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = src[i] != 0;
  } else {
    // Same width and byte order as pare's storage: one copy.
    std::memcpy(raw_data(t), src, static_cast<size_t>(need));
  }
  return t;
}

Tensor read_npy(const std::string& path) { return parse_npy(read_file_maybe_gz(path), path); }

std::string encode_npy(const Tensor& t) {
  PARE_CHECK(t.defined(), "encode_npy: undefined tensor");
  const char* descr = nullptr;
  switch (t.dtype()) {
    case DType::f32:
      descr = "<f4";
      break;
    case DType::i32:
      descr = "<i4";
      break;
    case DType::u8:
      descr = "|u1";
      break;
    case DType::i8:
      descr = "|i1";
      break;
  }
  std::string dict = std::string("{'descr': '") + descr +
                     "', 'fortran_order': False, 'shape': " + shape_str(t.shape().vec()) + ", }";
  // numpy pads so the data starts at a multiple of 64 bytes, and ends the header with '\n'.
  const size_t prefix = kMagicSize + 2 + 2;
  size_t total = prefix + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  PARE_CHECK(dict.size() <= 0xFFFF, "NPY header too long");
  std::string out(kMagic, kMagicSize);
  out += static_cast<char>(1);
  out += static_cast<char>(0);
  out += static_cast<char>(dict.size() & 0xFF);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  out.append(static_cast<const char*>(raw_data(t)), t.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t) { write_file_atomic(path, encode_npy(t)); }

Dataset npy_dataset(const std::string& x_path, const std::string& y_path) {
  Tensor x = read_npy(x_path);
  Tensor y = read_npy(y_path);
  if (x.ndim() < 1) fail(x_path, ": inputs must have a sample dimension, got a scalar");
  if (y.ndim() < 1) fail(y_path, ": targets must have a sample dimension, got a scalar");
  const int64_t n = x.dim(0);
  if (y.dim(0) != n)
    fail(y_path, ": has ", y.dim(0), " rows, but ", x_path, " has ", n, " (shapes ",
         y.shape().str(), " and ", x.shape().str(), ")");
  Dataset d;
  d.name = std::filesystem::path(x_path).stem().string();
  d.inputs = to_f32(x);
  if (y.dtype() == DType::f32 || y.ndim() != 1) {
    d.targets = to_f32(y);
    return d;
  }
  d.targets = Tensor::empty({n}, DType::i32);
  int32_t* out = d.targets.data<int32_t>();
  int64_t max_label = -1;
  for (int64_t i = 0; i < n; ++i) {
    int32_t v = y.dtype() == DType::i32  ? y.data<int32_t>()[i]
                : y.dtype() == DType::u8 ? int32_t{y.data<uint8_t>()[i]}
                                         : int32_t{y.data<int8_t>()[i]};
    if (v < 0) fail(y_path, ": label ", v, " at index ", i, " is negative");
    out[i] = v;
    max_label = std::max<int64_t>(max_label, v);
  }
  d.num_classes = max_label + 1;
  return d;
}

}  // namespace pare::data
