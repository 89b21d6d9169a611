// An int8 network as an integer-only program (issue #7, docs/mcu.md): the
// steps a microcontroller runs, each a call into codegen/runtime (plain C99),
// with every constant fixed at export: int8 weights, int32 biases, fixed-point
// requantization multipliers and shifts, and the arena offset of every
// intermediate tensor.
//
// plan() reads an int8 .pare file (`pare compress --int8 --calibrate`): its
// weights s8 per output channel and each weight layer's input grid (META
// "activations"). A weight layer's output is requantized straight onto the
// grid of the next weight layer's input (ReLU, pooling and flatten between
// them keep the grid), and the last one onto the output grid. run() executes
// the program with the same runtime code the generated C compiles, so pare's
// own integer inference and the device agree bit for bit.
//
// The arena: the network is a chain, so at any step exactly two tensors are
// live, the step's input and its output. Outputs go alternately to the low
// and the high end of one buffer, which is then as large as the largest
// input-plus-output pair, the least any schedule of the chain can use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/io/int8_net.h"
#include "pare/nn/module.h"

namespace pare::codegen {

// A per-tensor int8 grid: real = (q - zero_point) * scale.
struct Grid {
  float scale = 1.0f;
  int32_t zero_point = 0;  // in [-128, 127]
};

enum class OpKind { dense, csr, conv2d, maxpool, avgpool, relu };
const char* op_kind_name(OpKind k);
struct Op;
// The runtime kernel an op calls ("dense", "csr_codes", ...): its kind, and
// for linear layers whether the weights are codes into a lookup table.
std::string kernel_name(const Op& op);

struct Op {
  OpKind kind = OpKind::dense;
  std::string layer;  // the layer it computes, "linear1"
  // Input (c, h, w) for spatial ops; for dense/csr, h = w = 1 and c = cols.
  int32_t c = 0, h = 1, w = 1;
  int32_t rows = 0;                   // dense/csr: outputs; conv2d: output channels
  int32_t k = 0, stride = 1, pad = 0;  // conv2d, pooling
  bool circular = false;               // conv2d
  int32_t x_zp = 0;                    // weight ops: the input's zero point
  int32_t y_zp = 0, y_min = -128, y_max = 127;  // weight ops: output grid and clamp (fused ReLU: y_min = y_zp); relu: zp
  // Weights: int8 values (dense (rows, c), conv (rows, c, k, k), or the CSR
  // values in row order), or, when bits < 8, `codes` of `bits` each (packed,
  // one spare byte) into the int8 table `lut`.
  std::vector<int8_t> weights;
  int32_t bits = 8;
  std::vector<uint8_t> codes;
  std::vector<int8_t> lut;
  std::vector<uint16_t> row_ptr;  // csr: where each row's values start
  std::vector<uint8_t> steps;     // csr: column steps (pare_runtime.h, pare_csr_s8)
  std::vector<int32_t> bias, mult;     // bias may be empty
  std::vector<int8_t> shift;
  int64_t in_bytes = 0, out_bytes = 0;
  // Offsets into the arena; -1: the model's input (for `in`) or output (`out`).
  int64_t in_offset = -1, out_offset = -1;
  int64_t macs = 0;  // multiply-accumulates this op executes (nonzero weights only)
  // Bytes of constants (weights, indices, biases, multipliers, shifts).
  int64_t constant_bytes() const;
};

struct Program {
  std::string name;
  std::vector<int64_t> input_shape;  // without batch
  int64_t input_size = 0, output_size = 0;
  Grid input, output;
  float input_mean = 0.0f, input_std = 0.0f;  // standardisation before quantizing (std 0: none)
  bool binary_output = false;                 // bce loss: a cell is 1 when its logit > 0
  std::vector<Op> ops;
  int64_t arena_bytes = 0;
  int64_t constant_bytes() const;
  int64_t macs() const;
};

struct PlanOptions {
  // The output's grid; unset: META "activations"."output" of the file.
  std::optional<Grid> output;
  // Linear layers: "auto" (the encoding whose constants take fewest bytes:
  // dense or CSR, int8 values or codebook codes), "on" (CSR), "off" (dense).
  std::string sparse = "auto";
};

// Raises Error naming `source` when a weight is not s8 per output channel, a
// grid is missing, or a layer has no integer form (sigmoid/tanh anywhere but
// at the end).
Program plan(const format::File& file, const std::string& source, const PlanOptions& options = {});

// The u8 grid META stores (zero point 0..255) as the program's int8 grid.
Grid grid_from_u8(float scale, int32_t zero_point_u8);

// The u8 grid of the network's output (META "activations"."output", which
// plan() reads) from the float model's outputs on `samples` inputs x:
// (samples, input...), standardised as in training.
io::ActivationGrid calibrate_output(nn::Model& model, const float* x, int64_t samples,
                                    const io::CalibrationOptions& options = {});

// Runs the program on one input: output (output_size), arena (arena_bytes).
void run(const Program& program, const int8_t* input, int8_t* output, int8_t* arena);

// run() on n standardised inputs x (n * input_size floats), quantized first:
// out (n * output_size).
void run_batch(const Program& program, int64_t n, const float* x, int8_t* out);

// x (input_size floats) quantized to the input grid as pare's int8 kernels
// do (round half to even); raw inputs are first standardised when the program
// says so, `standardized` ones (as pare's datasets hand them out) are not.
void quantize_input(const Program& program, const float* x, int8_t* q, bool standardized = false);

// The fixed-point form of a positive real multiplier m: m ~ mult / 2^shift,
// mult < 2^31, 1 <= shift <= 62 (m = 0: mult 0). Raises Error for m >= 2^30.
void fixed_point_multiplier(double m, int32_t* mult, int8_t* shift);

}  // namespace pare::codegen
