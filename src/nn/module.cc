// Layer implementations, model building and initialisation.
#include "pare/nn/module.h"

#include <cmath>
#include <sstream>

namespace pare::nn {

using autograd::Var;

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}
int64_t product(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}
Parameter make_param(const std::string& name, const Shape& shape, bool is_weight) {
  Parameter p;
  p.name = name;
  p.var = Var(Tensor::zeros(shape), true);
  p.is_weight = is_weight;
  return p;
}
}  // namespace

// ---- Linear ----
Linear::Linear(int64_t in, int64_t out, bool bias, const std::string& name) : in_(in), out_(out) {
  weight = make_param(name + ".weight", {out, in}, true);
  if (bias) this->bias = make_param(name + ".bias", {out}, false);
}
Var Linear::forward(const Var& x, ForwardContext& ctx) {
  if (weight.sell && x.dim(0) == 1 && !autograd::grad_enabled())
    return autograd::sell_linear(x, weight.sell, ctx.var(bias));
  if (weight.packed.defined()) {
    PARE_CHECK(!ctx.leaves, weight.name, ": packed sparse weights do not run data-parallel");
    return autograd::sparse_linear_packed(x, weight.packed, ctx.var(bias), weight.sparse);
  }
  if (weight.sparse) return autograd::sparse_linear(x, ctx.var(weight), ctx.var(bias), weight.sparse);
  return autograd::linear(x, ctx.var(weight), ctx.var(bias));
}
void Linear::collect_parameters(std::vector<Parameter*>& out) {
  out.push_back(&weight);
  if (bias.var.defined()) out.push_back(&bias);
}
std::vector<int64_t> Linear::output_shape(const std::vector<int64_t>& in) const {
  if (product(in) != in_)
    fail("linear ", weight.name, ": expects ", in_, " input features, gets ", shape_str(in),
         " (add a flatten layer or fix the size)");
  return {out_};
}
std::string Linear::describe() const {
  return "linear " + std::to_string(in_) + "->" + std::to_string(out_);
}

// ---- Conv2d ----
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel,
               autograd::Conv2dOptions opt, bool bias, const std::string& name)
    : in_(in_channels), out_(out_channels), kernel_(kernel), opt_(opt) {
  weight = make_param(name + ".weight", {out_channels, in_channels, kernel, kernel}, true);
  if (bias) this->bias = make_param(name + ".bias", {out_channels}, false);
}
Var Conv2d::forward(const Var& x, ForwardContext& ctx) {
  if (weight.packed.defined()) {
    PARE_CHECK(!ctx.leaves, weight.name, ": packed sparse weights do not run data-parallel");
    return autograd::sparse_conv2d_packed(x, weight.packed, weight.value().shape(),
                                          ctx.var(bias), opt_, weight.sparse);
  }
  if (weight.sparse)
    return autograd::sparse_conv2d(x, ctx.var(weight), ctx.var(bias), opt_, weight.sparse);
  return autograd::conv2d(x, ctx.var(weight), ctx.var(bias), opt_);
}
void Conv2d::collect_parameters(std::vector<Parameter*>& out) {
  out.push_back(&weight);
  if (bias.var.defined()) out.push_back(&bias);
}
std::vector<int64_t> Conv2d::output_shape(const std::vector<int64_t>& in) const {
  if (in.size() != 3 || in[0] != in_)
    fail("conv2d ", weight.name, ": expects input (", in_, ", H, W), gets ", shape_str(in));
  const int64_t h = in[1] + 2 * opt_.pad - kernel_, w = in[2] + 2 * opt_.pad - kernel_;
  if (h < 0 || w < 0)
    fail("conv2d ", weight.name, ": kernel ", kernel_, " does not fit input ", shape_str(in));
  return {out_, h / opt_.stride + 1, w / opt_.stride + 1};
}
int64_t Conv2d::forward_macs(const std::vector<int64_t>& in) const {
  auto o = output_shape(in);
  return o[0] * o[1] * o[2] * in_ * kernel_ * kernel_;
}
std::string Conv2d::describe() const {
  std::ostringstream os;
  os << "conv2d " << in_ << "->" << out_ << " " << kernel_ << "x" << kernel_;
  if (opt_.stride != 1) os << " stride " << opt_.stride;
  if (opt_.pad) os << " pad " << opt_.pad << (opt_.circular ? " circular" : "");
  if (opt_.relu) os << " + relu (fused)";
  return os.str();
}

// ---- Stateless ----
Stateless::Stateless(Kind kind, int64_t kernel, int64_t stride, float p)
    : kind_(kind), kernel_(kernel), stride_(stride ? stride : kernel), p_(p) {}
Var Stateless::forward(const Var& x, ForwardContext& ctx) {
  switch (kind_) {
    case Kind::relu: return autograd::relu(x);
    case Kind::sigmoid: return autograd::sigmoid(x);
    case Kind::tanh: return autograd::tanh(x);
    case Kind::maxpool: return autograd::max_pool2d(x, kernel_, stride_);
    case Kind::avgpool: return autograd::avg_pool2d(x, kernel_, stride_);
    case Kind::flatten: return autograd::flatten(x);
    case Kind::dropout:
      if (!ctx.training || p_ == 0.0f) return x;
      PARE_CHECK(ctx.rng, "dropout needs a random stream in training");
      return autograd::dropout(x, p_, *ctx.rng, true);
  }
  return x;
}
std::vector<int64_t> Stateless::output_shape(const std::vector<int64_t>& in) const {
  if (kind_ == Kind::flatten) return {product(in)};
  if (kind_ == Kind::maxpool || kind_ == Kind::avgpool) {
    if (in.size() != 3 || in[1] < kernel_ || in[2] < kernel_)
      fail("pooling ", kernel_, "x", kernel_, " does not fit input ", shape_str(in));
    return {in[0], (in[1] - kernel_) / stride_ + 1, (in[2] - kernel_) / stride_ + 1};
  }
  return in;
}
std::string Stateless::describe() const {
  switch (kind_) {
    case Kind::relu: return "relu";
    case Kind::sigmoid: return "sigmoid";
    case Kind::tanh: return "tanh";
    case Kind::maxpool: return "maxpool " + std::to_string(kernel_);
    case Kind::avgpool: return "avgpool " + std::to_string(kernel_);
    case Kind::flatten: return "flatten";
    case Kind::dropout: return "dropout";
  }
  return "?";
}

// ---- Model ----
namespace {

// One layer as build() makes it: the spec's layer `at` (and the ReLU after
// it when fused), numbered `index`, its input and output shapes (one
// sample) and how many parameters it holds.
struct LayerPlan {
  size_t at = 0;
  int index = 0;
  std::string name;
  bool fuse_relu = false;
  std::vector<int64_t> in, out;
  int64_t parameters = 0;
  std::vector<ParameterShape> shapes;  // weight, then bias
};

// a * b, or -1 when it passes kMaxModelElements (or overflows).
int64_t bounded_product(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > kMaxModelElements) return -1;
  return r;
}
int64_t bounded_product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n = bounded_product(n, d);
  return n;
}

// Every check build() makes, in the order it makes them, without
// allocating: the shapes flow through the layers, and every layer's output
// (per sample) and parameter count, and their total, must be at most
// kMaxModelElements, so no size computed from the spec overflows.
std::vector<LayerPlan> plan(const ModelSpec& spec) {
  if (spec.input.empty()) fail("model ", spec.name, ": input shape is empty");
  for (int64_t d : spec.input)
    if (d <= 0) fail("model ", spec.name, ": input shape ", shape_str(spec.input), " has a non-positive size");
  auto too_big = [&](const std::string& what, const std::vector<int64_t>& dims) {
    fail("model ", spec.name, ": ", what, " ", shape_str(dims), " has more than 2^32 elements");
  };
  if (bounded_product(spec.input) < 0) too_big("input", spec.input);
  std::vector<LayerPlan> out;
  std::vector<int64_t> shape = spec.input;
  int64_t total = 0;
  int index = 0;
  for (size_t at = 0; at < spec.layers.size(); ++at) {
    const LayerSpec& l = spec.layers[at];
    LayerPlan p;
    p.at = at;
    p.index = ++index;
    p.name = l.type + std::to_string(index);
    p.in = shape;
    if (l.type == "linear") {
      if (l.out <= 0) fail("layer ", index, " (linear): \"out\" must be positive");
      if (shape.size() != 1)
        fail("layer ", p.name, ": input is ", shape_str(shape), "; add a flatten layer before it");
      p.parameters = bounded_product(shape[0], l.out);
      if (p.parameters < 0) too_big("layer " + p.name + ": weight", {l.out, shape[0]});
      if (l.bias) p.parameters += l.out;
      p.shapes.push_back({p.name + ".weight", {l.out, shape[0]}});
      if (l.bias) p.shapes.push_back({p.name + ".bias", {l.out}});
      shape = {l.out};
    } else if (l.type == "conv2d") {
      if (l.out <= 0 || l.kernel <= 0)
        fail("layer ", index, " (conv2d): \"out\" and \"kernel\" must be positive");
      if (shape.size() != 3) fail("layer ", index, " (conv2d): needs a (C, H, W) input, gets ", shape_str(shape));
      const int64_t stride = l.stride ? l.stride : 1;
      if (l.pad < 0 || stride < 1 || l.pad > kMaxModelElements || l.kernel > kMaxModelElements)
        fail("layer ", p.name, ": kernel ", l.kernel, ", stride ", stride, ", pad ", l.pad,
             " (a kernel and stride are positive, a pad >= 0, none over 2^32)");
      const int64_t h = shape[1] + 2 * l.pad - l.kernel, w = shape[2] + 2 * l.pad - l.kernel;
      if (h < 0 || w < 0)
        fail("conv2d ", p.name, ".weight: kernel ", l.kernel, " does not fit input ", shape_str(shape));
      p.parameters = bounded_product({l.out, shape[0], l.kernel, l.kernel});
      if (p.parameters < 0) too_big("layer " + p.name + ": weight", {l.out, shape[0], l.kernel, l.kernel});
      if (l.bias) p.parameters += l.out;
      p.shapes.push_back({p.name + ".weight", {l.out, shape[0], l.kernel, l.kernel}});
      if (l.bias) p.shapes.push_back({p.name + ".bias", {l.out}});
      shape = {l.out, h / stride + 1, w / stride + 1};
      // A ReLU right after a convolution runs fused into it (conv2d's relu
      // option): same result, one pass and one buffer fewer. The spec, the
      // parameter names and the layer numbering stay as written.
      p.fuse_relu = at + 1 < spec.layers.size() && spec.layers[at + 1].type == "relu";
      if (p.fuse_relu) {
        ++at;
        ++index;
      }
    } else if (l.type == "relu" || l.type == "sigmoid" || l.type == "tanh") {
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      if (l.kernel <= 0) fail("layer ", index, " (", l.type, "): \"kernel\" must be positive");
      if (shape.size() != 3 || shape[1] < l.kernel || shape[2] < l.kernel)
        fail("layer ", index, " (", l.type, "): window ", l.kernel, " does not fit input ", shape_str(shape));
      const int64_t stride = l.stride ? l.stride : l.kernel;
      if (stride < 1) fail("layer ", index, " (", l.type, "): stride must be >= 1");
      shape = {shape[0], (shape[1] - l.kernel) / stride + 1, (shape[2] - l.kernel) / stride + 1};
    } else if (l.type == "flatten") {
      shape = {bounded_product(shape)};
    } else if (l.type == "dropout") {
      if (!(l.p >= 0 && l.p < 1)) fail("layer ", index, " (dropout): \"p\" must be in [0, 1)");
    } else {
      fail("layer ", index, ": unknown type \"", l.type, "\"");
    }
    if (bounded_product(shape) < 0) too_big("layer " + p.name + ": output", shape);
    total += p.parameters;  // at most 2^32 so far plus 2^33 (weight and bias): no overflow
    if (total > kMaxModelElements) fail("model ", spec.name, ": more than 2^32 parameters");
    p.out = shape;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

std::vector<ParameterShape> parameter_shapes(const ModelSpec& spec) {
  std::vector<ParameterShape> out;
  for (LayerPlan& p : plan(spec))
    for (ParameterShape& s : p.shapes) out.push_back(std::move(s));
  return out;
}

int64_t parameter_count(const ModelSpec& spec) {
  int64_t n = 0;
  for (const LayerPlan& p : plan(spec)) n += p.parameters;
  return n;
}

std::unique_ptr<Model> Model::build(const ModelSpec& spec, uint64_t seed) {
  std::unique_ptr<Model> m(new Model());
  m->spec_ = spec;
  const std::vector<LayerPlan> layers = plan(spec);  // every check, before anything is allocated
  for (const LayerPlan& p : layers) {
    const LayerSpec& l = spec.layers[p.at];
    std::unique_ptr<Module> layer;
    if (l.type == "linear") {
      layer = std::make_unique<Linear>(p.in[0], l.out, l.bias, p.name);
    } else if (l.type == "conv2d") {
      layer = std::make_unique<Conv2d>(
          p.in[0], l.out, l.kernel,
          autograd::Conv2dOptions{.stride = l.stride ? l.stride : 1,
                                  .pad = l.pad,
                                  .circular = l.circular,
                                  .relu = p.fuse_relu},
          l.bias, p.name);
    } else if (l.type == "relu") {
      layer = std::make_unique<Stateless>(Stateless::Kind::relu);
    } else if (l.type == "sigmoid") {
      layer = std::make_unique<Stateless>(Stateless::Kind::sigmoid);
    } else if (l.type == "tanh") {
      layer = std::make_unique<Stateless>(Stateless::Kind::tanh);
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      layer = std::make_unique<Stateless>(
          l.type == "maxpool" ? Stateless::Kind::maxpool : Stateless::Kind::avgpool, l.kernel, l.stride);
    } else if (l.type == "flatten") {
      layer = std::make_unique<Stateless>(Stateless::Kind::flatten);
    } else {
      layer = std::make_unique<Stateless>(Stateless::Kind::dropout, 0, 0, l.p);
    }
    PARE_CHECK(layer->output_shape(p.in) == p.out, p.name, ": the plan's output shape ", shape_str(p.out),
               " differs from the layer's");
    m->shapes_.push_back(p.in);
    m->layers_.push_back(std::move(layer));
  }
  m->shapes_.push_back(layers.empty() ? spec.input : layers.back().out);
  std::vector<Parameter*> params;
  for (auto& layer : m->layers_) layer->collect_parameters(params);
  m->store_.pack(params);
  m->initialize(seed);
  return m;
}

void Model::initialize(uint64_t seed) {
  Rng root(seed);
  const auto& params = store_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter& p = *params[i];
    Rng rng = root.fork(i);
    // fan_in / fan_out from the weight of the layer this parameter belongs to.
    const Parameter& w = p.is_weight ? p : *params[i - 1];
    const Shape& ws = w.value().shape();
    int64_t receptive = 1;
    for (int d = 2; d < ws.ndim(); ++d) receptive *= ws[d];
    const double fan_in = static_cast<double>(ws[1] * receptive);
    const double fan_out = static_cast<double>(ws[0] * receptive);
    float* v = p.value().f32();
    const int64_t n = p.numel();
    const std::string& init = spec_.init;
    if (init == "default") {
      // PyTorch's Linear/Conv default: kaiming_uniform(a=sqrt(5)) for weights,
      // i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases.
      const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
      for (int64_t j = 0; j < n; ++j) v[j] = rng.uniform(-bound, bound);
    } else if (!p.is_weight) {
      for (int64_t j = 0; j < n; ++j) v[j] = 0.0f;
    } else if (init == "kaiming_uniform") {
      const float bound = static_cast<float>(std::sqrt(6.0 / fan_in));
      for (int64_t j = 0; j < n; ++j) v[j] = rng.uniform(-bound, bound);
    } else if (init == "kaiming_normal") {
      const float sd = static_cast<float>(std::sqrt(2.0 / fan_in));
      for (int64_t j = 0; j < n; ++j) v[j] = sd * rng.normal();
    } else if (init == "glorot_uniform") {
      const float bound = static_cast<float>(std::sqrt(6.0 / (fan_in + fan_out)));
      for (int64_t j = 0; j < n; ++j) v[j] = rng.uniform(-bound, bound);
    } else if (init == "glorot_normal") {
      const float sd = static_cast<float>(std::sqrt(2.0 / (fan_in + fan_out)));
      for (int64_t j = 0; j < n; ++j) v[j] = sd * rng.normal();
    } else {
      fail("model ", spec_.name, ": unknown init \"", init, "\"");
    }
    p.initial.copy_from(p.value());
    p.apply_mask();
  }
}

Var Model::forward(const Var& x, ForwardContext& ctx) {
  const Shape& s = x.shape();
  bool fits = s.ndim() == static_cast<int>(spec_.input.size()) + 1;
  for (size_t i = 0; fits && i < spec_.input.size(); ++i) fits = s[static_cast<int>(i) + 1] == spec_.input[i];
  if (!fits) {
    // Accept a flat input of the right size for a shaped model and vice versa.
    if (s.ndim() >= 1 && s.numel() == s[0] * product(spec_.input)) {
      std::vector<int64_t> dims{s[0]};
      dims.insert(dims.end(), spec_.input.begin(), spec_.input.end());
      return forward(autograd::reshape(x, Shape(std::span<const int64_t>(dims))), ctx);
    }
    fail("model ", spec_.name, ": input ", s.str(), " does not match the spec's input ",
         shape_str(spec_.input), " (plus a batch dimension)");
  }
  Var h = x;
  for (auto& layer : layers_) h = layer->forward(h, ctx);
  return h;
}

Var Model::loss(const Var& output, const Tensor& targets) const {
  if (spec_.loss == "softmax_cross_entropy") return autograd::softmax_cross_entropy(output, targets);
  if (spec_.loss == "bce_with_logits") return autograd::bce_with_logits(output, targets);
  if (spec_.loss == "mse") return autograd::mse(output, targets);
  fail("model ", spec_.name, ": unknown loss \"", spec_.loss, "\"");
}

Parameter* Model::find(const std::string& name) const {
  for (Parameter* p : store_.params())
    if (p->name == name) return p;
  return nullptr;
}

int64_t Model::forward_macs() const {
  int64_t total = 0;
  for (size_t i = 0; i < layers_.size(); ++i) total += layers_[i]->forward_macs(shapes_[i]);
  return total;
}

std::vector<std::pair<const Parameter*, int64_t>> Model::weight_macs() const {
  std::vector<std::pair<const Parameter*, int64_t>> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::vector<Parameter*> ps;
    layers_[i]->collect_parameters(ps);
    for (Parameter* p : ps)
      if (p->is_weight) out.emplace_back(p, layers_[i]->forward_macs(shapes_[i]));
  }
  return out;
}

std::string Model::summary() const {
  std::ostringstream os;
  os << "model " << spec_.name << ": input " << shape_str(spec_.input) << ", "
     << num_parameters() << " parameters, " << forward_macs() << " MACs/sample forward\n";
  for (size_t i = 0; i < layers_.size(); ++i) {
    std::vector<Parameter*> ps;
    layers_[i]->collect_parameters(ps);
    int64_t n = 0;
    for (Parameter* p : ps) n += p->numel();
    os << "  " << layers_[i]->describe() << " -> " << shape_str(shapes_[i + 1]);
    if (n) os << "  [" << n << " params]";
    os << "\n";
  }
  os << "  loss " << spec_.loss;
  return os.str();
}

}  // namespace pare::nn
