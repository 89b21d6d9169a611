// The .pare file (docs/format.md): a network's spec, tensors (dense or sparse,
// float or quantized, optionally zstd-coded) and metadata, checked section by
// section. This room depends only on base: loading a file needs no autograd.
//
// encode() chooses each tensor's encoding by size (dense, bitmask, csr; ties
// to the simpler) and compresses it with zstd when that is smaller; decode()
// checks every length, offset, count and shape before it allocates or reads,
// and raises pare::Error naming the source, the section and the tensor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pare::format {

enum class DType : uint8_t { f32 = 0, s8 = 1, u8 = 2, code = 3 };
enum class Encoding : uint8_t { dense = 0, bitmask = 1, csr = 2 };
enum class QuantKind : uint8_t { none = 0, affine = 1, channel = 2, codebook = 3 };

const char* dtype_name(DType d);
const char* encoding_name(Encoding e);

// How stored values map to real ones (docs/format.md, "Quantization parameters").
struct Quantization {
  QuantKind kind = QuantKind::none;
  float scale = 1.0f;          // affine
  int32_t zero_point = 0;      // affine
  uint8_t axis = 0;            // channel
  std::vector<float> scales;   // channel: dims[axis] of them
  uint8_t bits = 0;            // codebook: 1..8
  std::vector<float> centroids;  // codebook: 2^bits of them
};

// One tensor, decoded: all numel values in row-major order, each as its
// dtype's bytes (f32: 4 bytes little-endian; s8, u8: 1; code: one byte per
// index), and which positions are present (`present`: numel bytes of 0/1, or
// empty when every position is). An absent position is real 0; its bytes in
// `values` are 0 and carry no meaning.
struct Tensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> dims;
  Quantization quant;
  std::vector<uint8_t> values;
  std::vector<uint8_t> present;
  // Set by encode() and decode(): how the tensor is stored.
  Encoding encoding = Encoding::dense;
  bool zstd = false;
  int64_t encoded_bytes = 0, stored_bytes = 0;

  int64_t numel() const;
  int64_t present_count() const;
};

struct File {
  std::string spec_json;       // SPEC: the model spec (docs/model-spec.md)
  std::string meta_json;       // META: a JSON object; empty: no META section
  std::vector<Tensor> tensors;
};

struct WriteOptions {
  bool allow_zstd = true;
  int zstd_level = 19;
  std::optional<Encoding> force_encoding;  // unset: the smallest
};

// Limits of docs/format.md.
inline constexpr int64_t kMaxTensors = 65536;
inline constexpr int64_t kMaxNumel = int64_t{1} << 34;
inline constexpr int64_t kMaxJsonBytes = int64_t{1} << 20;
inline constexpr int kMaxDims = 6;
inline constexpr size_t kMaxNameBytes = 256;

// The file's bytes; fills each tensor's encoding, zstd, encoded_bytes and
// stored_bytes. Raises Error on a tensor that breaks the format's rules.
std::string encode(File& file, const WriteOptions& options = {});
struct DecodeOptions {
  // A tensor whose decoded form (values and presence mask) would take more is
  // refused before anything is allocated: a sparse tensor's dims can imply far
  // more memory than its bytes in the file.
  // 0: the reader limit (base/read_limit.h: PARE_READ_LIMIT, default 4 GiB).
  int64_t max_tensor_bytes = 0;
};

// Parses and checks `bytes`; `source` names them in errors (a path).
File decode(std::string_view bytes, const std::string& source, const DecodeOptions& options = {});

// encode() written atomically (temp file, fsync, rename) / read and decode().
void write_file(const std::string& path, File& file, const WriteOptions& options = {});
File read_file(const std::string& path, const DecodeOptions& options = {});

}  // namespace pare::format
