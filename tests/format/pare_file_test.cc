// The .pare file (docs/format.md): round trips of every dtype, quantization,
// shape, density and encoding; the writer's rejections; and a reader that
// meets truncated, corrupted and handcrafted hostile files with one clear
// error naming the section, never a crash, a wrong model or a huge allocation.
#include "pare/format/pare_file.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <gtest/gtest.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PARE_TEST_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define PARE_TEST_UNDER_ASAN 1
#endif
#if PARE_TEST_UNDER_ASAN
#include <sanitizer/allocator_interface.h>
#endif

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/read_limit.h"
#include "testing/errors.h"
#include "testing/temp_dir.h"
#include "testing/bits.h"

namespace pare::format {
namespace {

using pare::testing::error_message;

const std::string kSpecJson = R"({"name":"t","input":[4],"layers":[{"type":"linear","out":2}]})";
const std::string kMetaJson = R"({"created_by":"pare test","accuracy":{"test":0.5,"samples":10}})";

// ---- little-endian helpers -----------------------------------------------------

template <typename T>
T get(std::string_view s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}
template <typename T>
void set(std::string& s, size_t at, T v) {
  std::memcpy(s.data() + at, &v, sizeof(T));
}
template <typename T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
uint32_t crc_of(std::string_view s) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}
uint64_t align64(uint64_t x) { return (x + 63) / 64 * 64; }

// ---- the container, rebuilt by the test (docs/format.md, "Layout") ----------------

struct Section {
  std::string kind;  // four bytes
  std::string payload;
};

std::vector<Section> sections_of(const std::string& f) {
  std::vector<Section> out;
  const uint32_t n = get<uint32_t>(f, 16);
  for (uint32_t i = 0; i < n; ++i) {
    const size_t d = 32 + 32 * i;
    out.push_back({f.substr(d, 4), f.substr(get<uint64_t>(f, d + 8), get<uint64_t>(f, d + 16))});
  }
  return out;
}

// Recomputes directory_crc (bytes 0..19, then the directory).
void fix_dir_crc(std::string& f) {
  const uint64_t n = get<uint32_t>(f, 16);
  std::string in = f.substr(0, 20) + f.substr(32, std::min<uint64_t>(32 * n, f.size() - 32));
  set<uint32_t>(f, 20, crc_of(in));
}

// A valid container holding `secs` in this order, as the writer lays it out.
std::string assemble(const std::vector<Section>& secs) {
  std::string f;
  const uint8_t magic[8] = {0x89, 'P', 'A', 'R', 'E', 0x0D, 0x0A, 0x1A};
  f.append(reinterpret_cast<const char*>(magic), 8);
  put<uint16_t>(f, 1);
  put<uint16_t>(f, 0);
  put<uint32_t>(f, 0);
  put<uint32_t>(f, static_cast<uint32_t>(secs.size()));
  put<uint32_t>(f, 0);
  put<uint64_t>(f, 0);
  uint64_t at = align64(32 + 32 * secs.size());
  std::vector<uint64_t> offsets;
  for (const Section& s : secs) {
    offsets.push_back(at);
    at = align64(at + s.payload.size());
  }
  for (size_t i = 0; i < secs.size(); ++i) {
    f += secs[i].kind;
    put<uint32_t>(f, 0);
    put<uint64_t>(f, offsets[i]);
    put<uint64_t>(f, secs[i].payload.size());
    put<uint32_t>(f, crc_of(secs[i].payload));
    put<uint32_t>(f, 0);
  }
  for (size_t i = 0; i < secs.size(); ++i) {
    f.resize(offsets[i], '\0');
    f += secs[i].payload;
  }
  set<uint64_t>(f, 24, f.size());
  fix_dir_crc(f);
  return f;
}

int section_index(const std::string& f, std::string_view kind) {
  const uint32_t n = get<uint32_t>(f, 16);
  for (uint32_t i = 0; i < n; ++i)
    if (std::string_view(f).substr(32 + 32 * i, 4) == kind) return static_cast<int>(i);
  return -1;
}
size_t dir_field(int index, size_t field_offset) { return 32 + 32 * static_cast<size_t>(index) + field_offset; }

// ---- the tensor table, rebuilt by the test (docs/format.md, "TTAB") ----------------

struct Entry {
  std::string name;
  uint8_t dtype = 0;
  std::vector<uint64_t> dims;
  uint8_t encoding = 0, compression = 0;
  std::string quant;  // the kind byte and its parameters, raw
  uint64_t offset = 0, stored = 0, encoded = 0;
  uint32_t crc = 0;
};

// A file opened up: sections in order, the table's entries and each tensor's
// stored bytes. build() lays DATA out again (offsets, stored lengths and CRCs
// recomputed unless `relayout` is false) and every CRC of the container.
struct Model {
  std::vector<Section> secs;
  std::vector<Entry> entries;
  std::vector<std::string> blobs;
  uint32_t tensor_count_override = 0;  // nonzero: written instead of the entry count
  std::string ttab_suffix;             // appended to the table

  Section* sec(std::string_view kind) {
    for (Section& s : secs)
      if (s.kind == kind) return &s;
    return nullptr;
  }
  int find(std::string_view name) const {
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].name == name) return static_cast<int>(i);
    ADD_FAILURE() << "no tensor " << name;
    return 0;
  }
  Entry& entry(std::string_view name) { return entries[static_cast<size_t>(find(name))]; }
  std::string& blob(std::string_view name) { return blobs[static_cast<size_t>(find(name))]; }

  std::string build(bool relayout = true) {
    std::string data;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (relayout) {
        data.resize(align64(data.size()), '\0');
        entries[i].offset = data.size();
        entries[i].stored = blobs[i].size();
        entries[i].crc = crc_of(blobs[i]);
        data += blobs[i];
      }
    }
    if (!relayout) data = sec("DATA")->payload;
    std::string t;
    put<uint32_t>(t, tensor_count_override ? tensor_count_override : static_cast<uint32_t>(entries.size()));
    for (const Entry& e : entries) {
      put<uint16_t>(t, static_cast<uint16_t>(e.name.size()));
      t += e.name;
      put<uint8_t>(t, e.dtype);
      put<uint8_t>(t, static_cast<uint8_t>(e.dims.size()));
      for (uint64_t d : e.dims) put<uint64_t>(t, d);
      put<uint8_t>(t, e.encoding);
      put<uint8_t>(t, e.compression);
      t += e.quant;
      put<uint64_t>(t, e.offset);
      put<uint64_t>(t, e.stored);
      put<uint64_t>(t, e.encoded);
      put<uint32_t>(t, e.crc);
    }
    t += ttab_suffix;
    sec("TTAB")->payload = t;
    sec("DATA")->payload = data;
    return assemble(secs);
  }
};

Model open_up(const std::string& f) {
  Model m;
  m.secs = sections_of(f);
  const std::string t = m.sec("TTAB")->payload, data = m.sec("DATA")->payload;
  size_t at = 0;
  const uint32_t n = get<uint32_t>(t, at);
  at += 4;
  for (uint32_t i = 0; i < n; ++i) {
    Entry e;
    const uint16_t len = get<uint16_t>(t, at);
    e.name = t.substr(at + 2, len);
    at += 2 + len;
    e.dtype = get<uint8_t>(t, at++);
    const uint8_t ndim = get<uint8_t>(t, at++);
    for (uint8_t d = 0; d < ndim; ++d, at += 8) e.dims.push_back(get<uint64_t>(t, at));
    e.encoding = get<uint8_t>(t, at++);
    e.compression = get<uint8_t>(t, at++);
    const uint8_t q = get<uint8_t>(t, at);
    size_t qlen = 1;
    if (q == 1) qlen = 9;
    if (q == 2) qlen = 2 + 4 * e.dims[get<uint8_t>(t, at + 1)];
    if (q == 3) qlen = 2 + 4 * (size_t{1} << get<uint8_t>(t, at + 1));
    e.quant = t.substr(at, qlen);
    at += qlen;
    e.offset = get<uint64_t>(t, at);
    e.stored = get<uint64_t>(t, at + 8);
    e.encoded = get<uint64_t>(t, at + 16);
    e.crc = get<uint32_t>(t, at + 24);
    at += 28;
    m.blobs.push_back(data.substr(e.offset, e.stored));
    m.entries.push_back(e);
  }
  EXPECT_EQ(at, t.size()) << "the test's TTAB parser disagrees with the writer";
  return m;
}

std::string affine_params(float scale, int32_t zero_point) {
  std::string q(1, '\x01');
  put<float>(q, scale);
  put<int32_t>(q, zero_point);
  return q;
}

// ---- tensors ---------------------------------------------------------------------

struct Kind {
  DType dtype;
  QuantKind quant;
  int bits = 0;
};

std::vector<Kind> all_kinds() {
  std::vector<Kind> k{{DType::f32, QuantKind::none},    {DType::s8, QuantKind::affine},
                      {DType::s8, QuantKind::channel},  {DType::u8, QuantKind::affine},
                      {DType::u8, QuantKind::channel}};
  for (int b = 1; b <= 8; ++b) k.push_back({DType::code, QuantKind::codebook, b});
  return k;
}

std::string describe(const Kind& k) {
  static const char* q[] = {"none", "affine", "channel", "codebook"};
  return std::string(dtype_name(k.dtype)) + "/" + q[static_cast<int>(k.quant)] +
         (k.bits ? std::to_string(k.bits) : "");
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + ")";
}

int64_t numel_of(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

size_t value_bytes(DType d) { return d == DType::f32 ? 4 : 1; }

// density < 0: every position present, `present` left empty; otherwise each
// position is present with that probability (1: an explicit all-ones mask).
// Absent positions get nonzero garbage: the writer must ignore it.
Tensor make_tensor(const std::string& name, const Kind& k, const std::vector<int64_t>& dims,
                   double density, std::mt19937& rng) {
  Tensor t;
  t.name = name;
  t.dtype = k.dtype;
  t.dims = dims;
  const int64_t n = numel_of(dims);
  t.values.resize(static_cast<size_t>(n) * value_bytes(k.dtype));
  std::uniform_real_distribution<float> real(-3.0f, 3.0f);
  const float specials[] = {-0.0f, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::min(), 1.0f};
  for (int64_t i = 0; i < n; ++i) {
    switch (k.dtype) {
      case DType::f32: {
        float v = i % 7 == 3 ? specials[(i / 7) % 6] : real(rng);
        std::memcpy(t.values.data() + 4 * i, &v, 4);
        break;
      }
      case DType::s8:
        t.values[static_cast<size_t>(i)] = static_cast<uint8_t>(
            k.quant == QuantKind::channel ? static_cast<int8_t>(static_cast<int>(rng() % 255) - 127)
                                          : static_cast<int8_t>(rng() & 0xFF));
        break;
      case DType::u8: t.values[static_cast<size_t>(i)] = static_cast<uint8_t>(rng() & 0xFF); break;
      case DType::code:
        t.values[static_cast<size_t>(i)] = static_cast<uint8_t>(rng() % (1u << k.bits));
        break;
    }
  }
  if (density >= 0) {
    std::bernoulli_distribution keep(density);
    t.present.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      t.present[static_cast<size_t>(i)] = keep(rng) ? 1 : 0;
      if (!t.present[static_cast<size_t>(i)] && k.dtype != DType::code) {
        // Garbage in an absent position (codes must still fit their bits).
        for (size_t b = 0; b < value_bytes(k.dtype); ++b)
          t.values[static_cast<size_t>(i) * value_bytes(k.dtype) + b] = 0x7A;
      }
    }
  }
  t.quant.kind = k.quant;
  switch (k.quant) {
    case QuantKind::none: break;
    case QuantKind::affine:
      t.quant.scale = 0.0375f;
      t.quant.zero_point = k.dtype == DType::s8 ? -3 : 128;
      break;
    case QuantKind::channel:
      t.quant.axis = dims.size() >= 2 ? 1 : 0;
      for (int64_t c = 0; c < dims[t.quant.axis]; ++c) t.quant.scales.push_back(0.01f * static_cast<float>(c + 1));
      break;
    case QuantKind::codebook:
      t.quant.bits = static_cast<uint8_t>(k.bits);
      for (int c = 0; c < (1 << k.bits); ++c) t.quant.centroids.push_back(-1.0f + 0.03125f * static_cast<float>(c));
      break;
  }
  return t;
}

bool is_present(const Tensor& t, int64_t i) { return t.present.empty() || t.present[static_cast<size_t>(i)] != 0; }

using testing::same_bits;

// "" when `got` holds what `want` does: names, dtypes, dims, quantization, the
// values at present positions bit for bit, presence, and 0 where absent.
std::string difference(const Tensor& want, const Tensor& got) {
  if (got.name != want.name) return "name " + got.name + " != " + want.name;
  if (got.dtype != want.dtype) return "dtype";
  if (got.dims != want.dims) return "dims " + dims_str(got.dims);
  const Quantization &a = want.quant, &b = got.quant;
  if (a.kind != b.kind) return "quantization kind";
  if (a.kind == QuantKind::affine &&
      (std::bit_cast<uint32_t>(a.scale) != std::bit_cast<uint32_t>(b.scale) || a.zero_point != b.zero_point))
    return "affine parameters";
  if (a.kind == QuantKind::channel && (a.axis != b.axis || !same_bits(a.scales, b.scales)))
    return "channel parameters";
  if (a.kind == QuantKind::codebook && (a.bits != b.bits || !same_bits(a.centroids, b.centroids)))
    return "codebook parameters";
  const int64_t n = numel_of(want.dims);
  const size_t s = value_bytes(want.dtype);
  if (got.values.size() != static_cast<size_t>(n) * s) return "values size " + std::to_string(got.values.size());
  if (!got.present.empty() && got.present.size() != static_cast<size_t>(n))
    return "present size " + std::to_string(got.present.size());
  for (int64_t i = 0; i < n; ++i) {
    if (!got.present.empty() && got.present[static_cast<size_t>(i)] > 1) return "present byte not 0/1";
    if (is_present(want, i) != is_present(got, i)) return "presence differs at " + std::to_string(i);
    const uint8_t* g = got.values.data() + i * static_cast<int64_t>(s);
    const uint8_t* w = want.values.data() + i * static_cast<int64_t>(s);
    if (is_present(want, i) ? std::memcmp(g, w, s) != 0
                            : std::any_of(g, g + s, [](uint8_t v) { return v != 0; }))
      return "value differs at " + std::to_string(i);
  }
  return "";
}

std::string difference(const File& want, const File& got) {
  if (got.spec_json != want.spec_json) return "spec JSON";
  if (got.meta_json != want.meta_json) return "meta JSON";
  if (got.tensors.size() != want.tensors.size()) return "tensor count";
  for (size_t i = 0; i < want.tensors.size(); ++i) {
    std::string d = difference(want.tensors[i], got.tensors[i]);
    if (!d.empty()) return "tensor " + want.tensors[i].name + ": " + d;
    const Tensor &w = want.tensors[i], &g = got.tensors[i];
    if (g.encoding != w.encoding || g.zstd != w.zstd || g.encoded_bytes != w.encoded_bytes ||
        g.stored_bytes != w.stored_bytes)
      return "tensor " + w.name + ": storage facts differ after decoding";
  }
  return "";
}

// ---- sizes the encodings must take (docs/format.md, "Encodings") ------------------

int64_t packed(const Tensor& t, int64_t count) {
  if (t.dtype == DType::code) return (count * t.quant.bits + 7) / 8;
  return count * static_cast<int64_t>(value_bytes(t.dtype));
}
int64_t varint_bytes(uint64_t v) {
  int64_t b = 1;
  while (v >= 0x80) v >>= 7, ++b;
  return b;
}
int64_t expected_size(const Tensor& t, Encoding e) {
  const int64_t n = numel_of(t.dims), p = t.present_count();
  switch (e) {
    case Encoding::dense: return packed(t, n);
    case Encoding::bitmask: return (n + 7) / 8 + packed(t, p);
    case Encoding::csr: {
      const int64_t rows = t.dims[0], cols = n / rows;
      int64_t bytes = 4 + packed(t, p);
      for (int64_t r = 0; r < rows; ++r) {
        int64_t count = 0, last = -1;
        for (int64_t c = 0; c < cols; ++c)
          if (is_present(t, r * cols + c)) {
            bytes += (c - last - 1) / 255 + 1;  // fillers, then the step
            last = c;
            ++count;
          }
        bytes += varint_bytes(static_cast<uint64_t>(count));
      }
      return bytes;
    }
  }
  return -1;
}

// ---- decoding expectations ----------------------------------------------------------

const char* const kSections[] = {"header", "directory", "SPEC", "TTAB", "DATA", "META"};

// The message is one line "<source>: <section>..." naming one of the sections.
bool names_section(const std::string& msg, const std::string& source) {
  if (msg.find('\n') != std::string::npos) return false;
  for (const char* s : kSections)
    if (msg.rfind(source + ": " + s, 0) == 0) return true;
  return false;
}

// decode() must fail naming `section` and every fragment.
std::string expect_rejected(const std::string& bytes, const std::string& section,
                            std::initializer_list<std::string_view> fragments = {}) {
  const std::string source = "hostile.pare";
  const std::string msg = error_message([&] { decode(bytes, source); });
  EXPECT_EQ(msg.rfind(source + ": " + section, 0), 0u) << "should name " << section << ": " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (std::string_view f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "lacks '" << f << "': " << msg;
  return msg;
}

// Decodes in a child process whose address space is capped at `limit` bytes
// (and which is killed after 10 s): a reader that trusts a length would fail
// with std::bad_alloc there instead of a pare::Error.
struct ChildOutcome {
  int code = -1;  // 0 pare::Error, 1 decoded, 2 bad_alloc, 3 another exception, -1 killed
  std::string message;
};
#if PARE_TEST_UNDER_ASAN
// AddressSanitizer reserves terabytes of address space for its shadow, so an
// RLIMIT_AS cap would stop it first; its allocator hook sees each request.
size_t g_allocation_cap = 0;
extern "C" void cap_allocation(const volatile void*, size_t size) {
  if (g_allocation_cap && size > g_allocation_cap) {
    static const char msg[] = "an allocation over the cap";
    [[maybe_unused]] ssize_t w = write(2, msg, sizeof msg - 1);
    _exit(2);
  }
}
extern "C" void ignore_free(const volatile void*) {}
#endif

ChildOutcome decode_capped(const std::string& bytes, uint64_t limit = uint64_t{1} << 30) {
  int fds[2];
  if (pipe(fds) != 0) return {-2, "pipe failed"};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
#if PARE_TEST_UNDER_ASAN
    g_allocation_cap = limit;
    __sanitizer_install_malloc_and_free_hooks(cap_allocation, ignore_free);
#else
    rlimit rl{limit, limit};
    setrlimit(RLIMIT_AS, &rl);
#endif
    alarm(10);
    int code = 3;
    std::string msg;
    try {
      decode(bytes, "hostile.pare");
      code = 1;
      msg = "decoded without an error";
    } catch (const pare::Error& e) {
      code = 0;
      msg = e.what();
    } catch (const std::bad_alloc&) {
      code = 2;
      msg = "std::bad_alloc";
    } catch (const std::exception& e) {
      msg = std::string("std::exception: ") + e.what();
    }
    [[maybe_unused]] ssize_t w = write(fds[1], msg.data(), msg.size());
    _exit(code);
  }
  close(fds[1]);
  ChildOutcome out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.message.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) out.code = WEXITSTATUS(status);
  else out.message += " (killed by signal " + std::to_string(WTERMSIG(status)) + ")";
  return out;
}

// The child must raise a pare::Error naming a section and the tensor.
void expect_rejected_capped(const std::string& bytes, const std::string& tensor) {
  const ChildOutcome r = decode_capped(bytes);
  EXPECT_EQ(r.code, 0) << "expected a pare::Error within 1 GiB of address space, got: " << r.message;
  if (r.code == 0) {
    EXPECT_TRUE(names_section(r.message, "hostile.pare")) << r.message;
    EXPECT_NE(r.message.find(tensor), std::string::npos) << r.message;
  }
}

// ---- 1. round trips ---------------------------------------------------------------

TEST(PareFileRoundTrip, EveryDtypeShapeDensityAndEncoding) {
  const std::vector<std::vector<int64_t>> shapes{{},        {37},      {5, 13},  {4, 3, 3, 3}, {0},
                                                 {3, 0},    {0, 4},    {1, 1},   {3, 600},     {1, 1000},
                                                 {2, 1, 1, 1, 1, 3}};
  const double densities[] = {-1.0, 1.0, 0.5, 0.05, 0.0};
  const std::optional<Encoding> modes[] = {std::nullopt, Encoding::dense, Encoding::bitmask, Encoding::csr};
  std::mt19937 rng(12345);
  int cases = 0;
  for (const Kind& kind : all_kinds())
    for (const auto& dims : shapes)
      for (double density : densities) {
        if (kind.quant == QuantKind::channel && dims.empty()) continue;  // no axis
        const std::string what = describe(kind) + " " + dims_str(dims) + " density " + std::to_string(density);
        SCOPED_TRACE(what);
        const Tensor base = make_tensor("layer.weight", kind, dims, density, rng);
        const int64_t n = numel_of(dims);
        const bool all_present = base.present_count() == n;
        const bool has_rows = !dims.empty() && dims[0] >= 1;
        for (bool zstd : {false, true}) {
          int64_t forced_size[3] = {-1, -1, -1};
          Encoding auto_choice = Encoding::dense;
          int64_t auto_size = -1;
          for (const auto& mode : modes) {
            File f;
            f.spec_json = kSpecJson;
            f.meta_json = (cases % 2) ? kMetaJson : "";
            f.tensors = {base, make_tensor("other", {DType::u8, QuantKind::affine}, {3}, -1, rng)};
            WriteOptions o;
            o.allow_zstd = zstd;
            o.force_encoding = mode;
            const bool allowed = !mode || (*mode == Encoding::dense && all_present) ||
                                 *mode == Encoding::bitmask || (*mode == Encoding::csr && has_rows);
            if (!allowed) {
              const std::string msg = error_message([&] { encode(f, o); });
              EXPECT_NE(msg.find("layer.weight"), std::string::npos) << msg;
              EXPECT_NE(msg.find(encoding_name(*mode)), std::string::npos) << msg;
              if (*mode == Encoding::dense) {
                EXPECT_NE(msg.find("absent"), std::string::npos) << msg;
              }
              continue;
            }
            ++cases;
            std::string bytes;
            try {
              bytes = encode(f, o);
            } catch (const pare::Error& e) {
              ADD_FAILURE() << "encode failed (" << (mode ? encoding_name(*mode) : "auto") << "): " << e.what();
              continue;
            }
            const Tensor& t = f.tensors[0];
            if (mode) {
              EXPECT_EQ(t.encoding, *mode);
            }
            EXPECT_EQ(t.encoded_bytes, expected_size(t, t.encoding)) << encoding_name(t.encoding);
            EXPECT_LE(t.stored_bytes, t.encoded_bytes);
            EXPECT_EQ(t.zstd, t.stored_bytes < t.encoded_bytes);
            if (!zstd) {
              EXPECT_FALSE(t.zstd);
            }
            if (mode) forced_size[static_cast<int>(*mode)] = t.encoded_bytes;
            else {
              auto_choice = t.encoding;
              auto_size = t.encoded_bytes;
            }
            File back;
            try {
              back = decode(bytes, "round.pare");
            } catch (const pare::Error& e) {
              ADD_FAILURE() << "decode failed (" << (mode ? encoding_name(*mode) : "auto") << "): " << e.what();
              continue;
            }
            File want = f;
            want.tensors[0] = base;
            want.tensors[0].encoding = t.encoding;
            want.tensors[0].zstd = t.zstd;
            want.tensors[0].encoded_bytes = t.encoded_bytes;
            want.tensors[0].stored_bytes = t.stored_bytes;
            EXPECT_EQ(difference(want, back), "") << (mode ? encoding_name(*mode) : "auto");
          }
          // The automatic choice is the smallest allowed encoding, ties to the simplest.
          int64_t best = std::numeric_limits<int64_t>::max();
          Encoding best_e = Encoding::dense;
          for (int e = 0; e < 3; ++e)
            if (forced_size[e] >= 0 && forced_size[e] < best) best = forced_size[e], best_e = static_cast<Encoding>(e);
          EXPECT_EQ(auto_size, best);
          EXPECT_EQ(auto_choice, best_e) << "auto chose " << encoding_name(auto_choice);
        }
      }
  EXPECT_GT(cases, 3000);
}

// With zstd allowed, an uncompressed tensor is one whose frame would not be smaller.
TEST(PareFileRoundTrip, ZstdOnlyWhenSmaller) {
  std::mt19937 rng(7);
  File f;
  f.spec_json = kSpecJson;
  f.tensors.push_back(make_tensor("random", {DType::f32, QuantKind::none}, {64}, -1, rng));
  Tensor zeros = make_tensor("zeros", {DType::f32, QuantKind::none}, {16, 64}, -1, rng);
  std::fill(zeros.values.begin(), zeros.values.end(), 0);
  f.tensors.push_back(zeros);
  f.tensors.push_back(make_tensor("tiny", {DType::u8, QuantKind::affine}, {2}, -1, rng));
  const std::string bytes = encode(f);
  EXPECT_FALSE(f.tensors[0].zstd);
  EXPECT_TRUE(f.tensors[1].zstd);
  EXPECT_LT(f.tensors[1].stored_bytes, f.tensors[1].encoded_bytes / 10);
  EXPECT_FALSE(f.tensors[2].zstd);
  for (const Tensor& t : f.tensors) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.zstd, t.stored_bytes < t.encoded_bytes);
    if (!t.zstd) {
      // Compress its encoded bytes (dense: the values) ourselves.
      std::string frame(ZSTD_compressBound(t.values.size()), '\0');
      const size_t z = ZSTD_compress(frame.data(), frame.size(), t.values.data(), t.values.size(), 19);
      ASSERT_FALSE(ZSTD_isError(z));
      EXPECT_GE(static_cast<int64_t>(z), t.encoded_bytes);
    }
  }
  File back = decode(bytes, "z.pare");
  EXPECT_EQ(difference(f, back), "");
}

// The layout facts of docs/format.md, read off an encoded file.
TEST(PareFileLayout, HeaderDirectoryAndAlignment) {
  std::mt19937 rng(3);
  for (bool with_meta : {false, true}) {
    SCOPED_TRACE(with_meta ? "with META" : "without META");
    File f;
    f.spec_json = kSpecJson;
    if (with_meta) f.meta_json = kMetaJson;
    f.tensors.push_back(make_tensor("a", {DType::f32, QuantKind::none}, {7, 3}, 0.5, rng));
    f.tensors.push_back(make_tensor("b", {DType::code, QuantKind::codebook, 3}, {5}, -1, rng));
    f.tensors.push_back(make_tensor("c", {DType::s8, QuantKind::channel}, {4, 300}, 0.02, rng));
    const std::string b = encode(f);
    const uint8_t magic[8] = {0x89, 0x50, 0x41, 0x52, 0x45, 0x0D, 0x0A, 0x1A};
    ASSERT_GE(b.size(), 32u);
    EXPECT_EQ(std::memcmp(b.data(), magic, 8), 0);
    EXPECT_EQ(get<uint16_t>(b, 8), 1);
    EXPECT_EQ(get<uint16_t>(b, 10), 0);
    EXPECT_EQ(get<uint32_t>(b, 12), 0u);
    const uint32_t count = get<uint32_t>(b, 16);
    EXPECT_EQ(count, with_meta ? 4u : 3u);
    EXPECT_EQ(get<uint64_t>(b, 24), b.size());
    std::string crc_in = b.substr(0, 20) + b.substr(32, 32 * count);
    EXPECT_EQ(get<uint32_t>(b, 20), crc_of(crc_in));
    const uint64_t dir_end = 32 + 32 * count;
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    std::vector<std::string> kinds;
    for (uint32_t i = 0; i < count; ++i) {
      const size_t d = 32 + 32 * i;
      kinds.push_back(b.substr(d, 4));
      EXPECT_EQ(get<uint32_t>(b, d + 4), 0u);
      const uint64_t off = get<uint64_t>(b, d + 8), len = get<uint64_t>(b, d + 16);
      EXPECT_EQ(off % 64, 0u) << kinds.back();
      EXPECT_GE(off, dir_end);
      ASSERT_LE(off + len, b.size());
      EXPECT_EQ(get<uint32_t>(b, d + 24), crc_of(std::string_view(b).substr(off, len))) << kinds.back();
      EXPECT_EQ(get<uint32_t>(b, d + 28), 0u);
      spans.emplace_back(off, off + len);
    }
    std::vector<std::string> want{"SPEC", "TTAB", "DATA"};
    if (with_meta) want.push_back("META");
    std::vector<std::string> sorted_kinds = kinds;
    std::sort(sorted_kinds.begin(), sorted_kinds.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(sorted_kinds, want);
    // No padding beyond the alignment to 64, and all of it zero.
    std::sort(spans.begin(), spans.end());
    uint64_t at = dir_end;
    for (auto [s, e] : spans) {
      EXPECT_EQ(s, align64(at));
      for (uint64_t i = at; i < s; ++i) EXPECT_EQ(b[i], '\0') << "padding byte " << i;
      at = e;
    }
    EXPECT_EQ(at, b.size());
    EXPECT_EQ(sections_of(b)[static_cast<size_t>(section_index(b, "SPEC"))].payload, kSpecJson);
    // Every tensor's data offset is a multiple of 64 within DATA.
    Model m = open_up(b);
    ASSERT_EQ(m.entries.size(), 3u);
    for (const Entry& e : m.entries) {
      EXPECT_EQ(e.offset % 64, 0u) << e.name;
      EXPECT_EQ(e.crc, crc_of(m.blobs[static_cast<size_t>(m.find(e.name))])) << e.name;
    }
    EXPECT_EQ(m.build(), b) << "the test's rebuild of the file differs from the writer's";
  }
}

// The reader follows the spec, not just the writer: hand-made bitmask and csr
// bytes (LSB-first codes and mask bits, a csr filler) decode as documented.
TEST(PareFileRoundTrip, HandmadeEncodingsDecodeAsDocumented) {
  std::mt19937 rng(5);
  File f;
  f.spec_json = kSpecJson;
  f.tensors.push_back(make_tensor("codes", {DType::code, QuantKind::codebook, 3}, {10}, -1, rng));
  f.tensors.push_back(make_tensor("rows", {DType::u8, QuantKind::affine}, {2, 600}, -1, rng));
  Model m = open_up(encode(f));
  // codes: bitmask, positions 1, 4, 9 present with codes 5, 2, 7:
  // mask 0b00010010, 0b00000010; codes 101 010 111 LSB first = 0b11010101, 0b1.
  m.entry("codes").encoding = 1;
  m.entry("codes").compression = 0;
  m.blob("codes") = std::string("\x12\x02\xD5\x01", 4);
  m.entry("codes").encoded = 4;
  // rows: csr, row 0 entries at columns 0, 300 (a filler: 300 = 0 + 255 + 45)
  // and 599; row 1 at column 7.
  m.entry("rows").encoding = 2;
  m.entry("rows").compression = 0;
  // 300 = 255 (a filler) + 45; 599 - 300 = 299 = 255 (a filler) + 44.
  std::string csr;
  put<uint32_t>(csr, 4);
  csr += std::string("\x03\x01", 2);                      // row counts
  csr += std::string("\x01\x00\x2D\x00\x2C\x08", 6);  // steps
  csr += std::string("\x0A\x14\x1E\x28", 4);            // values 10, 20, 30, 40
  m.blob("rows") = csr;
  m.entry("rows").encoded = csr.size();
  File back = decode(m.build(), "hand.pare");
  const Tensor& codes = back.tensors[0];
  ASSERT_EQ(codes.present.size(), 10u);
  for (int i = 0; i < 10; ++i) {
    const bool p = i == 1 || i == 4 || i == 9;
    EXPECT_EQ(codes.present[i], p ? 1 : 0) << i;
    EXPECT_EQ(codes.values[i], i == 1 ? 5 : i == 4 ? 2 : i == 9 ? 7 : 0) << i;
  }
  const Tensor& rows = back.tensors[1];
  ASSERT_EQ(rows.present.size(), 1200u);
  EXPECT_EQ(rows.present_count(), 4);
  EXPECT_EQ(rows.values[0], 10);
  EXPECT_EQ(rows.values[300], 20);
  EXPECT_EQ(rows.values[599], 30);
  EXPECT_EQ(rows.values[607], 40);
  EXPECT_TRUE(rows.present[0] && rows.present[300] && rows.present[599] && rows.present[607]);
}

// ---- 2. writer rejections -------------------------------------------------------

File one_tensor(Tensor t) {
  File f;
  f.spec_json = kSpecJson;
  f.tensors.push_back(std::move(t));
  return f;
}

void expect_write_error(File f, std::initializer_list<std::string_view> fragments) {
  pare::testing::expect_error([&] { encode(f); }, fragments);
}

TEST(PareFileWriter, RejectsBadTensors) {
  std::mt19937 rng(11);
  const Tensor good_f32 = make_tensor("w", {DType::f32, QuantKind::none}, {3, 4}, -1, rng);
  const Tensor good_s8 = make_tensor("q", {DType::s8, QuantKind::affine}, {3, 4}, -1, rng);
  const Tensor good_ch = make_tensor("c", {DType::s8, QuantKind::channel}, {3, 4}, -1, rng);
  const Tensor good_code = make_tensor("k", {DType::code, QuantKind::codebook, 2}, {3, 4}, -1, rng);
  for (const Tensor& t : {good_f32, good_s8, good_ch, good_code}) {
    File f = one_tensor(t);
    EXPECT_NO_THROW(encode(f)) << t.name;
  }
  {
    File f;
    f.spec_json = kSpecJson;
    expect_write_error(f, {"tensors"});
  }
  {
    File f = one_tensor(good_f32);
    f.tensors.push_back(good_f32);
    expect_write_error(f, {"w", "twice"});
  }
  auto with = [&](Tensor t, auto change) {
    change(t);
    return one_tensor(t);
  };
  expect_write_error(with(good_f32, [](Tensor& t) { t.name = ""; }), {"name"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.name = std::string(257, 'n'); }), {"name"});
  {
    File ok = with(good_f32, [](Tensor& t) { t.name = std::string(256, 'n'); });
    EXPECT_NO_THROW(encode(ok));
  }
  expect_write_error(with(good_f32, [](Tensor& t) { t.name = std::string("a\0b", 3); }), {"control characters"});
  expect_write_error(with(good_f32, [](Tensor& t) {
                       t.dims = {1, 1, 1, 1, 1, 1, 12};
                     }),
                     {"w", "dims"});
  {
    File ok = with(good_f32, [](Tensor& t) { t.dims = {1, 1, 1, 1, 3, 4}; });
    EXPECT_NO_THROW(encode(ok));
  }
  expect_write_error(with(good_f32, [](Tensor& t) { t.values.pop_back(); }), {"w", "value bytes"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.values.resize(t.values.size() / 4); }), {"w"});
  expect_write_error(with(good_s8, [](Tensor& t) { t.values.push_back(0); }), {"q"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.present.assign(11, 1); }), {"w", "presence"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.present.assign(13, 1); }), {"w", "presence"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.dims = {int64_t{1} << 33, 1}; }), {"w"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.dims = {1 << 20, 1 << 20}; }), {"w"});
  expect_write_error(with(good_f32, [](Tensor& t) { t.dims = {-3, -4}; }), {"w"});
  // dtype and quantization must agree.
  expect_write_error(with(good_f32, [](Tensor& t) { t.quant.kind = QuantKind::affine; }), {"w", "quantization"});
  expect_write_error(with(good_f32, [&](Tensor& t) { t.quant = good_code.quant; }), {"w"});
  expect_write_error(with(good_s8, [](Tensor& t) { t.quant = {}; }), {"q"});
  expect_write_error(with(good_s8, [&](Tensor& t) { t.quant = good_code.quant; }), {"q"});
  expect_write_error(with(good_s8, [](Tensor& t) { t.dtype = DType::f32; }), {"q"});
  expect_write_error(with(good_code, [](Tensor& t) { t.dtype = DType::u8; }), {"k"});
  expect_write_error(with(good_code, [&](Tensor& t) { t.quant = good_s8.quant; }), {"k"});
  expect_write_error(with(good_code, [&](Tensor& t) { t.quant = good_ch.quant; }), {"k"});
  expect_write_error(with(good_code, [](Tensor& t) { t.quant = {}; }), {"k"});
  // Channel scales: one per slice of the axis; axis < ndim.
  expect_write_error(with(good_ch, [](Tensor& t) { t.quant.scales.pop_back(); }), {"c", "scales"});
  expect_write_error(with(good_ch, [](Tensor& t) { t.quant.scales.push_back(1.0f); }), {"c", "scales"});
  expect_write_error(with(good_ch, [](Tensor& t) { t.quant.axis = 2; }), {"c", "axis"});
  {
    File ok = with(good_ch, [](Tensor& t) { t.quant.axis = 1; t.quant.scales.assign(4, 0.5f); });
    EXPECT_NO_THROW(encode(ok));
  }
  // Codebook: 2^bits centroids, bits 1..8, codes within bits.
  expect_write_error(with(good_code, [](Tensor& t) { t.quant.centroids.pop_back(); }), {"k", "centroids"});
  expect_write_error(with(good_code, [](Tensor& t) { t.quant.centroids.push_back(0); }), {"k", "centroids"});
  expect_write_error(with(good_code, [](Tensor& t) { t.quant.bits = 0; t.quant.centroids.assign(1, 0.0f); }), {"k", "bits"});
  expect_write_error(with(good_code, [](Tensor& t) { t.quant.bits = 9; t.quant.centroids.assign(512, 0.0f); }), {"k", "bits"});
  expect_write_error(with(good_code, [](Tensor& t) { t.values[5] = 4; }), {"k", "bits"});
  expect_write_error(with(good_code, [](Tensor& t) { t.values[5] = 255; }), {"k", "bits"});
  // Scales: positive and finite.
  for (float bad : {0.0f, -0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    expect_write_error(with(good_s8, [&](Tensor& t) { t.quant.scale = bad; }), {"q", "scale"});
    expect_write_error(with(good_ch, [&](Tensor& t) { t.quant.scales[1] = bad; }), {"c", "scale"});
  }
}

// A file the writer produces must be one its reader accepts: whatever the
// reader rejects, the writer must reject first (docs/format.md).
TEST(PareFileWriter, NeverWritesAFileItsReaderRejects) {
  std::mt19937 rng(13);
  const Tensor f32 = make_tensor("w", {DType::f32, QuantKind::none}, {3, 4}, -1, rng);
  const Tensor s8 = make_tensor("q", {DType::s8, QuantKind::affine}, {3, 4}, -1, rng);
  const Tensor u8 = make_tensor("u", {DType::u8, QuantKind::affine}, {3, 4}, -1, rng);
  const Tensor code = make_tensor("k", {DType::code, QuantKind::codebook, 2}, {3, 4}, -1, rng);
  struct Case {
    std::string what;
    File file;
  };
  std::vector<Case> cases;
  auto add = [&](std::string what, Tensor t, auto change) {
    change(t);
    cases.push_back({std::move(what), one_tensor(t)});
  };
  add("s8 zero point 128", s8, [](Tensor& t) { t.quant.zero_point = 128; });
  add("s8 zero point -129", s8, [](Tensor& t) { t.quant.zero_point = -129; });
  add("u8 zero point -1", u8, [](Tensor& t) { t.quant.zero_point = -1; });
  add("u8 zero point 256", u8, [](Tensor& t) { t.quant.zero_point = 256; });
  add("NaN f32 value", f32, [](Tensor& t) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(t.values.data() + 8, &nan, 4);
  });
  add("infinite f32 value", f32, [](Tensor& t) {
    const float inf = -std::numeric_limits<float>::infinity();
    std::memcpy(t.values.data(), &inf, 4);
  });
  add("NaN centroid", code, [](Tensor& t) { t.quant.centroids[1] = std::numeric_limits<float>::quiet_NaN(); });
  {
    File f = one_tensor(f32);
    f.spec_json = "{\"name\": ";
    cases.push_back({"SPEC not JSON", f});
    f.spec_json = "";
    cases.push_back({"SPEC empty", f});
    f.spec_json = kSpecJson;
    f.meta_json = "[1, 2]";
    cases.push_back({"META not an object", f});
  }
  for (Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string bytes;
    try {
      bytes = encode(c.file);
    } catch (const pare::Error&) {
      continue;  // rejected by the writer: fine
    }
    try {
      decode(bytes, "written.pare");
    } catch (const pare::Error& e) {
      ADD_FAILURE() << "the writer accepted it, its reader rejects the file: " << e.what();
    }
  }
}

// ---- 3. corruption ---------------------------------------------------------------

// A small complete file: every encoding, zstd on exactly one tensor, META.
File small_complete_file() {
  std::mt19937 rng(99);
  File f;
  f.spec_json = kSpecJson;
  f.meta_json = kMetaJson;
  f.tensors.push_back(make_tensor("conv.weight", {DType::s8, QuantKind::channel}, {4, 2, 3, 3}, -1, rng));
  f.tensors.push_back(make_tensor("fc.weight", {DType::f32, QuantKind::none}, {6, 16}, 0.5, rng));
  f.tensors.push_back(make_tensor("fc2.weight", {DType::u8, QuantKind::affine}, {3, 300}, 0.02, rng));
  f.tensors.push_back(make_tensor("codes", {DType::code, QuantKind::codebook, 3}, {21}, 0.6, rng));
  Tensor bias = make_tensor("bias", {DType::f32, QuantKind::none}, {128}, -1, rng);
  for (int i = 0; i < 128; ++i) {
    const float v = 0.25f;
    std::memcpy(bias.values.data() + 4 * i, &v, 4);
  }
  f.tensors.push_back(bias);
  f.tensors.push_back(make_tensor("scale", {DType::f32, QuantKind::none}, {}, -1, rng));
  return f;
}

class PareFileCorruption : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = small_complete_file();
    bytes_ = encode(original_);
  }
  File original_;
  std::string bytes_;
};

TEST_F(PareFileCorruption, TheSampleIsSmallAndVaried) {
  EXPECT_LT(bytes_.size(), 4096u);
  int zstd = 0, by_encoding[3] = {0, 0, 0};
  for (const Tensor& t : original_.tensors) {
    zstd += t.zstd;
    ++by_encoding[static_cast<int>(t.encoding)];
  }
  EXPECT_EQ(zstd, 1);
  EXPECT_GE(by_encoding[0], 1);
  EXPECT_GE(by_encoding[1], 1);
  EXPECT_GE(by_encoding[2], 1);
  EXPECT_EQ(difference(original_, decode(bytes_, "sample.pare")), "");
}

TEST_F(PareFileCorruption, EveryTruncationIsAClearError) {
  const std::string source = "cut.pare";
  for (size_t len = 0; len < bytes_.size(); ++len) {
    try {
      decode(std::string_view(bytes_).substr(0, len), source);
      ADD_FAILURE() << "truncated to " << len << " bytes, decoded without an error";
    } catch (const pare::Error& e) {
      EXPECT_TRUE(names_section(e.what(), source)) << "truncated to " << len << ": " << e.what();
    }
  }
}

TEST_F(PareFileCorruption, EverySingleByteChangeIsCaughtOrHarmless) {
  // Bytes covered by a checksum: the header, the directory and the payloads.
  std::vector<bool> covered(bytes_.size(), false);
  const uint32_t count = get<uint32_t>(bytes_, 16);
  for (size_t i = 0; i < 32 + 32 * count; ++i) covered[i] = true;
  for (uint32_t s = 0; s < count; ++s) {
    const uint64_t off = get<uint64_t>(bytes_, 32 + 32 * s + 8), len = get<uint64_t>(bytes_, 32 + 32 * s + 16);
    for (uint64_t i = off; i < off + len; ++i) covered[i] = true;
  }
  const std::string source = "flip.pare";
  int padding = 0;
  for (size_t pos = 0; pos < bytes_.size(); ++pos) {
    padding += !covered[pos];
    for (int change = 0; change < 2; ++change) {
      std::string b = bytes_;
      b[pos] = change == 0 ? static_cast<char>(b[pos] ^ 0xFF) : static_cast<char>(b[pos] + 1);
      try {
        const File got = decode(b, source);
        EXPECT_FALSE(covered[pos]) << "byte " << pos << (change ? " +1" : " ^0xFF")
                                   << " is covered by a checksum, yet the file decoded";
        EXPECT_EQ(difference(original_, got), "") << "byte " << pos << " changed the content";
      } catch (const pare::Error& e) {
        EXPECT_TRUE(names_section(e.what(), source)) << "byte " << pos << ": " << e.what();
      }
    }
  }
  EXPECT_GT(padding, 0);
}

// --- (c) handcrafted attacks, CRCs recomputed so the checks behind them are reached.

TEST_F(PareFileCorruption, TheTestsRebuildIsFaithful) {
  Model m = open_up(bytes_);
  EXPECT_EQ(m.build(), bytes_);
}

TEST_F(PareFileCorruption, HugeDims) {
  {
    Model m = open_up(bytes_);
    m.entry("fc.weight").dims = {0xFFFFFFFFull, 0xFFFFFFFFull};
    expect_rejected(m.build(), "TTAB", {"fc.weight", "dims"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("fc.weight").dims = {0x100000000ull, 1};
    expect_rejected(m.build(), "TTAB", {"fc.weight", "dim"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("fc.weight").dims = {1ull << 17, 1ull << 17, 2};  // 2^35
    expect_rejected(m.build(), "TTAB", {"fc.weight", "2^34"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("fc.weight").dims = {1, 2, 3, 4, 5, 6, 7};
    expect_rejected(m.build(), "TTAB", {"fc.weight"});
  }
}

// A zstd frame of a few bytes whose header states `claimed` bytes of content.
std::string lying_zstd_frame(uint64_t claimed) {
  ZSTD_CCtx* cx = ZSTD_createCCtx();
  std::string frame(64, '\0');
  const std::string zero(16, '\0');
  size_t z = ZSTD_compress2(cx, frame.data(), frame.size(), zero.data(), zero.size());
  ZSTD_freeCCtx(cx);
  EXPECT_FALSE(ZSTD_isError(z));
  frame.resize(z);
  // Rewrite the frame header's content size as 8 bytes stating `claimed`.
  const uint8_t fhd = static_cast<uint8_t>(frame[4]);
  const int fcs_flag = fhd >> 6, single = (fhd >> 5) & 1;
  EXPECT_EQ(fhd & 3, 0);
  const size_t fcs_at = 5 + (single ? 0 : 1);
  const size_t fcs_len = fcs_flag == 0 ? (single ? 1 : 0) : (fcs_flag == 1 ? 2 : fcs_flag == 2 ? 4 : 8);
  std::string patched = frame.substr(0, 4);
  patched += static_cast<char>((3 << 6) | (fhd & 0x3F));
  if (!single) patched += frame[5];
  put<uint64_t>(patched, claimed);
  patched += frame.substr(fcs_at + fcs_len);
  EXPECT_EQ(ZSTD_getFrameContentSize(patched.data(), patched.size()), claimed);
  return patched;
}

// Huge dims with a tiny stored tensor: rejected before anything of the dims'
// size is allocated (the child process has 1 GiB of address space). Over the
// reader's per-tensor limit (4 GiB), and under it: the encoding's minimum size
// (dense: exactly numel values; bitmask: the mask; csr: nnz and a row count a
// row) is known before any allocation, and a zstd frame of n bytes cannot
// produce more than about 32768 n.
TEST_F(PareFileCorruption, HugeDimsTinyDataAllocateNothingBig) {
  struct Attack {
    std::string what;
    std::vector<uint64_t> dims;
    uint8_t encoding, compression;
    std::string blob;
    uint64_t encoded;
  };
  std::string csr_empty;
  put<uint32_t>(csr_empty, 0);
  csr_empty += std::string(5, '\0');
  const uint64_t big = 0xFFFFFFFFull, half = uint64_t{1} << 30;
  const std::vector<Attack> attacks{
      // numel (2^32 - 1) * 4 < 2^34: over the 4 GiB limit.
      {"csr over the limit", {big, 4}, 2, 0, csr_empty, csr_empty.size()},
      {"dense over the limit", {big, 4}, 0, 0, "", 0},
      {"bitmask over the limit", {big, 4}, 1, 0, std::string(2, '\0'), 2},
      {"zstd over the limit", {big, 4}, 0, 1, lying_zstd_frame(big * 4), big * 4},
      // Under the limit: 2^31 u8 values (2 GiB), 2^30 rows of one column.
      {"dense, 2^31 values, no bytes", {2 * half}, 0, 0, "", 0},
      {"bitmask, 2^30 values, a 2-byte mask", {half}, 1, 0, std::string(2, '\0'), 2},
      {"csr, 2^30 rows, 9 bytes", {half, 1}, 2, 0, csr_empty, csr_empty.size()},
      {"zstd, 2^31 values from a tiny frame", {2 * half}, 0, 1, lying_zstd_frame(2 * half), 2 * half},
  };
  for (const Attack& a : attacks) {
    SCOPED_TRACE(a.what);
    Model m = open_up(bytes_);
    Entry& e = m.entry("fc2.weight");  // u8 affine
    e.dims = a.dims;
    e.encoding = a.encoding;
    e.compression = a.compression;
    m.blob("fc2.weight") = a.blob;
    e.encoded = a.encoded;
    expect_rejected_capped(m.build(), "fc2.weight");
  }
}

// The per-tensor limit is the caller's to set.
TEST_F(PareFileCorruption, DecodeLimitIsAnOption) {
  DecodeOptions small;
  small.max_tensor_bytes = 100;
  const std::string msg = error_message([&] { decode(bytes_, "limit.pare", small); });
  EXPECT_TRUE(names_section(msg, "limit.pare")) << msg;
  EXPECT_NE(msg.find("fc.weight"), std::string::npos) << msg;  // 96 f32 and a presence byte each: the first over 100 bytes
  small.max_tensor_bytes = 4096;
  EXPECT_NO_THROW(decode(bytes_, "limit.pare", small));
}

// Without an explicit limit, decode() keeps to the process's reader limit
// (base/read_limit.h, PARE_READ_LIMIT) and says how to raise it.
TEST_F(PareFileCorruption, DecodeKeepsToTheReaderLimit) {
  set_read_limit_bytes(100);
  const std::string msg = error_message([&] { decode(bytes_, "limit.pare"); });
  set_read_limit_bytes(0);
  EXPECT_TRUE(names_section(msg, "limit.pare")) << msg;
  EXPECT_NE(msg.find("fc.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("over the reader limit of 100 bytes (PARE_READ_LIMIT="), std::string::npos) << msg;
  EXPECT_NO_THROW(decode(bytes_, "limit.pare"));
}

TEST_F(PareFileCorruption, LengthsBeyondTheEncoding) {
  {
    Model m = open_up(bytes_);
    Entry& e = m.entry("conv.weight");  // dense s8, 72 bytes
    ASSERT_EQ(e.encoding, 0);
    ASSERT_EQ(e.compression, 0);
    m.blob("conv.weight") += "x";
    e.encoded = m.blob("conv.weight").size();
    expect_rejected(m.build(), "TTAB", {"conv.weight", "encoded length"});
  }
  {
    Model m = open_up(bytes_);
    Entry& e = m.entry("conv.weight");
    m.blob("conv.weight").pop_back();
    e.encoded = m.blob("conv.weight").size();
    // One byte short of what a dense tensor of its dims takes: refused from the
    // table entry, before anything is allocated for the values.
    expect_rejected(m.build(), "TTAB", {"conv.weight", "encoded length"});
  }
  {
    Model m = open_up(bytes_);
    Entry& e = m.entry("fc2.weight");  // csr
    ASSERT_EQ(e.encoding, 2);
    e.encoded = 4 + 5 * 3 + 900 + 3 * (300 / 255 + 1) + 900 + 1;  // beyond any csr of (3, 300)
    m.blob("fc2.weight").resize(e.encoded, '\x01');
    expect_rejected(m.build(), "TTAB", {"fc2.weight", "encoded length"});
  }
  {
    Model m = open_up(bytes_);
    Entry& e = m.entry("fc.weight");
    e.encoded += 1;  // stored != encoded without compression
    expect_rejected(m.build(), "TTAB", {"fc.weight"});
  }
  {
    Model m = open_up(bytes_);
    m.blob("fc.weight") += std::string(4, '\0');  // values left over
    m.entry("fc.weight").encoded += 4;
    expect_rejected(m.build(), "DATA", {"fc.weight"});
  }
}

TEST_F(PareFileCorruption, DataOutsideDataOrMisaligned) {
  {
    Model m = open_up(bytes_);
    m.build();
    m.entry("codes").offset += 1;
    expect_rejected(m.build(false), "TTAB", {"codes", "multiple of 64"});
  }
  {
    Model m = open_up(bytes_);
    m.build();
    m.entry("codes").offset = align64(m.sec("DATA")->payload.size()) + 64;
    expect_rejected(m.build(false), "TTAB", {"codes", "DATA"});
  }
  {
    Model m = open_up(bytes_);
    m.build();
    m.entry("codes").stored = ~uint64_t{0} - 8;
    m.entry("codes").encoded = m.entry("codes").stored;
    expect_rejected(m.build(false), "TTAB", {"codes"});
  }
  {
    Model m = open_up(bytes_);
    m.build();
    m.entry("codes").crc ^= 1;
    expect_rejected(m.build(false), "DATA", {"codes", "CRC"});
  }
}

TEST_F(PareFileCorruption, CsrStructure) {
  auto csr_model = [&] {
    Model m = open_up(bytes_);
    EXPECT_EQ(m.entry("fc2.weight").encoding, 2);
    EXPECT_EQ(m.entry("fc2.weight").compression, 0);
    return m;
  };
  const Model clean = csr_model();
  const std::string blob = clean.blobs[static_cast<size_t>(clean.find("fc2.weight"))];
  const uint32_t nnz = get<uint32_t>(blob, 0);
  ASSERT_GT(nnz, 3u);
  // nnz larger than numel.
  {
    Model m = csr_model();
    set<uint32_t>(m.blob("fc2.weight"), 0, 901);
    expect_rejected(m.build(), "DATA", {"fc2.weight", "nnz"});
  }
  {
    Model m = csr_model();
    set<uint32_t>(m.blob("fc2.weight"), 0, 0xFFFFFFFFu);
    expect_rejected(m.build(), "DATA", {"fc2.weight"});
  }
  // Row counts not adding up (the varints are single bytes for these rows).
  {
    Model m = csr_model();
    std::string& b = m.blob("fc2.weight");
    ASSERT_LT(static_cast<uint8_t>(b[4]), 0x80);
    b[4] = static_cast<char>(b[4] + 1);
    expect_rejected(m.build(), "DATA", {"fc2.weight", "row counts"});
  }
  {
    Model m = csr_model();
    set<uint32_t>(m.blob("fc2.weight"), 0, nnz - 1);
    expect_rejected(m.build(), "DATA", {"fc2.weight"});
  }
  // A row count of more than the columns, and a varint over 5 bytes.
  {
    Model m = csr_model();
    std::string& b = m.blob("fc2.weight");
    b.replace(4, 1, std::string("\xAD\x02", 2));  // 301
    m.entry("fc2.weight").encoded = b.size();
    expect_rejected(m.build(), "DATA", {"fc2.weight"});
  }
  {
    Model m = csr_model();
    std::string& b = m.blob("fc2.weight");
    b.replace(4, 1, std::string("\x80\x80\x80\x80\x80\x01", 6));
    m.entry("fc2.weight").encoded = b.size();
    expect_rejected(m.build(), "DATA", {"fc2.weight"});
  }
  // Column steps running past the row: every step made 255.
  {
    Model m = csr_model();
    std::string& b = m.blob("fc2.weight");
    const size_t steps_at = 4 + 3;  // three single-byte row counts
    for (size_t i = steps_at; i < b.size() - nnz; ++i) b[i] = '\xFF';
    expect_rejected(m.build(), "DATA", {"fc2.weight", "column"});
  }
  {
    Model m = csr_model();
    std::string& b = m.blob("fc2.weight");
    for (size_t i = 4 + 3; i < b.size() - nnz; ++i) b[i] = '\0';  // fillers only
    expect_rejected(m.build(), "DATA", {"fc2.weight"});
  }
  // csr on a tensor without rows.
  {
    Model m = csr_model();
    Entry& e = m.entry("scale");
    e.encoding = 2;
    expect_rejected(m.build(), "", {"scale"});
  }
}

TEST_F(PareFileCorruption, ZstdFrames) {
  Model base = open_up(bytes_);
  const Entry& bias = base.entry("bias");
  ASSERT_EQ(bias.compression, 1);
  std::string plain(static_cast<size_t>(bias.encoded), '\0');
  {
    const std::string& frame = base.blob("bias");
    ASSERT_EQ(ZSTD_decompress(plain.data(), plain.size(), frame.data(), frame.size()), plain.size());
  }
  auto compress = [](const std::string& in, bool with_size) {
    ZSTD_CCtx* cx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cx, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
    std::string out(ZSTD_compressBound(in.size()), '\0');
    const size_t z = ZSTD_compress2(cx, out.data(), out.size(), in.data(), in.size());
    ZSTD_freeCCtx(cx);
    out.resize(ZSTD_isError(z) ? 0 : z);
    return out;
  };
  {
    Model m = open_up(bytes_);
    m.blob("bias") = compress(plain, false);
    ASSERT_EQ(ZSTD_getFrameContentSize(m.blob("bias").data(), m.blob("bias").size()), ZSTD_CONTENTSIZE_UNKNOWN);
    expect_rejected(m.build(), "DATA", {"bias", "content size"});
  }
  {
    Model m = open_up(bytes_);  // states one byte more than the table's encoded length
    m.blob("bias") = compress(plain + std::string(1, '\0'), true);
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    Model m = open_up(bytes_);  // states one byte less
    m.blob("bias") = compress(plain.substr(1), true);
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    // Lies: the header states encoded_length, the blocks hold one byte less.
    Model m = open_up(bytes_);
    std::string frame = compress(plain.substr(1), true);
    const uint8_t fhd = static_cast<uint8_t>(frame[4]);
    ASSERT_EQ(fhd >> 6, 1) << "expected a 2-byte content size";
    const size_t at = 5 + (((fhd >> 5) & 1) ? 0 : 1);
    set<uint16_t>(frame, at, static_cast<uint16_t>(plain.size() - 256));
    ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), plain.size());
    m.blob("bias") = frame;
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    Model m = open_up(bytes_);  // garbage after the magic
    std::string& b = m.blob("bias");
    for (size_t i = 4; i < b.size(); ++i) b[i] = static_cast<char>(0xA5 ^ i);
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    Model m = open_up(bytes_);  // not a zstd frame at all
    m.blob("bias") = std::string(12, 'z');
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    Model m = open_up(bytes_);  // the plain bytes, marked compressed
    m.blob("bias") = plain;
    expect_rejected(m.build(), "DATA", {"bias"});
  }
  {
    Model m = open_up(bytes_);  // two frames
    m.blob("bias") = compress(plain.substr(0, 256), true) + compress(plain.substr(256), true);
    expect_rejected(m.build(), "DATA", {"bias"});
  }
}

TEST_F(PareFileCorruption, SectionDirectory) {
  const int meta = section_index(bytes_, "META"), data = section_index(bytes_, "DATA"),
            ttab = section_index(bytes_, "TTAB");
  ASSERT_GE(meta, 0);
  auto patched = [&](auto change) {
    std::string b = bytes_;
    change(b);
    fix_dir_crc(b);
    return b;
  };
  // Overlaps: another section, and the directory.
  expect_rejected(patched([&](std::string& b) {
                    set<uint64_t>(b, dir_field(meta, 8), get<uint64_t>(b, dir_field(ttab, 8)));
                  }),
                  "META", {"overlap"});
  expect_rejected(patched([&](std::string& b) {
                    set<uint64_t>(b, dir_field(meta, 8), get<uint64_t>(b, dir_field(data, 8)) + 64);
                  }),
                  "META", {"overlap"});
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(meta, 8), 64); }), "META", {"overlap"});
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(meta, 8), 0); }), "META");
  // Outside the file; lengths that overflow.
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(meta, 8), align64(b.size()) + 64); }),
                  "META", {"outside"});
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(meta, 16), ~uint64_t{0}); }), "META",
                  {"outside"});
  expect_rejected(patched([&](std::string& b) {
                    set<uint64_t>(b, dir_field(meta, 8), ~uint64_t{0} - 63);
                    set<uint64_t>(b, dir_field(meta, 16), 128);
                  }),
                  "META", {"outside"});
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(data, 16), get<uint64_t>(b, dir_field(data, 16)) + 1); }),
                  "DATA");
  // Misaligned.
  expect_rejected(patched([&](std::string& b) { set<uint64_t>(b, dir_field(meta, 8), get<uint64_t>(b, dir_field(meta, 8)) + 1); }),
                  "META", {"64"});
  // A repeated kind.
  expect_rejected(patched([&](std::string& b) { b.replace(dir_field(meta, 0), 4, "DATA"); }), "DATA", {"twice"});
  expect_rejected(patched([&](std::string& b) { b.replace(dir_field(meta, 0), 4, "SPEC"); }), "SPEC", {"twice"});
  // Flags and reserved fields.
  expect_rejected(patched([&](std::string& b) { set<uint32_t>(b, dir_field(meta, 4), 1); }), "META");
  expect_rejected(patched([&](std::string& b) { set<uint32_t>(b, dir_field(meta, 28), 1); }), "META");
  // A section CRC.
  expect_rejected(patched([&](std::string& b) { set<uint32_t>(b, dir_field(ttab, 24), get<uint32_t>(b, dir_field(ttab, 24)) ^ 1); }),
                  "TTAB", {"CRC"});
  // A missing required section (its kind renamed to an ancillary one).
  expect_rejected(patched([&](std::string& b) { b.replace(dir_field(ttab, 0), 4, "ttab"); }), "directory", {"TTAB"});
  // The directory's own CRC.
  {
    std::string b = bytes_;
    set<uint32_t>(b, 20, get<uint32_t>(b, 20) ^ 0x100);
    expect_rejected(b, "directory", {"CRC"});
  }
}

TEST_F(PareFileCorruption, UnknownSections) {
  const int meta = section_index(bytes_, "META");
  {
    std::string b = bytes_;
    b.replace(dir_field(meta, 0), 4, "XTRA");
    fix_dir_crc(b);
    expect_rejected(b, "", {"XTRA", "critical"});
  }
  {
    // Ancillary: skipped; the rest reads as before.
    std::string b = bytes_;
    b.replace(dir_field(meta, 0), 4, "xtra");
    fix_dir_crc(b);
    File want = original_;
    want.meta_json.clear();
    File got;
    ASSERT_NO_THROW(got = decode(b, "anc.pare"));
    EXPECT_EQ(difference(want, got), "");
  }
  {
    // An extra ancillary section with arbitrary bytes, beside META.
    std::vector<Section> secs = sections_of(bytes_);
    secs.insert(secs.begin() + 1, Section{"note", std::string("\x00\xFFnot json", 10)});
    File got;
    ASSERT_NO_THROW(got = decode(assemble(secs), "anc.pare"));
    EXPECT_EQ(difference(original_, got), "");
  }
  {
    // An ancillary section still must lie inside the file.
    std::vector<Section> secs = sections_of(bytes_);
    secs.push_back(Section{"note", "abc"});
    std::string b = assemble(secs);
    set<uint64_t>(b, dir_field(4, 8), align64(b.size()) + 640);
    fix_dir_crc(b);
    expect_rejected(b, "note");
  }
}

TEST_F(PareFileCorruption, HeaderFields) {
  auto patched = [&](auto change) {
    std::string b = bytes_;
    change(b);
    fix_dir_crc(b);
    return b;
  };
  expect_rejected(patched([](std::string& b) { set<uint32_t>(b, 16, 2); }), "header", {"sections"});
  expect_rejected(patched([](std::string& b) { set<uint32_t>(b, 16, 65); }), "header", {"sections"});
  expect_rejected(patched([](std::string& b) { set<uint32_t>(b, 16, 0xFFFFFFFFu); }), "header");
  expect_rejected(patched([](std::string& b) { set<uint16_t>(b, 8, 2); }), "header", {"version"});
  expect_rejected(patched([](std::string& b) { set<uint16_t>(b, 8, 0); }), "header", {"version"});
  expect_rejected(patched([](std::string& b) { set<uint32_t>(b, 12, 1); }), "header", {"flags"});
  expect_rejected(patched([](std::string& b) { b[1] = 'p'; }), "header", {"magic"});
  expect_rejected(patched([](std::string& b) { set<uint64_t>(b, 24, b.size() + 64); }), "header");
  expect_rejected(patched([](std::string& b) { set<uint64_t>(b, 24, b.size() - 1); }), "header");
  // A higher minor version is read.
  {
    File got;
    ASSERT_NO_THROW(got = decode(patched([](std::string& b) { set<uint16_t>(b, 10, 7); }), "minor.pare"));
    EXPECT_EQ(difference(original_, got), "");
  }
  // Trailing bytes.
  expect_rejected(bytes_ + std::string(1, '\0'), "header", {"trailing"});
  expect_rejected(bytes_ + std::string(64, '\0'), "header", {"trailing"});
  // A text-mode transfer (CR LF → LF) is caught.
  {
    std::string b = bytes_;
    b.erase(5, 1);
    expect_rejected(b, "header");
  }
}

TEST_F(PareFileCorruption, JsonSections) {
  auto with_payload = [&](const char* kind, const std::string& payload) {
    std::vector<Section> secs = sections_of(bytes_);
    for (Section& s : secs)
      if (s.kind == kind) s.payload = payload;
    return assemble(secs);
  };
  struct Case {
    const char* kind;
    std::string payload;
    const char* fragment;
  };
  const std::vector<Case> cases{
      {"SPEC", "{\"name\": ", "JSON"},
      {"SPEC", "", ""},
      {"SPEC", "[1, 2]", "object"},
      {"SPEC", "{\"name\": \"\xFF\xFE\"}", ""},  // not UTF-8
      {"SPEC", "{} {}", ""},
      {"SPEC", std::string("{\"a\":1}\0{junk", 13), ""},
      {"SPEC", "{\"a\": \"" + std::string((1 << 20) + 1, 'x') + "\"}", "MiB"},
      {"META", "[1, 2]", "object"},
      {"META", "\"text\"", "object"},
      {"META", "{\"a\": }", "JSON"},
      {"META", "", ""},
      {"META", "{\"a\": \"\xC3\x28\"}", ""},  // not UTF-8
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + cases[i].kind + " " + cases[i].payload.substr(0, 20));
    expect_rejected(with_payload(cases[i].kind, cases[i].payload), cases[i].kind, {cases[i].fragment});
  }
}

TEST_F(PareFileCorruption, TensorTable) {
  {
    Model m = open_up(bytes_);
    m.tensor_count_override = 0;
    m.entries.clear();
    m.blobs.clear();
    expect_rejected(m.build(), "TTAB");
  }
  {
    Model m = open_up(bytes_);
    m.tensor_count_override = 65537;
    expect_rejected(m.build(), "TTAB");
  }
  {
    Model m = open_up(bytes_);
    m.tensor_count_override = static_cast<uint32_t>(m.entries.size() + 1);
    expect_rejected(m.build(), "TTAB", {"truncated"});
  }
  {
    Model m = open_up(bytes_);
    m.ttab_suffix = "x";
    expect_rejected(m.build(), "TTAB", {"left over"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("codes").name = "bias";
    expect_rejected(m.build(), "TTAB", {"bias", "twice"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("codes").name = std::string("co\0es", 5);
    expect_rejected(m.build(), "TTAB", {"control characters"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("codes").name = "";
    expect_rejected(m.build(), "TTAB", {"name"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("codes").name = std::string(257, 'a');
    expect_rejected(m.build(), "TTAB", {"name"});
  }
  {
    Model m = open_up(bytes_);
    m.entry("codes").name = "\xC3\x28";  // invalid UTF-8
    expect_rejected(m.build(), "TTAB", {"UTF-8"});
  }
  for (int field = 0; field < 4; ++field) {
    Model m = open_up(bytes_);
    Entry& e = m.entry("fc.weight");
    if (field == 0) e.dtype = 4;
    if (field == 1) e.encoding = 3;
    if (field == 2) e.compression = 2;
    if (field == 3) e.quant = std::string(1, '\x04');
    expect_rejected(m.build(), "TTAB", {"fc.weight"});
  }
}

TEST_F(PareFileCorruption, QuantizationParameters) {
  auto reject = [&](const char* name, auto change, std::initializer_list<std::string_view> fragments) {
    Model m = open_up(bytes_);
    change(m.entry(name));
    expect_rejected(m.build(), "TTAB", fragments);
  };
  // dtype and quantization mismatches.
  reject("fc.weight", [](Entry& e) { e.quant = affine_params(0.5f, 0); }, {"fc.weight"});
  reject("fc2.weight", [](Entry& e) { e.quant = std::string(1, '\0'); }, {"fc2.weight"});
  reject("fc2.weight", [](Entry& e) { e.dtype = 0; }, {"fc2.weight"});
  reject("codes", [](Entry& e) { e.dtype = 1; }, {"codes"});
  reject("fc2.weight", [](Entry& e) { e.dtype = 3; }, {"fc2.weight"});
  // Affine scale and zero point.
  for (float s : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    reject("fc2.weight", [&](Entry& e) { e.quant = affine_params(s, 0); }, {"fc2.weight", "scale"});
  reject("fc2.weight", [](Entry& e) { e.quant = affine_params(0.5f, 256); }, {"fc2.weight", "zero point"});
  reject("fc2.weight", [](Entry& e) { e.quant = affine_params(0.5f, -1); }, {"fc2.weight", "zero point"});
  // Channel: axis, scales.
  reject("conv.weight", [](Entry& e) { e.quant[1] = 4; }, {"conv.weight", "axis"});
  reject("conv.weight", [](Entry& e) { set<float>(e.quant, 2 + 4 * 1, 0.0f); }, {"conv.weight", "scale"});
  reject("conv.weight", [](Entry& e) { set<float>(e.quant, 2, -std::numeric_limits<float>::infinity()); },
         {"conv.weight", "scale"});
  // A channel axis whose dim is huge: the scales are not there.
  reject("conv.weight", [](Entry& e) { ASSERT_EQ(e.quant[1], 1); e.dims = {1, 0xFFFFFFFFull, 1, 1}; },
         {"conv.weight"});
  // Codebook: bits, centroids.
  reject("codes", [](Entry& e) { e.quant[1] = 0; }, {"codes", "bits"});
  reject("codes", [](Entry& e) { e.quant[1] = 9; }, {"codes", "bits"});
  reject("codes", [](Entry& e) { e.quant[1] = 8; }, {"codes"});  // 256 centroids are not there
  reject("codes", [](Entry& e) { set<float>(e.quant, 2 + 4 * 5, std::numeric_limits<float>::quiet_NaN()); },
         {"codes", "centroid"});
}

TEST_F(PareFileCorruption, ValuesAndBits) {
  // A non-finite f32 value (fc.weight: bitmask; its values follow the mask).
  {
    Model m = open_up(bytes_);
    ASSERT_EQ(m.entry("fc.weight").encoding, 1);
    std::string& b = m.blob("fc.weight");
    set<float>(b, b.size() - 4, std::numeric_limits<float>::quiet_NaN());
    expect_rejected(m.build(), "DATA", {"fc.weight", "finite"});
  }
  {
    Model m = open_up(bytes_);
    std::string& b = m.blob("scale");
    set<float>(b, 0, std::numeric_limits<float>::infinity());
    expect_rejected(m.build(), "DATA", {"scale", "finite"});
  }
  // Unused mask bits set (fc.weight: 96 bits, codes: 21 bits in 3 bytes).
  {
    Model m = open_up(bytes_);
    ASSERT_EQ(m.entry("codes").encoding, 1);
    std::string& b = m.blob("codes");
    b[2] = static_cast<char>(b[2] | 0x80);
    expect_rejected(m.build(), "DATA", {"codes"});
  }
  // Unused bits of the last code byte set: dense codes, 3 bits × 21 = 63 bits.
  {
    Model m = open_up(bytes_);
    Entry& e = m.entry("codes");
    e.encoding = 0;
    e.compression = 0;
    std::string codes(8, '\0');
    codes[7] = static_cast<char>(0x80);
    m.blob("codes") = codes;
    e.encoded = 8;
    expect_rejected(m.build(), "DATA", {"codes", "bits"});
  }
  {
    Model m = open_up(bytes_);  // the same with the bit clear decodes
    Entry& e = m.entry("codes");
    e.encoding = 0;
    e.compression = 0;
    m.blob("codes") = std::string(8, '\0');
    e.encoded = 8;
    EXPECT_NO_THROW(decode(m.build(), "ok.pare"));
  }
}

// Names are UTF-8 without control characters, so that every message naming a
// tensor stays one line: the writer refuses a line break, and a file whose
// table holds one (hand-made) is refused without printing it.
TEST(PareFileNames, ErrorsStayOneLine) {
  std::mt19937 rng(17);
  File f = one_tensor(make_tensor("layer\nweight", {DType::f32, QuantKind::none}, {4}, -1, rng));
  const std::string wmsg = error_message([&] { encode(f); });
  EXPECT_EQ(wmsg.find('\n'), std::string::npos) << "message: " << wmsg;
  EXPECT_NE(wmsg.find("control characters"), std::string::npos) << wmsg;
  File ok = one_tensor(make_tensor("layer_weight", {DType::f32, QuantKind::none}, {4}, -1, rng));
  std::string bytes;
  ASSERT_NO_THROW(bytes = encode(ok));
  Model m = open_up(bytes);
  m.entries[0].name = "layer\nweight";
  const std::string msg = error_message([&] { decode(m.build(), "nl.pare"); });
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "message: " << msg;
  EXPECT_NE(msg.find("nl.pare: TTAB"), std::string::npos) << msg;
}

// ---- 4. files ---------------------------------------------------------------------

class PareFileIo : public pare::testing::TempDirTest {};

TEST_F(PareFileIo, WriteAndReadBack) {
  File f = small_complete_file();
  const std::string p = path("model.pare");
  write_file(p, f);
  const File back = read_file(p);
  EXPECT_EQ(difference(f, back), "");
  EXPECT_EQ(pare::read_file(p), encode(f));
  // Overwriting keeps one file, the new one.
  File g = one_tensor(f.tensors[0]);
  write_file(p, g, WriteOptions{.allow_zstd = false, .zstd_level = 19, .force_encoding = std::nullopt});
  EXPECT_EQ(difference(g, read_file(p)), "");
  // Errors name the path.
  const std::string bad = write("bad.pare", encode(f).substr(0, 100));
  pare::testing::expect_error([&] { read_file(bad); }, {bad});
  const std::string msg = error_message([&] { read_file(path("missing.pare")); });
  EXPECT_NE(msg.find("missing.pare"), std::string::npos) << msg;
}

}  // namespace
}  // namespace pare::format
