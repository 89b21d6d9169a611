// Structured pruning that shrinks the model: unit selection by L1 norm, the
// equivalent masks, and the smaller dense model built from a reduced spec.
//
// Every weight is viewed as (O, I, G): O output units (rows / filters), I
// input units (the previous layer's units, or the model's input features or
// channels for the first layer) and G entries per (output, input) pair: 1 for
// linear after linear, K*K for a convolution, H*W for a linear reading a
// flattened convolution output. Removing unit u of layer i then means
// dropping slice [u, :, :] of weight i, entry u of bias i and slice [:, u, :]
// of weight i+1; masking and shrinking are the same walk over that view.
#include "pare/prune/shrink.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "pare/base/error.h"

namespace pare::prune {
namespace {

// One weight layer of the model and how its input reads the previous one.
struct WeightLayer {
  size_t at = 0;     // index in spec().layers
  std::string name;  // "linear3", as in the parameter names
  nn::Parameter* weight = nullptr;
  nn::Parameter* bias = nullptr;  // null without bias
  int64_t units = 0;              // O
  int64_t in_units = 0;           // I
  int64_t group = 0;              // G
};

// Layers that act on each unit (feature or channel) on its own, so a removed
// unit's value never reaches another unit except through the next weight.
// Dropout is one too: at evaluation it is the identity, and in training it
// scales units independently. Flatten keeps channels in contiguous H*W runs.
bool per_unit(const std::string& type) {
  return type == "relu" || type == "sigmoid" || type == "tanh" || type == "dropout" ||
         type == "maxpool" || type == "avgpool" || type == "flatten";
}

// The weight layers in model order (the order of prunable(model)), checked
// for being shrinkable. Parameter names come from the builder: the layer's
// type and its 1-based position in the spec.
std::vector<WeightLayer> weight_layers(const nn::Model& model) {
  const nn::ModelSpec& spec = model.spec();
  std::vector<WeightLayer> out;
  for (size_t at = 0; at < spec.layers.size(); ++at) {
    const std::string& type = spec.layers[at].type;
    if (type != "linear" && type != "conv2d") {
      if (!per_unit(type))
        fail("model ", spec.name, ": cannot shrink across layer ", at + 1, " (", type,
             "): only relu, sigmoid, tanh, dropout, pooling and flatten may sit between weight "
             "layers");
      continue;
    }
    WeightLayer w;
    w.at = at;
    w.name = type + std::to_string(at + 1);
    w.weight = model.find(w.name + ".weight");
    w.bias = model.find(w.name + ".bias");
    PARE_CHECK(w.weight, "model ", spec.name, " has no parameter ", w.name, ".weight");
    const Shape& s = w.weight->value().shape();
    w.units = s[0];
    if (out.empty()) {
      w.in_units = s[1];  // the model's inputs are never removed
    } else {
      const WeightLayer& prev = out.back();
      if (prev.weight->value().ndim() == 2 && s.ndim() != 2)
        fail("model ", spec.name, ": cannot shrink ", prev.name, " feeding ", w.name,
             " (a linear layer feeding a convolution)");
      w.in_units = prev.units;
    }
    PARE_CHECK(w.in_units > 0 && w.weight->numel() % (w.units * w.in_units) == 0, w.name,
               ": weight ", s.str(), " does not split over ", w.in_units, " input units");
    w.group = w.weight->numel() / (w.units * w.in_units);
    // A convolution's G is its kernel area; a linear's G > 1 only after a
    // flatten, where it is the spatial size H*W of each channel.
    out.push_back(w);
  }
  return out;
}

std::string list_kept(const WeightLayer& w, size_t n) {
  return w.name + " keeps " + std::to_string(n) + " of " + std::to_string(w.units) + " units";
}

// Raises Error unless `units` fits the model's weight layers.
void check_selection(const nn::Model& model, const std::vector<WeightLayer>& layers,
                     const UnitSelection& units) {
  if (units.keep.size() != layers.size())
    fail("unit selection lists ", units.keep.size(), " layers, model ", model.spec().name, " has ",
         layers.size(), " weight layers");
  for (size_t i = 0; i < layers.size(); ++i) {
    const WeightLayer& w = layers[i];
    const std::vector<int64_t>& keep = units.keep[i];
    if (keep.empty()) fail(w.name, ": unit selection keeps no units (a layer needs at least one)");
    for (size_t j = 0; j < keep.size(); ++j) {
      if (keep[j] < 0 || keep[j] >= w.units)
        fail(w.name, ": kept unit ", keep[j], " is out of range (", w.units, " units)");
      if (j && keep[j] <= keep[j - 1])
        fail(w.name, ": kept units must be ascending and distinct (", keep[j - 1], " then ",
             keep[j], ")");
    }
    if (i + 1 == layers.size() && static_cast<int64_t>(keep.size()) != w.units)
      fail(w.name, " is the output layer and must keep all its units (", list_kept(w, keep.size()),
           ")");
  }
}

std::vector<int64_t> all_units(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// The kept input units of layer i: the previous layer's kept units, or all
// inputs for the first layer.
std::vector<int64_t> kept_inputs(const std::vector<WeightLayer>& layers, const UnitSelection& units,
                                 size_t i) {
  return i == 0 ? all_units(layers[0].in_units) : units.keep[i - 1];
}

// dst[o', i', g] = src[rows[o'], cols[i'], g] for a source viewed as
// (.., in_units, group); works for biases with in_units = group = 1.
void gather(const Tensor& src, Tensor& dst, const std::vector<int64_t>& rows,
            const std::vector<int64_t>& cols, int64_t in_units, int64_t group) {
  PARE_CHECK(dst.numel() == static_cast<int64_t>(rows.size() * cols.size()) * group);
  const float* s = src.f32();
  float* d = dst.f32();
  for (int64_t o : rows)
    for (int64_t c : cols) {
      const float* from = s + (o * in_units + c) * group;
      d = std::copy(from, from + group, d);
    }
}

// Zeroes the (output unit, input unit) slices that are not kept in a mask
// viewed as (out_units, in_units, group).
void mask_slices(Tensor& mask, const std::vector<int64_t>& rows, const std::vector<int64_t>& cols,
                 int64_t out_units, int64_t in_units, int64_t group) {
  std::vector<char> row_kept(static_cast<size_t>(out_units), 0),
      col_kept(static_cast<size_t>(in_units), 0);
  for (int64_t o : rows) row_kept[static_cast<size_t>(o)] = 1;
  for (int64_t c : cols) col_kept[static_cast<size_t>(c)] = 1;
  float* m = mask.f32();
  for (int64_t o = 0; o < out_units; ++o)
    for (int64_t c = 0; c < in_units; ++c)
      if (!row_kept[static_cast<size_t>(o)] || !col_kept[static_cast<size_t>(c)])
        std::fill_n(m + (o * in_units + c) * group, group, 0.0f);
}

// Copies the kept entries of `src` (value, initial value, mask) into `dst`.
// The mask is carried only if its kept part still has a zero: an all-ones
// mask means the same as none, and leaving it out keeps the shrunk model
// dense (no mask bytes in memory or in its saved file).
void copy_kept(const nn::Parameter& src, nn::Parameter& dst, const std::vector<int64_t>& rows,
               const std::vector<int64_t>& cols, int64_t in_units, int64_t group) {
  PARE_CHECK(dst.numel() == static_cast<int64_t>(rows.size() * cols.size()) * group, dst.name,
             ": shrunk shape ", dst.value().shape().str(), " does not match the selection");
  gather(src.value(), dst.value(), rows, cols, in_units, group);
  if (src.initial.defined()) gather(src.initial, dst.initial, rows, cols, in_units, group);
  if (src.mask.defined()) {
    Tensor mask = Tensor::empty(dst.value().shape());
    gather(src.mask, mask, rows, cols, in_units, group);
    const auto m = mask.span_f32();
    if (std::find(m.begin(), m.end(), 0.0f) != m.end()) dst.mask = mask;
  }
}

// L1 norm of each output unit of a weight over its alive entries.
std::vector<double> l1_norms(const nn::Parameter& w) {
  const int64_t units = w.value().dim(0), per = w.numel() / units;
  const float* v = w.value().f32();
  const float* m = w.mask.defined() ? w.mask.f32() : nullptr;
  std::vector<double> norms(static_cast<size_t>(units), 0.0);
  for (int64_t u = 0; u < units; ++u) {
    double sum = 0;
    for (int64_t j = u * per; j < (u + 1) * per; ++j)
      if (!m || m[j] != 0.0f) sum += std::fabs(static_cast<double>(v[j]));
    norms[static_cast<size_t>(u)] = sum;
  }
  return norms;
}

}  // namespace

UnitSelection select_units_l1(const nn::Model& model, double keep_fraction) {
  if (!(keep_fraction > 0.0 && keep_fraction <= 1.0))
    fail("select_units_l1: keep_fraction must be in (0, 1], got ", keep_fraction);
  std::vector<nn::Parameter*> weights;
  for (nn::Parameter* p : model.parameters())
    if (p->is_weight) weights.push_back(p);
  UnitSelection sel;
  for (size_t i = 0; i < weights.size(); ++i) {
    const int64_t units = weights[i]->value().dim(0);
    if (i + 1 == weights.size()) {
      sel.keep.push_back(all_units(units));
      break;
    }
    // The small slack keeps 0.3 * 10 (= 3.0000000000000004) at 3 units.
    const int64_t n = std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(keep_fraction * static_cast<double>(units) - 1e-9)), 1,
        units);
    // Computed here rather than with prune::unit_l1_norms so that shrinking
    // does not depend on the criteria; the definition is the same.
    const std::vector<double> norms = l1_norms(*weights[i]);
    std::vector<int64_t> order = all_units(units);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return norms[static_cast<size_t>(a)] > norms[static_cast<size_t>(b)];
    });
    order.resize(static_cast<size_t>(n));
    std::sort(order.begin(), order.end());
    sel.keep.push_back(std::move(order));
  }
  return sel;
}

void mask_units(nn::Model& model, const UnitSelection& units) {
  const std::vector<WeightLayer> layers = weight_layers(model);
  check_selection(model, layers, units);
  // Only parameters that lose entries get a mask; an existing mask is
  // narrowed, never widened, so earlier pruning stays.
  auto mask_of = [](nn::Parameter& p) -> Tensor& {
    if (!p.mask.defined()) p.mask = Tensor::full(p.value().shape(), 1.0f);
    return p.mask;
  };
  for (size_t i = 0; i < layers.size(); ++i) {
    const WeightLayer& w = layers[i];
    const std::vector<int64_t> cols = kept_inputs(layers, units, i);
    const std::vector<int64_t>& rows = units.keep[i];
    if (static_cast<int64_t>(rows.size()) == w.units &&
        static_cast<int64_t>(cols.size()) == w.in_units)
      continue;
    mask_slices(mask_of(*w.weight), rows, cols, w.units, w.in_units, w.group);
    w.weight->apply_mask();
    if (w.bias && static_cast<int64_t>(rows.size()) != w.units) {
      mask_slices(mask_of(*w.bias), rows, {0}, w.units, 1, 1);
      w.bias->apply_mask();
    }
  }
}

std::unique_ptr<nn::Model> shrink(const nn::Model& model, const UnitSelection& units) {
  const std::vector<WeightLayer> layers = weight_layers(model);
  check_selection(model, layers, units);
  // Same spec with narrower layers: name, input normalisation, loss and init
  // carry over unchanged (the widths in the spec tell the models apart).
  nn::ModelSpec spec = model.spec();
  for (size_t i = 0; i < layers.size(); ++i)
    spec.layers[layers[i].at].out = static_cast<int64_t>(units.keep[i].size());
  std::unique_ptr<nn::Model> small = nn::Model::build(spec, 0);
  for (size_t i = 0; i < layers.size(); ++i) {
    const WeightLayer& w = layers[i];
    const std::vector<int64_t>& rows = units.keep[i];
    nn::Parameter* weight = small->find(w.weight->name);
    PARE_CHECK(weight, "shrunk model lacks ", w.weight->name);
    copy_kept(*w.weight, *weight, rows, kept_inputs(layers, units, i), w.in_units, w.group);
    if (w.bias) {
      nn::Parameter* bias = small->find(w.bias->name);
      PARE_CHECK(bias, "shrunk model lacks ", w.bias->name);
      copy_kept(*w.bias, *bias, rows, {0}, 1, 1);
    }
  }
  return small;
}

}  // namespace pare::prune
