// Bit-for-bit comparison of arrays, for tests that demand the same bits
// (-0 and NaN payloads included), not equal values.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

namespace pare::testing {

// Whether the n bytes at a and b are the same. n == 0 is true without
// touching the pointers: an empty vector's data() may be null, and memcmp of
// a null pointer is undefined even for 0 bytes (UBSan reports it).
inline bool same_bytes(const void* a, const void* b, size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && same_bytes(a.data(), b.data(), a.size() * sizeof(T));
}

}  // namespace pare::testing
