// Lossy storage transforms for a .pare tensor (issue #6): weight sharing by
// k-means (Deep Compression) and int8 per output channel. Both act on the
// present (unpruned) values only and keep the presence mask, so a pruned
// weight stays sparse.
#pragma once

#include "pare/format/pare_file.h"

namespace pare::io {

// Replaces an f32 tensor's present values by `bits`-bit indices into a
// codebook of 2^bits centroids (dtype code, quantization codebook): 1-D
// k-means over the present values, centroids initialised evenly over
// [min, max] (Deep Compression's linear initialisation, which keeps the rare
// large weights), Lloyd iterations until no value changes cluster (at most
// 100). Deterministic. REQUIRES: 1 <= bits <= 8, t.dtype f32.
void share_weights(format::Tensor& t, int bits);

// Replaces an f32 tensor of ndim >= 1 by s8 values quantized symmetrically
// per slice along axis 0 (an output channel): scale = max |w| / 127 over the
// slice's present values, q = round half to even (w / scale) in [-127, 127]
// (kernels/quant.h). REQUIRES: t.dtype f32.
void quantize_s8_per_channel(format::Tensor& t);
// The same per column of a 2-D tensor (axis 1: one scale per column), for a
// tall matrix of few columns such as LoRA's B factor (out, rank).
void quantize_s8_per_column(format::Tensor& t);

// The largest |real - original| over present values after a transform, for
// reporting (original: the f32 tensor before it).
double max_abs_error(const format::Tensor& original, const format::Tensor& transformed);

}  // namespace pare::io
