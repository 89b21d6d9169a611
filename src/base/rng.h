// Counter-based random numbers: the whole state is (seed, counter).
//
// Every draw is a pure function of the seed and a 64-bit counter (SplitMix64's
// Weyl sequence followed by its finaliser), so a stream can be saved in a
// checkpoint as two integers, split into independent child streams by seed,
// and replayed bit for bit. Not for cryptography.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

namespace pare {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t counter = 0) : seed_(seed), counter_(counter) {}

  // A child stream that is independent of this one and of other children
  // with a different `stream` id; does not advance this stream.
  Rng fork(uint64_t stream) const { return Rng(mix(seed_ ^ mix(stream + 0x9E3779B97F4A7C15ull))); }

  uint64_t next_u64() { return mix(seed_ + 0x9E3779B97F4A7C15ull * ++counter_); }
  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n); n > 0. Lemire's multiply-shift (bias < 2^-32 for n < 2^32).
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next_u64()) * n) >> 64);
  }
  // Standard normal by Box-Muller (one value per call; deterministic).
  float normal() {
    double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;
    double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  // Fisher-Yates shuffle in place.
  template <typename T>
  void shuffle(std::span<T> v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }

 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t seed_;
  uint64_t counter_;
};

}  // namespace pare
