// A built network to and from a .pare file (docs/format.md): the model spec,
// each parameter as a tensor (a pruned weight's mask as the tensor's present
// positions, so it is stored sparse when that is smaller), and metadata.
#pragma once

#include <memory>
#include <string>

#include "pare/format/pare_file.h"
#include "pare/format/safetensors.h"
#include "pare/nn/module.h"

namespace pare::io {

// The model as a .pare File: every parameter f32 under its own name
// ("linear1.weight"), masked-out weights absent. meta_json: a JSON object for
// META ("" for none).
format::File to_file(const nn::Model& model, const std::string& meta_json);
// Builds the model the file describes: the spec validated as a model spec,
// every parameter present with its shape, no tensor left over; quantized
// tensors dequantized to float, absent positions masked. `source` names the
// file in errors.
std::unique_ptr<nn::Model> from_file(const format::File& file, const std::string& source);

void save_pare(const nn::Model& model, const std::string& path, const std::string& meta_json = "{}",
               const format::WriteOptions& options = {});
std::unique_ptr<nn::Model> load_pare(const std::string& path);

// The model's parameters as safetensors: each one F32 under its own name
// (masked-out weights 0), and for each pruned weight its mask as
// "<name>.mask" (U8 0/1); the spec (JSON) in __metadata__["pare_spec"].
std::vector<format::SafeTensor> to_safetensors(const nn::Model& model);

// The real value of element i of a decoded tensor (docs/format.md,
// "Quantization parameters"); absent positions are not special-cased.
float real_value(const format::Tensor& t, int64_t i);

// True when `path` names a .pare file (by its extension).
bool is_pare_path(const std::string& path);

}  // namespace pare::io
