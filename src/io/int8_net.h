// Integer inference straight from a .pare file (issue #6): a network of
// linear and conv2d layers whose weights are stored as s8 per output channel
// (`pare compress --int8`) runs on the int8 kernels of kernels/quant.h, each
// weight layer's input quantized to u8 with the per-tensor scale and zero
// point calibrated when the file was written (META "activations"). Linear
// layers pruned below a third run the sparse int8 product; convolutions are
// lowered image by image by im2col_u8 and multiply the patches four taps per
// instruction (pack_k4_u8, qgemm_s8u8k4_s32: VNNI), or, pruned below a
// quarter, by the CSR int8 product (pruned filters skip their zeros). Biases,
// activations (ReLU, sigmoid, tanh), pooling and the output stay float: max
// pooling commutes with the monotone u8 grid, and average pooling on float
// is what the fake-quantized model does.
//
// The computation equals the fake-quantized float model (FakeQuantModel:
// weights q * scale, each weight layer's input rounded to its u8 grid) up to
// float rounding in the dequantization: integer products are exact.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/kernels/kernels.h"
#include "pare/nn/module.h"

namespace pare::io {

// How calibration chooses the float range of each u8 grid.
struct CalibrationOptions {
  // minmax: the smallest and largest value seen; percentile: the
  // (100 - P)-th and P-th percentiles of the sorted values (outliers beyond
  // them saturate), P = `percentile`.
  std::string method = "minmax";
  double percentile = 99.99;  // in (0, 100]; 100 is min-max
  // Raises Error naming the flag (--calibration, --percentile) to fix.
  void validate() const;
};

// A per-tensor u8 grid: x ~ (q - zero_point) * scale, q in [0, 255]; min and
// max: the float range it was made from (widened to include 0).
struct ActivationGrid {
  float scale = 1.0f;
  int32_t zero_point = 0;
  float min = 0.0f, max = 0.0f;
};
using ActivationGrids = std::map<std::string, ActivationGrid>;  // by layer, "conv2d1"

// The grid of the range [lo, hi] widened to include 0: scale = (hi - lo) / 255
// (1 for an empty range), zero_point = round(-lo / scale) in [0, 255].
ActivationGrid grid_for_range(float lo, float hi);
// The range of x: (n,) by `options` (validated), as (lo, hi). n >= 1.
std::pair<float, float> activation_range(const float* x, int64_t n,
                                         const CalibrationOptions& options);

// The layers integer inference quantizes (linear and conv2d), by name, in order.
std::vector<std::string> quantized_layers(const nn::ModelSpec& spec);

// Per weight layer (its parameter prefix, "linear1", "conv2d1"), the u8 grid of
// its input from calibration over `samples` inputs x: (samples, input...)
// row-major of the float model. Supported layers: linear, conv2d (zero or
// circular padding), relu, sigmoid, tanh, maxpool, avgpool, flatten, dropout
// (identity); others raise Error. Returns the META "activations" object: the
// grids by layer plus "method" (and "percentile" for that method).
nlohmann::json calibrate_activations(const nn::Model& model, const float* x, int64_t samples,
                                     const CalibrationOptions& options = {});
// The grids of a META "activations" object (non-object entries such as
// "method" are skipped); raises Error naming `source` for a malformed grid.
ActivationGrids grids_from_json(const nlohmann::json& activations, const std::string& source);
// The META "activations" object for `grids` with `method` recorded.
nlohmann::json grids_to_json(const ActivationGrids& grids, const nlohmann::json& method);

// The fake-quantized float model that integer inference reproduces, and what
// quantization-aware training trains through: each weight layer's weight is
// fake-quantized s8 per output channel and its input u8 per tensor on the
// layer's grid (autograd::fake_quant_*: straight-through gradients).
class FakeQuantModel {
 public:
  // `grids` must hold every quantized layer (Error naming the layer otherwise).
  // ema in [0, 1): 0 keeps the grids; above 0, each training forward first
  // moves the layer's range toward the batch's min and max by that fraction
  // (an exponential moving average) and rebuilds its grid.
  // REQUIRES: `model` outlives this object.
  FakeQuantModel(nn::Model& model, ActivationGrids grids, float ema = 0.0f);
  // Network output for x: (B, input...); records a graph when grad mode is on.
  autograd::Var forward(const autograd::Var& x, nn::ForwardContext& ctx);
  const ActivationGrids& grids() const { return grids_; }

 private:
  nn::Model& model_;
  ActivationGrids grids_;
  float ema_;
};

class Int8Net {
 public:
  // Raises Error naming the source when a layer type is not supported, a
  // weight is not s8 per channel, or META lacks a layer's activation grid.
  static Int8Net from_file(const format::File& file, const std::string& source);
  // out: (batch, outputs) for x: (batch, inputs), both row-major f32. Chunks
  // of 64 samples run on the thread pool; the bits do not depend on the
  // thread count or on the batch size.
  void forward(int64_t batch, const float* x, float* out) const;
  int64_t inputs() const { return inputs_; }
  int64_t outputs() const { return outputs_; }
  // How many linear layers run the sparse int8 product.
  int sparse_layers() const;
  // How many convolutions run on the int8 kernels.
  int conv_layers() const;

 private:
  enum class Kind { linear, conv, relu, sigmoid, tanh, maxpool, avgpool };
  struct Layer {
    Kind kind = Kind::linear;
    int64_t rows = 0, cols = 0;    // weight as (out, in) / (OC, C*KH*KW)
    kernels::Conv2dGeometry conv;  // conv
    kernels::Pool2dGeometry pool;  // maxpool, avgpool
    float x_scale = 1;
    int32_t x_zero_point = 0;
    std::vector<int8_t> w;                  // dense (rows, cols), or CSR values
    std::vector<int32_t> row_ptr, col_idx;  // CSR when sparse
    bool sparse = false;
    std::vector<float> w_scales, bias;
    std::vector<int32_t> row_sums;
  };
  // Buffers one forward call reuses across its chunks of samples.
  struct Scratch {
    std::vector<float> h, y, next;
    std::vector<uint8_t> q, rows, qt, x4;  // rows: a convolution's patches
    std::vector<int32_t> acc, acct;
  };
  void forward_chunk(int64_t batch, const float* x, float* out, Scratch& s) const;
  std::vector<Layer> layers_;
  int64_t inputs_ = 0, outputs_ = 0;
  int64_t macs_ = 0;  // multiply-accumulates per sample (dense), for the thread split
};

}  // namespace pare::io
