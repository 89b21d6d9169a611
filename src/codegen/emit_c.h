// An integer program (program.h) as C99 source for a microcontroller
// (issue #7, docs/mcu.md): model.h and model.c, plus pare_runtime.h/.c with
// only the kernels the model calls. No malloc; the arena is a static array of
// exactly the planned size; no floating point outside the optional
// quantize/dequantize helpers (compiled out by -DPARE_MODEL_NO_FLOAT); nothing
// beyond <stdint.h> and <stddef.h>. The same program gives the same bytes.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "pare/codegen/device_cost.h"
#include "pare/codegen/program.h"

namespace pare::codegen {

struct SourceFile {
  std::string name;  // "model.c"
  std::string text;
};

// `cost`, when given, adds the measured device figures to model.h.
std::vector<SourceFile> emit_c(const Program& program, const DeviceCost* cost = nullptr);

// pare_test_vectors.h: `inputs` (n * input_size, already quantized) with the
// outputs run() gives them, and the truth when known: class labels (n), or
// 0/1 targets per output (n * output_size, for independent logits such as the
// Life net's cells): what a harness on the device compares its outputs with.
SourceFile emit_test_vectors(const Program& program, const std::vector<int8_t>& inputs,
                             const std::vector<int32_t>& labels, const std::vector<uint8_t>& targets = {});

// The runtime's text with only the kernel blocks named in `used` (between
// "pare-kernel: NAME" and "pare-kernel-end" markers; "requantize" always).
std::string select_kernels(const std::string& text, const std::set<std::string>& used);

// The C text of codegen/runtime/, built into pare.
const char* runtime_header_text();
const char* runtime_source_text();

}  // namespace pare::codegen
