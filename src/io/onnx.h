// ONNX export and import (issue #6, docs/interop.md).
//
// Export writes the network a .pare File describes as an ONNX model: IR 8 and
// opset 13 (per-axis DequantizeLinear needs 13; the onnx 1.12 checker accepts
// IR <= 8 and opset <= 17), one graph input "input" (batch, ...) and one
// output "logits". Float weights become float initializers (pruned ones 0).
// A weight stored s8 per output channel (`pare compress --int8`) stays s8
// behind a DequantizeLinear, and a layer whose input grid was calibrated
// (META "activations") gets QuantizeLinear/DequantizeLinear on its input: the
// QDQ form ONNX Runtime turns into integer kernels. Every export passes the
// ONNX checker and strict shape inference before it is returned.
//
// Import reads a float chain of layers, as torch.onnx.export writes MLPs and
// CNNs: Gemm, MatMul (+ Add as its bias), Conv, Relu, Sigmoid, Tanh, MaxPool,
// AveragePool, Flatten, Reshape to (batch, features), Identity and Dropout
// (skipped), a trailing Softmax/LogSoftmax (dropped: pare keeps logits; the
// top-1 class is the same), and Sub/Div/Mul by scalars before the first layer
// (the input's standardisation). Bytes from outside are checked: the protobuf
// must parse, no initializer may point at an external file, the ONNX checker
// must pass, every attribute pare uses is range-checked, and every
// initializer's size must match its dims before it is read.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/nn/module.h"

namespace pare::io {

inline constexpr int kOnnxIrVersion = 8;
inline constexpr int kOnnxOpset = 13;

struct OnnxExport {
  std::string bytes;         // a serialized ModelProto
  int nodes = 0;
  int int8_weights = 0;      // weights kept s8 behind DequantizeLinear
  int quantized_inputs = 0;  // layer inputs with QuantizeLinear/DequantizeLinear
};

// `source` names the file in errors. Raises Error when the spec has a layer
// ONNX export does not cover or the result fails the checker.
OnnxExport to_onnx(const format::File& file, const std::string& source);

// Parses `bytes` as a ModelProto and runs the ONNX checker and strict shape
// inference; raises Error naming `source` with the checker's message. For
// pare's own exports: libonnx 1.12's shape inference crashes on some damaged
// graphs (a zero stride), so from_onnx runs the checker without it.
void check_onnx(std::string_view bytes, const std::string& source);

struct OnnxImport {
  std::unique_ptr<nn::Model> model;
  std::vector<std::string> notes;  // what was skipped or dropped, for the user
};

OnnxImport from_onnx(std::string_view bytes, const std::string& source);

}  // namespace pare::io
