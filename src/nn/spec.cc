// Model presets and the JSON model-spec reader/writer.
#include "pare/nn/spec.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "pare/base/error.h"

namespace pare::nn {

using json = nlohmann::json;

const std::vector<std::string>& layer_types() {
  static const std::vector<std::string> t = {"linear",  "conv2d",  "relu",    "sigmoid", "tanh",
                                             "maxpool", "avgpool", "flatten", "dropout"};
  return t;
}
const std::vector<std::string>& loss_names() {
  static const std::vector<std::string> t = {"softmax_cross_entropy", "bce_with_logits", "mse"};
  return t;
}
const std::vector<std::string>& init_names() {
  static const std::vector<std::string> t = {"default", "kaiming_uniform", "kaiming_normal",
                                             "glorot_uniform", "glorot_normal"};
  return t;
}

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
LayerSpec layer(const std::string& type) { return LayerSpec{.type = type}; }
LayerSpec linear(int64_t out) { return LayerSpec{.type = "linear", .out = out}; }
LayerSpec conv(int64_t out, int64_t kernel, int64_t pad, bool circular = false) {
  return LayerSpec{.type = "conv2d", .out = out, .kernel = kernel, .pad = pad, .circular = circular};
}
LayerSpec maxpool(int64_t k) { return LayerSpec{.type = "maxpool", .kernel = k}; }
}  // namespace

std::vector<std::string> preset_names() { return {"lenet300", "lenet5", "conv2", "life"}; }

ModelSpec preset(const std::string& name, const PresetOptions& opt) {
  ModelSpec s;
  s.name = name;
  if (name == "lenet300") {
    // LeCun et al. 1998 / Frankle & Carbin 2019: 784-300-100-10, ReLU.
    s.input = {784};
    s.layers = {linear(300), layer("relu"), linear(100), layer("relu"), linear(10)};
  } else if (name == "lenet5") {
    s.input = {1, 28, 28};
    s.layers = {conv(6, 5, 2), layer("relu"), maxpool(2),      conv(16, 5, 0), layer("relu"),
                maxpool(2),    layer("flatten"), linear(120), layer("relu"),  linear(84),
                layer("relu"), linear(10)};
  } else if (name == "conv2") {
    // Conv-2 of Frankle & Carbin 2019 (64, 64, pool; FC 256, 256, 10), for 28x28 input.
    s.input = {1, 28, 28};
    s.layers = {conv(64, 3, 1),  layer("relu"), conv(64, 3, 1), layer("relu"), maxpool(2),
                layer("flatten"), linear(256),  layer("relu"),  linear(256),   layer("relu"),
                linear(10)};
  } else if (name == "life") {
    // Springer & Kenyon 2020: per step a 3x3 conv with 2m filters + ReLU and a
    // 1x1 conv with m filters + ReLU, then a 1x1 conv to one channel; circular
    // padding on a torus. The final sigmoid is folded into the loss
    // (bce_with_logits). 23n + 2 parameters at m = 1.
    if (opt.life_steps < 1 || opt.width < 1)
      fail("life: steps (", opt.life_steps, ") and width (", opt.width, ") must be at least 1");
    s.name = "life_n" + std::to_string(opt.life_steps) + "_m" + std::to_string(opt.width);
    if (opt.board < 3) fail("life: board size must be at least 3, got ", opt.board);
    s.input = {1, opt.board, opt.board};
    for (int i = 0; i < opt.life_steps; ++i) {
      s.layers.push_back(conv(2 * opt.width, 3, 1, /*circular=*/true));
      s.layers.push_back(layer("relu"));
      s.layers.push_back(conv(opt.width, 1, 0));
      s.layers.push_back(layer("relu"));
    }
    s.layers.push_back(conv(1, 1, 0));
    s.loss = "bce_with_logits";
  } else {
    fail("unknown model \"", name, "\": use one of ", join(preset_names()),
         " or a JSON model-spec file");
  }
  return s;
}

std::string model_name_from(const std::string& text) {
  std::string out = text.substr(0, 64);
  for (char& ch : out)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.')) ch = '_';
  return out;
}

bool is_model_name(const std::string& name) { return !name.empty() && model_name_from(name) == name; }

ModelSpec parse_model_spec(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    fail(source, ": not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(source, ": a model spec is a JSON object");
  static const std::vector<std::string> top_keys = {"name", "input", "layers", "loss", "init",
                                                    "input_norm"};
  for (auto& [key, value] : j.items())
    if (std::find(top_keys.begin(), top_keys.end(), key) == top_keys.end())
      fail(source, ": unknown field \"", key, "\" (known: ", join(top_keys), ")");
  ModelSpec s;
  try {
    s.name = j.value("name", std::string("custom"));
    // The name reaches printed lines, the metadata of every file pare writes
    // and the comments of exported C: from a file, it may hold anything.
    if (!is_model_name(s.name))
      fail(source, ": \"name\" must be 1 to 64 letters, digits, '_', '-' or '.'; got \"",
           s.name.substr(0, 64), s.name.size() > 64 ? "..." : "", "\"");
    if (!j.contains("input") || !j["input"].is_array() || j["input"].empty())
      fail(source, ": field \"input\" must be a non-empty array of sizes, e.g. [1, 28, 28]");
    for (auto& d : j["input"]) {
      if (!d.is_number_integer() || d.get<int64_t>() <= 0 || d.get<int64_t>() > (1 << 24))
        fail(source, ": field \"input\" has a size that is not a positive integer: ", d.dump());
      s.input.push_back(d.get<int64_t>());
    }
    if (s.input.size() > 4) fail(source, ": field \"input\" has more than 4 dimensions");
    if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty())
      fail(source, ": field \"layers\" must be a non-empty array");
    static const std::vector<std::string> layer_keys = {"type", "out",      "kernel", "stride",
                                                        "pad",  "circular", "bias",   "p"};
    int index = 0;
    for (auto& l : j["layers"]) {
      ++index;
      if (!l.is_object() || !l.contains("type") || !l["type"].is_string())
        fail(source, ": layers[", index - 1, "] needs a \"type\" string");
      LayerSpec ls;
      ls.type = l["type"].get<std::string>();
      if (std::find(layer_types().begin(), layer_types().end(), ls.type) == layer_types().end())
        fail(source, ": layers[", index - 1, "]: unknown layer type \"", ls.type,
             "\" (known: ", join(layer_types()), ")");
      for (auto& [key, value] : l.items())
        if (std::find(layer_keys.begin(), layer_keys.end(), key) == layer_keys.end())
          fail(source, ": layers[", index - 1, "] (", ls.type, "): unknown field \"", key, "\"");
      auto get_int = [&](const char* key, int64_t lo, int64_t hi) -> int64_t {
        if (!l.contains(key)) return 0;
        if (!l[key].is_number_integer() || l[key].get<int64_t>() < lo || l[key].get<int64_t>() > hi)
          fail(source, ": layers[", index - 1, "] (", ls.type, "): \"", key,
               "\" must be an integer in [", lo, ", ", hi, "], got ", l[key].dump());
        return l[key].get<int64_t>();
      };
      ls.out = get_int("out", 1, 1 << 20);
      ls.kernel = get_int("kernel", 1, 1024);
      ls.stride = get_int("stride", 1, 1024);
      ls.pad = get_int("pad", 0, 1024);
      if (l.contains("circular")) ls.circular = l["circular"].get<bool>();
      if (l.contains("bias")) ls.bias = l["bias"].get<bool>();
      if (l.contains("p")) ls.p = l["p"].get<float>();
      if ((ls.type == "linear" || ls.type == "conv2d") && ls.out == 0)
        fail(source, ": layers[", index - 1, "] (", ls.type, ") needs \"out\"");
      if ((ls.type == "conv2d" || ls.type == "maxpool" || ls.type == "avgpool") && ls.kernel == 0)
        fail(source, ": layers[", index - 1, "] (", ls.type, ") needs \"kernel\"");
      s.layers.push_back(ls);
    }
    s.loss = j.value("loss", std::string("softmax_cross_entropy"));
    if (std::find(loss_names().begin(), loss_names().end(), s.loss) == loss_names().end())
      fail(source, ": unknown loss \"", s.loss, "\" (known: ", join(loss_names()), ")");
    if (j.contains("input_norm")) {
      const auto& n = j["input_norm"];
      if (!n.is_object() || !n.contains("mean") || !n.contains("std") || !n["std"].is_number() ||
          !n["mean"].is_number() || !(n["std"].get<double>() > 0))
        fail(source, ": \"input_norm\" must be {\"mean\": number, \"std\": positive number}");
      s.input_mean = n["mean"].get<float>();
      s.input_std = n["std"].get<float>();
    }
    s.init = j.value("init", std::string("default"));
    if (std::find(init_names().begin(), init_names().end(), s.init) == init_names().end())
      fail(source, ": unknown init \"", s.init, "\" (known: ", join(init_names()), ")");
  } catch (const json::exception& e) {
    fail(source, ": wrong type in model spec: ", e.what());
  }
  return s;
}

std::string model_spec_to_json(const ModelSpec& s) {
  json j;
  j["name"] = s.name;
  j["input"] = s.input;
  j["loss"] = s.loss;
  j["init"] = s.init;
  if (s.input_std > 0) j["input_norm"] = {{"mean", s.input_mean}, {"std", s.input_std}};
  j["layers"] = json::array();
  for (const LayerSpec& l : s.layers) {
    json o{{"type", l.type}};
    if (l.out) o["out"] = l.out;
    if (l.kernel) o["kernel"] = l.kernel;
    if (l.stride) o["stride"] = l.stride;
    if (l.pad) o["pad"] = l.pad;
    if (l.circular) o["circular"] = true;
    if (!l.bias) o["bias"] = false;
    if (l.p != 0.0f) o["p"] = l.p;
    j["layers"].push_back(o);
  }
  return j.dump();
}

}  // namespace pare::nn
