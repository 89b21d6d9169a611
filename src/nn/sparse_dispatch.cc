// Measured choice between dense and sparse layers (see sparse_dispatch.h).
#include "pare/nn/sparse_dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pare/base/clock.h"
#include "pare/base/file.h"
#include "pare/base/thread_pool.h"
#include "pare/kernels/sparse.h"

namespace pare::nn {

using autograd::Var;
using json = nlohmann::json;

SparseMode parse_sparse_mode(const std::string& name) {
  if (name == "off") return SparseMode::off;
  if (name == "on") return SparseMode::on;
  if (name == "auto") return SparseMode::automatic;
  fail("--sparse must be auto, on or off, got \"", name, "\"");
}

const char* sparse_mode_name(SparseMode mode) {
  switch (mode) {
    case SparseMode::off: return "off";
    case SparseMode::on: return "on";
    case SparseMode::automatic: return "auto";
  }
  return "?";
}

namespace {

#if defined(__AVX512F__)
constexpr bool kSellVectorised = true;
#else
constexpr bool kSellVectorised = false;
#endif

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown cpu";
}

const char* isa() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}

// Median wall time of each of `fns`, timed in turn (fns[0], fns[1], ...,
// fns[0], ...) so that a slow spell of the machine (this VM has spells of
// minutes in which everything runs 1.4x slower) falls on all of them alike
// instead of on whichever was being timed: repetitions worth about `budget`
// seconds per function (at least 3, at most 25), after one warm-up call each.
std::vector<double> median_seconds_in_turn(const std::vector<std::function<void()>>& fns,
                                           double budget) {
  double once = 1e-7;
  for (const auto& fn : fns) {
    fn();
    Stopwatch first;
    fn();
    once = std::max(once, first.seconds());
  }
  const int reps = static_cast<int>(std::clamp(budget / once, 3.0, 25.0));
  std::vector<std::vector<double>> t(fns.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      Stopwatch s;
      fns[i]();
      t[i].push_back(s.seconds());
    }
  std::vector<double> medians;
  for (auto& v : t) {
    std::nth_element(v.begin(), v.begin() + reps / 2, v.end());
    medians.push_back(v[static_cast<size_t>(reps / 2)]);
  }
  return medians;
}

double measure_crossover(int64_t rows, int64_t cols, int64_t batch, bool training, bool input_grad) {
  Rng rng(0x5BA45E);
  Tensor x = Tensor::empty({batch, cols});
  Tensor w = Tensor::empty({rows, cols});
  Tensor b = Tensor::empty({rows});
  for (float& v : x.span_f32()) v = rng.uniform(-1.0f, 1.0f);
  for (float& v : w.span_f32()) v = rng.uniform(-0.1f, 0.1f);
  for (float& v : b.span_f32()) v = rng.uniform(-0.1f, 0.1f);
  Tensor seed = Tensor::full({batch, rows}, 1.0f / static_cast<float>(batch * rows));
  // The sparse side runs packed, as training and `pare eval` do.
  std::map<const CsrPattern*, Tensor> packed_values;
  std::map<const CsrPattern*, std::shared_ptr<const SellMatrix>> sell_of;
  auto run = [&](const std::shared_ptr<const CsrPattern>& pattern) {
    Var xv(x, training && input_grad), bv(b, training);
    Var y;
    if (pattern) {
      Tensor& values = packed_values[pattern.get()];
      if (!values.defined()) {
        values = Tensor::empty({pattern->nnz()});
        pattern->gather(w.f32(), values.f32(), nullptr);
      }
      if (kSellVectorised && !training && batch == 1) {  // as a one-sample inference dispatch runs it
        auto& sell = sell_of[pattern.get()];
        if (!sell) sell = std::make_shared<const SellMatrix>(SellMatrix::from_csr(*pattern, values.f32()));
        autograd::NoGradGuard no_grad;
        y = autograd::sell_linear(xv, sell, bv);
      } else {
        y = autograd::sparse_linear_packed(xv, Var(values, training), bv, pattern);
      }
    } else {
      y = autograd::linear(xv, Var(w, training), bv);
    }
    if (training) y.backward(seed);
  };
  auto pattern_at = [&](double density) {
    Tensor mask = Tensor::empty({rows, cols});
    for (float& m : mask.span_f32()) m = rng.uniform() < density ? 1.0f : 0.0f;
    return std::make_shared<const CsrPattern>(CsrPattern::from_mask(rows, cols, mask.f32()));
  };
  // Three densities around where crossovers fall (sparse time is close to
  // linear in the density, a little cheaper per nonzero as rows fill up and
  // the kernels' column blocks pay), timed in turn with the dense op.
  const auto p1 = pattern_at(0.05), p2 = pattern_at(0.3), p3 = pattern_at(0.7);
  const std::vector<double> t = median_seconds_in_turn(
      {[&] { run(nullptr); }, [&] { run(p1); }, [&] { run(p2); }, [&] { run(p3); }}, 0.05);
  return crossover_density(t[0], {{p1->density(), t[1]}, {p2->density(), t[2]}, {p3->density(), t[3]}});
}

std::mutex cache_mutex;
std::map<std::string, double>& memory_cache() {
  static std::map<std::string, double> cache;
  return cache;
}

}  // namespace

std::string sparse_crossover_cache_path() {
  if (const char* d = std::getenv("PARE_CACHE_DIR"); d && *d)
    return std::string(d) + "/sparse_crossover.json";
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d)
    return std::string(d) + "/pare/sparse_crossover.json";
  if (const char* d = std::getenv("HOME"); d && *d)
    return std::string(d) + "/.cache/pare/sparse_crossover.json";
  return "";
}

double crossover_density(double dense, const std::vector<std::pair<double, double>>& points_in) {
  PARE_CHECK(!points_in.empty(), "crossover_density: no measurements");
  // By density; a tiny weight's patterns may share one (0.05 and 0.3 of 4
  // entries are both 0 or 1 of them): keep the first of each.
  std::vector<std::pair<double, double>> points;
  for (const auto& p : points_in)
    if (std::none_of(points.begin(), points.end(), [&](const auto& q) { return q.first == p.first; }))
      points.push_back(p);
  std::sort(points.begin(), points.end());
  const auto [d0, s0] = points.front();
  if (s0 >= dense) return std::clamp(s0 > 0 ? d0 * dense / s0 : 0.0, 0.0, 1.0);
  for (size_t i = 0; i + 1 < points.size(); ++i) {
    const auto [da, sa] = points[i];
    const auto [db, sb] = points[i + 1];
    if (sa < dense && dense <= sb)
      return std::clamp(da + (dense - sa) * (db - da) / (sb - sa), 0.0, 1.0);
  }
  if (points.size() < 2) return 1.0;  // sparse faster at the one density measured
  const auto [da, sa] = points[points.size() - 2];
  const auto [db, sb] = points.back();
  const double slope = (sb - sa) / (db - da);
  return slope > 0 ? std::clamp(db + (dense - sb) / slope, 0.0, 1.0) : 1.0;
}

double sparse_crossover(int64_t rows, int64_t cols, int64_t batch, bool training, bool input_grad) {
  if (const char* v = std::getenv("PARE_SPARSE_CROSSOVER"); v && *v) {
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= 0 && d <= 1))
      fail("PARE_SPARSE_CROSSOVER=", v, ": must be a density in [0, 1]");
    return d;
  }
  std::ostringstream key;
  key << cpu_model() << " | " << isa() << " kernels r" << kernels::kSparseKernelsRevision
      << " | threads " << num_threads() << " | " << rows << "x"
      << cols << " batch " << batch
      << (training ? (input_grad ? " train" : " train, no input gradient") : " infer");
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto& cache = memory_cache();
  if (auto it = cache.find(key.str()); it != cache.end()) return it->second;
  const std::string path = sparse_crossover_cache_path();
  json file = json::object();
  if (!path.empty() && file_exists(path)) {
    try {
      file = json::parse(read_file(path));
      if (!file.is_object()) file = json::object();
    } catch (const std::exception&) {
      file = json::object();  // a damaged cache is measured again, not fatal
    }
    if (auto it = file.find(key.str()); it != file.end() && it->is_number()) {
      const double d = it->get<double>();
      if (d >= 0 && d <= 1) return cache[key.str()] = d;
    }
  }
  const double d = measure_crossover(rows, cols, batch, training, input_grad);
  cache[key.str()] = d;
  if (!path.empty()) {
    try {
      file[key.str()] = d;
      make_dirs(path.substr(0, path.rfind('/')));
      write_file_atomic(path, file.dump(1));
    } catch (const std::exception&) {
      // An unwritable cache only means measuring again next time.
    }
  }
  return d;
}

namespace {

// A packed weight's gradient back into the dense one (0 while packed), before
// the packed storage goes.
void unpack_gradient(Parameter& p) {
  if (p.packed.defined()) p.sparse->scatter_add(p.packed.grad().f32(), p.grad().f32());
}

}  // namespace

std::vector<LayerDispatch> dispatch_sparse(Model& model, SparseMode mode, int64_t batch,
                                           bool training, bool packed,
                                           const std::vector<std::string>* decided) {
  // The kind decided for the next layer (null: choose).
  size_t next_decided = 0;
  auto take_decided = [&](bool masked) -> const std::string* {
    if (!decided) return nullptr;
    if (next_decided >= decided->size())
      fail("sparse dispatch: ", decided->size(), " decided kinds for a model with more weight layers");
    const std::string& k = (*decided)[next_decided++];
    if (k != (masked ? "masked-dense" : "dense") && !(masked && k == "sparse"))
      fail("sparse dispatch: kind \"", k, "\" does not fit ", masked ? "a masked" : "an unmasked", " weight");
    return &k;
  };
  std::map<const Parameter*, int64_t> macs_of;
  for (const auto& [p, macs] : model.weight_macs()) macs_of[p] = macs;
  std::vector<LayerDispatch> out;
  // Layers run in parameter order; the first weight layer is fed the data,
  // whose gradient training never needs.
  bool first_layer = true;
  for (Parameter* p : model.parameters()) {
    const auto found = macs_of.find(p);
    if (found == macs_of.end()) continue;  // not a layer's weight (biases)
    const int64_t macs = found->second;
    const int ndim = p->value().ndim();
    if (ndim != 2 && ndim != 4) continue;  // linear (out, in) and conv2d (OC, C, KH, KW)
    LayerDispatch d;
    d.name = p->name;
    d.rows = p->value().dim(0);
    d.cols = d.rows > 0 ? p->numel() / d.rows : 0;
    // The products' column count: the batch for a linear layer, the batch's
    // patches (B * OH * OW) for a convolution, whose weight meets each patch.
    const int64_t columns = batch * (p->numel() > 0 ? macs / p->numel() : 1);
    unpack_gradient(*p);
    p->sparse.reset();
    p->packed = Var();
    p->sell.reset();
    const std::string* kind = take_decided(p->mask.defined());
    const bool input_grad = !first_layer;
    first_layer = false;
    if (!p->mask.defined()) {
      d.kind = "dense";
      out.push_back(d);
      continue;
    }
    auto pattern =
        std::make_shared<const CsrPattern>(CsrPattern::from_mask(d.rows, d.cols, p->mask.f32()));
    d.density = pattern->density();
    bool sparse = mode == SparseMode::on;
    if (kind) {
      sparse = *kind == "sparse";
    } else if (mode == SparseMode::automatic) {
      d.crossover = sparse_crossover(d.rows, d.cols, columns, training, input_grad);
      sparse = d.density < d.crossover;
    }
    if (sparse && packed) {
      Tensor values = Tensor::empty({pattern->nnz()});
      pattern->gather(p->value().f32(), values.f32(), nullptr);
      p->packed = Var(values, /*requires_grad=*/true);
      // The gradient moves with the values (dispatch may run between a
      // backward pass and its update); the dense one stays 0 while packed,
      // so zeroing gradients can skip it.
      Tensor grad = Tensor::empty({pattern->nnz()});
      pattern->gather(p->grad().f32(), grad.f32(), nullptr);
      p->packed.bind_grad(grad);
      p->grad().zero();
      // Inference on single samples: the layout without gathers, built once
      // (its kernel needs AVX-512's two-register permute; elsewhere the
      // gathered CSR product is the faster one).
      if (kSellVectorised && !training && ndim == 2)
        p->sell = std::make_shared<const SellMatrix>(SellMatrix::from_csr(*pattern, values.f32()));
    }
    if (sparse) p->sparse = std::move(pattern);
    d.kind = sparse ? "sparse" : "masked-dense";
    out.push_back(d);
  }
  if (decided && next_decided != decided->size())
    fail("sparse dispatch: ", decided->size(), " decided kinds for a model with ", next_decided,
         " weight layers");
  return out;
}

void sync_sparse_to_dense(Model& model) {
  for (Parameter* p : model.parameters())
    if (p->packed.defined()) p->sparse->scatter(p->packed.value().f32(), p->value().f32());
}

void clear_sparse(Model& model) {
  sync_sparse_to_dense(model);
  for (Parameter* p : model.parameters()) {
    unpack_gradient(*p);
    p->sparse.reset();
    p->packed = Var();
    p->sell.reset();
  }
}

bool any_sparse(const Model& model) {
  for (const Parameter* p : model.parameters())
    if (p->sparse) return true;
  return false;
}

std::string describe(const std::vector<LayerDispatch>& layers) {
  std::ostringstream os;
  os.precision(3);
  for (const LayerDispatch& d : layers) {
    os << d.name << " " << d.rows << "x" << d.cols << " density " << d.density;
    if (d.crossover >= 0) os << " crossover " << d.crossover;
    os << " -> " << d.kind << "\n";
  }
  return os.str();
}

}  // namespace pare::nn
