// Fine-tuned variants as deltas (issue #6): a variant of a base model is kept
// as what changed, a .pare file (docs/format.md) whose tensors hold, at the
// positions that changed (stored sparse when few did), either the new values
// (exact: META "values": "replacements") or the differences tuned - base as
// int8 per output channel ("differences"), and whose META names the base by a
// fingerprint of its weights so that a delta is never applied to the wrong
// base. A variant tuned with LoRA is kept as its low-rank factors instead
// ("low-rank").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pare/format/pare_file.h"
#include "pare/nn/lora.h"
#include "pare/nn/module.h"

namespace pare::io {

// FNV-1a (64 bits) over every parameter's name and values, in order.
uint64_t weights_fingerprint(const nn::Model& model);

// The delta file of `tuned` against `base` (same spec). int8: the differences
// as s8 per output channel of each tensor (apply() is then within half a
// quantization step per weight), else exact f32. A pruning mask that differs
// from the base's travels as "<name>.mask" (present = kept).
format::File make_delta(const nn::Model& base, const nn::Model& tuned, bool int8);
// A variant tuned with LoRA (train/lora.h) kept as its factors: for each
// weight in `factors`, "<name>.lora_a" (rank, K) and "<name>.lora_b" (out,
// rank) in f32, or with int8 as s8 with a scale per rank component (META "values": "low-rank",
// "lora_scale"), and any other parameter that changed as exact replacements.
// Raises Error unless the factors rebuild each tuned weight from the base
// exactly as apply_delta will (before any quantization: with int8 the rebuilt
// weights are those of the dequantized factors).
format::File make_lowrank_delta(const nn::Model& base, const nn::Model& tuned,
                                const std::vector<nn::LoraFactors>& factors, float scale, bool int8 = false);
// Whether a delta tensor carries a pruning mask ("<name>.mask") rather than
// weight values.
bool is_mask_tensor(const std::string& name);

// base + delta, as a new model; raises Error naming `source` when the delta
// was made against another base or does not fit it.
std::unique_ptr<nn::Model> apply_delta(const nn::Model& base, const format::File& delta,
                                       const std::string& source);

}  // namespace pare::io
