// Weight sharing and int8 storage of .pare tensors (see compress.h).
#include "pare/io/compress.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "pare/base/error.h"
#include "pare/io/pare_model.h"
#include "pare/kernels/quant.h"

namespace pare::io {

namespace {

float f32_at(const format::Tensor& t, int64_t i) {
  float v;
  std::memcpy(&v, t.values.data() + i * 4, 4);
  return v;
}

bool present_at(const format::Tensor& t, int64_t i) {
  return t.present.empty() || t.present[static_cast<size_t>(i)];
}


}  // namespace

void share_weights(format::Tensor& t, int bits) {
  if (bits < 1 || bits > 8) fail("--share-bits must be 1 to 8, got ", bits);
  PARE_CHECK(t.dtype == format::DType::f32, t.name, ": weight sharing needs f32 values");
  const int64_t n = t.numel();
  std::vector<float> present;
  for (int64_t i = 0; i < n; ++i)
    if (present_at(t, i)) present.push_back(f32_at(t, i));
  const int k = 1 << bits;
  std::vector<double> centroid(static_cast<size_t>(k), 0.0);
  if (!present.empty()) {
    const auto [lo, hi] = std::minmax_element(present.begin(), present.end());
    for (int c = 0; c < k; ++c)
      centroid[static_cast<size_t>(c)] = k == 1 ? (*lo + *hi) / 2.0 : *lo + (*hi - *lo) * c / (k - 1.0);
  }
  // Lloyd on the sorted values: clusters are contiguous runs between the
  // midpoints of consecutive centroids (which stay sorted).
  std::vector<float> sorted = present;
  std::sort(sorted.begin(), sorted.end());
  std::vector<size_t> start(static_cast<size_t>(k) + 1, 0);
  for (int iter = 0; iter < 100 && !sorted.empty(); ++iter) {
    std::vector<size_t> next(static_cast<size_t>(k) + 1, 0);
    next[0] = 0;
    for (int c = 1; c < k; ++c) {
      const double mid = (centroid[static_cast<size_t>(c - 1)] + centroid[static_cast<size_t>(c)]) / 2;
      next[static_cast<size_t>(c)] = static_cast<size_t>(
          std::lower_bound(sorted.begin() + static_cast<std::ptrdiff_t>(next[static_cast<size_t>(c - 1)]),
                           sorted.end(), mid) - sorted.begin());
    }
    next[static_cast<size_t>(k)] = sorted.size();
    if (iter > 0 && next == start) break;
    start = next;
    for (int c = 0; c < k; ++c) {
      const size_t a = start[static_cast<size_t>(c)], b = start[static_cast<size_t>(c) + 1];
      if (a == b) continue;  // an empty cluster keeps its centroid
      double sum = 0;
      for (size_t j = a; j < b; ++j) sum += sorted[j];
      centroid[static_cast<size_t>(c)] = sum / static_cast<double>(b - a);
    }
  }
  format::Tensor out;
  out.name = t.name;
  out.dims = t.dims;
  out.present = t.present;
  out.dtype = format::DType::code;
  out.quant.kind = format::QuantKind::codebook;
  out.quant.bits = static_cast<uint8_t>(bits);
  for (double c : centroid) out.quant.centroids.push_back(static_cast<float>(c));
  out.values.assign(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    if (!present_at(t, i)) continue;
    const float v = f32_at(t, i);
    // Nearest centroid (the sorted centroids' midpoints bound the clusters).
    int best = 0;
    double best_d = std::fabs(v - out.quant.centroids[0]);
    for (int c = 1; c < k; ++c) {
      const double d = std::fabs(v - out.quant.centroids[static_cast<size_t>(c)]);
      if (d < best_d) {
        best_d = d;
        best = c;
      }
    }
    out.values[static_cast<size_t>(i)] = static_cast<uint8_t>(best);
  }
  t = std::move(out);
}

namespace {

// s8 with one symmetric scale per slice along `axis`: 0, the rows of a tensor
// of any rank; 1, the columns of a 2-D one.
void quantize_s8_slices(format::Tensor& t, uint8_t axis) {
  PARE_CHECK(t.dtype == format::DType::f32, t.name, ": int8 quantization needs f32 values");
  if (axis == 0 && t.dims.empty()) fail(t.name, ": int8 per channel needs at least one dim");
  if (axis == 1 && t.dims.size() != 2) fail(t.name, ": int8 per column needs a 2-D tensor");
  const int64_t n = t.numel(), slices = t.dims[axis], per = slices > 0 ? n / slices : 0;
  // Where the j-th value of slice s lies in t.
  auto at = [&](int64_t s, int64_t j) { return axis == 0 ? s * per + j : j * slices + s; };
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t s = 0; s < slices; ++s)
    for (int64_t j = 0; j < per; ++j)
      w[static_cast<size_t>(s * per + j)] = present_at(t, at(s, j)) ? f32_at(t, at(s, j)) : 0.0f;
  std::vector<int8_t> q(static_cast<size_t>(n));
  std::vector<float> scales(static_cast<size_t>(slices));
  kernels::quantize_weights_per_channel_s8(slices, per, q.data(), scales.data(), w.data());
  t.dtype = format::DType::s8;
  t.quant.kind = format::QuantKind::channel;
  t.quant.axis = axis;
  t.quant.scales = scales;
  t.values.resize(static_cast<size_t>(n));
  for (int64_t s = 0; s < slices; ++s)
    for (int64_t j = 0; j < per; ++j)
      t.values[static_cast<size_t>(at(s, j))] = static_cast<uint8_t>(q[static_cast<size_t>(s * per + j)]);
}

}  // namespace

void quantize_s8_per_channel(format::Tensor& t) { quantize_s8_slices(t, 0); }

void quantize_s8_per_column(format::Tensor& t) { quantize_s8_slices(t, 1); }

double max_abs_error(const format::Tensor& original, const format::Tensor& transformed) {
  double e = 0;
  for (int64_t i = 0; i < original.numel(); ++i)
    if (present_at(original, i)) e = std::max(e, std::fabs(static_cast<double>(real_value(transformed, i)) - f32_at(original, i)));
  return e;
}

}  // namespace pare::io
