// Model specifications: presets and a small JSON format the CLI reads.
//
// A spec lists the input shape (without batch), the layers in order and the
// loss; the builder infers every layer's input size from the shape flowing
// through, so a layer names only what it adds. JSON example (docs/model-spec.md):
//
//   {"name": "tiny", "input": [1, 28, 28],
//    "layers": [{"type": "conv2d", "out": 8, "kernel": 3, "pad": 1}, {"type": "relu"},
//               {"type": "maxpool", "kernel": 2}, {"type": "flatten"},
//               {"type": "linear", "out": 10}],
//    "loss": "softmax_cross_entropy"}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pare::nn {

struct LayerSpec {
  std::string type;      // linear | conv2d | relu | sigmoid | tanh | maxpool | avgpool | flatten | dropout
  int64_t out = 0;       // linear: features; conv2d: channels
  int64_t kernel = 0;    // conv2d / pooling window
  int64_t stride = 0;    // conv2d default 1; pooling default = kernel
  int64_t pad = 0;       // conv2d zero (or circular) padding
  bool circular = false; // conv2d: wrap around (torus)
  bool bias = true;      // linear / conv2d
  float p = 0.0f;        // dropout probability
};

struct ModelSpec {
  std::string name;
  std::vector<int64_t> input;  // e.g. {1, 28, 28} or {784}
  std::vector<LayerSpec> layers;
  std::string loss = "softmax_cross_entropy";  // | bce_with_logits | mse
  // Inputs are standardised as (x - input_mean) / input_std before the first
  // layer (set by training with --normalize; stored with the model so that
  // evaluation feeds it what it was trained on). std 0 means not standardised.
  float input_mean = 0.0f, input_std = 0.0f;
  std::string init = "default";  // default (PyTorch's) | kaiming_uniform | kaiming_normal | glorot_uniform | glorot_normal
};

struct PresetOptions {
  int life_steps = 1;  // n: Game of Life steps the `life` net computes
  int width = 1;       // m: width factor of the `life` net
  int board = 32;      // side of the `life` net's square toroidal board
};

// lenet300, lenet5, conv2, life. Raises Error listing the names on a miss.
ModelSpec preset(const std::string& name, const PresetOptions& opt = {});
std::vector<std::string> preset_names();

// Whether `name` may name a model: 1 to 64 letters, digits, '_', '-' or '.'
// (parse_model_spec refuses other names).
bool is_model_name(const std::string& name);
// `text` cut to 64 bytes with every other character made '_' (may be empty):
// a name from elsewhere (an ONNX graph's) made fit, or one made inert where it
// is printed into a file (exported C's comments).
std::string model_name_from(const std::string& text);

// Parses and validates a JSON spec; `source` names the file in errors.
ModelSpec parse_model_spec(const std::string& json_text, const std::string& source);
std::string model_spec_to_json(const ModelSpec& spec);

const std::vector<std::string>& layer_types();
const std::vector<std::string>& loss_names();
const std::vector<std::string>& init_names();

}  // namespace pare::nn
