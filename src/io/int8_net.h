// Integer inference straight from a .pare file (issue #6): a multilayer
// perceptron whose linear weights are stored as s8 per output channel
// (`pare compress --int8`) runs on the int8 kernels of kernels/quant.h, each
// layer's input quantized to u8 with the per-tensor scale and zero point
// calibrated when the file was written (META "activations"); pruned layers run
// the sparse int8 product. Biases, ReLU and the output stay float.
//
// The computation equals the fake-quantized float model (weights q * scale,
// each linear input rounded to its u8 grid) up to float rounding in the
// dequantization: integer products are exact.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/nn/module.h"

namespace pare::io {

// Per linear layer (by its weight's prefix, "linear1"), the u8 grid of its
// input from min-max calibration over `samples` inputs x: (samples, features)
// of the float model: scale = (max - min) / 255 with the range widened to
// include 0, zero point = round(-min / scale). Only linear/relu/flatten/dropout
// models (MLPs). Returns the META "activations" object.
nlohmann::json calibrate_activations(const nn::Model& model, const float* x, int64_t samples);

class Int8Net {
 public:
  // Raises Error naming the source when the spec is not an MLP, a linear
  // weight is not s8 per channel, or META lacks a layer's activation grid.
  static Int8Net from_file(const format::File& file, const std::string& source);
  // logits: (batch, outputs) for x: (batch, inputs), both row-major f32.
  void forward(int64_t batch, const float* x, float* logits) const;
  int64_t inputs() const { return inputs_; }
  int64_t outputs() const { return outputs_; }
  // How many linear layers run the sparse int8 product.
  int sparse_layers() const;

 private:
  struct Layer {
    bool relu = false;  // a ReLU (no weights) instead of a linear layer
    int64_t rows = 0, cols = 0;
    float x_scale = 1;
    int32_t x_zero_point = 0;
    std::vector<int8_t> w;          // dense (rows, cols), or CSR values
    std::vector<int32_t> row_ptr, col_idx;  // CSR when sparse
    bool sparse = false;
    std::vector<float> w_scales, bias;
    std::vector<int32_t> row_sums;
  };
  std::vector<Layer> layers_;
  int64_t inputs_ = 0, outputs_ = 0;
};

}  // namespace pare::io
