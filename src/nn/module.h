// Layers (modules) and the Model that chains them.
//
// A Module maps one Var to one Var and owns its Parameters. Models are built
// from a ModelSpec (spec.h) so that the same network can come from a preset,
// from a JSON file, or from C++ in a few lines:
//
//   auto model = pare::nn::Model::build(pare::nn::preset("lenet300"), /*seed=*/0);
//   auto logits = model.forward(x, ctx);
//   auto loss = model.loss(logits, labels);
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pare/autograd/ops.h"
#include "pare/base/rng.h"
#include "pare/nn/parameter.h"
#include "pare/nn/spec.h"

namespace pare::nn {

// What a forward pass needs besides its input.
struct ForwardContext {
  bool training = true;  // dropout active
  Rng* rng = nullptr;    // dropout's random stream; required when training with dropout
  // Replacement leaves, indexed by Parameter::index: lets several threads run
  // forward/backward on shards of one batch at once, each accumulating into
  // its own gradient buffer while sharing the parameter values. Null: use
  // each Parameter's own Var.
  const std::vector<autograd::Var>* leaves = nullptr;

  const autograd::Var& var(const Parameter& p) const {
    if (!leaves || !p.var.defined()) return p.var;
    return (*leaves)[static_cast<size_t>(p.index)];
  }
};

class Module {
 public:
  virtual ~Module() = default;
  virtual autograd::Var forward(const autograd::Var& x, ForwardContext& ctx) = 0;
  virtual void collect_parameters(std::vector<Parameter*>& out) {}
  // Output shape (without batch) for an input shape (without batch); raises
  // Error if the input does not fit.
  virtual std::vector<int64_t> output_shape(const std::vector<int64_t>& in) const { return in; }
  // Multiply-accumulates of one forward pass for one sample.
  virtual int64_t forward_macs(const std::vector<int64_t>& in) const { return 0; }
  virtual std::string describe() const = 0;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, const std::string& name);
  autograd::Var forward(const autograd::Var& x, ForwardContext& ctx) override;
  void collect_parameters(std::vector<Parameter*>& out) override;
  std::vector<int64_t> output_shape(const std::vector<int64_t>& in) const override;
  int64_t forward_macs(const std::vector<int64_t>& in) const override { return in_ * out_; }
  std::string describe() const override;
  Parameter weight, bias;  // weight: (out, in); bias: (out,) or empty

 private:
  int64_t in_, out_;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel,
         autograd::Conv2dOptions opt, bool bias, const std::string& name);
  autograd::Var forward(const autograd::Var& x, ForwardContext& ctx) override;
  void collect_parameters(std::vector<Parameter*>& out) override;
  std::vector<int64_t> output_shape(const std::vector<int64_t>& in) const override;
  int64_t forward_macs(const std::vector<int64_t>& in) const override;
  std::string describe() const override;
  Parameter weight, bias;  // weight: (OC, C, K, K); bias: (OC,) or empty

 private:
  int64_t in_, out_, kernel_;
  autograd::Conv2dOptions opt_;
};

// Parameter-free layers: relu, sigmoid, tanh, maxpool, avgpool, flatten, dropout.
class Stateless : public Module {
 public:
  enum class Kind { relu, sigmoid, tanh, maxpool, avgpool, flatten, dropout };
  Stateless(Kind kind, int64_t kernel = 0, int64_t stride = 0, float p = 0);
  autograd::Var forward(const autograd::Var& x, ForwardContext& ctx) override;
  std::vector<int64_t> output_shape(const std::vector<int64_t>& in) const override;
  std::string describe() const override;

 private:
  Kind kind_;
  int64_t kernel_, stride_;
  float p_;
};

// The most elements a spec may give any layer's output (one sample), any
// layer's parameters and all of them together (2^32: 16 GiB of floats, far
// beyond the networks pare trains): Model::build refuses a spec past it
// before it allocates, so no size computed from a spec overflows.
inline constexpr int64_t kMaxModelElements = int64_t{1} << 32;

// The parameters Model::build(spec) makes, by name ("conv2d1.weight") and
// shape, in build's order, and how many values they hold: computed from the
// spec alone, nothing allocated. Raise the Error build() would raise when the
// spec's shapes do not fit or pass kMaxModelElements. A reader of a model
// file compares them with the tensors the file holds before it builds.
struct ParameterShape {
  std::string name;
  std::vector<int64_t> dims;
};
std::vector<ParameterShape> parameter_shapes(const ModelSpec& spec);
int64_t parameter_count(const ModelSpec& spec);

// A built network: layers in order, their parameters in one store, and the loss.
class Model {
 public:
  // Builds the layers of `spec` and initialises them from `seed` (each
  // parameter from its own forked stream, so adding a layer at the end does
  // not change the others). Raises Error when the spec's shapes do not fit.
  static std::unique_ptr<Model> build(const ModelSpec& spec, uint64_t seed);

  autograd::Var forward(const autograd::Var& x, ForwardContext& ctx);
  // The spec's loss between the network output and targets (labels i32 for
  // softmax cross-entropy, f32 of the output's size otherwise).
  autograd::Var loss(const autograd::Var& output, const Tensor& targets) const;

  const ModelSpec& spec() const { return spec_; }
  ParameterStore& store() { return store_; }
  const std::vector<Parameter*>& parameters() const { return store_.params(); }
  Parameter* find(const std::string& name) const;
  int64_t num_parameters() const { return store_.numel(); }
  // Multiply-accumulates of one forward pass for one sample.
  int64_t forward_macs() const;
  // The same, per weight parameter (in parameter order, weights only): the
  // MACs a layer's weight takes part in, which scale with its density when
  // the layer runs sparse. Used to count the FLOPs a pruned net really needs.
  std::vector<std::pair<const Parameter*, int64_t>> weight_macs() const;
  // Input shape (without batch) of each layer, then the output shape.
  const std::vector<std::vector<int64_t>>& layer_shapes() const { return shapes_; }
  // One line per layer with its output shape and parameter count.
  std::string summary() const;
  // Re-initialises every parameter from `seed` as build() would.
  void initialize(uint64_t seed);

 private:
  Model() = default;
  ModelSpec spec_;
  std::vector<std::unique_ptr<Module>> layers_;
  std::vector<std::vector<int64_t>> shapes_;  // input shape of each layer, then the output
  ParameterStore store_;
};

}  // namespace pare::nn
