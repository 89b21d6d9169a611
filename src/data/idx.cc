// IDX decoding with every length checked before anything is allocated.
#include "pare/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "pare/base/error.h"
#include "pare/base/file.h"

namespace pare::data {

namespace {

struct IdxType {
  uint8_t code;
  const char* name;
  size_t size;  // bytes per element in the file
  DType dtype;  // what pare stores it as
};

constexpr IdxType kIdxTypes[] = {
    {0x08, "u8", 1, DType::u8},   {0x09, "i8", 1, DType::i8},   {0x0B, "i16", 2, DType::i32},
    {0x0C, "i32", 4, DType::i32}, {0x0D, "f32", 4, DType::f32}, {0x0E, "f64", 8, DType::f32},
};

uint32_t load_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
uint64_t load_be64(const unsigned char* p) {
  return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}

std::string hex_bytes(const unsigned char* p, size_t n) {
  std::string s = "0x";
  char buf[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    s += buf;
  }
  return s;
}

// Converts n big-endian elements of `type` into the tensor's storage, from
// element `first` on.
void decode(const IdxType& type, const unsigned char* src, int64_t n, Tensor& t,
            int64_t first = 0) {
  switch (type.code) {
    case 0x08:
      if (n) std::memcpy(t.data<uint8_t>() + first, src, static_cast<size_t>(n));
      return;
    case 0x09:
      if (n) std::memcpy(t.data<int8_t>() + first, src, static_cast<size_t>(n));
      return;
    case 0x0B: {
      int32_t* out = t.data<int32_t>() + first;
      for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<int16_t>(static_cast<uint16_t>((src[2 * i] << 8) | src[2 * i + 1]));
      return;
    }
    case 0x0C: {
      int32_t* out = t.data<int32_t>() + first;
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(load_be32(src + 4 * i));
      return;
    }
    case 0x0D: {
      float* out = t.f32() + first;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = load_be32(src + 4 * i);
        std::memcpy(&out[i], &bits, 4);
      }
      return;
    }
    case 0x0E: {
      float* out = t.f32() + first;
      for (int64_t i = 0; i < n; ++i) {
        uint64_t bits = load_be64(src + 8 * i);
        double v;
        std::memcpy(&v, &bits, 8);
        out[i] = static_cast<float>(v);
      }
      return;
    }
  }
}

// The largest IDX header: magic plus 255 dimension sizes.
constexpr size_t kMaxHeaderBytes = 4 + 4 * 255;

struct Header {
  const IdxType* type;
  int nd;
  int64_t dims[Shape::kMaxDims];
  uint64_t count;  // elements
  size_t bytes;    // header bytes; the data follows
  Shape shape() const { return Shape(std::span<const int64_t>(dims, static_cast<size_t>(nd))); }
};

// Every check of an IDX file that needs only its first bytes and its length:
// b holds the first min(size, kMaxHeaderBytes) bytes of a `size`-byte file.
Header check_header(const unsigned char* b, uint64_t size, const std::string& name) {
  if (size < 4)
    fail(name, ": not an IDX file: it has ", size, " bytes, the magic number alone needs 4");
  if (b[0] != 0 || b[1] != 0)
    fail(name, ": not an IDX file: magic is ", hex_bytes(b, 4),
         ", an IDX magic starts with two zero bytes");
  const IdxType* type = nullptr;
  for (const IdxType& t : kIdxTypes)
    if (t.code == b[2]) type = &t;
  if (!type)
    fail(name, ": IDX element type 0x", hex_bytes(b + 2, 1).substr(2),
         " is unknown (known: 0x08 u8, 0x09 i8, 0x0b i16, 0x0c i32, 0x0d f32, 0x0e f64)");
  const int nd = b[3];
  if (nd == 0) fail(name, ": IDX header declares 0 dimensions");
  if (nd > Shape::kMaxDims)
    fail(name, ": IDX header declares ", nd, " dimensions, pare tensors have at most ",
         Shape::kMaxDims);
  const size_t header = 4 + 4 * static_cast<size_t>(nd);
  if (size < header)
    fail(name, ": truncated: header declares ", nd, " dimensions (", header,
         " header bytes), file has ", size, " bytes");

  Header h{.type = type, .nd = nd, .dims = {}, .count = 1, .bytes = header};
  int64_t* dims = h.dims;
  uint64_t& count = h.count;
  std::string dims_str;
  bool overflow = false, empty = false;
  for (int i = 0; i < nd; ++i) {
    dims[i] = load_be32(b + 4 + 4 * i);
    if (i) dims_str += 'x';
    dims_str += std::to_string(dims[i]);
    // The product of the nonzero sizes: a zero size makes the tensor empty,
    // but the others still multiply in Shape::numel() (3275685888 x
    // 4160742144 x 0 overflows int64 before it reaches the 0).
    if (dims[i] == 0) empty = true;
    else overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(dims[i]), &count);
  }
  uint64_t need = 0;
  overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(type->size), &need);
  // Also keep numel within int64 so Shape::numel() cannot overflow downstream.
  if (overflow || count > static_cast<uint64_t>(INT64_MAX))
    fail(name, ": header says ", dims_str, " ", type->name,
         " elements, a size that overflows 64 bits (corrupt header?)");
  if (empty) count = need = 0;
  const uint64_t have = size - header;
  if (have < need)
    fail(name, ": truncated: header says ", dims_str, " ", type->name, " = ", need,
         " bytes of data, file has ", have);
  if (have > need)
    fail(name, ": header says ", dims_str, " ", type->name, " = ", need,
         " bytes of data, file has ", have, " (", have - need, " unexpected trailing bytes)");

  return h;
}

}  // namespace

Tensor parse_idx(std::string_view bytes, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const Header h = check_header(b, bytes.size(), name);
  Tensor t = Tensor::empty(h.shape(), h.type->dtype);
  decode(*h.type, b + h.bytes, static_cast<int64_t>(h.count), t);
  return t;
}

namespace {

// A gzip or plain file read through zlib, in pieces, never whole: the only
// large allocation is the tensor itself.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    errno = 0;
    gz_ = gzopen(path.c_str(), "rb");
    if (!gz_) fail(path, ": cannot open: ", errno ? std::strerror(errno) : "out of memory");
    gzbuffer(gz_, 1 << 17);
  }
  ~GzReader() { gzclose(gz_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to n bytes (fewer only at the end of the data); raises Error
  // for a read error, corrupt gzip data or a truncated gzip stream.
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30));
      const int r = gzread(gz_, static_cast<char*>(dst) + got, chunk);
      if (r < 0) error();
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    int err = Z_OK;
    gzerror(gz_, &err);
    if (err != Z_OK) error();
    return got;
  }

  void rewind() {
    if (gzrewind(gz_) != 0) error();
  }

 private:
  [[noreturn]] void error() {
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    if (err == Z_BUF_ERROR) fail(path_, ": gzip stream is truncated");
    if (err == Z_ERRNO) fail(path_, ": read failed: ", std::strerror(errno));
    fail(path_, ": corrupt gzip data (", msg && *msg ? msg : "unknown error", ")");
  }

  std::string path_;
  gzFile gz_;
};

}  // namespace

Tensor read_idx(const std::string& path) {
  // Two passes, so every length is checked before the tensor is allocated
  // without holding the file in memory: the first keeps the header and
  // counts the bytes, the second decodes straight into the tensor.
  GzReader in(path);
  unsigned char head[kMaxHeaderBytes];
  std::vector<unsigned char> buf(1 << 17);
  uint64_t size = in.read(head, sizeof head);
  for (size_t r; (r = in.read(buf.data(), buf.size())) > 0;) size += r;
  const Header h = check_header(head, size, path);

  Tensor t = Tensor::empty(h.shape(), h.type->dtype);
  in.rewind();
  if (in.read(head, h.bytes) != h.bytes) fail(path, ": changed while being read");
  const uint64_t data_bytes = h.count * h.type->size;
  if (h.type->size == 1) {
    if (data_bytes && in.read(t.raw(), data_bytes) != data_bytes)
      fail(path, ": changed while being read");
    return t;
  }
  // Wider types are byte-swapped (and f64 narrowed) a buffer at a time.
  const uint64_t per_chunk = buf.size() / h.type->size;
  for (uint64_t done = 0; done < h.count;) {
    const uint64_t n = std::min(per_chunk, h.count - done);
    if (in.read(buf.data(), n * h.type->size) != n * h.type->size)
      fail(path, ": changed while being read");
    decode(*h.type, buf.data(), static_cast<int64_t>(n), t, static_cast<int64_t>(done));
    done += n;
  }
  return t;
}

namespace {

constexpr const char* kInstallHint = "install Debian's dataset-fashion-mnist (make deps)";

// The .gz file, or the uncompressed one if only that exists.
std::string find_idx(const std::string& dir, const std::string& base) {
  std::string gz = dir + "/" + base + ".gz";
  if (file_exists(gz)) return gz;
  std::string plain = dir + "/" + base;
  if (file_exists(plain)) return plain;
  fail(gz, ": missing; ", kInstallHint);
}

Dataset load_split(const std::string& dir, const std::string& prefix, const std::string& name) {
  const std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
  Tensor images = read_idx(images_path);
  Tensor labels = read_idx(labels_path);
  if (images.dtype() != DType::u8 || images.ndim() != 3 || images.dim(1) != 28 ||
      images.dim(2) != 28)
    fail(images_path, ": expected N x 28 x 28 u8 images, got ", images.shape().str(), " ",
         dtype_name(images.dtype()));
  if (labels.dtype() != DType::u8 || labels.ndim() != 1)
    fail(labels_path, ": expected N u8 labels, got ", labels.shape().str(), " ",
         dtype_name(labels.dtype()));
  const int64_t n = images.dim(0);
  if (labels.dim(0) != n)
    fail(labels_path, ": has ", labels.dim(0), " labels, but ", images_path, " has ", n, " images");

  Dataset d;
  d.name = name;
  d.num_classes = 10;
  d.targets = Tensor::empty({n}, DType::i32);
  const uint8_t* y = labels.data<uint8_t>();
  int32_t* yt = d.targets.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] >= 10)
      fail(labels_path, ": label ", int{y[i]}, " at index ", i, " is outside [0, 10)");
    yt[i] = y[i];
  }
  // The pixels stay u8 (a quarter of the memory of f32); Batcher scales each
  // batch to float(double(v) * (1.0 / 255)), the same bits as v / 255.0f.
  d.inputs = images.reshape({n, 1, 28, 28});
  d.input_scale = 1.0 / 255.0;
  return d;
}

}  // namespace

TrainTest fashion_mnist(const std::string& dir) {
  if (!file_exists(dir)) fail(dir, ": Fashion-MNIST directory not found; ", kInstallHint);
  TrainTest tt;
  tt.train = load_split(dir, "train", "fashion-mnist/train");
  tt.test = load_split(dir, "t10k", "fashion-mnist/test");
  return tt;
}

}  // namespace pare::data
