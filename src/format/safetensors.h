// The safetensors file (Hugging Face's format, https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length N, N bytes of JSON
// {"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"<key>": "<string>"}}, then the tensors' bytes, row-major,
// little-endian, offsets relative to the end of the header. pare writes F32
// weights and U8 masks; the reader checks the header length, the JSON, every
// dtype, shape product and offset, and that the data is covered exactly once,
// before it copies anything.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pare::format {

struct SafeTensor {
  std::string name;
  std::string dtype;           // "F32" or "U8"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel * (4 or 1), little-endian
};

// The file's bytes; tensors in the order given (the header lists them sorted
// by name, as the reference writer does). Raises Error on a bad tensor.
std::string encode_safetensors(const std::vector<SafeTensor>& tensors,
                               const std::map<std::string, std::string>& metadata);
// Parses and checks; `source` names the bytes in errors.
std::vector<SafeTensor> decode_safetensors(std::string_view bytes, const std::string& source,
                                           std::map<std::string, std::string>* metadata = nullptr);

}  // namespace pare::format
