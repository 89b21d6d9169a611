// Compares two saved models (model.bin) parameter by parameter, for the
// data-parallel tests: prints the largest absolute difference relative to the
// largest weight of its parameter, and exits 1 when it exceeds the tolerance
// given, when the models differ in structure or masks, or when a masked entry
// is not exactly zero. A tolerance of 0 demands the same bits.
//
//   compare_models A/model.bin B/model.bin TOLERANCE
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "pare/base/error.h"
#include "pare/train/trainer.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: compare_models A B TOLERANCE\n");
    return 2;
  }
  try {
    const double tolerance = std::atof(argv[3]);
    auto a = pare::train::load_model(argv[1]);
    auto b = pare::train::load_model(argv[2]);
    const auto& pa = a->parameters();
    const auto& pb = b->parameters();
    if (pa.size() != pb.size()) pare::fail("the models have ", pa.size(), " and ", pb.size(), " parameters");
    double worst = 0;
    std::string worst_name;
    int64_t differing = 0, total = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
      const auto& x = *pa[i];
      const auto& y = *pb[i];
      if (x.name != y.name || x.value().shape() != y.value().shape())
        pare::fail("parameter ", i, ": ", x.name, " ", x.value().shape().str(), " vs ", y.name, " ",
                   y.value().shape().str());
      if (x.mask.defined() != y.mask.defined()) pare::fail(x.name, ": masked in one model only");
      if (x.mask.defined() &&
          std::memcmp(x.mask.f32(), y.mask.f32(), static_cast<size_t>(x.numel()) * sizeof(float)) != 0)
        pare::fail(x.name, ": the masks differ");
      const float* u = x.value().f32();
      const float* v = y.value().f32();
      double scale = 0, diff = 0;
      for (int64_t j = 0; j < x.numel(); ++j) {
        if (x.mask.defined() && x.mask.f32()[j] == 0.0f && (u[j] != 0.0f || v[j] != 0.0f))
          pare::fail(x.name, "[", j, "]: pruned but not zero (", u[j], ", ", v[j], ")");
        scale = std::max(scale, static_cast<double>(std::fabs(u[j])));
        diff = std::max(diff, std::fabs(static_cast<double>(u[j]) - static_cast<double>(v[j])));
        differing += std::memcmp(&u[j], &v[j], sizeof(float)) != 0;
      }
      total += x.numel();
      const double rel = scale > 0 ? diff / scale : diff;
      if (rel > worst || worst_name.empty()) {
        worst = rel;
        worst_name = x.name;
      }
    }
    std::printf("%lld of %lld weights differ in their bits; largest difference %.3g of the largest |weight| (in %s); tolerance %.3g\n",
                static_cast<long long>(differing), static_cast<long long>(total), worst, worst_name.c_str(),
                tolerance);
    const bool ok = tolerance == 0 ? differing == 0 : worst <= tolerance;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_models: %s\n", e.what());
    return 1;
  }
}
